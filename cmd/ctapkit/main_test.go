package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ctapkit/ctapkit/internal/pcsctest"
)

func TestMain(m *testing.M) {
	testscript.Main(stopPCSCD{m}, map[string]func(){
		"ctapkit": func() { os.Exit(run(os.Args[1:], systemStreams())) },
	})
}

// stopPCSCD stops the PC/SC scripts' private pcscd when the tests are done.
type stopPCSCD struct{ *testing.M }

func (s stopPCSCD) Run() int {
	code := s.M.Run()
	pcsctest.StopShared()
	return code
}

// TestScripts runs the CLI behaviour scripts in testdata/script: each is a txtar file
// run in its own work directory, with a softkey state file made there.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("HOME", e.WorkDir)
			e.Setenv("XDG_DATA_HOME", e.WorkDir+"/data")
			e.Setenv("NO_COLOR", "1")
			// Hermetic: a pcscd running on this machine (with cards in it)
			// must not show up in scripts that expect no devices.
			e.Setenv("PCSCLITE_CSOCK_NAME", e.WorkDir+"/no-pcscd.comm")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"jsonget":    cmdJSONGet,
			"checksig":   cmdCheckSig,
			"exits":      cmdExits,
			"jsonenv":    cmdJSONEnv,
			"jsongt":     cmdJSONGreater,
			"jsoncert":   cmdJSONCert,
			"certverify": cmdCertVerify,
		},
	})
}

// jsonPath returns the JSON value at a dotted path (numbers index arrays).
func jsonPath(ts *testscript.TestScript, file, path string) (any, bool) {
	v := readJSON(ts, file)
	for _, k := range strings.Split(path, ".") {
		switch t := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = t[k]; !ok {
				return nil, false
			}
		case []any:
			var i int
			if _, err := fmt.Sscan(k, &i); err != nil || i < 0 || i >= len(t) {
				ts.Fatalf("%s: bad index %q", file, k)
			}
			v = t[i]
		default:
			ts.Fatalf("%s: %q is not inside an object or array", file, k)
		}
	}
	return v, true
}

// jsonenv NAME FILE PATH sets $NAME to a string field, so that a value from one
// command's --json output can be passed to the next command.
func cmdJSONEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: jsonenv NAME FILE PATH")
	}
	v, ok := jsonPath(ts, args[1], args[2])
	s, isString := v.(string)
	if !ok || !isString {
		ts.Fatalf("%s: %s is not a string", args[1], args[2])
	}
	ts.Setenv(args[0], s)
}

// jsongt FILE1 PATH1 FILE2 PATH2 checks that the first number is greater than the
// second: signature counters must increase.
func cmdJSONGreater(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 4 {
		ts.Fatalf("usage: jsongt FILE1 PATH1 FILE2 PATH2")
	}
	a, okA := jsonPath(ts, args[0], args[1])
	b, okB := jsonPath(ts, args[2], args[3])
	x, isNumA := a.(float64)
	y, isNumB := b.(float64)
	if !okA || !okB || !isNumA || !isNumB {
		ts.Fatalf("jsongt: %s %s and %s %s must be numbers", args[0], args[1], args[2], args[3])
	}
	if (x > y) == neg {
		ts.Fatalf("jsongt: %v > %v is %v", x, y, x > y)
	}
}

// jsoncert FILE PATH OUT writes the certificate at PATH of a --json output — a PEM
// string, or base64url DER as in an attStmt's x5c — to OUT as PEM, for openssl and
// certverify.
func cmdJSONCert(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: jsoncert FILE PATH OUT")
	}
	v, ok := jsonPath(ts, args[0], args[1])
	s, isString := v.(string)
	if !ok || !isString {
		ts.Fatalf("%s: %s is not a string", args[0], args[1])
	}
	der, err := base64.RawURLEncoding.DecodeString(s)
	if block, _ := pem.Decode([]byte(s)); block != nil && block.Type == "CERTIFICATE" {
		der, err = block.Bytes, nil
	}
	if err != nil {
		ts.Fatalf("%s: %s is neither PEM nor base64url", args[0], args[1])
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		ts.Fatalf("%s: %s: %v", args[0], args[1], err)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[2]), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
}

// certverify CA.pem CERT.pem [AAGUID] checks with the standard library that CA
// issued CERT and, given an AAGUID, that CERT names it in its
// id-fido-gen-ce-aaguid extension, as WebAuthn's packed attestation requires.
func cmdCertVerify(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 && len(args) != 3 {
		ts.Fatalf("usage: certverify CA.pem CERT.pem [AAGUID]")
	}
	parse := func(name string) *x509.Certificate {
		block, _ := pem.Decode([]byte(ts.ReadFile(name)))
		if block == nil {
			ts.Fatalf("%s is not PEM", name)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		ts.Check(err)
		return c
	}
	ca, cert := parse(args[0]), parse(args[1])
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if len(args) == 3 && err == nil {
		want, herr := hex.DecodeString(strings.ReplaceAll(args[2], "-", ""))
		ts.Check(herr)
		err = fmt.Errorf("no AAGUID extension")
		for _, ext := range cert.Extensions {
			if ext.Id.String() == "1.3.6.1.4.1.45724.1.1.4" {
				var got []byte
				if _, aerr := asn1.Unmarshal(ext.Value, &got); aerr != nil || !bytes.Equal(got, want) || ext.Critical {
					err = fmt.Errorf("AAGUID extension %x (critical %v), want %x", ext.Value, ext.Critical, want)
				} else {
					err = nil
				}
			}
		}
	}
	if (err == nil) == neg {
		ts.Fatalf("certverify %s %s: %v", args[0], args[1], err)
	}
}

// jsonget FILE PATH prints the JSON value at a dotted path (numbers index arrays), so
// scripts can match fields with `stdout`.
func cmdJSONGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: jsonget FILE PATH")
	}
	v, ok := jsonPath(ts, args[0], args[1])
	switch {
	case neg && ok:
		ts.Fatalf("%s has %s", args[0], args[1])
	case neg:
		return
	case !ok:
		ts.Fatalf("%s: no field %s", args[0], args[1])
	}
	out, _ := json.Marshal(v)
	fmt.Fprintf(ts.Stdout(), "%s\n", out)
}

func readJSON(ts *testscript.TestScript, name string) any {
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile(name)), &v); err != nil {
		ts.Fatalf("%s: %v", name, err)
	}
	return v
}

// checksig MC.json GA.json [INDEX] verifies assertion INDEX (default 0) of a
// get-assertion --json output with the publicKeyPem of a make-credential --json output,
// using only the standard library: the CLI's own verification code is not involved.
func cmdCheckSig(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: checksig MC.json GA.json [INDEX]")
	}
	mc := readJSON(ts, args[0]).(map[string]any)
	ga := readJSON(ts, args[1]).(map[string]any)
	idx := 0
	if len(args) > 2 {
		fmt.Sscan(args[2], &idx)
	}
	as := ga["assertions"].([]any)[idx].(map[string]any)
	dec := func(s any) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s.(string))
		if err != nil {
			ts.Fatalf("bad base64url %q", s)
		}
		return b
	}
	block, _ := pem.Decode([]byte(mc["publicKeyPem"].(string)))
	if block == nil {
		ts.Fatalf("publicKeyPem is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		ts.Fatalf("publicKeyPem: %v", err)
	}
	msg := append(dec(as["authData"]), dec(ga["clientDataHash"])...)
	sig := dec(as["signature"])
	var ok bool
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(k, h[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	default:
		ts.Fatalf("unexpected key type %T", pub)
	}
	if ok == neg {
		ts.Fatalf("signature verifies: %v (authData %s)", ok, hex.EncodeToString(msg[:37]))
	}
}

// exits N PROG ARGS... runs a program like exec and checks its exit status, because
// the exit codes are part of the CLI contract. Its stdout and stderr are kept for
// `stdout` and `stderr` as with exec.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N PROG ARGS...")
	}
	var want int
	if _, err := fmt.Sscan(args[0], &want); err != nil {
		ts.Fatalf("exits: bad status %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}
