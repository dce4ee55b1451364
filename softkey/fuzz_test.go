package softkey

import (
	"bytes"
	"context"
	"crypto/x509"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// fuzzFixture is the fixed state every fuzz iteration starts from: one identity (so
// a sealed ID made while seeding stays valid) and two resident credentials for
// a.example (so getAssertion without an allowList leads to getNextAssertion).
var fuzzFixture = sync.OnceValue(func() (f struct {
	meta      store.Meta
	residents []*store.Credential
}) {
	var err error
	if f.meta, err = store.NewMeta(mrand.NewChaCha8([32]byte{'f', 'u', 'z', 'z'}), nil); err != nil {
		panic(err)
	}
	rnd := mrand.NewChaCha8([32]byte{'k', 'e', 'y', 's'})
	for i, alg := range []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA} {
		key, err := ctap2.GenerateKey(alg, rnd)
		if err != nil {
			panic(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			panic(err)
		}
		id := make([]byte, residentIDSize)
		id[0], id[1] = credIDResident, byte(i)
		f.residents = append(f.residents, &store.Credential{
			ID: id, RPID: "a.example", RPIDHash: ctap2.RPIDHash("a.example"),
			User: ctap2.UserEntity{ID: []byte{'u', byte(i)}}, Alg: alg, PrivateKey: der,
			Created: epoch.Add(time.Duration(i) * time.Second),
		})
	}
	return f
})

func newFuzzSoftkey(tb testing.TB) *Authenticator {
	f := fuzzFixture()
	st := store.NewMemory(f.meta)
	for _, c := range f.residents {
		if err := st.PutCredential(c); err != nil {
			tb.Fatal(err)
		}
	}
	a, err := New(st, Config{Seed: []byte("fuzz"), Now: func() time.Time { return epoch }, MaxResidentCredentials: 3})
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// FuzzHandleCBOR feeds arbitrary messages to a softkey, each followed by a
// getNextAssertion. Property: no panic; every reply is one non-zero status byte, or
// 0x00 followed by exactly one canonical CBOR item (0x00 alone only for reset,
// selection, config, largeBlobs writes and credentialManagement deletes and
// updates); successes are genuine (attestations and assertion authData check out).
func FuzzHandleCBOR(f *testing.F) {
	a := newFuzzSoftkey(f)
	made, err := a.MakeCredential(context.Background(), mcRequest("a.example", []byte("seed")))
	if err != nil {
		f.Fatal(err)
	}
	sealedID, _, err := made.CredentialKey()
	if err != nil {
		f.Fatal(err)
	}
	a.Close()
	residentID := fuzzFixture().residents[0].ID

	add := func(cmd ctap2.Command, v any) {
		msg := []byte{byte(cmd)}
		if v != nil {
			msg = append(msg, mustMarshal(f, v)...)
		}
		f.Add(msg)
	}
	add(ctap2.CmdMakeCredential, mcRequest("a.example", []byte("u")))
	add(ctap2.CmdMakeCredential, residentRequest("a.example", []byte("u"), ctap2.AlgEdDSA, ctap2.AlgES256))
	add(ctap2.CmdMakeCredential, residentRequest("b.example", []byte("u"), ctap2.AlgES384))
	ex := mcRequest("a.example", []byte("u"))
	ex.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: sealedID}}
	add(ctap2.CmdMakeCredential, ex)
	add(ctap2.CmdMakeCredential, rawMC())
	add(ctap2.CmdMakeCredential, with(rawMC(), 7, opts("up", false)))
	add(ctap2.CmdMakeCredential, with(rawMC(), 8, []byte{}))
	add(ctap2.CmdGetAssertion, gaRequest("a.example", []byte("foreign"), sealedID))
	add(ctap2.CmdGetAssertion, gaRequest("a.example", residentID))
	add(ctap2.CmdGetAssertion, gaRequest("a.example"))
	silent := gaRequest("a.example", sealedID)
	silent.Options = &ctap2.Options{UP: ctap2.Bool(false)}
	add(ctap2.CmdGetAssertion, silent)
	add(ctap2.CmdGetAssertion, with(rawGA(), 5, opts("rk", true)))
	add(ctap2.CmdGetInfo, nil)
	add(ctap2.CmdReset, nil)
	add(ctap2.CmdGetNextAssertion, nil)
	add(ctap2.CmdSelection, nil)
	addExtensionSeeds(f) // extensions_fuzz_test.go
	f.Add([]byte{})
	f.Add([]byte{0x55})
	f.Add([]byte{byte(ctap2.CmdMakeCredential), 0x80})
	f.Add([]byte{byte(ctap2.CmdMakeCredential), 0xa1, 0x01})
	f.Add([]byte{byte(ctap2.CmdGetAssertion), 0xa2, 0x01, 0x61, 0x61, 0x01, 0x61, 0x62})
	f.Add(append([]byte{byte(ctap2.CmdGetAssertion)}, bytes.Repeat([]byte{0x81}, 64)...))

	f.Fuzz(func(t *testing.T, msg []byte) {
		a := newFuzzSoftkey(t)
		defer a.Close()
		checkFuzzReply(t, msg, a.HandleCBOR(context.Background(), msg, nil))
		next := []byte{byte(ctap2.CmdGetNextAssertion)}
		checkFuzzReply(t, next, a.HandleCBOR(context.Background(), next, nil))
	})
}

func checkFuzzReply(t *testing.T, msg, reply []byte) {
	if len(reply) == 0 {
		t.Fatalf("%x: empty reply", msg)
	}
	if reply[0] != 0 {
		if len(reply) != 1 {
			t.Fatalf("%x: error %02x followed by %x", msg, reply[0], reply[1:])
		}
		return
	}
	cmd := ctap2.Command(msg[0])
	body := reply[1:]
	switch cmd {
	case ctap2.CmdReset, ctap2.CmdSelection:
		if len(body) != 0 {
			t.Fatalf("%x: %v succeeded with a body %x", msg, cmd, body)
		}
		return
	case ctap2.CmdClientPIN:
		checkClientPINReply(t, msg, body)
		return
	case ctap2.CmdCredentialManagement, ctap2.CmdCredentialMgmtPre, ctap2.CmdConfig, ctap2.CmdLargeBlobs:
		checkMgmtReply(t, msg, body)
		return
	case ctap2.CmdMakeCredential, ctap2.CmdGetAssertion, ctap2.CmdGetNextAssertion, ctap2.CmdGetInfo:
	default:
		t.Fatalf("%x: unknown command succeeded", msg)
	}
	if err := ctap2.CheckCanonical(body); err != nil {
		t.Fatalf("%x: reply %x: %v", msg, reply, err)
	}
	switch cmd {
	case ctap2.CmdMakeCredential:
		var req ctap2.MakeCredentialRequest
		if err := ctap2.Unmarshal(msg[1:], &req); err != nil {
			t.Fatalf("%x: makeCredential succeeded on a request that does not decode: %v", msg, err)
		}
		var resp ctap2.MakeCredentialResponse
		if err := ctap2.Unmarshal(body, &resp); err != nil {
			t.Fatalf("%x: makeCredential reply: %v", msg, err)
		}
		if _, err := resp.VerifyAttestation(req.ClientDataHash); err != nil {
			t.Fatalf("%x: makeCredential attestation: %v", msg, err)
		}
		if ad, _ := resp.ParseAuthData(); ad.RPIDHash != ctap2.RPIDHash(req.RP.ID) {
			t.Fatalf("%x: makeCredential for another RP's hash", msg)
		}
	case ctap2.CmdGetAssertion, ctap2.CmdGetNextAssertion:
		var resp ctap2.GetAssertionResponse
		if err := ctap2.Unmarshal(body, &resp); err != nil {
			t.Fatalf("%x: assertion reply: %v", msg, err)
		}
		ad, err := resp.ParseAuthData()
		if err != nil || ad.Attested != nil {
			t.Fatalf("%x: assertion authData %x: %v", msg, resp.AuthData, err)
		}
		if cmd == ctap2.CmdGetAssertion {
			var req ctap2.GetAssertionRequest
			if err := ctap2.Unmarshal(msg[1:], &req); err != nil {
				t.Fatalf("%x: getAssertion succeeded on a request that does not decode: %v", msg, err)
			}
			if ad.RPIDHash != ctap2.RPIDHash(req.RPID) {
				t.Fatalf("%x: assertion for another RP's hash", msg)
			}
		}
	case ctap2.CmdGetInfo:
		var info ctap2.Info
		if err := ctap2.Unmarshal(body, &info); err != nil {
			t.Fatalf("getInfo reply: %v", err)
		}
	}
}
