package softkey

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// cfgReq builds an authenticatorConfig request by hand: subCommandParams (nil:
// none) encoded once and, with tok, a pinUvAuthParam over 32×0xFF || 0x0D ||
// subCommand || exactly those bytes.
func cfgReq(t testing.TB, sub ctap2.ConfigSubcommand, params any, tok *ctap2.PINToken) map[int]any {
	t.Helper()
	m := map[int]any{1: uint(sub)}
	var enc []byte
	if params != nil {
		enc = mustMarshal(t, params)
		m[2] = ctap2.RawMessage(enc)
	}
	if tok != nil {
		msg := append(bytes.Repeat([]byte{0xff}, 32), 0x0d, byte(sub))
		m[3] = tok.Protocol.Version()
		m[4] = tok.Protocol.Authenticate(tok.Token, append(msg, enc...))
	}
	return m
}

func cfgSend(t testing.TB, a *Authenticator, req any) ctap2.StatusError {
	t.Helper()
	st, body := call(t, a, ctap2.CmdConfig, req)
	if st == ctap2.StatusOK && len(body) != 0 {
		t.Fatalf("authenticatorConfig answered %x, want an empty response", body)
	}
	return st
}

// minPIN is a setMinPINLength subCommandParams map.
func minPIN(newMin int, rpIDs []string, force bool) map[int]any {
	m := map[int]any{}
	if newMin > 0 {
		m[1] = newMin
	}
	if rpIDs != nil {
		m[2] = rpIDs
	}
	if force {
		m[3] = true
	}
	return m
}

// TestConfigUnprotected: without a PIN (nor built-in UV, nor alwaysUv) config
// needs no auth; every change is in the store at once and survives a restart.
// Once alwaysUv is on the authenticator is protected, and config wants a token.
func TestConfigUnprotected(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{})
	wantStatus(t, "enableEnterpriseAttestation", cfgSend(t, a, cfgReq(t, ctap2.ConfigEnableEnterpriseAttestation, nil, nil)), ctap2.StatusOK)
	wantStatus(t, "setMinPINLength", cfgSend(t, a, cfgReq(t, ctap2.ConfigSetMinPINLength, minPIN(6, []string{"a.example"}, false), nil)), ctap2.StatusOK)
	// A pinUvAuthParam is ignored when none is needed.
	junk := cfgReq(t, ctap2.ConfigToggleAlwaysUV, nil, nil)
	junk[3], junk[4] = 2, make([]byte, 32)
	wantStatus(t, "toggleAlwaysUv", cfgSend(t, a, junk), ctap2.StatusOK)
	s := settingsOf(t, st)
	if !s.EnterpriseAttestation || !s.AlwaysUV || s.MinPINLength != 6 || !slices.Equal(s.MinPINLengthRPIDs, []string{"a.example"}) || s.ForcePINChange {
		t.Fatalf("stored settings %+v", s)
	}
	i := info(t, a)
	if !i.Options["ep"] || !i.Options["alwaysUv"] || i.MinPINLength != 6 {
		t.Fatalf("getInfo options %v, minPINLength %d", i.Options, i.MinPINLength)
	}

	// A restart keeps all of it.
	b := newSoftkeyOn(t, st, Config{})
	i = info(t, b)
	if !i.Options["ep"] || !i.Options["alwaysUv"] || i.MinPINLength != 6 {
		t.Fatalf("getInfo after restart: options %v, minPINLength %d", i.Options, i.MinPINLength)
	}
	// alwaysUv protects the authenticator: no more config without a token, and
	// without a PIN there is none to get (the platform must set a PIN first).
	wantStatus(t, "toggleAlwaysUv under alwaysUv", cfgSend(t, b, cfgReq(t, ctap2.ConfigToggleAlwaysUV, nil, nil)), ctap2.ErrPUATRequired)
	h := newPINHost(t, b, 2)
	h.mustSetPIN("123456")
	wantStatus(t, "toggleAlwaysUv with an acfg token", cfgSend(t, b, cfgReq(t, ctap2.ConfigToggleAlwaysUV, nil, h.mustToken("123456", permACFG, ""))), ctap2.StatusOK)
	if settingsOf(t, st).AlwaysUV {
		t.Fatal("alwaysUv still on")
	}
}

// TestConfigProtected: with a PIN, config needs a pinUvAuthParam over the exact
// message from a token with the acfg permission; nothing changes otherwise.
func TestConfigProtected(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		st := persistentStore()
		a := newSoftkeyOn(t, st, Config{})
		h := newPINHost(t, a, v)
		h.mustSetPIN("1234")
		before := settingsOf(t, st)
		unchanged := func(what string) {
			t.Helper()
			if after := settingsOf(t, st); !reflect.DeepEqual(before, after) {
				t.Fatalf("%s changed the settings: %+v -> %+v", what, before, after)
			}
		}
		for _, sub := range []ctap2.ConfigSubcommand{ctap2.ConfigEnableEnterpriseAttestation, ctap2.ConfigToggleAlwaysUV, ctap2.ConfigSetMinPINLength} {
			var params any
			if sub == ctap2.ConfigSetMinPINLength {
				params = minPIN(8, nil, false)
			}
			wantStatus(t, "no pinUvAuthParam", cfgSend(t, a, cfgReq(t, sub, params, nil)), ctap2.ErrPUATRequired)
			for _, perms := range []ctap2.Permission{permMCGA, permCM, permLBW, permCM | permLBW | permMCGA} {
				tok := h.mustToken("1234", perms, "")
				wantStatus(t, "a token without acfg", cfgSend(t, a, cfgReq(t, sub, params, tok)), ctap2.ErrPINAuthInvalid)
			}
			tok := h.mustToken("1234", permACFG, "")
			req := cfgReq(t, sub, params, tok)
			delete(req, 3)
			wantStatus(t, "no pinUvAuthProtocol", cfgSend(t, a, req), ctap2.ErrMissingParameter)
			req = cfgReq(t, sub, params, tok)
			req[3] = 7
			wantStatus(t, "pinUvAuthProtocol 7", cfgSend(t, a, req), ctap2.ErrInvalidParameter)
			// A MAC for another subcommand, or the same MAC over other params.
			other := ctap2.ConfigToggleAlwaysUV
			if sub == other {
				other = ctap2.ConfigEnableEnterpriseAttestation
			}
			req = cfgReq(t, sub, params, tok)
			req[4] = cfgReq(t, other, nil, tok)[4]
			wantStatus(t, "a MAC for another subcommand", cfgSend(t, a, req), ctap2.ErrPINAuthInvalid)
			if params != nil {
				req = cfgReq(t, sub, params, tok)
				req[2] = ctap2.RawMessage(mustMarshal(t, minPIN(9, nil, false)))
				wantStatus(t, "a MAC over other params", cfgSend(t, a, req), ctap2.ErrPINAuthInvalid)
			}
			// A MAC without the 32×0xFF || 0x0D prefix (credMgmt style).
			req = cfgReq(t, sub, params, tok)
			var enc []byte
			if params != nil {
				enc = mustMarshal(t, params)
			}
			req[4] = tok.Protocol.Authenticate(tok.Token, append([]byte{byte(sub)}, enc...))
			wantStatus(t, "a MAC without the prefix", cfgSend(t, a, req), ctap2.ErrPINAuthInvalid)
			unchanged("refused config commands")
		}

		// The right token, through ctap2's host Client.
		ctx := context.Background()
		c := hostClient(a)
		tok := h.mustToken("1234", permACFG, "")
		if err := c.EnableEnterpriseAttestation(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if err := c.ToggleAlwaysUV(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if err := c.SetMinPINLength(ctx, tok, 6, []string{"a.example", "b.example"}, false); err != nil {
			t.Fatal(err)
		}
		s := settingsOf(t, st)
		if !s.EnterpriseAttestation || !s.AlwaysUV || s.MinPINLength != 6 || len(s.MinPINLengthRPIDs) != 2 || !s.ForcePINChange {
			t.Fatalf("settings %+v; want ep, alwaysUv, minimum 6 for two RPs, and a forced change of the 4-digit PIN", s)
		}

		// After a restart (a new power cycle) the settings hold; the forced change
		// comes first.
		b := newSoftkeyOn(t, st, Config{})
		hb := newPINHost(t, b, v)
		i := info(t, b)
		if !i.Options["ep"] || !i.Options["alwaysUv"] || i.MinPINLength != 6 || !i.ForcePINChange {
			t.Fatalf("getInfo after restart: %v, minPINLength %d, forcePINChange %v", i.Options, i.MinPINLength, i.ForcePINChange)
		}
		if _, st := hb.token("1234", permACFG, ""); st != ctap2.ErrPINPolicyViolation {
			t.Fatalf("token before the forced change: %v, want PIN_POLICY_VIOLATION", st)
		}
		wantStatus(t, "changePIN to 5 digits under minimum 6", hb.changePIN("1234", "12345"), ctap2.ErrPINPolicyViolation)
		wantStatus(t, "changePIN to 6 digits", hb.changePIN("1234", "123456"), ctap2.StatusOK)
		tok = hb.mustToken("123456", permACFG, "")
		wantStatus(t, "toggleAlwaysUv after restart", cfgSend(t, b, cfgReq(t, ctap2.ConfigToggleAlwaysUV, nil, tok)), ctap2.StatusOK)
		if settingsOf(t, st).AlwaysUV {
			t.Fatal("alwaysUv not toggled off")
		}
	})
}

// TestSetMinPINLength: the minimum only grows (until a reset); the RP ID list is
// capped; forceChangePin needs a PIN; a minimum above the current PIN's length
// forces a change. A refused request changes nothing.
func TestSetMinPINLength(t *testing.T) {
	st := persistentStore()
	clock := newClock()
	a := newSoftkeyOn(t, st, Config{Now: clock.Now})
	set := func(params any) ctap2.StatusError {
		t.Helper()
		return cfgSend(t, a, cfgReq(t, ctap2.ConfigSetMinPINLength, params, nil))
	}
	wantStatus(t, "forceChangePin without a PIN", set(minPIN(5, nil, true)), ctap2.ErrPINNotSet)
	if s := settingsOf(t, st); s.MinPINLength != 0 || s.ForcePINChange {
		t.Fatalf("a refused setMinPINLength changed %+v", s)
	}
	wantStatus(t, "no params", set(nil), ctap2.StatusOK)
	wantStatus(t, "empty params", set(map[int]any{}), ctap2.StatusOK)
	wantStatus(t, "the default, 4", set(minPIN(4, nil, false)), ctap2.StatusOK)
	wantStatus(t, "shrinking below the default", set(minPIN(3, nil, false)), ctap2.ErrPINPolicyViolation)
	wantStatus(t, "5", set(minPIN(5, nil, false)), ctap2.StatusOK)
	wantStatus(t, "back to 4", set(minPIN(4, nil, false)), ctap2.ErrPINPolicyViolation)
	wantStatus(t, "above 63", set(minPIN(64, nil, false)), ctap2.ErrPINPolicyViolation)
	wantStatus(t, "a huge value", set(map[int]any{1: uint64(1) << 63}), ctap2.ErrPINPolicyViolation)
	nine := []string{"1.example", "2.example", "3.example", "4.example", "5.example", "6.example", "7.example", "8.example", "9.example"}
	wantStatus(t, "more RP IDs than maxRPIDsForSetMinPINLength", set(minPIN(6, nine, false)), ctap2.ErrKeyStoreFull)
	if s := settingsOf(t, st); s.MinPINLength != 5 || s.MinPINLengthRPIDs != nil {
		t.Fatalf("refused requests changed the settings: %+v", s)
	}
	if got := info(t, a).MaxRPIDsForSetMinPINLength; got != 8 {
		t.Fatalf("maxRPIDsForSetMinPINLength %d, want 8", got)
	}
	wantStatus(t, "8 RP IDs", set(minPIN(0, nine[:8], false)), ctap2.StatusOK)
	wantStatus(t, "an empty list keeps them", set(minPIN(0, []string{}, false)), ctap2.StatusOK)
	if s := settingsOf(t, st); s.MinPINLength != 5 || len(s.MinPINLengthRPIDs) != 8 {
		t.Fatalf("settings %+v", s)
	}
	wantStatus(t, "a new list replaces them", set(minPIN(0, []string{"z.example"}, false)), ctap2.StatusOK)
	if s := settingsOf(t, st); !slices.Equal(s.MinPINLengthRPIDs, []string{"z.example"}) {
		t.Fatalf("RP IDs %q", s.MinPINLengthRPIDs)
	}
	for _, tc := range []struct {
		name   string
		params any
		want   ctap2.StatusError
	}{
		{"params as an array", []int{6}, ctap2.ErrCBORUnexpectedType},
		{"newMinPINLength as text", map[int]any{1: "6"}, ctap2.ErrCBORUnexpectedType},
		{"negative newMinPINLength", map[int]any{1: -6}, ctap2.ErrCBORUnexpectedType},
		{"RP IDs as bytes", map[int]any{2: []byte("a.example")}, ctap2.ErrCBORUnexpectedType},
		{"forceChangePin as an int", map[int]any{3: 1}, ctap2.ErrCBORUnexpectedType},
	} {
		if st := set(tc.params); st != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
		}
	}

	// With the PIN "123456": a minimum of 6 keeps it, 7 forces a change.
	h := newPINHost(t, a, 2)
	wantStatus(t, "setPIN of 4 digits under minimum 5", h.setPIN("1234"), ctap2.ErrPINPolicyViolation)
	h.mustSetPIN("123456")
	tok := h.mustToken("123456", permACFG, "")
	wantStatus(t, "6", cfgSend(t, a, cfgReq(t, ctap2.ConfigSetMinPINLength, minPIN(6, nil, false), tok)), ctap2.StatusOK)
	if settingsOf(t, st).ForcePINChange {
		t.Fatal("minimum 6 forces a change of a 6-digit PIN")
	}
	wantStatus(t, "6 again, with forceChangePin", cfgSend(t, a, cfgReq(t, ctap2.ConfigSetMinPINLength, minPIN(0, nil, true), tok)), ctap2.StatusOK)
	if !settingsOf(t, st).ForcePINChange || !info(t, a).ForcePINChange {
		t.Fatal("forceChangePin did not set forcePINChange")
	}
	wantStatus(t, "changePIN to the same PIN", h.changePIN("123456", "123456"), ctap2.ErrPINPolicyViolation)
	wantStatus(t, "changePIN", h.changePIN("123456", "654321"), ctap2.StatusOK)
	tok = h.mustToken("654321", permACFG, "")
	wantStatus(t, "7", cfgSend(t, a, cfgReq(t, ctap2.ConfigSetMinPINLength, minPIN(7, nil, false), tok)), ctap2.StatusOK)
	if s := settingsOf(t, st); !s.ForcePINChange || s.MinPINLength != 7 {
		t.Fatalf("minimum 7 above a 6-digit PIN: %+v", s)
	}

	// Reset (within its window after power-up) brings the defaults back.
	b := newSoftkeyOn(t, st, Config{Now: clock.Now})
	if err := b.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := settingsOf(t, st); !reflect.DeepEqual(s, store.DefaultSettings()) {
		t.Fatalf("settings after reset %+v", s)
	}
	i := info(t, b)
	if i.MinPINLength != 4 || i.Options["ep"] || i.Options["alwaysUv"] || i.ForcePINChange {
		t.Fatalf("getInfo after reset: %v, minPINLength %d", i.Options, i.MinPINLength)
	}
}

// TestConfigErrors: subcommands the softkey does not have, missing ones, and a
// store that cannot take the change.
func TestConfigErrors(t *testing.T) {
	a := newSoftkey(t, Config{})
	for _, tc := range []struct {
		name string
		req  any
		want ctap2.StatusError
	}{
		{"no subCommand", map[int]any{}, ctap2.ErrMissingParameter},
		{"subCommand 0", map[int]any{1: 0}, ctap2.ErrInvalidSubcommand},
		{"subCommand 4", map[int]any{1: 4}, ctap2.ErrInvalidSubcommand},
		{"vendorPrototype", map[int]any{1: 0xff, 2: map[int]any{1: 1}}, ctap2.ErrInvalidSubcommand},
		{"subCommand as text", map[int]any{1: "toggleAlwaysUv"}, ctap2.ErrCBORUnexpectedType},
		{"subCommand negative", map[int]any{1: -2}, ctap2.ErrCBORUnexpectedType},
	} {
		if st := cfgSend(t, a, tc.req); st != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
		}
	}
	st, _ := callRaw(t, a, []byte{byte(ctap2.CmdConfig)})
	wantStatus(t, "no params at all", st, ctap2.ErrMissingParameter)
	if s := settingsOf(t, a.st); !reflect.DeepEqual(s, store.DefaultSettings()) {
		t.Fatalf("settings changed: %+v", s)
	}

	fs := &settingsFailStore{Store: store.NewMemory(store.Meta{})}
	b := newSoftkeyOn(t, fs, Config{})
	fs.fail.Store(true)
	wantStatus(t, "toggleAlwaysUv on a full disk", cfgSend(t, b, cfgReq(t, ctap2.ConfigToggleAlwaysUV, nil, nil)), ctap2.ErrOther)
	fs.fail.Store(false)
	if info(t, b).Options["alwaysUv"] {
		t.Fatal("alwaysUv on although it could not be stored")
	}

	// The Go API.
	ctx := context.Background()
	if err := b.AuthenticatorConfig(ctx, &ctap2.ConfigRequest{SubCommand: ctap2.ConfigToggleAlwaysUV}); err != nil {
		t.Fatal(err)
	}
	if !settingsOf(t, fs).AlwaysUV {
		t.Fatal("AuthenticatorConfig did not toggle alwaysUv")
	}
	if err := b.AuthenticatorConfig(ctx, nil); !errors.Is(err, ctap2.ErrMissingParameter) {
		t.Fatalf("AuthenticatorConfig(nil): %v", err)
	}
}

// TestConfigUVAcfg: with built-in UV configured, a token from built-in UV may carry
// acfg (getInfo uvAcfg), and the authenticator counts as protected without a PIN.
func TestConfigUVAcfg(t *testing.T) {
	a := newSoftkey(t, Config{UV: UVPass})
	if !info(t, a).Options["uvAcfg"] {
		t.Fatal("uvAcfg not offered with built-in UV")
	}
	wantStatus(t, "toggleAlwaysUv without auth", cfgSend(t, a, cfgReq(t, ctap2.ConfigToggleAlwaysUV, nil, nil)), ctap2.ErrPUATRequired)
	h := newPINHost(t, a, 2)
	tok, st := h.uvToken(permACFG, "")
	wantStatus(t, "UV token with acfg", st, ctap2.StatusOK)
	wantStatus(t, "toggleAlwaysUv with it", cfgSend(t, a, cfgReq(t, ctap2.ConfigToggleAlwaysUV, nil, tok)), ctap2.StatusOK)
	if !info(t, a).Options["alwaysUv"] {
		t.Fatal("alwaysUv not on")
	}
}

// TestEnterpriseAttestation: makeCredential's enterpriseAttestation is refused
// until enableEnterpriseAttestation turned "ep" on; then 1 and 2 get the batch
// attestation (packed, with x5c) and epAtt, other values INVALID_OPTION. A softkey
// without a batch key answers with its regular attestation and no epAtt.
func TestEnterpriseAttestation(t *testing.T) {
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := persistentStore()
	ca := newBatchCA(t, st.Meta().AAGUID, leafKey)
	cfg := Config{Attestation: AttestationSelf, BatchKey: leafKey, BatchCerts: [][]byte{ca.leafDER, ca.caDER}}
	a := newSoftkeyOn(t, st, cfg)
	ep := func(a *Authenticator, v int) (ctap2.StatusError, *ctap2.MakeCredentialResponse, map[int]ctap2.RawMessage) {
		t.Helper()
		req := mcRequest("a.example", []byte("u"))
		m := map[int]any{1: req.ClientDataHash, 2: req.RP, 3: req.User, 4: req.PubKeyCredParams}
		if v != 0 {
			m[10] = v
		}
		st, body := call(t, a, ctap2.CmdMakeCredential, m)
		if st != ctap2.StatusOK {
			return st, nil, nil
		}
		var resp ctap2.MakeCredentialResponse
		if err := ctap2.Unmarshal(body, &resp); err != nil {
			t.Fatal(err)
		}
		return st, &resp, rawMap[int](t, body)
	}
	for _, v := range []int{1, 2, 3} {
		if st, _, _ := ep(a, v); st != ctap2.ErrInvalidParameter {
			t.Fatalf("enterpriseAttestation %d with ep disabled: %v, want INVALID_PARAMETER", v, st)
		}
	}
	wantStatus(t, "enableEnterpriseAttestation", cfgSend(t, a, cfgReq(t, ctap2.ConfigEnableEnterpriseAttestation, nil, nil)), ctap2.StatusOK)
	b := newSoftkeyOn(t, st, cfg) // a restart keeps ep on
	if !info(t, b).Options["ep"] {
		t.Fatal("ep off after restart")
	}
	for _, v := range []int{1, 2} {
		st, resp, m := ep(b, v)
		wantStatus(t, "enterprise makeCredential", st, ctap2.StatusOK)
		res, err := resp.VerifyAttestation(hashOf("mc a.example u"))
		if err != nil {
			t.Fatalf("enterpriseAttestation %d: %v", v, err)
		}
		if res.Type != ctap2.AttestationBasic || len(res.Chain) != 2 || !res.Chain[0].Equal(ca.leaf) || !resp.EpAtt {
			t.Fatalf("enterpriseAttestation %d: type %v, %d certificates, epAtt %v", v, res.Type, len(res.Chain), resp.EpAtt)
		}
		if !bytes.Equal(m[4], []byte{0xf5}) {
			t.Fatalf("epAtt (key 4) is %x, want true", m[4])
		}
	}
	if st, _, _ := ep(b, 3); st != ctap2.ErrInvalidOption {
		t.Fatalf("enterpriseAttestation 3: %v, want INVALID_OPTION", st)
	}
	st2, resp, m := ep(b, 0)
	wantStatus(t, "makeCredential without enterpriseAttestation", st2, ctap2.StatusOK)
	if res, err := resp.VerifyAttestation(hashOf("mc a.example u")); err != nil || res.Type != ctap2.AttestationSelf {
		t.Fatalf("regular attestation with ep on: %v, %v", res, err)
	}
	if _, ok := m[4]; ok {
		t.Fatal("epAtt sent without an enterprise request")
	}

	// Without a batch key there is no enterprise attestation to give.
	c := newSoftkey(t, Config{})
	wantStatus(t, "enableEnterpriseAttestation", cfgSend(t, c, cfgReq(t, ctap2.ConfigEnableEnterpriseAttestation, nil, nil)), ctap2.StatusOK)
	st2, resp, m = ep(c, 2)
	wantStatus(t, "enterprise makeCredential without a batch key", st2, ctap2.StatusOK)
	if res, err := resp.VerifyAttestation(hashOf("mc a.example u")); err != nil || res.Type != ctap2.AttestationSelf {
		t.Fatalf("attestation without a batch key: %v, %v", res, err)
	}
	if _, ok := m[4]; ok {
		t.Fatal("epAtt without an enterprise attestation")
	}
}
