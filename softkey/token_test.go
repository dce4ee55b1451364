package softkey

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// pinFixture is a softkey with the PIN "1234", a fake clock and a non-resident
// credential for each of a.example and b.example, made before any token exists
// (makeCredUvNotRqd lets a protected softkey do that).
type pinFixture struct {
	st    store.Store
	a     *Authenticator
	h     *pinHost
	clock *fakeClock
	creds map[string]*madeCredential
}

func newPINFixture(t *testing.T, v uint, cfg Config) *pinFixture {
	t.Helper()
	f := &pinFixture{st: store.NewMemory(store.Meta{}), clock: newClock(), creds: map[string]*madeCredential{}}
	cfg.Now = f.clock.Now
	f.a = newSoftkeyOn(t, shared(f.st), cfg)
	f.h = newPINHost(t, f.a, v)
	f.h.mustSetPIN("1234")
	for _, rp := range []string{"a.example", "b.example"} {
		f.creds[rp] = makeCredential(t, f.a, mcRequest(rp, []byte("u")))
	}
	return f
}

// ga runs a getAssertion for rpID's credential with tok (nil: none), silent or
// not, and returns the status.
func (f *pinFixture) ga(t *testing.T, rpID string, tok *ctap2.PINToken, up bool) ctap2.StatusError {
	t.Helper()
	req := gaRequest(rpID, f.creds[rpID].id)
	if !up {
		silent(req)
	}
	if tok != nil {
		protectGA(req, tok)
	}
	st, body := call(t, f.a, ctap2.CmdGetAssertion, req)
	if st == ctap2.StatusOK {
		_, ad := decodeAssertion(t, body)
		if tok != nil && ad.Flags&ctap2.FlagUV == 0 {
			t.Fatalf("getAssertion with a token: flags %v lack UV", ad.Flags)
		}
		if up != (ad.Flags&ctap2.FlagUP != 0) {
			t.Fatalf("getAssertion up=%v: flags %v", up, ad.Flags)
		}
	}
	return st
}

// mc runs a non-resident makeCredential for rpID with tok and returns the status.
func (f *pinFixture) mc(t *testing.T, rpID string, tok *ctap2.PINToken) ctap2.StatusError {
	t.Helper()
	st, _ := call(t, f.a, ctap2.CmdMakeCredential, protectMC(mcRequest(rpID, []byte("v")), tok))
	return st
}

// TestTokenPermissions: a token does exactly what its permissions say: a ga token
// cannot make credentials, an mc token cannot assert.
func TestTokenPermissions(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		f := newPINFixture(t, v, Config{})
		ga := f.h.mustToken("1234", permGA, "a.example")
		wantStatus(t, "makeCredential with a ga token", f.mc(t, "a.example", ga), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "getAssertion with the ga token", f.ga(t, "a.example", ga, true), ctap2.StatusOK)

		mc := f.h.mustToken("1234", permMC, "a.example")
		wantStatus(t, "getAssertion with an mc token", f.ga(t, "a.example", mc, false), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "makeCredential with the mc token", f.mc(t, "a.example", mc), ctap2.StatusOK)

		// Bits the softkey does not know are ignored, and grant nothing.
		odd := f.h.mustToken("1234", 0x80, "a.example")
		wantStatus(t, "getAssertion with an unknown-permission token", f.ga(t, "a.example", odd, false), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "makeCredential with an unknown-permission token", f.mc(t, "a.example", odd), ctap2.ErrPINAuthInvalid)

		// A MAC over another clientDataHash, or under another protocol, fails.
		tok := f.h.mustToken("1234", permGA, "a.example")
		req := protectGA(silent(gaRequest("a.example", f.creds["a.example"].id)), tok)
		req.ClientDataHash = hashOf("another challenge")
		st, _ := call(t, f.a, ctap2.CmdGetAssertion, req)
		wantStatus(t, "pinUvAuthParam over another clientDataHash", st, ctap2.ErrPINAuthInvalid)
		other := &ctap2.PINToken{Protocol: ctap2.PINProtocolByVersion(3 - v), Token: tok.Token}
		wantStatus(t, "token used with the other protocol", f.ga(t, "a.example", other, false), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "the token itself", f.ga(t, "a.example", tok, false), ctap2.StatusOK)
	})
}

// TestTokenRPBinding: a token bound to one RP, by its rpId or by its first use,
// is refused for another.
func TestTokenRPBinding(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		f := newPINFixture(t, v, Config{})
		tok := f.h.mustToken("1234", permMCGA, "a.example")
		wantStatus(t, "getAssertion for rp B with a token for rp A", f.ga(t, "b.example", tok, false), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "makeCredential for rp B with a token for rp A", f.mc(t, "b.example", tok), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "getAssertion for rp A", f.ga(t, "a.example", tok, false), ctap2.StatusOK)

		tok = f.h.mustToken("1234", permMCGA, "")
		wantStatus(t, "first use binds to rp A", f.ga(t, "a.example", tok, false), ctap2.StatusOK)
		if rp, bound := f.a.tokenRPID(); rp != "a.example" || !bound {
			t.Fatalf("token RP ID %q (bound %v) after first use, want a.example", rp, bound)
		}
		wantStatus(t, "then rp B", f.ga(t, "b.example", tok, false), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "then rp B (mc)", f.mc(t, "b.example", tok), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "rp A again", f.ga(t, "a.example", tok, false), ctap2.StatusOK)

		// A failed use binds nothing.
		tok = f.h.mustToken("1234", permGA, "")
		wantStatus(t, "mc without permission", f.mc(t, "b.example", tok), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "rp A after a refused rp B", f.ga(t, "a.example", tok, false), ctap2.StatusOK)
	})
}

// TestTokenInvalidation: a token dies with a second token request, a PIN change,
// a reset, and (expired) with time.
func TestTokenInvalidation(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		t.Run("second request", func(t *testing.T) {
			f := newPINFixture(t, v, Config{})
			first := f.h.mustToken("1234", permGA, "a.example")
			second := f.h.mustToken("1234", permGA, "a.example")
			wantStatus(t, "first token after a second request", f.ga(t, "a.example", first, false), ctap2.ErrPINAuthInvalid)
			wantStatus(t, "second token", f.ga(t, "a.example", second, false), ctap2.StatusOK)
			legacy, st := f.h.token("1234", 0, "")
			wantStatus(t, "getPinToken", st, ctap2.StatusOK)
			wantStatus(t, "second token after getPinToken", f.ga(t, "a.example", second, false), ctap2.ErrPINAuthInvalid)
			wantStatus(t, "getPinToken token", f.ga(t, "a.example", legacy, false), ctap2.StatusOK)
			// A refused request (wrong PIN) leaves the current token alone.
			if _, st := f.h.token("9999", permGA, ""); st != ctap2.ErrPINInvalid {
				t.Fatalf("wrong PIN: %v", st)
			}
			wantStatus(t, "token after a refused request", f.ga(t, "a.example", legacy, false), ctap2.StatusOK)
		})
		t.Run("changePIN", func(t *testing.T) {
			f := newPINFixture(t, v, Config{})
			tok := f.h.mustToken("1234", permGA, "a.example")
			wantStatus(t, "changePIN", f.h.changePIN("1234", "4321"), ctap2.StatusOK)
			wantStatus(t, "token after changePIN", f.ga(t, "a.example", tok, false), ctap2.ErrPINAuthInvalid)
		})
		t.Run("reset", func(t *testing.T) {
			f := newPINFixture(t, v, Config{})
			tok := f.h.mustToken("1234", permMCGA, "a.example")
			st, _ := call(t, f.a, ctap2.CmdReset, nil)
			wantStatus(t, "reset", st, ctap2.StatusOK)
			if s := settingsOf(t, f.st); !slicesEqualSettings(s, store.DefaultSettings()) {
				t.Fatalf("settings after reset %+v, want the defaults", s)
			}
			wantStatus(t, "token after reset, no PIN", f.mc(t, "a.example", tok), ctap2.ErrPINNotSet)
			f.h.mustSetPIN("1234") // the same PIN again does not revive the token
			wantStatus(t, "token after reset and the same PIN", f.mc(t, "a.example", tok), ctap2.ErrPINAuthInvalid)
		})
		t.Run("unused for 30 s", func(t *testing.T) {
			f := newPINFixture(t, v, Config{})
			tok := f.h.mustToken("1234", permGA, "a.example")
			f.clock.Advance(tokenInitialUse + time.Second)
			wantStatus(t, "token first used after 31 s", f.ga(t, "a.example", tok, false), ctap2.ErrPINAuthInvalid)
		})
		t.Run("10 minutes", func(t *testing.T) {
			f := newPINFixture(t, v, Config{})
			tok := f.h.mustToken("1234", permGA, "a.example")
			f.clock.Advance(29 * time.Second)
			wantStatus(t, "token used after 29 s", f.ga(t, "a.example", tok, false), ctap2.StatusOK)
			f.clock.Advance(tokenMaxUsage - 30*time.Second)
			wantStatus(t, "token used after 9:59", f.ga(t, "a.example", tok, false), ctap2.StatusOK)
			f.clock.Advance(2 * time.Second)
			wantStatus(t, "token used after 10:01", f.ga(t, "a.example", tok, false), ctap2.ErrPINAuthInvalid)
			f.clock.Advance(-time.Minute)
			wantStatus(t, "expired token, clock turned back", f.ga(t, "a.example", tok, false), ctap2.ErrPINAuthInvalid)
		})
	})
}

func slicesEqualSettings(a, b store.Settings) bool {
	return slices.Equal(a.PINHash, b.PINHash) && a.PINCodePoints == b.PINCodePoints && a.PINRetries == b.PINRetries &&
		a.UVRetries == b.UVRetries && a.ForcePINChange == b.ForcePINChange && a.MinPINLength == b.MinPINLength &&
		slices.Equal(a.MinPINLengthRPIDs, b.MinPINLengthRPIDs) && a.AlwaysUV == b.AlwaysUV &&
		a.EnterpriseAttestation == b.EnterpriseAttestation
}

// TestTokenClearedByPresence: a makeCredential or getAssertion that collects user
// presence uses up the token's mc/ga permissions; silent assertions do not.
func TestTokenClearedByPresence(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		f := newPINFixture(t, v, Config{})
		tok := f.h.mustToken("1234", permMCGA, "a.example")
		wantStatus(t, "makeCredential", f.mc(t, "a.example", tok), ctap2.StatusOK)
		wantStatus(t, "second makeCredential with the token", f.mc(t, "a.example", tok), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "getAssertion after the makeCredential", f.ga(t, "a.example", tok, false), ctap2.ErrPINAuthInvalid)

		tok = f.h.mustToken("1234", permGA, "a.example")
		for range 3 {
			wantStatus(t, "silent getAssertion", f.ga(t, "a.example", tok, false), ctap2.StatusOK)
		}
		wantStatus(t, "getAssertion with a touch", f.ga(t, "a.example", tok, true), ctap2.StatusOK)
		wantStatus(t, "getAssertion after the touch", f.ga(t, "a.example", tok, false), ctap2.ErrPINAuthInvalid)

		// A touch without the token clears it as well: the state is the softkey's.
		tok = f.h.mustToken("1234", permGA, "a.example")
		wantStatus(t, "getAssertion without a token", f.ga(t, "a.example", nil, true), ctap2.StatusOK)
		wantStatus(t, "token after someone else's touch", f.ga(t, "a.example", tok, false), ctap2.ErrPINAuthInvalid)
	})

	// lbw survives (CTAP 2.1 §6.1.2 step 14), so a largeBlobs write can follow.
	tok := pinUvAuthToken{value: make([]byte, 32), perms: ctap2.PermGetAssertion | ctap2.PermLargeBlobWrite | ctap2.PermCredentialManagement, verified: true, present: true}
	tok.clearAfterPresence()
	if tok.perms != ctap2.PermLargeBlobWrite || tok.verified || tok.present {
		t.Fatalf("after presence: perms %#x, verified %v, present %v; want lbw only", tok.perms, tok.verified, tok.present)
	}
}

// TestVerifyPinUvAuthParam: the API for credMgmt, config and largeBlobs.
func TestVerifyPinUvAuthParam(t *testing.T) {
	f := newPINFixture(t, 2, Config{})
	msg := []byte("some command message")
	p := ctap2.PINProtocolTwo{}
	tok := f.h.mustToken("1234", permMCGA, "a.example")
	param := p.Authenticate(tok.Token, msg)
	tests := []struct {
		name     string
		protocol uint
		param    []byte
		perm     ctap2.Permission
		rpID     string
		want     ctap2.StatusError
	}{
		{"no param", 2, nil, permGA, "", ctap2.ErrPUATRequired},
		{"no protocol", 0, param, permGA, "", ctap2.ErrMissingParameter},
		{"protocol 7", 7, param, permGA, "", ctap2.ErrInvalidParameter},
		{"protocol 1", 1, param[:16], permGA, "", ctap2.ErrPINAuthInvalid},
		{"wrong MAC", 2, flip(param, 3), permGA, "", ctap2.ErrPINAuthInvalid},
		{"short MAC", 2, param[:16], permGA, "", ctap2.ErrPINAuthInvalid},
		{"missing permission", 2, param, ctap2.PermCredentialManagement, "", ctap2.ErrPINAuthInvalid},
		{"other RP", 2, param, permGA, "b.example", ctap2.ErrPINAuthInvalid},
		{"no RP check", 2, param, permGA, "", ctap2.StatusOK},
		{"same RP", 2, param, permMCGA, "a.example", ctap2.StatusOK},
	}
	for _, tt := range tests {
		err := f.a.verifyPinUvAuthParam(tt.protocol, tt.param, msg, tt.perm, tt.rpID)
		if got := statusOrOK(err); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
	if !f.a.protected() {
		t.Error("protected() false with a PIN set")
	}
	a := newSoftkey(t, Config{})
	if a.protected() {
		t.Error("protected() true on a fresh softkey")
	}
	if !newSoftkey(t, Config{UV: UVPass}).protected() {
		t.Error("protected() false with built-in UV")
	}
	st := store.NewMemory(store.Meta{})
	updateSettings(t, st, func(s *store.Settings) { s.AlwaysUV = true })
	if !newSoftkeyOn(t, st, Config{}).protected() {
		t.Error("protected() false with alwaysUv")
	}
}

func statusOrOK(err error) ctap2.StatusError {
	if err == nil {
		return ctap2.StatusOK
	}
	return statusOf(err)
}

// TestProtectedMakeCredential: with a PIN, non-discoverable credentials need no
// UV (makeCredUvNotRqd), discoverable ones do; assertions without UV carry no UV
// flag and no user names.
func TestProtectedMakeCredential(t *testing.T) {
	f := newPINFixture(t, 2, Config{})
	if f.creds["a.example"].auth.Flags&ctap2.FlagUV != 0 {
		t.Error("makeCredential without a token has the UV flag")
	}
	st, _ := call(t, f.a, ctap2.CmdMakeCredential, residentRequest("a.example", []byte("alice")))
	wantStatus(t, "discoverable makeCredential without UV", st, ctap2.ErrPUATRequired)
	req := residentRequest("a.example", []byte("alice"))
	req.Options.UV = ctap2.Bool(false)
	st, _ = call(t, f.a, ctap2.CmdMakeCredential, req)
	wantStatus(t, "discoverable makeCredential with uv=false", st, ctap2.ErrPUATRequired)
	req.Options.UV = ctap2.Bool(true)
	st, _ = call(t, f.a, ctap2.CmdMakeCredential, req)
	wantStatus(t, "uv=true without built-in UV", st, ctap2.ErrInvalidOption)

	// uv=true beside a pinUvAuthParam is ignored, not refused.
	tok := f.h.mustToken("1234", permMC, "a.example")
	c := makeCredential(t, f.a, protectMC(req, tok))
	if c.auth.Flags&ctap2.FlagUV == 0 {
		t.Error("discoverable makeCredential with a token lacks UV")
	}

	resp, ad := getAssertion(t, f.a, gaRequest("a.example"))
	if ad.Flags&ctap2.FlagUV != 0 {
		t.Error("getAssertion without UV has the UV flag")
	}
	if resp.User == nil || resp.User.Name != "" || resp.User.DisplayName != "" {
		t.Errorf("user %+v without UV, want the ID only", resp.User)
	}
	if on, _ := info(t, f.a).Option("makeCredUvNotRqd"); !on {
		t.Error("makeCredUvNotRqd not advertised")
	}
}

// TestUserNamesOnlyWithUV: name and displayName of discoverable credentials only
// come with user verification, in getAssertion and getNextAssertion.
func TestUserNamesOnlyWithUV(t *testing.T) {
	f := newPINFixture(t, 1, Config{})
	for _, u := range []string{"alice", "bob"} {
		tok := f.h.mustToken("1234", permMC, "a.example")
		makeCredential(t, f.a, protectMC(residentRequest("a.example", []byte(u)), tok))
	}
	check := func(withUV bool) {
		t.Helper()
		req := gaRequest("a.example")
		if withUV {
			protectGA(req, f.h.mustToken("1234", permGA, "a.example"))
		}
		first, _ := getAssertion(t, f.a, req)
		next, ad := getNextAssertion(t, f.a)
		if (ad.Flags&ctap2.FlagUV != 0) != withUV {
			t.Errorf("getNextAssertion flags %v with UV %v", ad.Flags, withUV)
		}
		for _, r := range []*ctap2.GetAssertionResponse{first, next} {
			u := r.User
			named := u != nil && u.Name == "user-"+string(u.ID) && u.DisplayName == "User "+string(u.ID)
			if u == nil || len(u.ID) == 0 || named != withUV || (!withUV && (u.Name != "" || u.DisplayName != "")) {
				t.Errorf("UV %v: user %+v", withUV, u)
			}
		}
	}
	check(false)
	check(true)
}

// TestZeroLengthPinUvAuthParamWithPIN: the touch probe answers PIN_INVALID once a
// PIN is set.
func TestZeroLengthPinUvAuthParamWithPIN(t *testing.T) {
	var touches atomic.Int32
	f := newPINFixture(t, 2, Config{PresenceFunc: func(context.Context, string) (bool, error) {
		touches.Add(1)
		return true, nil
	}})
	before := touches.Load()
	st, _ := call(t, f.a, ctap2.CmdMakeCredential, with(rawMC(), 8, []byte{}))
	wantStatus(t, "makeCredential probe", st, ctap2.ErrPINInvalid)
	st, _ = call(t, f.a, ctap2.CmdGetAssertion, with(rawGA(), 6, []byte{}))
	wantStatus(t, "getAssertion probe", st, ctap2.ErrPINInvalid)
	if n := touches.Load() - before; n != 2 {
		t.Errorf("%d touches, want 2", n)
	}
	f.h.wantRetries("after probes", 8, false)
}

// TestPINTokenNeedsTouch: a PIN proves who the user is, not that they are present:
// makeCredential and getAssertion with a PIN token still ask for a touch, and a
// declined touch is OPERATION_DENIED (unlike a built-in UV token).
func TestPINTokenNeedsTouch(t *testing.T) {
	var touches atomic.Int32
	var deny atomic.Bool
	f := newPINFixture(t, 2, Config{PresenceFunc: func(context.Context, string) (bool, error) {
		touches.Add(1)
		return !deny.Load(), nil
	}})
	before := touches.Load()
	wantStatus(t, "makeCredential with a PIN token", f.mc(t, "a.example", f.h.mustToken("1234", permMC, "a.example")), ctap2.StatusOK)
	wantStatus(t, "getAssertion with a PIN token", f.ga(t, "a.example", f.h.mustToken("1234", permGA, "a.example"), true), ctap2.StatusOK)
	if n := touches.Load() - before; n != 2 {
		t.Fatalf("%d touches, want 2", n)
	}
	deny.Store(true)
	wantStatus(t, "makeCredential, touch declined", f.mc(t, "a.example", f.h.mustToken("1234", permMC, "a.example")), ctap2.ErrOperationDenied)
	wantStatus(t, "getAssertion, touch declined", f.ga(t, "a.example", f.h.mustToken("1234", permGA, "a.example"), true), ctap2.ErrOperationDenied)
}
