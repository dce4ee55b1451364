package softkey

import (
	"bytes"
	"context"
	"crypto/ecdh"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// pinHost is the platform side of clientPIN, built from the ctap2 primitives only
// (Encapsulate, Encrypt, Authenticate), independent of the host Client.
type pinHost struct {
	t testing.TB
	a *Authenticator
	p ctap2.PINProtocol
}

func newPINHost(t testing.TB, a *Authenticator, version uint) *pinHost {
	return &pinHost{t: t, a: a, p: ctap2.PINProtocolByVersion(version)}
}

// forProtocols runs f as a subtest for PIN/UV auth protocols 1 and 2.
func forProtocols(t *testing.T, f func(t *testing.T, v uint)) {
	for _, v := range []uint{1, 2} {
		t.Run(fmt.Sprintf("protocol%d", v), func(t *testing.T) { f(t, v) })
	}
}

// send runs one clientPIN request and decodes the reply.
func (h *pinHost) send(req any) (ctap2.StatusError, *ctap2.ClientPINResponse) {
	h.t.Helper()
	st, body := call(h.t, h.a, ctap2.CmdClientPIN, req)
	var resp ctap2.ClientPINResponse
	if len(body) > 0 {
		if err := ctap2.Unmarshal(body, &resp); err != nil {
			h.t.Fatalf("decoding clientPIN reply: %v", err)
		}
	}
	return st, &resp
}

// agree is getKeyAgreement plus the platform's ECDH: the platform key to send and
// the shared secret.
func (h *pinHost) agree() (platformKey, ss []byte) {
	h.t.Helper()
	st, resp := h.send(&ctap2.ClientPINRequest{PinUvAuthProtocol: h.p.Version(), SubCommand: ctap2.PINGetKeyAgreement})
	wantStatus(h.t, "getKeyAgreement", st, ctap2.StatusOK)
	platformKey, ss, err := ctap2.Encapsulate(h.p, resp.KeyAgreement, nil)
	if err != nil {
		h.t.Fatalf("key agreement: %v", err)
	}
	return platformKey, ss
}

func (h *pinHost) encrypt(ss, pt []byte) []byte {
	h.t.Helper()
	ct, err := h.p.Encrypt(ss, pt)
	if err != nil {
		h.t.Fatal(err)
	}
	return ct
}

// pad is the 64-byte paddedPin of pin.
func pad(pin string) []byte {
	b := make([]byte, ctap2.PaddedPINLength)
	copy(b, pin)
	return b
}

func pinHash(pin string) []byte {
	h := sha256.Sum256([]byte(pin))
	return h[:16]
}

func (h *pinHost) setPIN(pin string) ctap2.StatusError {
	h.t.Helper()
	return h.setPadded(pad(pin))
}

// setPadded sends setPIN with any plaintext as paddedPin.
func (h *pinHost) setPadded(padded []byte) ctap2.StatusError {
	h.t.Helper()
	pk, ss := h.agree()
	enc := h.encrypt(ss, padded)
	st, _ := h.send(&ctap2.ClientPINRequest{
		PinUvAuthProtocol: h.p.Version(), SubCommand: ctap2.PINSetPIN,
		KeyAgreement: pk, NewPinEnc: enc, PinUvAuthParam: h.p.Authenticate(ss, enc),
	})
	return st
}

func (h *pinHost) mustSetPIN(pin string) {
	h.t.Helper()
	wantStatus(h.t, "setPIN", h.setPIN(pin), ctap2.StatusOK)
}

func (h *pinHost) changePIN(old, pin string) ctap2.StatusError {
	h.t.Helper()
	return h.changePadded(old, pad(pin))
}

func (h *pinHost) changePadded(old string, padded []byte) ctap2.StatusError {
	h.t.Helper()
	pk, ss := h.agree()
	newEnc := h.encrypt(ss, padded)
	hashEnc := h.encrypt(ss, pinHash(old))
	st, _ := h.send(&ctap2.ClientPINRequest{
		PinUvAuthProtocol: h.p.Version(), SubCommand: ctap2.PINChangePIN,
		KeyAgreement: pk, NewPinEnc: newEnc, PinHashEnc: hashEnc,
		PinUvAuthParam: h.p.Authenticate(ss, concat(newEnc, hashEnc)),
	})
	return st
}

// tokenRequest builds a PIN token request under a fresh key agreement: getPinToken
// (0x05) when perms is 0, else getPinUvAuthTokenUsingPinWithPermissions (0x09).
func (h *pinHost) tokenRequest(pin string, perms ctap2.Permission, rpID string) (*ctap2.ClientPINRequest, []byte) {
	h.t.Helper()
	pk, ss := h.agree()
	req := &ctap2.ClientPINRequest{
		PinUvAuthProtocol: h.p.Version(), SubCommand: ctap2.PINGetPINToken,
		KeyAgreement: pk, PinHashEnc: h.encrypt(ss, pinHash(pin)),
	}
	if perms != 0 {
		req.SubCommand, req.Permissions, req.RPID = ctap2.PINGetPINUvAuthTokenUsingPinWithPerms, perms, rpID
	}
	return req, ss
}

// openToken sends a token request and decrypts the token.
func (h *pinHost) openToken(req any, ss []byte) (*ctap2.PINToken, ctap2.StatusError) {
	h.t.Helper()
	st, resp := h.send(req)
	if st != ctap2.StatusOK {
		return nil, st
	}
	token, err := h.p.Decrypt(ss, resp.PinUvAuthToken)
	if err != nil || len(token) != 32 {
		h.t.Fatalf("token %x decrypts to %x (%v), want 32 bytes", resp.PinUvAuthToken, token, err)
	}
	return &ctap2.PINToken{Protocol: h.p, Token: token}, st
}

func (h *pinHost) token(pin string, perms ctap2.Permission, rpID string) (*ctap2.PINToken, ctap2.StatusError) {
	h.t.Helper()
	return h.openToken(h.tokenRequest(pin, perms, rpID))
}

func (h *pinHost) mustToken(pin string, perms ctap2.Permission, rpID string) *ctap2.PINToken {
	h.t.Helper()
	tok, st := h.token(pin, perms, rpID)
	wantStatus(h.t, "PIN token", st, ctap2.StatusOK)
	return tok
}

// uvToken is getPinUvAuthTokenUsingUvWithPermissions.
func (h *pinHost) uvToken(perms ctap2.Permission, rpID string) (*ctap2.PINToken, ctap2.StatusError) {
	h.t.Helper()
	pk, ss := h.agree()
	return h.openToken(&ctap2.ClientPINRequest{
		PinUvAuthProtocol: h.p.Version(), SubCommand: ctap2.PINGetPINUvAuthTokenUsingUvWithPerms,
		KeyAgreement: pk, Permissions: perms, RPID: rpID,
	}, ss)
}

// retries is getPINRetries: the counter and powerCycleState.
func (h *pinHost) retries() (uint, bool) {
	h.t.Helper()
	st, resp := h.send(&ctap2.ClientPINRequest{PinUvAuthProtocol: h.p.Version(), SubCommand: ctap2.PINGetRetries})
	wantStatus(h.t, "getPINRetries", st, ctap2.StatusOK)
	if resp.PinRetries == nil || resp.PowerCycleState == nil {
		h.t.Fatalf("getPINRetries reply %+v lacks pinRetries or powerCycleState", resp)
	}
	return *resp.PinRetries, *resp.PowerCycleState
}

func (h *pinHost) wantRetries(what string, want uint, wantCycle bool) {
	h.t.Helper()
	if got, cycle := h.retries(); got != want || cycle != wantCycle {
		h.t.Fatalf("%s: pinRetries %d, powerCycleState %v; want %d, %v", what, got, cycle, want, wantCycle)
	}
}

func (h *pinHost) uvRetries() (uint, ctap2.StatusError) {
	h.t.Helper()
	st, resp := h.send(&ctap2.ClientPINRequest{PinUvAuthProtocol: h.p.Version(), SubCommand: ctap2.PINGetUVRetries})
	if st != ctap2.StatusOK {
		return 0, st
	}
	if resp.UVRetries == nil {
		h.t.Fatalf("getUVRetries reply %+v lacks uvRetries", resp)
	}
	return *resp.UVRetries, st
}

// protectMC and protectGA attach a token's pinUvAuthParam to a request.
func protectMC(req *ctap2.MakeCredentialRequest, tok *ctap2.PINToken) *ctap2.MakeCredentialRequest {
	req.PinUvAuthParam, req.PinUvAuthProtocol = tok.Param(req.ClientDataHash), tok.Protocol.Version()
	return req
}

func protectGA(req *ctap2.GetAssertionRequest, tok *ctap2.PINToken) *ctap2.GetAssertionRequest {
	req.PinUvAuthParam, req.PinUvAuthProtocol = tok.Param(req.ClientDataHash), tok.Protocol.Version()
	return req
}

// silent makes a getAssertion request up=false, which leaves a token's
// permissions alone.
func silent(req *ctap2.GetAssertionRequest) *ctap2.GetAssertionRequest {
	req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
	return req
}

func settingsOf(t testing.TB, st store.Store) store.Settings {
	t.Helper()
	s, err := st.Settings()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func updateSettings(t testing.TB, st store.Store, f func(*store.Settings)) {
	t.Helper()
	s := settingsOf(t, st)
	f(&s)
	if err := st.SetSettings(s); err != nil {
		t.Fatal(err)
	}
}

const (
	permMC   = ctap2.PermMakeCredential
	permGA   = ctap2.PermGetAssertion
	permMCGA = ctap2.PermMakeCredential | ctap2.PermGetAssertion
)

// TestClientPINEndToEnd: setPIN, a token, a UV makeCredential and getAssertion with
// it, getPinToken, changePIN, for both protocols.
func TestClientPINEndToEnd(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		a := newSoftkey(t, Config{})
		h := newPINHost(t, a, v)
		if on, present := info(t, a).Option("clientPin"); on || !present {
			t.Fatalf("clientPin option %v (present %v) before setPIN, want false", on, present)
		}
		h.wantRetries("fresh", 8, false)
		h.mustSetPIN("1234")
		if on, _ := info(t, a).Option("clientPin"); !on {
			t.Fatal("clientPin option not true after setPIN")
		}

		tok := h.mustToken("1234", permMCGA, "a.example")
		c := makeCredential(t, a, protectMC(residentRequest("a.example", []byte("alice")), tok))
		if c.auth.Flags&(ctap2.FlagUP|ctap2.FlagUV) != ctap2.FlagUP|ctap2.FlagUV {
			t.Errorf("makeCredential with a token: flags %v, want UP and UV", c.auth.Flags)
		}

		tok = h.mustToken("1234", permGA, "a.example")
		req := protectGA(gaRequest("a.example"), tok)
		resp, ad := getAssertion(t, a, req)
		if ad.Flags&ctap2.FlagUV == 0 {
			t.Errorf("getAssertion with a token: flags %v, want UV", ad.Flags)
		}
		if err := resp.Verify(c.key, req.ClientDataHash); err != nil {
			t.Error(err)
		}
		if resp.User == nil || resp.User.Name != "user-alice" || resp.User.DisplayName != "User alice" {
			t.Errorf("user %+v after UV, want name and displayName", resp.User)
		}

		// CTAP 2.0 getPinToken: mc and ga, no RP ID.
		req2, ss := h.tokenRequest("1234", 0, "")
		tok, st := h.openToken(req2, ss)
		wantStatus(t, "getPinToken", st, ctap2.StatusOK)
		makeCredential(t, a, protectMC(mcRequest("b.example", []byte("bob")), tok))

		wantStatus(t, "changePIN", h.changePIN("1234", "5678"), ctap2.StatusOK)
		if _, st := h.token("1234", permGA, ""); st != ctap2.ErrPINInvalid {
			t.Errorf("old PIN after changePIN: %v, want PIN_INVALID", st)
		}
		tok = h.mustToken("5678", permGA, "")
		getAssertion(t, a, protectGA(gaRequest("a.example"), tok))
		h.wantRetries("after a right PIN", 8, false)
	})
}

// TestClientPINGoAPI: ClientPIN for Go callers gives the same answers.
func TestClientPINGoAPI(t *testing.T) {
	a := newSoftkey(t, Config{})
	resp, err := a.ClientPIN(context.Background(), &ctap2.ClientPINRequest{SubCommand: ctap2.PINGetRetries})
	if err != nil || resp.PinRetries == nil || *resp.PinRetries != 8 {
		t.Fatalf("getPINRetries: %+v, %v", resp, err)
	}
	if _, err := a.ClientPIN(context.Background(), nil); !errors.Is(err, ctap2.ErrMissingParameter) {
		t.Errorf("nil request: %v, want MISSING_PARAMETER", err)
	}
	resp, err = a.ClientPIN(context.Background(), &ctap2.ClientPINRequest{PinUvAuthProtocol: 2, SubCommand: ctap2.PINGetKeyAgreement})
	if err != nil {
		t.Fatal(err)
	}
	p := ctap2.PINProtocolTwo{}
	pk, ss, err := ctap2.Encapsulate(p, resp.KeyAgreement, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := p.Encrypt(ss, pad("123456"))
	resp, err = a.ClientPIN(context.Background(), &ctap2.ClientPINRequest{
		PinUvAuthProtocol: 2, SubCommand: ctap2.PINSetPIN, KeyAgreement: pk, NewPinEnc: enc,
		PinUvAuthParam: p.Authenticate(ss, enc),
	})
	if err != nil || resp == nil || resp.PinRetries != nil || resp.PinUvAuthToken != nil {
		t.Fatalf("setPIN: %+v, %v; want an empty response", resp, err)
	}
	if _, err := a.ClientPIN(context.Background(), &ctap2.ClientPINRequest{
		PinUvAuthProtocol: 2, SubCommand: ctap2.PINGetPINUvAuthTokenUsingPinWithPerms, KeyAgreement: pk,
		PinHashEnc: make([]byte, 32),
	}); !errors.Is(err, ctap2.ErrMissingParameter) {
		t.Errorf("token request with permissions 0 (absent in the Go API): %v, want MISSING_PARAMETER", err)
	}
}

// TestWrongPINPersistsRetries: a wrong PIN costs a retry that survives a restart.
func TestWrongPINPersistsRetries(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		st := persistentStore()
		a := newSoftkeyOn(t, st, Config{})
		h := newPINHost(t, a, v)
		h.mustSetPIN("1234")
		if _, s := h.token("9999", permGA, ""); s != ctap2.ErrPINInvalid {
			t.Fatalf("wrong PIN: %v, want PIN_INVALID", s)
		}
		h.wantRetries("after a wrong PIN", 7, false)
		if got := settingsOf(t, st).PINRetries; got != 7 {
			t.Fatalf("stored pinRetries %d, want 7", got)
		}
		a.Close()

		a = newSoftkeyOn(t, st, Config{})
		h = newPINHost(t, a, v)
		h.wantRetries("after a restart", 7, false)
		if _, s := h.token("0000", permGA, ""); s != ctap2.ErrPINInvalid {
			t.Fatalf("wrong PIN: %v, want PIN_INVALID", s)
		}
		h.wantRetries("after a second wrong PIN", 6, false)
		wantStatus(t, "changePIN with a wrong PIN", h.changePIN("4321", "5678"), ctap2.ErrPINInvalid)
		h.wantRetries("after a wrong changePIN", 5, false)
		h.mustToken("1234", permGA, "")
		h.wantRetries("after the right PIN", 8, false)
		if got := settingsOf(t, st).PINRetries; got != 8 {
			t.Fatalf("stored pinRetries %d after the right PIN, want 8", got)
		}
	})
}

// settingsFailStore refuses settings writes while fail is set.
type settingsFailStore struct {
	store.Store
	fail atomic.Bool
}

func (s *settingsFailStore) SetSettings(v store.Settings) error {
	if s.fail.Load() {
		return errors.New("disk full")
	}
	return s.Store.SetSettings(v)
}

// TestRetryDecrementPersistedFirst: the decrement is written before the PIN is
// checked, so when it cannot be written even the right PIN gets nothing: an
// attacker who makes the write fail (or kills the softkey at that moment) gains no
// free guesses.
func TestRetryDecrementPersistedFirst(t *testing.T) {
	st := &settingsFailStore{Store: store.NewMemory(store.Meta{})}
	a := newSoftkeyOn(t, st, Config{})
	h := newPINHost(t, a, 2)
	h.mustSetPIN("1234")
	before := settingsOf(t, st)
	st.fail.Store(true)
	if _, s := h.token("1234", permGA, ""); s != ctap2.ErrOther {
		t.Fatalf("right PIN with an unwritable counter: %v, want CTAP1_ERR_OTHER and no token", s)
	}
	wantStatus(t, "changePIN with an unwritable counter", h.changePIN("1234", "5678"), ctap2.ErrOther)
	st.fail.Store(false)
	if after := settingsOf(t, st); !reflect.DeepEqual(before, after) {
		t.Fatalf("settings changed: %+v -> %+v", before, after)
	}
	h.mustToken("1234", permGA, "")
}

// TestPINLockout: eight wrong PINs (spread over power cycles) block the PIN for
// good; the right PIN is refused from then on, also after a restart; only reset
// recovers.
func TestPINLockout(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		st := persistentStore()
		clock := newClock()
		a := newSoftkeyOn(t, st, Config{Now: clock.Now})
		h := newPINHost(t, a, v)
		h.mustSetPIN("1234")
		for i := 1; i <= 8; i++ {
			if i > 1 && i%2 == 1 { // power cycle before 3 mismatches in a row
				a.Close()
				a = newSoftkeyOn(t, st, Config{Now: clock.Now})
				h = newPINHost(t, a, v)
			}
			want := ctap2.ErrPINInvalid
			if i == 8 {
				want = ctap2.ErrPINBlocked
			}
			if _, s := h.token(fmt.Sprintf("%04d", i), permGA, ""); s != want {
				t.Fatalf("wrong PIN %d: %v, want %v", i, s, want)
			}
			h.wantRetries(fmt.Sprintf("after wrong PIN %d", i), uint(8-i), false)
		}
		if _, s := h.token("1234", permGA, ""); s != ctap2.ErrPINBlocked {
			t.Fatalf("right PIN when blocked: %v, want PIN_BLOCKED", s)
		}
		if _, s := h.token("1234", 0, ""); s != ctap2.ErrPINBlocked {
			t.Fatalf("getPinToken when blocked: %v, want PIN_BLOCKED", s)
		}
		wantStatus(t, "changePIN when blocked", h.changePIN("1234", "5678"), ctap2.ErrPINBlocked)
		h.wantRetries("blocked", 0, false)

		a.Close()
		a = newSoftkeyOn(t, st, Config{Now: clock.Now})
		h = newPINHost(t, a, v)
		if _, s := h.token("1234", permGA, ""); s != ctap2.ErrPINBlocked {
			t.Fatalf("right PIN after a restart: %v, want PIN_BLOCKED", s)
		}
		s, _ := call(t, a, ctap2.CmdReset, nil)
		wantStatus(t, "reset", s, ctap2.StatusOK)
		h.wantRetries("after reset", 8, false)
		if on, _ := info(t, a).Option("clientPin"); on {
			t.Fatal("clientPin still true after reset")
		}
		h.mustSetPIN("1234")
		h.mustToken("1234", permGA, "")
	})
}

// TestPINAuthBlocked: three wrong PINs in a row block PIN checks until a power
// cycle (a new Authenticator on the same state), without using up retries.
func TestPINAuthBlocked(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		st := persistentStore()
		a := newSoftkeyOn(t, st, Config{})
		h := newPINHost(t, a, v)
		h.mustSetPIN("1234")

		// A right PIN in between starts the count again.
		for i, want := range []ctap2.StatusError{ctap2.ErrPINInvalid, ctap2.ErrPINInvalid, ctap2.StatusOK, ctap2.ErrPINInvalid, ctap2.ErrPINInvalid} {
			pin := "9999"
			if want == ctap2.StatusOK {
				pin = "1234"
			}
			if _, s := h.token(pin, permGA, ""); s != want {
				t.Fatalf("attempt %d: %v, want %v", i, s, want)
			}
		}
		h.wantRetries("two wrong after a right one", 6, false)
		if _, s := h.token("9999", permGA, ""); s != ctap2.ErrPINAuthBlocked {
			t.Fatalf("third wrong PIN in a row: %v, want PIN_AUTH_BLOCKED", s)
		}
		h.wantRetries("auth blocked", 5, true)
		if _, s := h.token("1234", permGA, ""); s != ctap2.ErrPINAuthBlocked {
			t.Fatalf("right PIN while auth blocked: %v, want PIN_AUTH_BLOCKED", s)
		}
		if _, s := h.token("1234", 0, ""); s != ctap2.ErrPINAuthBlocked {
			t.Fatalf("getPinToken while auth blocked: %v, want PIN_AUTH_BLOCKED", s)
		}
		wantStatus(t, "changePIN while auth blocked", h.changePIN("1234", "5678"), ctap2.ErrPINAuthBlocked)
		h.wantRetries("auth blocked, no retries used", 5, true)

		a.Close()
		a = newSoftkeyOn(t, st, Config{})
		h = newPINHost(t, a, v)
		h.wantRetries("after a power cycle", 5, false)
		h.mustToken("1234", permGA, "")
		h.wantRetries("after the right PIN", 8, false)
	})
}

// TestKeyAgreement: the key agreement key stays put until a PIN mismatch, which
// replaces it, so a request prepared under the old key (a replayed pinHashEnc)
// fails even with the right PIN.
func TestKeyAgreement(t *testing.T) {
	a := newSoftkey(t, Config{})
	h := newPINHost(t, a, 2)
	ka := func() []byte {
		st, resp := h.send(&ctap2.ClientPINRequest{PinUvAuthProtocol: 1, SubCommand: ctap2.PINGetKeyAgreement})
		wantStatus(t, "getKeyAgreement", st, ctap2.StatusOK)
		m := rawMap[int](t, resp.KeyAgreement)
		if string(m[1]) != "\x02" || string(m[3]) != "\x38\x18" || string(m[-1]) != "\x01" {
			t.Fatalf("key agreement %x is not an EC2 P-256 key with alg -25", resp.KeyAgreement)
		}
		return resp.KeyAgreement
	}
	k1 := ka()
	if !bytes.Equal(ka(), k1) {
		t.Fatal("key agreement key changed without a PIN mismatch")
	}
	h.mustSetPIN("1234")
	h.mustToken("1234", permGA, "")
	if !bytes.Equal(ka(), k1) {
		t.Fatal("key agreement key changed after a right PIN")
	}
	prepared, ss := h.tokenRequest("1234", permGA, "")
	if _, s := h.token("9999", permGA, ""); s != ctap2.ErrPINInvalid {
		t.Fatalf("wrong PIN: %v", s)
	}
	if bytes.Equal(ka(), k1) {
		t.Fatal("key agreement key not regenerated after a PIN mismatch")
	}
	if _, s := h.openToken(prepared, ss); s != ctap2.ErrPINInvalid {
		t.Fatalf("right PIN under the old key agreement: %v, want PIN_INVALID", s)
	}
	h.wantRetries("two mismatches", 6, false)

	if bytes.Equal(ka(), newPINHost(t, newSoftkey(t, Config{}), 1).keyAgreementKey()) {
		t.Error("two softkeys share a key agreement key")
	}
	seeded := func() []byte {
		return newPINHost(t, newSoftkey(t, Config{Seed: []byte("s")}), 1).keyAgreementKey()
	}
	if !bytes.Equal(seeded(), seeded()) {
		t.Error("seeded softkeys differ in their key agreement key")
	}
}

func (h *pinHost) keyAgreementKey() []byte {
	h.t.Helper()
	st, resp := h.send(&ctap2.ClientPINRequest{PinUvAuthProtocol: h.p.Version(), SubCommand: ctap2.PINGetKeyAgreement})
	wantStatus(h.t, "getKeyAgreement", st, ctap2.StatusOK)
	return resp.KeyAgreement
}

// TestPINPolicy: setPIN and changePIN refuse PINs that break the policy with
// PIN_POLICY_VIOLATION (or INVALID_PARAMETER for a newPinEnc that is not a 64-byte
// padded PIN), and nothing stored changes.
func TestPINPolicy(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		name   string
		padded []byte
		minLen int
		want   ctap2.StatusError
	}{
		{"4 digits", pad("1234"), 0, ctap2.StatusOK},
		{"3 digits", pad("123"), 0, ctap2.ErrPINPolicyViolation},
		{"empty", pad(""), 0, ctap2.ErrPINPolicyViolation},
		{"4 code points in 8 bytes", pad("éééé"), 0, ctap2.StatusOK},
		{"3 code points in 6 bytes", pad("ééé"), 0, ctap2.ErrPINPolicyViolation},
		{"63 bytes", pad(long), 0, ctap2.StatusOK},
		{"64 bytes", []byte(long + "a"), 0, ctap2.ErrPINPolicyViolation},
		{"not UTF-8", pad("\xff\xfe\xfd\xfc\xfb"), 0, ctap2.ErrPINPolicyViolation},
		{"truncated UTF-8", pad("1234\xc3"), 0, ctap2.ErrPINPolicyViolation},
		{"NUL inside", pad("12\x0034"), 0, ctap2.ErrPINPolicyViolation},
		{"minPINLength 6, 5 digits", pad("12345"), 6, ctap2.ErrPINPolicyViolation},
		{"minPINLength 6, 6 digits", pad("123456"), 6, ctap2.StatusOK},
		{"padded to 48 bytes", pad("1234")[:48], 0, ctap2.ErrInvalidParameter},
		{"padded to 80 bytes", append(pad("1234"), make([]byte, 16)...), 0, ctap2.ErrInvalidParameter},
	}
	forProtocols(t, func(t *testing.T, v uint) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st := store.NewMemory(store.Meta{})
				updateSettings(t, st, func(s *store.Settings) { s.MinPINLength = tt.minLen })
				a := newSoftkeyOn(t, shared(st), Config{})
				h := newPINHost(t, a, v)
				before := settingsOf(t, st)
				wantStatus(t, "setPIN", h.setPadded(tt.padded), tt.want)
				if tt.want == ctap2.StatusOK {
					if s := settingsOf(t, st); s.PINHash == nil || s.PINCodePoints != len([]rune(string(bytes.TrimRight(tt.padded, "\x00")))) {
						t.Fatalf("stored settings %+v after setPIN", s)
					}
					return
				}
				if after := settingsOf(t, st); !reflect.DeepEqual(before, after) {
					t.Fatalf("refused setPIN changed the settings: %+v -> %+v", before, after)
				}

				// changePIN refuses the same new PIN and keeps the old one.
				h.mustSetPIN("87654321")
				before = settingsOf(t, st)
				wantStatus(t, "changePIN", h.changePadded("87654321", tt.padded), tt.want)
				if after := settingsOf(t, st); !reflect.DeepEqual(before, after) {
					t.Fatalf("refused changePIN changed the settings: %+v -> %+v", before, after)
				}
				h.mustToken("87654321", permGA, "")
			})
		}
	})
	t.Run("newPinEnc not whole blocks", func(t *testing.T) {
		a := newSoftkey(t, Config{})
		h := newPINHost(t, a, 1)
		pk, ss := h.agree()
		enc := make([]byte, 50)
		st, _ := h.send(&ctap2.ClientPINRequest{PinUvAuthProtocol: 1, SubCommand: ctap2.PINSetPIN,
			KeyAgreement: pk, NewPinEnc: enc, PinUvAuthParam: h.p.Authenticate(ss, enc)})
		wantStatus(t, "setPIN", st, ctap2.ErrInvalidParameter)
	})
}

// TestForcePINChange: while forcePINChange is set the right PIN gets no token
// (PIN_POLICY_VIOLATION, or PIN_INVALID for getPinToken) and cannot be "changed"
// to itself; a real change clears the flag.
func TestForcePINChange(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		st := store.NewMemory(store.Meta{})
		a := newSoftkeyOn(t, shared(st), Config{})
		h := newPINHost(t, a, v)
		h.mustSetPIN("1234")
		updateSettings(t, st, func(s *store.Settings) { s.ForcePINChange = true })
		if !info(t, a).ForcePINChange {
			t.Fatal("getInfo forcePINChange not true")
		}
		if _, s := h.token("1234", permGA, ""); s != ctap2.ErrPINPolicyViolation {
			t.Fatalf("token with forcePINChange: %v, want PIN_POLICY_VIOLATION", s)
		}
		if _, s := h.token("1234", 0, ""); s != ctap2.ErrPINInvalid {
			t.Fatalf("getPinToken with forcePINChange: %v, want PIN_INVALID", s)
		}
		h.wantRetries("right PIN, forced change", 8, false)
		before := settingsOf(t, st)
		wantStatus(t, "changePIN to the same PIN", h.changePIN("1234", "1234"), ctap2.ErrPINPolicyViolation)
		if after := settingsOf(t, st); !reflect.DeepEqual(before, after) {
			t.Fatalf("settings changed: %+v -> %+v", before, after)
		}
		wantStatus(t, "changePIN", h.changePIN("1234", "98765"), ctap2.StatusOK)
		if s := settingsOf(t, st); s.ForcePINChange || s.PINCodePoints != 5 {
			t.Fatalf("settings %+v after changePIN", s)
		}
		if info(t, a).ForcePINChange {
			t.Fatal("getInfo forcePINChange still true")
		}
		h.mustToken("98765", permGA, "")
	})
}

// TestClientPINErrors: statuses and their order for malformed or misplaced
// requests, as raw maps.
func TestClientPINErrors(t *testing.T) {
	platform, err := ecdh.P256().GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyBytes, err := ctap2.KeyAgreementKey(platform.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	ka := ctap2.RawMessage(keyBytes)
	offCurve := map[int]any{1: 2, 3: -25, -1: 1, -2: bytes.Repeat([]byte{1}, 32), -3: bytes.Repeat([]byte{2}, 32)}
	b32, b80 := make([]byte, 32), make([]byte, 80)
	m := func(kv ...any) map[int]any {
		out := map[int]any{}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(int)] = kv[i+1]
		}
		return out
	}
	unauthorized := func(supported bool) ctap2.StatusError {
		if supported {
			return ctap2.StatusOK
		}
		return ctap2.ErrUnauthorizedPermission
	}
	// A token request with the right PIN: only the permission decides.
	const right = "right PIN"
	tests := []struct {
		name   string
		pin    bool // a PIN ("1234") is set first
		params any
		want   ctap2.StatusError
	}{
		{"empty map", false, m(), ctap2.ErrMissingParameter},
		{"no subCommand", false, m(1, 2), ctap2.ErrMissingParameter},
		{"subCommand 0", false, m(1, 2, 2, 0), ctap2.ErrInvalidSubcommand},
		{"subCommand 8", false, m(1, 2, 2, 8), ctap2.ErrInvalidSubcommand},
		{"subCommand 0x0a", false, m(1, 2, 2, 10), ctap2.ErrInvalidSubcommand},
		{"getPINRetries without protocol", false, m(2, 1), ctap2.StatusOK},
		{"unknown key ignored", false, m(2, 1, 0x20, "x"), ctap2.StatusOK},
		{"getKeyAgreement without protocol", false, m(2, 2), ctap2.ErrMissingParameter},
		{"getKeyAgreement protocol 3", false, m(1, 3, 2, 2), ctap2.ErrInvalidParameter},
		{"getKeyAgreement protocol 0", false, m(1, 0, 2, 2), ctap2.ErrInvalidParameter},
		{"setPIN without newPinEnc", false, m(1, 2, 2, 3, 3, ka, 4, b32), ctap2.ErrMissingParameter},
		{"setPIN without keyAgreement", false, m(1, 2, 2, 3, 4, b32, 5, b80), ctap2.ErrMissingParameter},
		{"setPIN without pinUvAuthParam", false, m(1, 2, 2, 3, 3, ka, 5, b80), ctap2.ErrMissingParameter},
		{"setPIN without protocol", false, m(2, 3, 3, ka, 4, b32, 5, b80), ctap2.ErrMissingParameter},
		{"setPIN protocol 3", false, m(1, 3, 2, 3, 3, ka, 4, b32, 5, b80), ctap2.ErrInvalidParameter},
		{"setPIN keyAgreement not a key", false, m(1, 2, 2, 3, 3, 7, 4, b32, 5, b80), ctap2.ErrInvalidParameter},
		{"setPIN keyAgreement off the curve", false, m(1, 2, 2, 3, 3, offCurve, 4, b32, 5, b80), ctap2.ErrInvalidParameter},
		{"setPIN wrong pinUvAuthParam", false, m(1, 2, 2, 3, 3, ka, 4, b32, 5, b80), ctap2.ErrPINAuthInvalid},
		{"setPIN when set", true, m(1, 2, 2, 3, 3, ka, 4, b32, 5, b80), ctap2.ErrPINAuthInvalid},
		{"setPIN when set, before the key", true, m(1, 2, 2, 3, 3, 7, 4, b32, 5, b80), ctap2.ErrPINAuthInvalid},
		{"changePIN without pinHashEnc", true, m(1, 2, 2, 4, 3, ka, 4, b32, 5, b80), ctap2.ErrMissingParameter},
		{"changePIN without PIN", false, m(1, 2, 2, 4, 3, ka, 4, b32, 5, b80, 6, b32), ctap2.ErrPINNotSet},
		{"changePIN bad key", true, m(1, 2, 2, 4, 3, 7, 4, b32, 5, b80, 6, b32), ctap2.ErrInvalidParameter},
		{"changePIN wrong pinUvAuthParam", true, m(1, 2, 2, 4, 3, ka, 4, b32, 5, b80, 6, b32), ctap2.ErrPINAuthInvalid},
		{"getPinToken without pinHashEnc", true, m(1, 2, 2, 5, 3, ka), ctap2.ErrMissingParameter},
		{"getPinToken with permissions", true, m(1, 2, 2, 5, 3, ka, 6, b32, 9, 3), ctap2.ErrInvalidParameter},
		{"getPinToken with rpId", true, m(1, 2, 2, 5, 3, ka, 6, b32, 10, "a.example"), ctap2.ErrInvalidParameter},
		{"getPinToken without PIN", false, m(1, 2, 2, 5, 3, ka, 6, b32), ctap2.ErrPINNotSet},
		{"getPinToken wrong PIN", true, m(1, 2, 2, 5, 3, ka, 6, b32), ctap2.ErrPINInvalid},
		{"token without permissions", true, m(1, 2, 2, 9, 3, ka, 6, b32), ctap2.ErrMissingParameter},
		{"token permissions 0", true, m(1, 2, 2, 9, 3, ka, 6, b32, 9, 0), ctap2.ErrInvalidParameter},
		{"token permissions 0 before PIN_NOT_SET", false, m(1, 2, 2, 9, 3, ka, 6, b32, 9, 0), ctap2.ErrInvalidParameter},
		{"token empty rpId", true, m(1, 2, 2, 9, 3, ka, 6, b32, 9, 3, 10, ""), ctap2.ErrInvalidParameter},
		{"token without PIN", false, m(1, 2, 2, 9, 3, ka, 6, b32, 9, 3), ctap2.ErrPINNotSet},
		{"token wrong PIN", true, m(1, 2, 2, 9, 3, ka, 6, b32, 9, 3), ctap2.ErrPINInvalid},
		{"token mc ga", true, right + " 3", ctap2.StatusOK},
		{"token unknown bits ignored", true, right + " 131", ctap2.StatusOK},
		{"token cm", true, right + " 4", unauthorized(supportsCredMgmt)},
		{"token be", true, right + " 8", ctap2.ErrUnauthorizedPermission},
		{"token lbw", true, right + " 16", unauthorized(supportsLargeBlobs)},
		{"token acfg", true, right + " 32", unauthorized(supportsAuthnrCfg)},
		{"token pcmr", true, right + " 64", ctap2.ErrUnauthorizedPermission},
		{"token mc with be", true, right + " 9", ctap2.ErrUnauthorizedPermission},
		{"UV token without built-in UV", false, m(1, 2, 2, 6, 3, ka, 9, 3), ctap2.ErrNotAllowed},
		{"UV token without permissions", false, m(1, 2, 2, 6, 3, ka), ctap2.ErrMissingParameter},
		{"UV token be", false, m(1, 2, 2, 6, 3, ka, 9, 8), ctap2.ErrUnauthorizedPermission},
		{"getUVRetries without built-in UV", false, m(2, 7), ctap2.ErrNotAllowed},
		{"subCommand as text", false, m(1, 2, 2, "x"), ctap2.ErrCBORUnexpectedType},
		{"protocol negative", false, m(1, -1, 2, 2), ctap2.ErrCBORUnexpectedType},
		{"permissions negative", true, m(1, 2, 2, 9, 3, ka, 6, b32, 9, -1), ctap2.ErrCBORUnexpectedType},
		{"pinUvAuthParam as text", false, m(1, 2, 2, 3, 3, ka, 4, "x", 5, b80), ctap2.ErrCBORUnexpectedType},
		{"rpId as bytes", true, m(1, 2, 2, 9, 3, ka, 6, b32, 9, 3, 10, []byte("a")), ctap2.ErrCBORUnexpectedType},
		{"not a map", false, []any{1, 2}, ctap2.ErrCBORUnexpectedType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newSoftkey(t, Config{})
			h := newPINHost(t, a, 2)
			if tt.pin {
				h.mustSetPIN("1234")
			}
			if s, ok := tt.params.(string); ok {
				var perms ctap2.Permission
				fmt.Sscanf(strings.TrimPrefix(s, right+" "), "%d", &perms)
				_, got := h.token("1234", perms, "")
				wantStatus(t, tt.name, got, tt.want)
				return
			}
			got, _ := call(t, a, ctap2.CmdClientPIN, tt.params)
			wantStatus(t, tt.name, got, tt.want)
		})
	}
}

// checkClientPINReply checks a successful clientPIN reply of a fuzz target. Neither
// fuzz softkey has built-in UV and the fuzzer never knows a shared secret (that
// takes the softkey's private key agreement key), so only getPINRetries and
// getKeyAgreement can succeed.
func checkClientPINReply(t *testing.T, msg, body []byte) {
	var req ctap2.ClientPINRequest
	if err := ctap2.Unmarshal(msg[1:], &req); err != nil {
		t.Fatalf("%x: clientPIN succeeded on a request that does not decode: %v", msg, err)
	}
	if err := ctap2.CheckCanonical(body); err != nil {
		t.Fatalf("%x: clientPIN reply %x: %v", msg, body, err)
	}
	var resp ctap2.ClientPINResponse
	if err := ctap2.Unmarshal(body, &resp); err != nil {
		t.Fatalf("%x: clientPIN reply %x: %v", msg, body, err)
	}
	switch req.SubCommand {
	case ctap2.PINGetRetries:
		if resp.PinRetries == nil || *resp.PinRetries > 8 || resp.PowerCycleState == nil || resp.KeyAgreement != nil || resp.PinUvAuthToken != nil {
			t.Fatalf("%x: getPINRetries reply %+v", msg, resp)
		}
	case ctap2.PINGetKeyAgreement:
		if _, err := ctap2.ParseKeyAgreementKey(resp.KeyAgreement); err != nil || resp.PinUvAuthToken != nil || resp.PinRetries != nil {
			t.Fatalf("%x: getKeyAgreement reply %+v: %v", msg, resp, err)
		}
	default:
		t.Fatalf("%x: clientPIN subcommand %d succeeded without the shared secret: %x", msg, req.SubCommand, body)
	}
}

// newFuzzPINSoftkey is the fuzz fixture with the PIN "1234" set.
func newFuzzPINSoftkey(tb testing.TB) (*Authenticator, store.Store) {
	st := store.NewMemory(fuzzFixture().meta)
	s := store.DefaultSettings()
	s.PINHash, s.PINCodePoints = pinHash("1234"), 4
	if err := st.SetSettings(s); err != nil {
		tb.Fatal(err)
	}
	a, err := New(st, Config{Seed: []byte("fuzz"), Now: func() time.Time { return epoch }})
	if err != nil {
		tb.Fatal(err)
	}
	return a, st
}

// FuzzClientPIN feeds arbitrary clientPIN parameters to a softkey with a PIN set,
// then asks for the retries. Properties: no panic; a request that decodes
// re-encodes to the same request (the ctap2 decoder's round trip); every reply is
// one non-zero status byte or a success that checkClientPINReply accepts; without
// the shared secret nothing changes but the retry counter, which only goes down.
func FuzzClientPIN(f *testing.F) {
	rnd := mrand.NewChaCha8([32]byte{'p', 'i', 'n'})
	platform, err := ecdh.P256().NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	pk, err := ctap2.KeyAgreementKey(platform.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range []uint{1, 2} {
		p := ctap2.PINProtocolByVersion(v)
		if v == 2 {
			p = ctap2.PINProtocolTwo{Rand: rnd}
		}
		ss := make([]byte, 32*v) // not the softkey's: requests are well-formed but unauthenticated
		newEnc, _ := p.Encrypt(ss, pad("5678"))
		hashEnc, _ := p.Encrypt(ss, pinHash("1234"))
		for _, req := range []ctap2.ClientPINRequest{
			{PinUvAuthProtocol: v, SubCommand: ctap2.PINGetRetries},
			{PinUvAuthProtocol: v, SubCommand: ctap2.PINGetKeyAgreement},
			{PinUvAuthProtocol: v, SubCommand: ctap2.PINSetPIN, KeyAgreement: pk, NewPinEnc: newEnc, PinUvAuthParam: p.Authenticate(ss, newEnc)},
			{PinUvAuthProtocol: v, SubCommand: ctap2.PINChangePIN, KeyAgreement: pk, NewPinEnc: newEnc, PinHashEnc: hashEnc, PinUvAuthParam: p.Authenticate(ss, concat(newEnc, hashEnc))},
			{PinUvAuthProtocol: v, SubCommand: ctap2.PINGetPINToken, KeyAgreement: pk, PinHashEnc: hashEnc},
			{PinUvAuthProtocol: v, SubCommand: ctap2.PINGetPINUvAuthTokenUsingPinWithPerms, KeyAgreement: pk, PinHashEnc: hashEnc, Permissions: 3, RPID: "a.example"},
			{PinUvAuthProtocol: v, SubCommand: ctap2.PINGetPINUvAuthTokenUsingUvWithPerms, KeyAgreement: pk, Permissions: 0x23},
			{PinUvAuthProtocol: v, SubCommand: ctap2.PINGetUVRetries},
		} {
			f.Add(mustMarshal(f, &req))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa2, 0x01, 0x01, 0x02, 0x18, 0x20})
	f.Add([]byte{0xa3, 0x01, 0x02, 0x02, 0x03, 0x03, 0xa0})

	f.Fuzz(func(t *testing.T, params []byte) {
		a, st := newFuzzPINSoftkey(t)
		defer a.Close()
		before := settingsOf(t, st)
		var req ctap2.ClientPINRequest
		if ctap2.Unmarshal(params, &req) == nil {
			var again ctap2.ClientPINRequest
			if err := ctap2.Unmarshal(mustMarshal(t, &req), &again); err != nil || !reflect.DeepEqual(req, again) {
				t.Fatalf("%x: round trip %+v -> %+v (%v)", params, req, again, err)
			}
		}
		msg := append([]byte{byte(ctap2.CmdClientPIN)}, params...)
		checkFuzzReply(t, msg, a.HandleCBOR(context.Background(), msg, nil))
		retries := []byte{byte(ctap2.CmdClientPIN), 0xa1, 0x02, 0x01}
		reply := a.HandleCBOR(context.Background(), retries, nil)
		checkFuzzReply(t, retries, reply)
		after := settingsOf(t, st)
		if !bytes.Equal(after.PINHash, before.PINHash) || after.PINRetries > before.PINRetries ||
			after.PINRetries < before.PINRetries-1 || after.ForcePINChange != before.ForcePINChange {
			t.Fatalf("%x: settings %+v -> %+v", params, before, after)
		}
		if a.pin.token.value != nil {
			t.Fatalf("%x: a token was issued", params)
		}
	})
}
