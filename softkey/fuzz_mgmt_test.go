package softkey

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// newFuzzMgmtSoftkey is the fuzz fixture (two resident credentials for a.example,
// one for b.example) on maxMsgSize 300 (large-blob fragments of 236 bytes). With
// protected it has the PIN "1234" and a pinUvAuthToken (protocol 2, every
// permission the softkey grants, no RP ID) put straight into the engine: the seed
// makes the token the same in every iteration, so seeds can carry valid MACs.
func newFuzzMgmtSoftkey(tb testing.TB, protected bool) (*Authenticator, store.Store, *ctap2.PINToken) {
	f := fuzzFixture()
	st := store.NewMemory(f.meta)
	for _, c := range f.residents {
		if err := st.PutCredential(c); err != nil {
			tb.Fatal(err)
		}
	}
	b := *f.residents[0]
	b.ID = bytes.Repeat([]byte{credIDResident, 'b'}, residentIDSize/2)
	b.RPID, b.RPIDHash, b.User = "b.example", ctap2.RPIDHash("b.example"), ctap2.UserEntity{ID: []byte("ub"), Name: "b"}
	if err := st.PutCredential(&b); err != nil {
		tb.Fatal(err)
	}
	if protected {
		s := store.DefaultSettings()
		s.PINHash, s.PINCodePoints = pinHash("1234"), 4
		if err := st.SetSettings(s); err != nil {
			tb.Fatal(err)
		}
	}
	a, err := New(st, Config{Seed: []byte("fuzz"), Now: func() time.Time { return epoch }, MaxMsgSize: 300, MaxResidentCredentials: 5})
	if err != nil {
		tb.Fatal(err)
	}
	if !protected {
		return a, st, nil
	}
	perms := permMCGA | permCM | permLBW | permACFG
	value, err := a.issueToken(2, perms, "", false)
	if err != nil {
		tb.Fatal(err)
	}
	return a, st, &ctap2.PINToken{Protocol: ctap2.PINProtocolByVersion(2), Token: value}
}

// checkMgmtReply checks a successful reply of credentialManagement, config or
// largeBlobs (also for FuzzHandleCBOR): empty, or one canonical CBOR map of the
// command's response type.
func checkMgmtReply(t *testing.T, msg, body []byte) {
	cmd := ctap2.Command(msg[0])
	if len(body) == 0 {
		if cmd == ctap2.CmdLargeBlobs {
			var req largeBlobsParams
			if err := ctap2.Unmarshal(msg[1:], &req); err != nil || req.Set == nil {
				t.Fatalf("%x: a largeBlobs request that is not a write answered nothing (%v)", msg, err)
			}
		}
		return
	}
	if err := ctap2.CheckCanonical(body); err != nil {
		t.Fatalf("%x: reply %x: %v", msg, body, err)
	}
	switch cmd {
	case ctap2.CmdCredentialManagement, ctap2.CmdCredentialMgmtPre:
		var resp ctap2.CredMgmtResponse
		if err := ctap2.Unmarshal(body, &resp); err != nil {
			t.Fatalf("%x: credentialManagement reply %x: %v", msg, body, err)
		}
		if resp.PublicKey != nil {
			if _, err := ctap2.ParseCOSEKey(resp.PublicKey); err != nil {
				t.Fatalf("%x: credentialManagement public key %x: %v", msg, resp.PublicKey, err)
			}
		}
		if resp.RP != nil && !bytes.Equal(resp.RPIDHash, rpHash(resp.RP.ID)) {
			t.Fatalf("%x: RP %q with hash %x", msg, resp.RP.ID, resp.RPIDHash)
		}
	case ctap2.CmdLargeBlobs:
		var resp struct {
			Config []byte `cbor:"1,keyasint"`
		}
		if err := ctap2.Unmarshal(body, &resp); err != nil || resp.Config == nil {
			t.Fatalf("%x: largeBlobs reply %x: %v", msg, body, err)
		}
	default:
		t.Fatalf("%x: %v answered %x, want an empty response", msg, cmd, body)
	}
}

// fuzzSend sends cmd || params and checks the reply's framing and contents.
func fuzzSend(t *testing.T, a *Authenticator, cmd ctap2.Command, params []byte) ctap2.StatusError {
	msg := append([]byte{byte(cmd)}, params...)
	reply := a.HandleCBOR(context.Background(), msg, nil)
	checkFuzzReply(t, msg, reply)
	return ctap2.StatusError(reply[0])
}

// FuzzCredMgmt feeds two arbitrary credentialManagement requests (the second
// through 0x0A or the 0x41 prototype) to a protected softkey whose token the seeds
// know. Properties: no panic; replies are framed and typed (checkMgmtReply);
// credentials only disappear through a successful deleteCredential, their user
// handles and keys never change, and none appears.
func FuzzCredMgmt(f *testing.F) {
	_, _, tok := newFuzzMgmtSoftkey(f, true)
	a1 := fuzzFixture().residents[0].ID
	add := func(first, second any, proto bool) {
		enc := func(v any) []byte {
			if b, ok := v.([]byte); ok {
				return b
			}
			return mustMarshal(f, v)
		}
		f.Add(enc(first), enc(second), proto)
	}
	next := cmReq(f, ctap2.CredMgmtEnumerateRPsGetNextRP, nil, nil)
	nextCred := cmReq(f, ctap2.CredMgmtEnumerateCredentialsGetNextCredential, nil, nil)
	add(cmReq(f, ctap2.CredMgmtGetCredsMetadata, nil, tok), next, false)
	add(cmReq(f, ctap2.CredMgmtEnumerateRPsBegin, nil, tok), next, false)
	add(cmReq(f, ctap2.CredMgmtEnumerateRPsBegin, nil, tok), next, true)
	add(cmReq(f, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")}, tok), nextCred, false)
	add(cmReq(f, ctap2.CredMgmtDeleteCredential, credParams(a1, nil), tok), nextCred, false)
	add(cmReq(f, ctap2.CredMgmtUpdateUserInformation, credParams(a1, &ctap2.UserEntity{ID: []byte{'u', 0}, Name: "n"}), tok),
		cmReq(f, ctap2.CredMgmtUpdateUserInformation, credParams(a1, &ctap2.UserEntity{ID: []byte{'u', 0}}), tok), true)
	add(cmReq(f, ctap2.CredMgmtUpdateUserInformation, credParams(a1, &ctap2.UserEntity{ID: []byte("x")}), tok), next, false)
	add(cmReq(f, ctap2.CredMgmtEnumerateCredentialsBegin, map[int]any{1: "x"}, tok), []byte{0xa0}, false)
	add([]byte{0xa1, 0x01, 0x18, 0x99}, []byte{}, false)
	add([]byte{0x80}, []byte{0xa1, 0x01, 0x03}, false)

	f.Fuzz(func(t *testing.T, first, second []byte, proto bool) {
		a, st, _ := newFuzzMgmtSoftkey(t, true)
		defer a.Close()
		before := fuzzCredentials(t, st)
		s1 := fuzzSend(t, a, ctap2.CmdCredentialManagement, first)
		mid := fuzzCredentials(t, st)
		cmd := ctap2.CmdCredentialManagement
		if proto {
			cmd = ctap2.CmdCredentialMgmtPre
		}
		s2 := fuzzSend(t, a, cmd, second)
		after := fuzzCredentials(t, st)
		checkFuzzCredentials(t, first, s1, before, mid)
		checkFuzzCredentials(t, second, s2, mid, after)
	})
}

// fuzzCredentials snapshots the stored credentials by ID.
func fuzzCredentials(t *testing.T, st store.Store) map[string]*store.Credential {
	out := map[string]*store.Credential{}
	for _, rp := range []string{"a.example", "b.example"} {
		creds, err := st.CredentialsByRP(ctap2.RPIDHash(rp))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range creds {
			out[string(c.ID)] = c
		}
	}
	return out
}

// checkFuzzCredentials: between two snapshots, at most a successful
// deleteCredential removed one credential, and nothing but a user's names changed.
func checkFuzzCredentials(t *testing.T, params []byte, status ctap2.StatusError, before, after map[string]*store.Credential) {
	var req credMgmtParams
	deleted := status == ctap2.StatusOK && ctap2.Unmarshal(params, &req) == nil &&
		req.SubCommand != nil && *req.SubCommand == ctap2.CredMgmtDeleteCredential
	switch {
	case len(after) == len(before)-1 && deleted:
	case len(after) != len(before):
		t.Fatalf("%x (%v): %d credentials became %d", params, status, len(before), len(after))
	}
	for id, c := range after {
		b, ok := before[id]
		if !ok {
			t.Fatalf("%x: credential %x appeared", params, id)
		}
		if !bytes.Equal(b.User.ID, c.User.ID) || !bytes.Equal(b.PrivateKey, c.PrivateKey) || b.RPIDHash != c.RPIDHash ||
			!reflect.DeepEqual(b.Extra, c.Extra) || b.CredProtect != c.CredProtect {
			t.Fatalf("%x: credential %x changed beyond its names: %+v -> %+v", params, id, b, c)
		}
		if (b.User.Name != c.User.Name || b.User.DisplayName != c.User.DisplayName) && status != ctap2.StatusOK {
			t.Fatalf("%x: a failed request (%v) changed a user", params, status)
		}
	}
}

// FuzzConfig feeds arbitrary authenticatorConfig parameters to a softkey, protected
// (with a token the seeds know) or not. Properties: no panic; success is an empty
// reply; a refused request changes no setting; the minimum PIN length never
// shrinks; the PIN and its retries are never touched.
func FuzzConfig(f *testing.F) {
	_, _, tok := newFuzzMgmtSoftkey(f, true)
	for _, protected := range []bool{false, true} {
		tk := tok
		if !protected {
			tk = nil
		}
		for _, req := range []map[int]any{
			cfgReq(f, ctap2.ConfigEnableEnterpriseAttestation, nil, tk),
			cfgReq(f, ctap2.ConfigToggleAlwaysUV, nil, tk),
			cfgReq(f, ctap2.ConfigSetMinPINLength, minPIN(6, []string{"a.example"}, true), tk),
			cfgReq(f, ctap2.ConfigSetMinPINLength, minPIN(3, nil, false), tk),
			cfgReq(f, ctap2.ConfigSetMinPINLength, map[int]any{1: "x"}, tk),
			cfgReq(f, ctap2.ConfigVendorPrototype, map[int]any{1: 1}, tk),
		} {
			f.Add(mustMarshal(f, req), protected)
		}
	}
	f.Add([]byte{0xa1, 0x01, 0x02}, true)
	f.Add([]byte{0xa1, 0x01, 0x02}, false)
	f.Add([]byte{0x02}, false)

	f.Fuzz(func(t *testing.T, params []byte, protected bool) {
		a, st, _ := newFuzzMgmtSoftkey(t, protected)
		defer a.Close()
		before := settingsOf(t, st)
		status := fuzzSend(t, a, ctap2.CmdConfig, params)
		after := settingsOf(t, st)
		if status != ctap2.StatusOK && !reflect.DeepEqual(before, after) {
			t.Fatalf("%x: refused (%v) but settings %+v -> %+v", params, status, before, after)
		}
		if after.MinPINLength < before.MinPINLength || !bytes.Equal(after.PINHash, before.PINHash) ||
			after.PINRetries != before.PINRetries || after.UVRetries != before.UVRetries {
			t.Fatalf("%x: settings %+v -> %+v", params, before, after)
		}
		if len(after.MinPINLengthRPIDs) > maxRPIDsForSetMinPINLength {
			t.Fatalf("%x: %d minPINLength RP IDs", params, len(after.MinPINLengthRPIDs))
		}
	})
}

// FuzzLargeBlobs feeds three arbitrary largeBlobs requests to a softkey, protected
// (with an lbw token the seeds know) or not. Properties: no panic; replies are
// framed and typed; a read is a substring of the stored array; the stored array
// changes only on a successful write, and then is at most
// maxSerializedLargeBlobArray bytes with a correct trailer.
func FuzzLargeBlobs(f *testing.F) {
	_, _, tok := newFuzzMgmtSoftkey(f, true)
	arr := serializedArray(f, 3, 100, 'z') // 2 fragments of at most 236 bytes
	for _, protected := range []bool{false, true} {
		tk := tok
		if !protected {
			tk = nil
		}
		f.Add(mustMarshal(f, lbSet(0, arr[:236], len(arr), tk)), mustMarshal(f, lbSet(236, arr[236:], -1, tk)),
			mustMarshal(f, map[int]any{1: 236, 3: 0}), protected)
		bad := bytes.Clone(arr)
		bad[300] ^= 1
		f.Add(mustMarshal(f, lbSet(0, bad[:236], len(bad), tk)), mustMarshal(f, lbSet(236, bad[236:], -1, tk)),
			mustMarshal(f, map[int]any{1: 17, 3: 0}), protected)
		f.Add(mustMarshal(f, lbSet(0, emptyLargeBlobArray, 17, tk)), mustMarshal(f, lbSet(5, arr[:10], -1, tk)),
			mustMarshal(f, map[int]any{1: 1, 3: 17}), protected)
	}
	f.Add([]byte{0xa0}, []byte{0xa2, 0x01, 0x00, 0x03, 0x00}, []byte{0xa2, 0x01, 0x19, 0xff, 0xff, 0x03, 0x00}, false)

	f.Fuzz(func(t *testing.T, m1, m2, m3 []byte, protected bool) {
		a, st, _ := newFuzzMgmtSoftkey(t, protected)
		defer a.Close()
		for _, params := range [][]byte{m1, m2, m3} {
			before, err := st.LargeBlobArray()
			if err != nil {
				t.Fatal(err)
			}
			msg := append([]byte{byte(ctap2.CmdLargeBlobs)}, params...)
			reply := a.HandleCBOR(context.Background(), msg, nil)
			checkFuzzReply(t, msg, reply)
			after, err := st.LargeBlobArray()
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(before, after) {
				if reply[0] == 0 && len(reply) > 1 {
					var resp struct {
						Config []byte `cbor:"1,keyasint"`
					}
					stored := before
					if stored == nil {
						stored = emptyLargeBlobArray
					}
					if ctap2.Unmarshal(reply[1:], &resp) != nil || !bytes.Contains(stored, resp.Config) {
						t.Fatalf("%x: read %x is not part of the array %x", params, reply[1:], stored)
					}
				}
				continue
			}
			if reply[0] != 0 || len(reply) != 1 {
				t.Fatalf("%x: the array changed on reply %x", params, reply)
			}
			if len(after) > maxSerializedLargeBlobArray || len(after) < 17 ||
				!bytes.Equal(ctap2.LargeBlobTrailer(after[:len(after)-16]), after[len(after)-16:]) {
				t.Fatalf("%x: stored array %x", params, after)
			}
		}
	})
}
