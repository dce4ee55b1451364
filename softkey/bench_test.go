package softkey

import (
	"context"
	"fmt"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/internal/benchratio"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// BenchmarkGetAssertion is a full authenticatorGetAssertion through HandleCBOR:
// request decoding, credential lookup, signing, counter and response encoding.
func BenchmarkGetAssertion(b *testing.B) {
	for _, tc := range []struct {
		name     string
		resident bool
		creds    int // distinct credentials asserted in turn
	}{
		{"non-resident", false, 1},
		{"resident", true, 1},
		// more credentials than the signer cache holds: every key is parsed again
		{"non-resident-uncached", false, 2 * signerCacheSize},
	} {
		b.Run(tc.name, func(b *testing.B) {
			a, reqs := benchAuthenticator(b, tc.resident, tc.creds)
			i := 0
			benchratio.Run(b, func() {
				if resp := a.HandleCBOR(context.Background(), reqs[i%len(reqs)], nil); resp[0] != 0 {
					b.Fatalf("status 0x%02x", resp[0])
				}
				i++
			})
		})
	}
}

// benchAuthenticator makes a softkey with n ES256 credentials for bench.example
// (distinct RPs' worth of keys, one user each) and returns one encoded
// getAssertion request per credential.
func benchAuthenticator(b *testing.B, resident bool, n int) (*Authenticator, [][]byte) {
	b.Helper()
	a, err := New(store.NewMemory(store.Meta{}), Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	var reqs [][]byte
	for i := range n {
		reqs = append(reqs, benchCredential(b, a, resident, fmt.Sprintf("bench%d.example", i)))
	}
	return a, reqs
}

// benchCredential registers one credential for rpID and returns a getAssertion
// request for it.
func benchCredential(b *testing.B, a *Authenticator, resident bool, rpID string) []byte {
	b.Helper()
	cdh := make([]byte, 32)
	mc, err := a.MakeCredential(context.Background(), &ctap2.MakeCredentialRequest{
		ClientDataHash:   cdh,
		RP:               &ctap2.RPEntity{ID: rpID},
		User:             &ctap2.UserEntity{ID: []byte{1}, Name: "bench"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
		Options:          &ctap2.Options{RK: ctap2.Bool(resident)},
	})
	if err != nil {
		b.Fatal(err)
	}
	ad, err := ctap2.ParseAuthData(mc.AuthData)
	if err != nil {
		b.Fatal(err)
	}
	ga := &ctap2.GetAssertionRequest{RPID: rpID, ClientDataHash: cdh}
	if !resident {
		ga.AllowList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: ad.Attested.CredentialID}}
	}
	body, err := ctap2.Marshal(ga)
	if err != nil {
		b.Fatal(err)
	}
	return append([]byte{byte(ctap2.CmdGetAssertion)}, body...)
}
