package softkey

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// extMap builds a request's extensions map from identifier, value pairs.
func extMap(t testing.TB, kv ...any) map[string]ctap2.RawMessage {
	t.Helper()
	m := map[string]ctap2.RawMessage{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = mustMarshal(t, kv[i+1])
	}
	return m
}

// outputsOf decodes authData's extension outputs; an empty map when there are none.
// The ED flag must be set exactly when there are outputs.
func outputsOf(t testing.TB, ad *ctap2.AuthData) map[string]ctap2.RawMessage {
	t.Helper()
	if (ad.Extensions != nil) != ad.Flags.Has(ctap2.FlagED) {
		t.Fatalf("flags %v with extensions %x", ad.Flags, ad.Extensions)
	}
	if ad.Extensions == nil {
		return map[string]ctap2.RawMessage{}
	}
	m := rawMap[string](t, ad.Extensions)
	if len(m) == 0 {
		t.Fatalf("ED set with an empty outputs map")
	}
	return m
}

// wantOutputs fails unless the outputs have exactly these identifiers.
func wantOutputs(t testing.TB, what string, out map[string]ctap2.RawMessage, ids ...string) {
	t.Helper()
	var got []string
	for id := range out {
		got = append(got, id)
	}
	slices.Sort(got)
	slices.Sort(ids)
	if !slices.Equal(got, ids) {
		t.Fatalf("%s: outputs %v, want %v", what, got, ids)
	}
}

func decodeAs[T any](t testing.TB, raw ctap2.RawMessage) T {
	t.Helper()
	var v T
	if err := ctap2.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decoding output %x: %v", raw, err)
	}
	return v
}

// assertExt runs a getAssertion that must succeed, allowing extension outputs, and
// verifies its signature with key.
func assertExt(t testing.TB, a *Authenticator, req *ctap2.GetAssertionRequest, key *ctap2.COSEKey) (*ctap2.GetAssertionResponse, *ctap2.AuthData) {
	t.Helper()
	st, body := call(t, a, ctap2.CmdGetAssertion, req)
	wantStatus(t, "getAssertion", st, ctap2.StatusOK)
	return decodeAssertionExt(t, body, req.ClientDataHash, key)
}

func decodeAssertionExt(t testing.TB, body, clientDataHash []byte, key *ctap2.COSEKey) (*ctap2.GetAssertionResponse, *ctap2.AuthData) {
	t.Helper()
	var resp ctap2.GetAssertionResponse
	if err := ctap2.Unmarshal(body, &resp); err != nil {
		t.Fatalf("decoding getAssertion response: %v", err)
	}
	ad, err := resp.ParseAuthData()
	if err != nil || ad.Attested != nil {
		t.Fatalf("getAssertion authData %x: %v", resp.AuthData, err)
	}
	if key != nil {
		if err := key.Verify(concat(resp.AuthData, clientDataHash), resp.Signature); err != nil {
			t.Fatalf("assertion signature: %v", err)
		}
	}
	return &resp, ad
}

// es256 is the algorithm as the sealed plaintext stores it (int16).
var es256 = int16(ctap2.AlgES256)

var uvOption = &ctap2.Options{UV: ctap2.Bool(true)}

// uvMC is a makeCredential request with built-in UV.
func uvMC(req *ctap2.MakeCredentialRequest) *ctap2.MakeCredentialRequest {
	o := ctap2.Options{UV: ctap2.Bool(true)}
	if req.Options != nil {
		o.RK = req.Options.RK
	}
	req.Options = &o
	return req
}

func uvGA(req *ctap2.GetAssertionRequest) *ctap2.GetAssertionRequest {
	req.Options = uvOption
	return req
}

// withExt sets a makeCredential request's extensions.
func withExt(req *ctap2.MakeCredentialRequest, m map[string]ctap2.RawMessage) *ctap2.MakeCredentialRequest {
	req.Extensions = m
	return req
}

func gaWithExt(req *ctap2.GetAssertionRequest, m map[string]ctap2.RawMessage) *ctap2.GetAssertionRequest {
	req.Extensions = m
	return req
}

func TestGetInfoExtensions(t *testing.T) {
	i := info(t, newSoftkey(t, Config{}))
	want := []string{"credProtect", "hmac-secret", "hmac-secret-mc", "credBlob", "largeBlobKey", "minPinLength"}
	if !slices.Equal(i.Extensions, want) {
		t.Fatalf("extensions %v, want %v", i.Extensions, want)
	}
	if i.MaxCredBlobLength != 32 {
		t.Fatalf("maxCredBlobLength %d, want 32", i.MaxCredBlobLength)
	}
	if i.MaxCredentialIDLength < 116 {
		t.Fatalf("maxCredentialIdLength %d below the longest sealed ID", i.MaxCredentialIDLength)
	}
}

// TestCredentialIDLengths: the longest ID the softkey makes (P-384 with every piece
// of sealed extension data) fits maxCredentialIdLength, and plain IDs stay format
// 0x01 with their old length.
func TestCredentialIDLengths(t *testing.T) {
	a := newSoftkey(t, Config{})
	plain := makeCredential(t, a, mcRequest("len.example", []byte("u"), ctap2.AlgES256))
	if plain.id[0] != credIDSealed || len(plain.id) != 1+12+2+32+16 {
		t.Fatalf("plain ID %x: want format 0x01, %d bytes", plain.id, 1+12+2+32+16)
	}
	full := makeCredential(t, a, withExt(mcRequest("len.example", []byte("u"), ctap2.AlgES384),
		extMap(t, "credProtect", 3, "hmac-secret", true, "credBlob", bytes.Repeat([]byte{7}, maxCredBlobLength))))
	if full.id[0] != credIDSealedExt || len(full.id) != 116 || len(full.id) > maxCredentialIDLength {
		t.Fatalf("full ID of %d bytes (format %#x), want 116 (0x03)", len(full.id), full.id[0])
	}
}

// credProtectSoftkey has built-in UV so tests can assert with and without it.
func credProtectSoftkey(t testing.TB, cfg Config) *Authenticator {
	cfg.UV = UVPass
	return newSoftkey(t, cfg)
}

// TestCredProtectOutput: the level is echoed in authData and recorded with resident
// credentials; without input there is no output, and resident credentials get level 1.
func TestCredProtectOutput(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, st, Config{UV: UVPass})
	for level := 1; level <= 3; level++ {
		for _, rk := range []bool{false, true} {
			req := uvMC(mcRequest("cp.example", []byte{byte(level)}))
			if rk {
				req = uvMC(residentRequest("cp.example", []byte{byte(level)}))
			}
			c := makeCredential(t, a, withExt(req, extMap(t, "credProtect", level)))
			out := outputsOf(t, c.auth)
			wantOutputs(t, "credProtect", out, "credProtect")
			if got := decodeAs[uint](t, out["credProtect"]); got != uint(level) {
				t.Fatalf("credProtect output %d, want %d", got, level)
			}
			if rk {
				stored, err := st.Credential(c.id)
				if err != nil || stored.CredProtect != uint8(level) {
					t.Fatalf("stored credProtect %v (%v), want %d", stored, err, level)
				}
			}
		}
	}
	c := makeCredential(t, a, uvMC(residentRequest("cp.example", []byte("none"))))
	wantOutputs(t, "no input", outputsOf(t, c.auth))
	if stored, _ := st.Credential(c.id); stored.CredProtect != 1 {
		t.Fatalf("default stored credProtect %d, want 1", stored.CredProtect)
	}
	for _, bad := range []any{0, 4, -1, "3", true, []byte{3}} {
		st, _ := call(t, a, ctap2.CmdMakeCredential, withExt(mcRequest("cp.example", []byte("u")), extMap(t, "credProtect", bad)))
		wantStatus(t, "credProtect bad value", st, ctap2.ErrCBORUnexpectedType)
	}
}

// TestCredProtect3NeverWithoutUV attacks a level-3 credential, resident and sealed,
// every way a host without UV could reach it: an allowList (with up and silently),
// discovery, an excludeList and U2F. Each must behave exactly as for an ID the
// softkey never made: same status, no touch asked, no counter used. With UV it works.
func TestCredProtect3NeverWithoutUV(t *testing.T) {
	for _, rk := range []bool{false, true} {
		name := map[bool]string{false: "sealed", true: "resident"}[rk]
		t.Run(name, func(t *testing.T) {
			var touches atomic.Int32
			a := credProtectSoftkey(t, Config{PresenceFunc: countingPresence(&touches)})
			req := uvMC(mcRequest("p3.example", []byte("u")))
			if rk {
				req = uvMC(residentRequest("p3.example", []byte("u")))
			}
			c := makeCredential(t, a, withExt(req, extMap(t, "credProtect", 3)))
			unknown := bytes.Clone(c.id)
			unknown[len(unknown)-1] ^= 1 // not an ID of this softkey

			// With UV first, so a sealed credential sits in the signer cache: the
			// cache must not forget its level.
			_, ad := assertExt(t, a, uvGA(gaRequest("p3.example", c.id)), c.key)
			if !ad.Flags.Has(ctap2.FlagUV) {
				t.Fatalf("UV assertion flags %v", ad.Flags)
			}
			if rk {
				assertExt(t, a, uvGA(gaRequest("p3.example")), c.key)
			}
			plain := makeCredential(t, a, mcRequest("p3.example", []byte("plain"))).id
			before := signCountOf(t, a, "p3.example", plain)

			touches.Store(0)
			for _, up := range []bool{true, false} {
				for _, id := range [][]byte{c.id, unknown} {
					ga := gaRequest("p3.example", id)
					ga.Options = &ctap2.Options{UP: ctap2.Bool(up)}
					st, _ := call(t, a, ctap2.CmdGetAssertion, ga)
					wantStatus(t, "allowList without UV", st, ctap2.ErrNoCredentials)
				}
			}
			st, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("p3.example"))
			wantStatus(t, "discovery without UV", st, ctap2.ErrNoCredentials)
			if n := touches.Load(); n != 0 {
				t.Fatalf("%d touches asked for an invisible credential", n)
			}
			if after := signCountOf(t, a, "p3.example", plain); after != before+1 {
				t.Fatalf("counter moved from %d to %d: the invisible credential signed", before, after)
			}

			// excludeList without UV: as if the credential were unknown, a new one is
			// made; with UV it is excluded.
			ex := mcRequest("p3.example", []byte("v"))
			ex.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: c.id}}
			makeCredential(t, a, ex)
			st, _ = call(t, a, ctap2.CmdMakeCredential, uvMC(ex))
			wantStatus(t, "excludeList with UV", st, ctap2.ErrCredentialExcluded)

			// U2F: no control byte reveals it.
			for _, control := range []ctap1.Control{ctap1.CheckOnly, ctap1.EnforcePresence, ctap1.DontEnforcePresence} {
				_, sw := u2fAuthenticate(t, a, control, "p3.example", c.id, c.key)
				wantSW(t, "U2F "+control.String(), sw, ctap1.SWWrongData)
			}

			// A PIN token's UV counts as UV.
			h := newPINHost(t, a, 2)
			h.mustSetPIN("1234")
			tok := h.mustToken("1234", permGA, "p3.example")
			assertExt(t, a, protectGA(gaRequest("p3.example", c.id), tok), c.key)
		})
	}
}

// TestCredProtect2: not discoverable without UV, usable through an allowList, and
// discoverable with UV; level-1 credentials of the same RP are unaffected.
func TestCredProtect2(t *testing.T) {
	a := credProtectSoftkey(t, Config{})
	p2 := makeCredential(t, a, withExt(uvMC(residentRequest("p2.example", []byte("two"))), extMap(t, "credProtect", 2)))
	st, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("p2.example"))
	wantStatus(t, "only level 2, discovery without UV", st, ctap2.ErrNoCredentials)

	resp, _ := assertExt(t, a, gaRequest("p2.example", p2.id), p2.key)
	if !bytes.Equal(resp.Credential.ID, p2.id) {
		t.Fatal("allowList assertion with another credential")
	}
	sealed := makeCredential(t, a, withExt(mcRequest("p2.example", []byte("s")), extMap(t, "credProtect", 2)))
	assertExt(t, a, gaRequest("p2.example", sealed.id), sealed.key)

	p1 := makeCredential(t, a, uvMC(residentRequest("p2.example", []byte("one"))))
	resp, _ = assertExt(t, a, gaRequest("p2.example"), p1.key)
	if !bytes.Equal(resp.Credential.ID, p1.id) || resp.NumberOfCredentials != 0 {
		t.Fatalf("discovery without UV: credential %x, %d in all; want only the level-1 one", resp.Credential.ID, resp.NumberOfCredentials)
	}
	resp, _ = assertExt(t, a, uvGA(gaRequest("p2.example")), nil)
	if resp.NumberOfCredentials != 2 {
		t.Fatalf("discovery with UV: %d credentials, want 2", resp.NumberOfCredentials)
	}

	// Level 2 stays usable over U2F (a key handle is a credential ID list).
	_, sw := u2fAuthenticate(t, a, ctap1.DontEnforcePresence, "p2.example", sealed.id, sealed.key)
	wantSW(t, "U2F level 2", sw, ctap1.SWNoError)
	// and it is excluded without UV: its ID was listed.
	ex := mcRequest("p2.example", []byte("x"))
	ex.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: sealed.id}}
	st, _ = call(t, a, ctap2.CmdMakeCredential, ex)
	wantStatus(t, "excludeList level 2", st, ctap2.ErrCredentialExcluded)
}

// TestOldSealedIDs: an ID of format 0x01 built here exactly as earlier versions did
// (independently of seal) still asserts, and a 0x03 ID relabelled 0x01 does not open.
func TestOldSealedIDs(t *testing.T) {
	a := newSoftkey(t, Config{})
	key, err := ctap2.GenerateKey(ctap2.AlgES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := rawPrivateKey(key)
	wrap, _ := hkdf.Key(sha256.New, a.meta.MasterSecret, nil, "ctapkit softkey credential ID sealing v1", 32)
	block, _ := aes.NewCipher(wrap)
	aead, _ := cipher.NewGCM(block)
	rpIDHash := ctap2.RPIDHash("old.example")
	nonce := bytes.Repeat([]byte{9}, 12)
	plain := binary.BigEndian.AppendUint16(nil, uint16(es256))
	id := aead.Seal(append([]byte{0x01}, nonce...), nonce, append(plain, raw...), append([]byte{0x01}, rpIDHash[:]...))
	pub := &ctap2.COSEKey{Alg: ctap2.AlgES256, Public: key.Public()}
	assertExt(t, a, gaRequest("old.example", id), pub)
	// Old IDs have no extension data: credBlob empty, no hmac-secret output.
	resp, ad := assertExt(t, a, gaWithExt(gaRequest("old.example", id), extMap(t, "credBlob", true)), pub)
	if got := decodeAs[[]byte](t, outputsOf(t, ad)["credBlob"]); len(got) != 0 || resp.LargeBlobKey != nil {
		t.Fatalf("old ID credBlob %x, largeBlobKey %x", got, resp.LargeBlobKey)
	}

	c := makeCredential(t, a, withExt(mcRequest("old.example", []byte("u")), extMap(t, "credProtect", 3)))
	relabelled := bytes.Clone(c.id)
	relabelled[0] = credIDSealed
	st, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("old.example", relabelled))
	wantStatus(t, "0x03 ID relabelled 0x01", st, ctap2.ErrNoCredentials)
}

// TestSealedExtFailsClosed: a 0x03 ID that opens but carries data this softkey does
// not understand (unknown flags or records, a level outside 1..3, a truncated
// record) is not a credential.
func TestSealedExtFailsClosed(t *testing.T) {
	a := newSoftkey(t, Config{})
	rpIDHash := ctap2.RPIDHash("fc.example")
	key, _ := ctap2.GenerateKey(ctap2.AlgES256, nil)
	raw, _ := rawPrivateKey(key)
	seal := func(after []byte) []byte {
		plain := binary.BigEndian.AppendUint16(nil, uint16(es256))
		plain = append(plain, after...)
		nonce := bytes.Repeat([]byte{3}, 12)
		return a.sealer.aead.Seal(append([]byte{credIDSealedExt}, nonce...), nonce, plain, sealAD(credIDSealedExt, rpIDHash))
	}
	body := func(level, flags byte, records ...byte) []byte {
		return append(append([]byte{level, flags, byte(len(raw))}, raw...), records...)
	}
	if _, _, ext, ok := a.sealer.open(rpIDHash, seal(body(2, 1, 1, 2, 0xaa, 0xbb))); !ok || ext.credProtect != 2 || !ext.hmacSecret || !bytes.Equal(ext.credBlob, []byte{0xaa, 0xbb}) {
		t.Fatalf("well-formed 0x03 ID: ok %v, %+v", ok, ext)
	}
	for name, b := range map[string][]byte{
		"level 0":          body(0, 0),
		"level 4":          body(4, 0),
		"unknown flag":     body(1, 2),
		"unknown tag":      body(1, 0, 9, 0),
		"credBlob twice":   body(1, 0, 1, 1, 0xaa, 1, 1, 0xbb),
		"truncated record": body(1, 0, 1, 5, 0xaa),
		"credBlob too big": body(1, 0, append([]byte{1, 33}, make([]byte, 33)...)...),
		"short key":        {1, 0, 200, 1, 2, 3},
		"no header":        {1},
	} {
		if _, _, _, ok := a.sealer.open(rpIDHash, seal(b)); ok {
			t.Errorf("%s: opened", name)
		}
	}
}

// hmacHost is the platform side of hmac-secret, built by hand from the ctap2
// primitives.
type hmacHost struct {
	*pinHost
	ss []byte
}

// input encrypts and authenticates salts under a fresh key agreement.
func (h *hmacHost) input(salts ...[]byte) map[int]any {
	h.t.Helper()
	pk, ss := h.agree()
	h.ss = ss
	enc := h.encrypt(ss, bytes.Join(salts, nil))
	in := map[int]any{1: ctap2.RawMessage(pk), 2: enc, 3: h.p.Authenticate(ss, enc)}
	if h.p.Version() != 1 {
		in[4] = h.p.Version()
	}
	return in
}

// output decrypts an encrypted hmac-secret output.
func (h *hmacHost) output(raw ctap2.RawMessage) []byte {
	h.t.Helper()
	enc := decodeAs[[]byte](h.t, raw)
	out, err := h.p.Decrypt(h.ss, enc)
	if err != nil {
		h.t.Fatalf("decrypting hmac-secret output: %v", err)
	}
	return out
}

// secret asserts with an hmac-secret input for salts and returns the decrypted
// output; uv asks for built-in UV.
func (h *hmacHost) secret(rpID string, id []byte, uv bool, salts ...[]byte) []byte {
	h.t.Helper()
	req := gaRequest(rpID)
	if id != nil {
		req = gaRequest(rpID, id)
	}
	if uv {
		req = uvGA(req)
	}
	req.Extensions = extMap(h.t, "hmac-secret", h.input(salts...))
	_, ad := assertExt(h.t, h.a, req, nil)
	if ad.Flags.Has(ctap2.FlagUV) != uv {
		h.t.Fatalf("flags %v, want UV %v", ad.Flags, uv)
	}
	out := outputsOf(h.t, ad)
	wantOutputs(h.t, "hmac-secret", out, "hmac-secret")
	return h.output(out["hmac-secret"])
}

var (
	salt1 = bytes.Repeat([]byte{0x11}, 32)
	salt2 = bytes.Repeat([]byte{0x22}, 32)
)

// TestHMACSecret: for both protocols and both kinds of credential, outputs differ
// with and without UV, are stable across calls (each with a new key agreement),
// across a restart on the same store, and equal the documented derivation.
func TestHMACSecret(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		for _, rk := range []bool{false, true} {
			st := persistentStore()
			a := newSoftkeyOn(t, st, Config{UV: UVPass})
			req := uvMC(mcRequest("hs.example", []byte("u")))
			if rk {
				req = uvMC(residentRequest("hs.example", []byte("u")))
			}
			c := makeCredential(t, a, withExt(req, extMap(t, "hmac-secret", true)))
			out := outputsOf(t, c.auth)
			wantOutputs(t, "makeCredential", out, "hmac-secret")
			if !decodeAs[bool](t, out["hmac-secret"]) {
				t.Fatal("hmac-secret output false")
			}
			if rk != (c.id[0] == credIDResident) || (!rk && c.id[0] != credIDSealedExt) {
				t.Fatalf("credential ID format %#x", c.id[0])
			}
			h := &hmacHost{pinHost: newPINHost(t, a, v)}
			noUV := h.secret("hs.example", c.id, false, salt1)
			withUV := h.secret("hs.example", c.id, true, salt1)
			if len(noUV) != 32 || len(withUV) != 32 || bytes.Equal(noUV, withUV) {
				t.Fatalf("outputs without UV %x, with UV %x: want two different 32-byte values", noUV, withUV)
			}
			if again := h.secret("hs.example", c.id, false, salt1); !bytes.Equal(again, noUV) {
				t.Fatal("output without UV changed between calls")
			}
			both := h.secret("hs.example", c.id, true, salt1, salt2)
			if len(both) != 64 || !bytes.Equal(both[:32], withUV) || bytes.Equal(both[32:], withUV) {
				t.Fatalf("two salts: %x", both)
			}
			for uv, got := range map[bool][]byte{false: noUV, true: withUV} {
				flag := map[bool]string{false: "\x00", true: "\x01"}[uv]
				cr, _ := hkdf.Key(sha256.New, a.meta.MasterSecret, nil, credRandomInfo+flag+string(c.id), 32)
				m := hmac.New(sha256.New, cr)
				m.Write(salt1)
				if !bytes.Equal(m.Sum(nil), got) {
					t.Fatalf("UV %v: output is not HMAC(CredRandom, salt)", uv)
				}
			}
			if rk { // discoverable too
				if got := h.secret("hs.example", nil, true, salt1); !bytes.Equal(got, withUV) {
					t.Fatal("discoverable assertion gave another output")
				}
			}

			a.Close()
			b := newSoftkeyOn(t, st, Config{UV: UVPass})
			hb := &hmacHost{pinHost: newPINHost(t, b, v)}
			if got := hb.secret("hs.example", c.id, false, salt1); !bytes.Equal(got, noUV) {
				t.Fatal("output without UV changed across a restart")
			}
			if got := hb.secret("hs.example", c.id, true, salt1); !bytes.Equal(got, withUV) {
				t.Fatal("output with UV changed across a restart")
			}
		}
	})
}

// TestHMACSecretPINToken: UV through a PIN token selects CredRandomWithUV, like
// built-in UV.
func TestHMACSecretPINToken(t *testing.T) {
	a := newSoftkey(t, Config{})
	c := makeCredential(t, a, withExt(mcRequest("tok.example", []byte("u")), extMap(t, "hmac-secret", true)))
	h := &hmacHost{pinHost: newPINHost(t, a, 1)}
	noUV := h.secret("tok.example", c.id, false, salt1)
	h.mustSetPIN("1234")
	tok := h.mustToken("1234", permGA, "tok.example")
	req := protectGA(gaRequest("tok.example", c.id), tok)
	req.Extensions = extMap(t, "hmac-secret", h.input(salt1))
	_, ad := assertExt(t, a, req, c.key)
	withUV := h.output(outputsOf(t, ad)["hmac-secret"])
	if !ad.Flags.Has(ctap2.FlagUV) || bytes.Equal(withUV, noUV) {
		t.Fatalf("PIN token assertion: flags %v, output equal to the no-UV one: %v", ad.Flags, bytes.Equal(withUV, noUV))
	}
	if want, _ := a.credRandom(c.id, true); !bytes.Equal(withUV, hmacOf(want, salt1)) {
		t.Fatal("PIN token output not from CredRandomWithUV")
	}
}

func hmacOf(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// TestHMACSecretHostHelper: the host-side ctap2.HMACSecret helper and the softkey
// agree, for both protocols.
func TestHMACSecretHostHelper(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		a := newSoftkey(t, Config{})
		c := makeCredential(t, a, withExt(mcRequest("helper.example", []byte("u")), extMap(t, "hmac-secret", true)))
		h := newPINHost(t, a, v)
		st, resp := h.send(&ctap2.ClientPINRequest{PinUvAuthProtocol: v, SubCommand: ctap2.PINGetKeyAgreement})
		wantStatus(t, "getKeyAgreement", st, ctap2.StatusOK)
		hs, err := ctap2.NewHMACSecret(ctap2.PINProtocolByVersion(v), resp.KeyAgreement, nil)
		if err != nil {
			t.Fatal(err)
		}
		in, err := hs.Input(salt1, salt2)
		if err != nil {
			t.Fatal(err)
		}
		exts, err := (&ctap2.GetAssertionExtensions{HMACSecret: in}).Map()
		if err != nil {
			t.Fatal(err)
		}
		_, ad := assertExt(t, a, gaWithExt(gaRequest("helper.example", c.id), exts), c.key)
		outs, err := ctap2.ParseExtensionOutputs(ad.Extensions)
		if err != nil {
			t.Fatal(err)
		}
		o1, o2, err := hs.Outputs(outs.HMACSecretOutput)
		if err != nil {
			t.Fatal(err)
		}
		cr, _ := a.credRandom(c.id, false)
		if !bytes.Equal(o1, hmacOf(cr, salt1)) || !bytes.Equal(o2, hmacOf(cr, salt2)) {
			t.Fatal("host helper outputs differ from HMAC(CredRandomWithoutUV, salt)")
		}
	})
}

// TestHMACSecretErrors: a wrong saltAuth, a bad key agreement key, salts of the
// wrong length, a missing or unknown parameter, up=false, each with its status.
func TestHMACSecretErrors(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		a := newSoftkey(t, Config{})
		c := makeCredential(t, a, withExt(mcRequest("err.example", []byte("u")), extMap(t, "hmac-secret", true)))
		h := &hmacHost{pinHost: newPINHost(t, a, v)}
		try := func(what string, in any, up bool, want ctap2.StatusError) {
			t.Helper()
			req := gaWithExt(gaRequest("err.example", c.id), extMap(t, "hmac-secret", in))
			if !up {
				req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
			}
			st, _ := call(t, a, ctap2.CmdGetAssertion, req)
			wantStatus(t, what, st, want)
		}
		in := h.input(salt1)
		in[3] = flip(in[3].([]byte), 0)
		try("wrong saltAuth", in, true, ctap2.ErrPINAuthInvalid)
		in = h.input(salt1)
		in[3] = in[3].([]byte)[:8]
		try("short saltAuth", in, true, ctap2.ErrPINAuthInvalid)
		in = h.input(salt1)
		in[2] = flip(in[2].([]byte), 3)
		try("saltEnc changed after saltAuth", in, true, ctap2.ErrPINAuthInvalid)
		// A saltAuth made with another shared secret (an old key agreement).
		old := h.input(salt1)
		fresh := h.input(salt1)
		fresh[3] = old[3]
		try("saltAuth of another key agreement", fresh, true, ctap2.ErrPINAuthInvalid)
		try("16-byte salt", h.input(salt1[:16]), true, ctap2.ErrInvalidParameter)
		try("three salts", h.input(salt1, salt2, salt1), true, ctap2.ErrInvalidParameter)
		in = h.input(salt1)
		in[1] = mustMarshal(t, map[int]any{1: 2, 3: -25, -1: 1, -2: make([]byte, 32), -3: make([]byte, 32)})
		try("key agreement not on the curve", in, true, ctap2.ErrInvalidParameter)
		for k := 1; k <= 3; k++ {
			in = h.input(salt1)
			delete(in, k)
			try("missing key", in, true, ctap2.ErrMissingParameter)
		}
		in = h.input(salt1)
		in[4] = 3
		try("protocol 3", in, true, ctap2.ErrInvalidParameter)
		try("not a map", []byte{1}, true, ctap2.ErrCBORUnexpectedType)
		in = h.input(salt1)
		in[2] = "text"
		try("saltEnc text", in, true, ctap2.ErrCBORUnexpectedType)
		try("up=false", h.input(salt1), false, ctap2.ErrUnsupportedOption)
		// The right input still works after all that.
		try("valid", h.input(salt1), true, ctap2.StatusOK)
	})
	// Protocol 1 named explicitly (key 4 = 1) is accepted.
	a := newSoftkey(t, Config{})
	c := makeCredential(t, a, withExt(mcRequest("p1.example", []byte("u")), extMap(t, "hmac-secret", true)))
	h := &hmacHost{pinHost: newPINHost(t, a, 1)}
	in := h.input(salt1)
	in[4] = 1
	_, ad := assertExt(t, a, gaWithExt(gaRequest("p1.example", c.id), extMap(t, "hmac-secret", in)), c.key)
	cr, _ := a.credRandom(c.id, false)
	if got := h.output(outputsOf(t, ad)["hmac-secret"]); !bytes.Equal(got, hmacOf(cr, salt1)) {
		t.Fatal("explicit protocol 1 output")
	}
}

// TestHMACSecretOnlyWhenMade: a credential made without hmac-secret has no
// CredRandom and answers no output (and no ED flag), as do old IDs.
func TestHMACSecretOnlyWhenMade(t *testing.T) {
	a := newSoftkey(t, Config{})
	for _, req := range []*ctap2.MakeCredentialRequest{
		mcRequest("no.example", []byte("u")),
		residentRequest("no.example", []byte("r")),
		withExt(mcRequest("no.example", []byte("f")), extMap(t, "hmac-secret", false)),
	} {
		c := makeCredential(t, a, req)
		wantOutputs(t, "makeCredential", outputsOf(t, c.auth))
		h := &hmacHost{pinHost: newPINHost(t, a, 2)}
		_, ad := assertExt(t, a, gaWithExt(gaRequest("no.example", c.id), extMap(t, "hmac-secret", h.input(salt1))), c.key)
		wantOutputs(t, "getAssertion", outputsOf(t, ad))
	}
	st, _ := call(t, a, ctap2.CmdMakeCredential, withExt(mcRequest("no.example", []byte("u")), extMap(t, "hmac-secret", 1)))
	wantStatus(t, "hmac-secret: 1", st, ctap2.ErrCBORUnexpectedType)
}

// TestHMACSecretGetNextAssertion: every credential of a discoverable assertion
// answers from its own CredRandom with the same salts.
func TestHMACSecretGetNextAssertion(t *testing.T) {
	a := newSoftkey(t, Config{Now: newClock().Now})
	var ids [][]byte
	for _, u := range []string{"a", "b", "c"} {
		ids = append(ids, makeCredential(t, a, withExt(residentRequest("next.example", []byte(u)), extMap(t, "hmac-secret", true, "credBlob", []byte(u)))).id)
	}
	h := &hmacHost{pinHost: newPINHost(t, a, 2)}
	req := gaWithExt(gaRequest("next.example"), extMap(t, "hmac-secret", h.input(salt1), "credBlob", true))
	st, body := call(t, a, ctap2.CmdGetAssertion, req)
	wantStatus(t, "getAssertion", st, ctap2.StatusOK)
	seen := map[string]bool{}
	for i := range 3 {
		if i > 0 {
			st, body = call(t, a, ctap2.CmdGetNextAssertion, nil)
			wantStatus(t, "getNextAssertion", st, ctap2.StatusOK)
		}
		resp, ad := decodeAssertionExt(t, body, nil, nil)
		out := outputsOf(t, ad)
		wantOutputs(t, "assertion", out, "hmac-secret", "credBlob")
		cr, _ := a.credRandom(resp.Credential.ID, false)
		if got := h.output(out["hmac-secret"]); !bytes.Equal(got, hmacOf(cr, salt1)) {
			t.Fatalf("assertion %d: output not from its credential's CredRandom", i)
		}
		if blob := decodeAs[[]byte](t, out["credBlob"]); !bytes.Equal(blob, resp.User.ID) {
			t.Fatalf("assertion %d: credBlob %q for user %q", i, blob, resp.User.ID)
		}
		seen[string(resp.Credential.ID)] = true
	}
	for _, id := range ids {
		if !seen[string(id)] {
			t.Fatalf("credential %x never asserted (%d distinct seen)", id, len(seen))
		}
	}
}

// TestHMACSecretMC: hmac-secret-mc answers at creation what getAssertion answers
// later for the same salts and UV state; a bad input stores nothing.
func TestHMACSecretMC(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		for _, rk := range []bool{false, true} {
			st := store.NewMemory(store.Meta{})
			a := newSoftkeyOn(t, st, Config{UV: UVPass})
			h := &hmacHost{pinHost: newPINHost(t, a, v)}
			req := uvMC(mcRequest("mc.example", []byte("u")))
			if rk {
				req = uvMC(residentRequest("mc.example", []byte("u")))
			}
			c := makeCredential(t, a, withExt(req, extMap(t, "hmac-secret", true, "hmac-secret-mc", h.input(salt1, salt2))))
			out := outputsOf(t, c.auth)
			wantOutputs(t, "makeCredential", out, "hmac-secret", "hmac-secret-mc")
			atCreation := h.output(out["hmac-secret-mc"])
			later := h.secret("mc.example", c.id, true, salt1, salt2)
			if len(atCreation) != 64 || !bytes.Equal(atCreation, later) {
				t.Fatalf("hmac-secret-mc %x, getAssertion %x", atCreation, later)
			}

			// Without "hmac-secret": true the input is ignored.
			c = makeCredential(t, a, withExt(uvMC(mcRequest("mc.example", []byte("v"))), extMap(t, "hmac-secret-mc", h.input(salt1))))
			wantOutputs(t, "hmac-secret-mc alone", outputsOf(t, c.auth))

			n, _ := st.CountCredentials()
			bad := h.input(salt1)
			bad[3] = flip(bad[3].([]byte), 1)
			req = uvMC(residentRequest("mc.example", []byte("bad")))
			status, _ := call(t, a, ctap2.CmdMakeCredential, withExt(req, extMap(t, "hmac-secret", true, "hmac-secret-mc", bad)))
			wantStatus(t, "hmac-secret-mc wrong saltAuth", status, ctap2.ErrPINAuthInvalid)
			if m, _ := st.CountCredentials(); m != n {
				t.Fatalf("a failed makeCredential stored a credential (%d -> %d)", n, m)
			}
		}
	})
}

// TestCredBlob: stored and returned for both kinds of credential; an oversized blob
// is refused (output false) and not stored; credBlob false asks for nothing.
func TestCredBlob(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, st, Config{})
	blob := bytes.Repeat([]byte{0xb1}, maxCredBlobLength)
	for _, rk := range []bool{false, true} {
		mk := func(user string, ext map[string]ctap2.RawMessage) *madeCredential {
			req := mcRequest("blob.example", []byte(user))
			if rk {
				req = residentRequest("blob.example", []byte(user))
			}
			return makeCredential(t, a, withExt(req, ext))
		}
		read := func(c *madeCredential) []byte {
			_, ad := assertExt(t, a, gaWithExt(gaRequest("blob.example", c.id), extMap(t, "credBlob", true)), c.key)
			out := outputsOf(t, ad)
			wantOutputs(t, "getAssertion credBlob", out, "credBlob")
			if out["credBlob"][0]>>5 != 2 {
				t.Fatalf("credBlob output %x is not a byte string", out["credBlob"])
			}
			return decodeAs[[]byte](t, out["credBlob"])
		}
		c := mk("fits", extMap(t, "credBlob", blob))
		if !decodeAs[bool](t, outputsOf(t, c.auth)["credBlob"]) {
			t.Fatal("32-byte credBlob not stored")
		}
		if got := read(c); !bytes.Equal(got, blob) {
			t.Fatalf("credBlob %x, want %x", got, blob)
		}
		big := mk("big", extMap(t, "credBlob", append(blob, 0)))
		if decodeAs[bool](t, outputsOf(t, big.auth)["credBlob"]) {
			t.Fatal("33-byte credBlob stored")
		}
		if got := read(big); len(got) != 0 {
			t.Fatalf("oversized credBlob came back as %x", got)
		}
		if rk {
			stored, _ := st.Credential(big.id)
			if _, ok := stored.Extra[extraCredBlob]; ok {
				t.Fatal("oversized credBlob in the store")
			}
		}
		none := mk("none", nil)
		if got := read(none); len(got) != 0 {
			t.Fatalf("credential without credBlob returned %x", got)
		}
		_, ad := assertExt(t, a, gaWithExt(gaRequest("blob.example", c.id), extMap(t, "credBlob", false)), c.key)
		wantOutputs(t, "credBlob false", outputsOf(t, ad))
	}
	status, _ := call(t, a, ctap2.CmdMakeCredential, withExt(mcRequest("blob.example", []byte("u")), extMap(t, "credBlob", "text")))
	wantStatus(t, "credBlob text", status, ctap2.ErrCBORUnexpectedType)
	status, _ = call(t, a, ctap2.CmdGetAssertion, gaWithExt(gaRequest("blob.example"), extMap(t, "credBlob", []byte{1})))
	wantStatus(t, "getAssertion credBlob bytes", status, ctap2.ErrCBORUnexpectedType)
}

// TestLargeBlobKey: a key for discoverable credentials only, the same at creation,
// in assertions and through largeBlobKeyOf; false is INVALID_OPTION.
func TestLargeBlobKey(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, st, Config{})
	c := makeCredential(t, a, withExt(residentRequest("lbk.example", []byte("u")), extMap(t, "largeBlobKey", true)))
	key := c.resp.LargeBlobKey
	if len(key) != 32 {
		t.Fatalf("largeBlobKey %x, want 32 bytes", key)
	}
	wantOutputs(t, "largeBlobKey is not an authData output", outputsOf(t, c.auth))
	other := makeCredential(t, a, withExt(residentRequest("lbk.example", []byte("v")), extMap(t, "largeBlobKey", true)))
	if bytes.Equal(other.resp.LargeBlobKey, key) {
		t.Fatal("two credentials share a largeBlobKey")
	}
	stored, err := st.Credential(c.id)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.largeBlobKeyOf(stored); !bytes.Equal(got, key) {
		t.Fatalf("largeBlobKeyOf %x, want %x", got, key)
	}
	resp, _ := assertExt(t, a, gaWithExt(gaRequest("lbk.example", c.id), extMap(t, "largeBlobKey", true)), c.key)
	if !bytes.Equal(resp.LargeBlobKey, key) {
		t.Fatalf("getAssertion largeBlobKey %x, want %x", resp.LargeBlobKey, key)
	}
	resp, _ = assertExt(t, a, gaRequest("lbk.example", c.id), c.key)
	if resp.LargeBlobKey != nil {
		t.Fatal("largeBlobKey returned unasked")
	}
	// Discoverable: each credential with its own key.
	req := gaWithExt(gaRequest("lbk.example"), extMap(t, "largeBlobKey", true))
	st2, body := call(t, a, ctap2.CmdGetAssertion, req)
	wantStatus(t, "discoverable", st2, ctap2.StatusOK)
	first, _ := decodeAssertionExt(t, body, nil, nil)
	next, _ := getNextAssertionExt(t, a)
	got := map[string][]byte{string(first.Credential.ID): first.LargeBlobKey, string(next.Credential.ID): next.LargeBlobKey}
	if !bytes.Equal(got[string(c.id)], key) || !bytes.Equal(got[string(other.id)], other.resp.LargeBlobKey) {
		t.Fatal("getNextAssertion largeBlobKeys mixed up")
	}

	// Without it, and for non-resident credentials, there is no key.
	plain := makeCredential(t, a, residentRequest("lbk.example", []byte("w")))
	stored, _ = st.Credential(plain.id)
	if a.largeBlobKeyOf(stored) != nil || a.largeBlobKeyOf(nil) != nil {
		t.Fatal("largeBlobKeyOf a credential made without it")
	}
	sealed := makeCredential(t, a, withExt(mcRequest("lbk.example", []byte("x")), extMap(t, "largeBlobKey", true)))
	if sealed.resp.LargeBlobKey != nil || sealed.id[0] != credIDSealed {
		t.Fatalf("non-resident credential got largeBlobKey %x (ID format %#x)", sealed.resp.LargeBlobKey, sealed.id[0])
	}
	resp, _ = assertExt(t, a, gaWithExt(gaRequest("lbk.example", sealed.id), extMap(t, "largeBlobKey", true)), sealed.key)
	if resp.LargeBlobKey != nil {
		t.Fatal("non-resident assertion with a largeBlobKey")
	}

	s, _ := call(t, a, ctap2.CmdMakeCredential, withExt(residentRequest("lbk.example", []byte("y")), extMap(t, "largeBlobKey", false)))
	wantStatus(t, "makeCredential largeBlobKey false", s, ctap2.ErrInvalidOption)
	s, _ = call(t, a, ctap2.CmdGetAssertion, gaWithExt(gaRequest("lbk.example"), extMap(t, "largeBlobKey", false)))
	wantStatus(t, "getAssertion largeBlobKey false", s, ctap2.ErrInvalidOption)
	s, _ = call(t, a, ctap2.CmdGetAssertion, gaWithExt(gaRequest("lbk.example"), extMap(t, "largeBlobKey", 1)))
	wantStatus(t, "getAssertion largeBlobKey 1", s, ctap2.ErrCBORUnexpectedType)
}

func getNextAssertionExt(t testing.TB, a *Authenticator) (*ctap2.GetAssertionResponse, *ctap2.AuthData) {
	t.Helper()
	st, body := call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion", st, ctap2.StatusOK)
	return decodeAssertionExt(t, body, nil, nil)
}

// TestMinPINLengthExtension: the current minimum only for RP IDs on the list.
func TestMinPINLengthExtension(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, st, Config{})
	ask := func(rpID string) map[string]ctap2.RawMessage {
		t.Helper()
		return outputsOf(t, makeCredential(t, a, withExt(mcRequest(rpID, []byte("u")), extMap(t, "minPinLength", true))).auth)
	}
	wantOutputs(t, "no list", ask("listed.example"))
	updateSettings(t, st, func(s *store.Settings) { s.MinPINLengthRPIDs = []string{"listed.example"} })
	out := ask("listed.example")
	wantOutputs(t, "listed", out, "minPinLength")
	if got := decodeAs[uint](t, out["minPinLength"]); got != 4 {
		t.Fatalf("default minPinLength %d, want 4", got)
	}
	updateSettings(t, st, func(s *store.Settings) { s.MinPINLength = 9 })
	if got := decodeAs[uint](t, ask("listed.example")["minPinLength"]); got != 9 {
		t.Fatalf("minPinLength %d, want 9", got)
	}
	wantOutputs(t, "unlisted", ask("other.example"))
	c := makeCredential(t, a, withExt(mcRequest("listed.example", []byte("u")), extMap(t, "minPinLength", false)))
	wantOutputs(t, "minPinLength false", outputsOf(t, c.auth))
}

// TestExtensionOutputsSubset: unknown identifiers are ignored and outputs answer only
// what was asked, with ED set exactly when there are outputs.
func TestExtensionOutputsSubset(t *testing.T) {
	a := newSoftkey(t, Config{})
	c := makeCredential(t, a, withExt(residentRequest("sub.example", []byte("u")),
		extMap(t, "unknownExt", map[string]any{"x": 1}, "credProtect", 1, "credBlob", []byte("b"), "largeBlobKey", true)))
	wantOutputs(t, "makeCredential", outputsOf(t, c.auth), "credProtect", "credBlob")
	// Every known identifier with an unknown one: the getAssertion outputs are the
	// supported subset.
	h := &hmacHost{pinHost: newPINHost(t, a, 1)}
	_, ad := assertExt(t, a, gaWithExt(gaRequest("sub.example"), extMap(t, "unknownExt", true, "credProtect", 1, "credBlob", true, "hmac-secret", h.input(salt1))), c.key)
	wantOutputs(t, "getAssertion", outputsOf(t, ad), "credBlob")
	c2 := makeCredential(t, a, withExt(mcRequest("sub.example", []byte("u")), extMap(t, "unknownExt", 1)))
	wantOutputs(t, "only unknown", outputsOf(t, c2.auth))
	if c2.id[0] != credIDSealed {
		t.Fatalf("credential with only unknown extensions sealed as %#x", c2.id[0])
	}
}

// TestResidentExtensionsSurviveRestart: a resident credential's credProtect, credBlob,
// hmac-secret and largeBlobKey come from the store after a restart.
func TestResidentExtensionsSurviveRestart(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{UV: UVPass})
	c := makeCredential(t, a, withExt(uvMC(residentRequest("rs.example", []byte("u"))),
		extMap(t, "credProtect", 3, "credBlob", []byte("blob"), "hmac-secret", true, "largeBlobKey", true)))
	a.Close()
	b := newSoftkeyOn(t, st, Config{UV: UVPass})
	s, _ := call(t, b, ctap2.CmdGetAssertion, gaRequest("rs.example"))
	wantStatus(t, "level 3 after restart", s, ctap2.ErrNoCredentials)
	h := &hmacHost{pinHost: newPINHost(t, b, 2)}
	req := uvGA(gaWithExt(gaRequest("rs.example"), extMap(t, "credBlob", true, "largeBlobKey", true, "hmac-secret", h.input(salt1))))
	resp, ad := assertExt(t, b, req, c.key)
	out := outputsOf(t, ad)
	if string(decodeAs[[]byte](t, out["credBlob"])) != "blob" || !bytes.Equal(resp.LargeBlobKey, c.resp.LargeBlobKey) {
		t.Fatal("credBlob or largeBlobKey lost across a restart")
	}
	cr, _ := b.credRandom(c.id, true)
	if !bytes.Equal(h.output(out["hmac-secret"]), hmacOf(cr, salt1)) {
		t.Fatal("hmac-secret output")
	}
	// The stored key is a PKCS #8 key as before: extension data lives beside it.
	stored, _ := st.Credential(c.id)
	if _, err := x509.ParsePKCS8PrivateKey(stored.PrivateKey); err != nil {
		t.Fatal(err)
	}
}
