package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ctapkit": func() { os.Exit(run(os.Args[1:], systemStreams())) },
	})
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
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"jsonget":  cmdJSONGet,
			"checksig": cmdCheckSig,
		},
	})
}

// jsonget FILE PATH prints the JSON value at a dotted path (numbers index arrays), so
// scripts can match fields with `stdout`.
func cmdJSONGet(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: jsonget FILE PATH")
	}
	v := readJSON(ts, args[0])
	for _, k := range strings.Split(args[1], ".") {
		switch t := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = t[k]; !ok {
				if neg {
					return
				}
				ts.Fatalf("%s: no field %q", args[0], k)
			}
		case []any:
			var i int
			if _, err := fmt.Sscan(k, &i); err != nil || i < 0 || i >= len(t) {
				ts.Fatalf("%s: bad index %q", args[0], k)
			}
			v = t[i]
		default:
			ts.Fatalf("%s: %q is not inside an object or array", args[0], k)
		}
	}
	if neg {
		ts.Fatalf("%s has %s", args[0], args[1])
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
