package softkey

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/internal/benchratio"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// BenchmarkGetAssertionEncrypted: getAssertion through HandleCBOR on a softkey whose
// state is an encrypted bbolt file (default argon2id parameters, as softkey init
// makes it) vs the same requests on one in store.Memory. The two alternate, so load
// moves both alike; x-memory is the ratio of the medians (target ≤ 1.3: no argon2id
// and no fsync on the signature path, a keyed hash and an AES-GCM open per record),
// x-memory-mean the ratio of the means, which includes the encrypted state's one
// fsynced counter reservation per 1024 signatures.
//
//	go test -run '^$' -bench GetAssertionEncrypted ./softkey/
func BenchmarkGetAssertionEncrypted(b *testing.B) {
	const rp = "encrypted.bench.example"
	db, err := store.Create(filepath.Join(b.TempDir(), "sk.db"), store.CreateOptions{Passphrase: []byte("bench passphrase")})
	if err != nil {
		b.Fatal(err)
	}
	enc, err := New(db, Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { enc.Close() })
	mem, err := New(store.NewMemory(store.Meta{}), Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mem.Close() })

	cdh := make([]byte, 32)
	register := func(a *Authenticator, resident bool, user byte) []byte {
		mc, err := a.MakeCredential(context.Background(), &ctap2.MakeCredentialRequest{
			ClientDataHash:   cdh,
			RP:               &ctap2.RPEntity{ID: rp},
			User:             &ctap2.UserEntity{ID: []byte{user}, Name: "bench"},
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
		return ad.Attested.CredentialID
	}
	request := func(id []byte) []byte {
		r := &ctap2.GetAssertionRequest{RPID: rp, ClientDataHash: cdh}
		if id != nil {
			r.AllowList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: id}}
		}
		body, err := ctap2.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		return append([]byte{byte(ctap2.CmdGetAssertion)}, body...)
	}
	type pair struct{ enc, mem []byte }
	nonResident := pair{request(register(enc, false, 1)), request(register(mem, false, 1))}
	resident := pair{request(register(enc, true, 2)), request(register(mem, true, 2))}
	// One resident credential each for the RP: the discoverable request finds it.
	discoverable := pair{request(nil), request(nil)}

	for _, tc := range []struct {
		name string
		reqs pair
	}{
		{"non-resident", nonResident},  // the ID carries the key: no record read
		{"resident-by-id", resident},   // Credential(id): two index reads, two opens
		{"discoverable", discoverable}, // CredentialsByRP: a keyed-hash seek, one open
	} {
		b.Run(tc.name, func(b *testing.B) {
			call := func(a *Authenticator, msg []byte) func() {
				return func() {
					if resp := a.HandleCBOR(context.Background(), msg, nil); resp[0] != 0 {
						b.Fatalf("status 0x%02x", resp[0])
					}
				}
			}
			onEnc, onMem := call(enc, tc.reqs.enc), call(mem, tc.reqs.mem)
			onEnc() // warm up: the signer cache, the pages on the path to the record
			onMem()
			benchratio.Compare(b, onEnc, onMem).Report(b, "x-memory", "encrypted", "memory")
		})
	}
}
