package softkey_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// fido2Python finds a python3 that has python-fido2 (Debian python3-fido2, which
// `make test` installs when run as root). PATH's python3 may be another build,
// so the system interpreter is tried too. Without one the interop test is
// skipped, except in CI, where it must run.
func fido2Python(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import fido2").Run() == nil {
			return py
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("python-fido2 is not installed (apt-get install python3-fido2); CI must run the interop test")
	}
	t.Skip("python-fido2 not installed (apt-get install python3-fido2)")
	return ""
}

// TestPythonFido2Interop has python-fido2 parse and verify softkey responses: its
// strict CBOR re-encoding, its packed/none attestation verifiers and its
// assertion signature check, for every algorithm and credential kind.
func TestPythonFido2Interop(t *testing.T) {
	py := fido2Python(t)
	for _, tc := range []struct {
		name string
		alg  ctap2.COSEAlgorithm
		rk   bool
		att  softkey.AttestationMode
		want string
	}{
		{"es256-self", ctap2.AlgES256, false, softkey.AttestationSelf, "SELF"},
		{"es256-resident", ctap2.AlgES256, true, softkey.AttestationSelf, "SELF"},
		{"eddsa-self", ctap2.AlgEdDSA, false, softkey.AttestationSelf, "SELF"},
		{"eddsa-resident", ctap2.AlgEdDSA, true, softkey.AttestationSelf, "SELF"},
		// ES384 is left out: Debian's python-fido2 0.9 has no ES384 COSE key class.
		{"es256-none", ctap2.AlgES256, false, softkey.AttestationNone, "NONE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{Attestation: tc.att})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			cdh1, cdh2 := randomHash(t), randomHash(t)
			mc := call(t, a, ctap2.CmdMakeCredential, &ctap2.MakeCredentialRequest{
				ClientDataHash:   cdh1,
				RP:               &ctap2.RPEntity{ID: "example.com", Name: "Example"},
				User:             &ctap2.UserEntity{ID: []byte("user-1"), Name: "alice"},
				PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: tc.alg}},
				Options:          &ctap2.Options{RK: ctap2.Bool(tc.rk)},
			})
			var mcResp ctap2.MakeCredentialResponse
			if err := ctap2.Unmarshal(mc, &mcResp); err != nil {
				t.Fatal(err)
			}
			ad, err := mcResp.ParseAuthData()
			if err != nil {
				t.Fatal(err)
			}
			ga := call(t, a, ctap2.CmdGetAssertion, &ctap2.GetAssertionRequest{
				RPID:           "example.com",
				ClientDataHash: cdh2,
				AllowList:      []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: ad.Attested.CredentialID}},
			})
			out, err := exec.Command(py, "testdata/fido2_verify.py",
				hex.EncodeToString(mc), hex.EncodeToString(cdh1), hex.EncodeToString(ga), hex.EncodeToString(cdh2)).CombinedOutput()
			if err != nil {
				t.Fatalf("python-fido2 rejects the softkey's responses: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != "ok "+tc.want {
				t.Fatalf("python-fido2 says %q, want %q", got, "ok "+tc.want)
			}
		})
	}
}

// call sends one CBOR command through HandleCBOR and returns the response body.
func call(t *testing.T, a *softkey.Authenticator, cmd ctap2.Command, req any) []byte {
	t.Helper()
	body, err := ctap2.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp := a.HandleCBOR(context.Background(), append([]byte{byte(cmd)}, body...), nil)
	if resp[0] != 0 {
		t.Fatalf("%v: %v", cmd, ctap2.StatusError(resp[0]))
	}
	return bytes.Clone(resp[1:])
}

func randomHash(t *testing.T) []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}
