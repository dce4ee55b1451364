package softkey

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// countingPresence is a PresenceFunc that grants every touch and counts them.
func countingPresence(n *atomic.Int32) func(context.Context, string) (bool, error) {
	return func(context.Context, string) (bool, error) {
		n.Add(1)
		return true, nil
	}
}

// TestBuiltInUVPass: with UV "pass" the softkey advertises uv, issues tokens
// through built-in UV and honours uv=true, with no separate touch.
func TestBuiltInUVPass(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		var touches atomic.Int32
		a := newSoftkey(t, Config{UV: UVPass, PresenceFunc: countingPresence(&touches)})
		h := newPINHost(t, a, v)
		i := info(t, a)
		if on, _ := i.Option("uv"); !on {
			t.Fatal("uv option not true")
		}
		if on, present := i.Option("clientPin"); on || !present {
			t.Fatal("clientPin option should be false: no PIN set")
		}
		if n, st := h.uvRetries(); st != ctap2.StatusOK || n != 8 {
			t.Fatalf("getUVRetries: %d, %v", n, st)
		}

		tok, st := h.uvToken(permMCGA, "a.example")
		wantStatus(t, "UV token", st, ctap2.StatusOK)
		c := makeCredential(t, a, protectMC(residentRequest("a.example", []byte("alice")), tok))
		if c.auth.Flags&(ctap2.FlagUP|ctap2.FlagUV) != ctap2.FlagUP|ctap2.FlagUV {
			t.Errorf("flags %v, want UP and UV", c.auth.Flags)
		}
		if touches.Load() != 0 {
			t.Errorf("%d touches: the UV token's userPresent flag should stand for one", touches.Load())
		}
		st2, _ := call(t, a, ctap2.CmdMakeCredential, protectMC(mcRequest("a.example", []byte("bob")), tok))
		wantStatus(t, "second makeCredential with the UV token", st2, ctap2.ErrPINAuthInvalid)

		// uv=true: built-in UV in the request itself.
		req := residentRequest("a.example", []byte("carol"))
		req.Options.UV = ctap2.Bool(true)
		c = makeCredential(t, a, req)
		if c.auth.Flags&ctap2.FlagUV == 0 {
			t.Errorf("makeCredential uv=true: flags %v", c.auth.Flags)
		}
		ga := gaRequest("a.example")
		ga.Options = &ctap2.Options{UV: ctap2.Bool(true)}
		resp, ad := getAssertion(t, a, ga)
		if ad.Flags&ctap2.FlagUV == 0 || resp.User == nil || resp.User.Name == "" {
			t.Errorf("getAssertion uv=true: flags %v, user %+v", ad.Flags, resp.User)
		}
		if touches.Load() != 0 {
			t.Errorf("%d touches after built-in UV, want 0", touches.Load())
		}

		// Protected by UV alone: discoverable credentials need UV.
		st3, _ := call(t, a, ctap2.CmdMakeCredential, residentRequest("a.example", []byte("dave")))
		wantStatus(t, "discoverable makeCredential without UV", st3, ctap2.ErrPUATRequired)
	})
}

// TestBuiltInUVFail: every failed UV costs a persisted retry; at zero built-in UV
// is blocked, also after a restart; the PIN still works. A passing UV restores
// the retries.
func TestBuiltInUVFail(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{UV: UVFail})
	h := newPINHost(t, a, 2)
	h.mustSetPIN("1234")
	for i := 1; i <= 3; i++ {
		if _, s := h.uvToken(permGA, ""); s != ctap2.ErrUVInvalid {
			t.Fatalf("failing UV %d: %v, want UV_INVALID", i, s)
		}
		if n, _ := h.uvRetries(); n != uint(8-i) {
			t.Fatalf("uvRetries %d after %d failures", n, i)
		}
	}
	a.Close()
	a = newSoftkeyOn(t, st, Config{UV: UVFail})
	h = newPINHost(t, a, 2)
	if n, _ := h.uvRetries(); n != 5 {
		t.Fatalf("uvRetries %d after a restart, want 5", n)
	}
	req := mcRequest("a.example", []byte("u"))
	req.Options = &ctap2.Options{UV: ctap2.Bool(true)}
	s, _ := call(t, a, ctap2.CmdMakeCredential, req)
	wantStatus(t, "makeCredential uv=true, failing", s, ctap2.ErrUVInvalid)
	for i := 4; i > 1; i-- { // the makeCredential cost one
		if _, s := h.uvToken(permGA, ""); s != ctap2.ErrUVInvalid {
			t.Fatalf("failing UV with %d retries: %v", i, s)
		}
	}
	if _, s := h.uvToken(permGA, ""); s != ctap2.ErrUVBlocked {
		t.Fatalf("last failing UV: %v, want UV_BLOCKED", s)
	}
	if _, s := h.uvToken(permGA, ""); s != ctap2.ErrUVBlocked {
		t.Fatalf("UV when blocked: %v, want UV_BLOCKED", s)
	}
	ga := gaRequest("a.example")
	ga.Options = &ctap2.Options{UV: ctap2.Bool(true)}
	s, _ = call(t, a, ctap2.CmdGetAssertion, ga)
	wantStatus(t, "getAssertion uv=true, blocked", s, ctap2.ErrUVBlocked)
	if settingsOf(t, st).UVRetries != 0 {
		t.Fatal("stored uvRetries not 0")
	}
	h.mustToken("1234", permGA, "")
	h.wantRetries("PIN unaffected", 8, false)
	a.Close()

	// A blocked reader stays blocked even when it would now pass; reset clears it.
	a = newSoftkeyOn(t, st, Config{UV: UVPass})
	h = newPINHost(t, a, 2)
	if _, s := h.uvToken(permGA, ""); s != ctap2.ErrUVBlocked {
		t.Fatalf("passing UV when blocked: %v, want UV_BLOCKED", s)
	}
	s, _ = call(t, a, ctap2.CmdReset, nil)
	wantStatus(t, "reset", s, ctap2.StatusOK)
	if _, s := h.uvToken(permGA, ""); s != ctap2.StatusOK {
		t.Fatalf("UV after reset: %v", s)
	}

	// Failures below the limit are forgotten after a passing UV.
	st2 := persistentStore()
	a = newSoftkeyOn(t, st2, Config{UV: UVFail})
	newPINHost(t, a, 1).uvToken(permGA, "")
	a.Close()
	a = newSoftkeyOn(t, st2, Config{UV: UVPass})
	h = newPINHost(t, a, 1)
	if _, s := h.uvToken(permGA, ""); s != ctap2.StatusOK {
		t.Fatalf("passing UV: %v", s)
	}
	if n, _ := h.uvRetries(); n != 8 {
		t.Fatalf("uvRetries %d after a passing UV, want 8", n)
	}

	if _, err := New(store.NewMemory(store.Meta{}), Config{UV: "maybe"}); err == nil {
		t.Error("New accepted UV mode \"maybe\"")
	}
}

// TestAlwaysUV: alwaysUv forces UV on makeCredential (even non-discoverable) and
// on user-present getAssertion; without PIN or built-in UV the platform is told
// to set up a PIN (PUAT_REQUIRED); with built-in UV, UV happens by itself.
func TestAlwaysUV(t *testing.T) {
	alwaysUV := func(t *testing.T, cfg Config) (*Authenticator, store.Store, *madeCredential) {
		st := store.NewMemory(store.Meta{})
		maker := newSoftkeyOn(t, shared(st), Config{})
		c := makeCredential(t, maker, mcRequest("a.example", []byte("u")))
		updateSettings(t, st, func(s *store.Settings) { s.AlwaysUV = true })
		a := newSoftkeyOn(t, shared(st), cfg)
		if on, _ := info(t, a).Option("alwaysUv"); !on {
			t.Fatal("alwaysUv option not true")
		}
		return a, st, c
	}
	t.Run("no PIN", func(t *testing.T) {
		a, _, c := alwaysUV(t, Config{})
		s, _ := call(t, a, ctap2.CmdMakeCredential, mcRequest("a.example", []byte("v")))
		wantStatus(t, "makeCredential", s, ctap2.ErrPUATRequired)
		s, _ = call(t, a, ctap2.CmdGetAssertion, gaRequest("a.example", c.id))
		wantStatus(t, "getAssertion", s, ctap2.ErrPUATRequired)
		signCountOf(t, a, "a.example", c.id) // up=false stays allowed
	})
	t.Run("PIN", func(t *testing.T) {
		forProtocols(t, func(t *testing.T, v uint) {
			a, _, c := alwaysUV(t, Config{})
			h := newPINHost(t, a, v)
			h.mustSetPIN("1234")
			s, _ := call(t, a, ctap2.CmdMakeCredential, mcRequest("a.example", []byte("v")))
			wantStatus(t, "non-discoverable makeCredential without UV", s, ctap2.ErrPUATRequired)
			s, _ = call(t, a, ctap2.CmdGetAssertion, gaRequest("a.example", c.id))
			wantStatus(t, "getAssertion without UV", s, ctap2.ErrPUATRequired)
			made := makeCredential(t, a, protectMC(mcRequest("a.example", []byte("v")), h.mustToken("1234", permMC, "a.example")))
			if made.auth.Flags&ctap2.FlagUV == 0 {
				t.Error("makeCredential with a token lacks UV")
			}
			_, ad := getAssertion(t, a, protectGA(gaRequest("a.example", c.id), h.mustToken("1234", permGA, "a.example")))
			if ad.Flags&ctap2.FlagUV == 0 {
				t.Error("getAssertion with a token lacks UV")
			}
		})
	})
	t.Run("built-in UV", func(t *testing.T) {
		var touches atomic.Int32
		a, _, c := alwaysUV(t, Config{UV: UVPass, PresenceFunc: countingPresence(&touches)})
		made := makeCredential(t, a, mcRequest("a.example", []byte("v")))
		_, ad := getAssertion(t, a, gaRequest("a.example", c.id))
		if made.auth.Flags&ctap2.FlagUV == 0 || ad.Flags&ctap2.FlagUV == 0 {
			t.Errorf("flags %v and %v, want UV by built-in UV", made.auth.Flags, ad.Flags)
		}
		if touches.Load() != 0 {
			t.Errorf("%d touches, want 0 (UV stands for presence)", touches.Load())
		}
	})
	t.Run("built-in UV failing", func(t *testing.T) {
		a, _, _ := alwaysUV(t, Config{UV: UVFail})
		s, _ := call(t, a, ctap2.CmdMakeCredential, mcRequest("a.example", []byte("v")))
		wantStatus(t, "makeCredential", s, ctap2.ErrUVInvalid)
	})
}

// TestGetInfoPIN: what getInfo says about PIN/UV, and that it follows the settings.
func TestGetInfoPIN(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, shared(st), Config{})
	i := info(t, a)
	if !i.HasVersion("FIDO_2_0") || !i.HasVersion("FIDO_2_1") {
		t.Errorf("versions %q", i.Versions)
	}
	if !slices.Equal(i.PinUvAuthProtocols, []uint{2, 1}) {
		t.Errorf("pinUvAuthProtocols %v, want [2 1]", i.PinUvAuthProtocols)
	}
	if i.MinPINLength != 4 || i.MaxPINLength != 63 || i.ForcePINChange {
		t.Errorf("minPINLength %d, maxPINLength %d, forcePINChange %v", i.MinPINLength, i.MaxPINLength, i.ForcePINChange)
	}
	want := map[string]bool{"rk": true, "up": true, "plat": false, "clientPin": false, "pinUvAuthToken": true, "makeCredUvNotRqd": true}
	for name, on := range map[string]bool{"credMgmt": supportsCredMgmt, "credentialMgmtPreview": supportsCredMgmt,
		"authnrCfg": supportsAuthnrCfg, "largeBlobs": supportsLargeBlobs} {
		if on {
			want[name] = true
		}
	}
	if supportsAuthnrCfg {
		want["alwaysUv"], want["setMinPINLength"], want["ep"] = false, true, false
	}
	for name, v := range want {
		if got, present := i.Option(name); got != v || !present {
			t.Errorf("option %s = %v (present %v), want %v", name, got, present, v)
		}
	}
	for name := range i.Options {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected option %s", name)
		}
	}

	updateSettings(t, st, func(s *store.Settings) {
		s.MinPINLength, s.ForcePINChange, s.AlwaysUV = 8, true, true
		s.PINHash, s.PINCodePoints = pinHash("12345678"), 8
	})
	i = info(t, a)
	if i.MinPINLength != 8 || !i.ForcePINChange || !i.Options["alwaysUv"] || !i.Options["clientPin"] {
		t.Errorf("getInfo after settings change: minPINLength %d, forcePINChange %v, options %v", i.MinPINLength, i.ForcePINChange, i.Options)
	}
	// The Go API result does not alias engine state.
	gi, err := a.Info()
	if err != nil {
		t.Fatal(err)
	}
	gi.Options["clientPin"] = false
	gi.PinUvAuthProtocols[0] = 9
	if i := info(t, a); !i.Options["clientPin"] || i.PinUvAuthProtocols[0] != 2 {
		t.Error("editing an Info result changed getInfo")
	}

	u := info(t, newSoftkey(t, Config{UV: UVFail}))
	if on, _ := u.Option("uv"); !on {
		t.Error("uv option not true with UV fail (configured, failing)")
	}
}
