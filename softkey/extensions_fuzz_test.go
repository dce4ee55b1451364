package softkey

import (
	"bytes"
	"context"
	"crypto/ecdh"
	mrand "math/rand/v2"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
)

// addExtensionSeeds adds FuzzHandleCBOR seeds that carry extensions: every
// makeCredential input, getAssertion with valid hmac-secret inputs for both PIN
// protocols against a sealed format-0x03 ID, and the usual faults. The fuzz softkey
// is seeded, so its key agreement key, and therefore these saltAuths, are the same
// in every iteration.
func addExtensionSeeds(f *testing.F) {
	a := newFuzzSoftkey(f)
	defer a.Close()
	ka, err := ctap2.KeyAgreementKey(a.pin.key.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	rnd := mrand.NewChaCha8([32]byte{'e', 'x', 't'})
	own, err := ecdh.P256().NewPrivateKey(bytes.Repeat([]byte{0x42}, 32))
	if err != nil {
		f.Fatal(err)
	}
	hmacIn := func(v uint, salts ...[]byte) map[int]any {
		p := ctap2.PINProtocol(ctap2.PINProtocolOne{})
		if v == 2 {
			p = ctap2.PINProtocolTwo{Rand: rnd}
		}
		pk, ss, err := ctap2.Encapsulate(p, ka, own)
		if err != nil {
			f.Fatal(err)
		}
		enc, err := p.Encrypt(ss, bytes.Join(salts, nil))
		if err != nil {
			f.Fatal(err)
		}
		in := map[int]any{1: ctap2.RawMessage(pk), 2: enc, 3: p.Authenticate(ss, enc)}
		if v == 2 {
			in[4] = v
		}
		return in
	}
	ext := func(kv ...any) map[string]ctap2.RawMessage { return extMap(f, kv...) }
	// add adds a seed; a seed that should succeed is checked to, on a fresh fuzz
	// softkey, so the seeds keep reaching the extension code.
	add := func(cmd ctap2.Command, v any, wantOK bool) {
		msg := append([]byte{byte(cmd)}, mustMarshal(f, v)...)
		if wantOK {
			b := newFuzzSoftkey(f)
			defer b.Close()
			if reply := b.HandleCBOR(context.Background(), msg, nil); reply[0] != 0 {
				f.Fatalf("extension seed %x: status %#x", msg, reply[0])
			}
		}
		f.Add(msg)
	}

	sealedMC := withExt(mcRequest("a.example", []byte("x")), ext("credProtect", 2, "hmac-secret", true, "credBlob", []byte("blob")))
	made, err := a.MakeCredential(context.Background(), sealedMC)
	if err != nil {
		f.Fatal(err)
	}
	sealedID, _, err := made.CredentialKey()
	if err != nil || sealedID[0] != credIDSealedExt {
		f.Fatalf("seed credential %x: %v", sealedID, err)
	}

	add(ctap2.CmdMakeCredential, sealedMC, true)
	add(ctap2.CmdMakeCredential, withExt(residentRequest("a.example", []byte("y")), ext(
		"credProtect", 3, "hmac-secret", true, "hmac-secret-mc", hmacIn(2, salt1, salt2),
		"credBlob", bytes.Repeat([]byte{1}, maxCredBlobLength), "largeBlobKey", true, "minPinLength", true)), true)
	add(ctap2.CmdMakeCredential, withExt(mcRequest("a.example", []byte("z")), ext("hmac-secret", true, "hmac-secret-mc", hmacIn(1, salt1))), true)
	add(ctap2.CmdMakeCredential, withExt(mcRequest("a.example", []byte("z")), ext("credProtect", 7, "largeBlobKey", false)), false)
	add(ctap2.CmdMakeCredential, withExt(mcRequest("a.example", []byte("z")), ext("credBlob", make([]byte, maxCredBlobLength+1), "unknown", 1)), true)

	for _, v := range []uint{1, 2} {
		add(ctap2.CmdGetAssertion, gaWithExt(gaRequest("a.example", sealedID), ext("hmac-secret", hmacIn(v, salt1), "credBlob", true, "largeBlobKey", true)), true)
		add(ctap2.CmdGetAssertion, gaWithExt(gaRequest("a.example"), ext("hmac-secret", hmacIn(v, salt1, salt2), "credBlob", true, "largeBlobKey", true)), true)
	}
	bad := hmacIn(2, salt1)
	bad[3] = flip(bad[3].([]byte), 0)
	add(ctap2.CmdGetAssertion, gaWithExt(gaRequest("a.example", sealedID), ext("hmac-secret", bad)), false)
	add(ctap2.CmdGetAssertion, silent(gaWithExt(gaRequest("a.example", sealedID), ext("hmac-secret", hmacIn(1, salt1)))), false)
	add(ctap2.CmdGetAssertion, gaWithExt(gaRequest("a.example", sealedID), ext("credBlob", false, "largeBlobKey", false)), false)
}
