package softkey

import (
	"context"
	"maps"
	"sync/atomic"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// rawMC is a valid makeCredential parameter map that cases edit freely: the typed
// request struct cannot express missing required fields or values of the wrong type.
func rawMC() map[int]any {
	return map[int]any{
		1: hashOf("raw"),
		2: map[string]any{"id": "a.example", "name": "A"},
		3: map[string]any{"id": []byte("user"), "name": "u", "displayName": "U"},
		4: []any{map[string]any{"type": "public-key", "alg": -7}},
	}
}

func rawGA() map[int]any {
	return map[int]any{
		1: "a.example",
		2: hashOf("raw"),
	}
}

func with(m map[int]any, k int, v any) map[int]any {
	m = maps.Clone(m)
	m[k] = v
	return m
}

func without(m map[int]any, k int) map[int]any {
	m = maps.Clone(m)
	delete(m, k)
	return m
}

func opts(kv ...any) map[string]any {
	m := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestMakeCredentialErrors(t *testing.T) {
	mc := rawMC()
	tests := []struct {
		name   string
		params map[int]any
		want   ctap2.StatusError
	}{
		{"valid", mc, ctap2.StatusOK},
		{"rk true", with(mc, 7, opts("rk", true)), ctap2.StatusOK},
		{"up true", with(mc, 7, opts("up", true)), ctap2.StatusOK},
		{"uv false", with(mc, 7, opts("uv", false)), ctap2.StatusOK},
		{"unknown option ignored", with(mc, 7, opts("foo", true)), ctap2.StatusOK},
		{"unknown parameter ignored", with(mc, 0x30, "x"), ctap2.StatusOK},
		{"up false", with(mc, 7, opts("up", false)), ctap2.ErrInvalidOption},
		{"uv true", with(mc, 7, opts("uv", true)), ctap2.ErrInvalidOption},
		{"no supported alg", with(mc, 4, []any{map[string]any{"type": "public-key", "alg": -257}, map[string]any{"type": "public-key", "alg": -36}}), ctap2.ErrUnsupportedAlgorithm},
		{"only other types", with(mc, 4, []any{map[string]any{"type": "secret-key", "alg": -7}}), ctap2.ErrUnsupportedAlgorithm},
		{"empty pubKeyCredParams", with(mc, 4, []any{}), ctap2.ErrUnsupportedAlgorithm},
		{"missing clientDataHash", without(mc, 1), ctap2.ErrMissingParameter},
		{"missing rp", without(mc, 2), ctap2.ErrMissingParameter},
		{"missing user", without(mc, 3), ctap2.ErrMissingParameter},
		{"missing pubKeyCredParams", without(mc, 4), ctap2.ErrMissingParameter},
		{"rp without id", with(mc, 2, map[string]any{"name": "A"}), ctap2.ErrMissingParameter},
		{"user without id", with(mc, 3, map[string]any{"name": "u"}), ctap2.ErrMissingParameter},
		{"clientDataHash 31 bytes", with(mc, 1, make([]byte, 31)), ctap2.ErrInvalidParameter},
		{"clientDataHash 33 bytes", with(mc, 1, make([]byte, 33)), ctap2.ErrInvalidParameter},
		{"user id 64 bytes", with(mc, 3, map[string]any{"id": make([]byte, 64)}), ctap2.StatusOK},
		{"user id 65 bytes", with(mc, 3, map[string]any{"id": make([]byte, 65)}), ctap2.ErrInvalidLength},
		{"user id empty", with(mc, 3, map[string]any{"id": []byte{}}), ctap2.ErrInvalidLength},
		{"pinUvAuthParam without protocol", with(mc, 8, make([]byte, 16)), ctap2.ErrMissingParameter},
		{"pinUvAuthParam with protocol 3", with(with(mc, 8, make([]byte, 16)), 9, 3), ctap2.ErrInvalidParameter},
		{"pinUvAuthParam with protocol 1, no PIN", with(with(mc, 8, make([]byte, 16)), 9, 1), ctap2.ErrPINNotSet},
		{"enterpriseAttestation 1", with(mc, 10, 1), ctap2.ErrInvalidParameter},
		{"enterpriseAttestation 2", with(mc, 10, 2), ctap2.ErrInvalidParameter},
		{"rp is an int", with(mc, 2, 7), ctap2.ErrCBORUnexpectedType},
		{"user is text", with(mc, 3, "user"), ctap2.ErrCBORUnexpectedType},
		{"pubKeyCredParams is a map", with(mc, 4, map[string]any{"type": "public-key", "alg": -7}), ctap2.ErrCBORUnexpectedType},
		{"options is an array", with(mc, 7, []any{true}), ctap2.ErrCBORUnexpectedType},
		{"option up is an int", with(mc, 7, opts("up", 1)), ctap2.ErrCBORUnexpectedType},
		{"clientDataHash is text", with(mc, 1, "hash"), ctap2.ErrCBORUnexpectedType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newSoftkey(t, Config{})
			got, _ := call(t, a, ctap2.CmdMakeCredential, tt.params)
			wantStatus(t, "makeCredential", got, tt.want)
		})
	}
}

func TestGetAssertionErrors(t *testing.T) {
	ga := rawGA()
	tests := []struct {
		name   string
		params map[int]any
		want   ctap2.StatusError
	}{
		{"valid, nothing to find", ga, ctap2.ErrNoCredentials},
		{"rk true", with(ga, 5, opts("rk", true)), ctap2.ErrUnsupportedOption},
		{"rk false", with(ga, 5, opts("rk", false)), ctap2.ErrUnsupportedOption},
		{"uv true", with(ga, 5, opts("uv", true)), ctap2.ErrInvalidOption},
		{"missing rpId", without(ga, 1), ctap2.ErrMissingParameter},
		{"missing clientDataHash", without(ga, 2), ctap2.ErrMissingParameter},
		{"clientDataHash 31 bytes", with(ga, 2, make([]byte, 31)), ctap2.ErrInvalidParameter},
		{"pinUvAuthParam without protocol", with(ga, 6, make([]byte, 16)), ctap2.ErrMissingParameter},
		{"pinUvAuthParam with protocol 3", with(with(ga, 6, make([]byte, 32)), 7, 3), ctap2.ErrInvalidParameter},
		{"pinUvAuthParam with protocol 2, no PIN", with(with(ga, 6, make([]byte, 32)), 7, 2), ctap2.ErrPINNotSet},
		{"rpId is bytes", with(ga, 1, []byte("a.example")), ctap2.ErrCBORUnexpectedType},
		{"allowList is a map", with(ga, 3, map[string]any{}), ctap2.ErrCBORUnexpectedType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newSoftkey(t, Config{})
			got, _ := call(t, a, ctap2.CmdGetAssertion, tt.params)
			wantStatus(t, "getAssertion", got, tt.want)
		})
	}
}

// TestZeroLengthPinUvAuthParam: the CTAP 2.0 touch probe gets a touch, then
// PIN_NOT_SET; a declined touch is OPERATION_DENIED (CTAP 2.1 §6.1.2 step 1).
func TestZeroLengthPinUvAuthParam(t *testing.T) {
	for _, tc := range []struct {
		cmd    ctap2.Command
		params map[int]any
	}{
		{ctap2.CmdMakeCredential, with(rawMC(), 8, []byte{})},
		{ctap2.CmdGetAssertion, with(rawGA(), 6, []byte{})},
	} {
		t.Run(tc.cmd.String(), func(t *testing.T) {
			for _, consent := range []bool{true, false} {
				var touches atomic.Int32
				a := newSoftkey(t, Config{PresenceFunc: func(context.Context, string) (bool, error) {
					touches.Add(1)
					return consent, nil
				}})
				got, _ := call(t, a, tc.cmd, tc.params)
				want := ctap2.ErrPINNotSet
				if !consent {
					want = ctap2.ErrOperationDenied
				}
				wantStatus(t, "zero-length pinUvAuthParam", got, want)
				if touches.Load() != 1 {
					t.Errorf("%d touch requests, want 1", touches.Load())
				}
			}
		})
	}
}

// TestAlgorithmPreference: the first entry the softkey supports wins; entries of
// another credential type are skipped (CTAP 2.1 §6.1.2 step 3).
func TestAlgorithmPreference(t *testing.T) {
	p := func(typ string, alg ctap2.COSEAlgorithm) ctap2.CredentialParam {
		return ctap2.CredentialParam{Type: typ, Alg: alg}
	}
	pk := ctap2.CredentialType
	tests := []struct {
		name   string
		algs   []ctap2.COSEAlgorithm // Config.Algorithms; nil = default
		params []ctap2.CredentialParam
		want   ctap2.COSEAlgorithm
	}{
		{"ES384 first", nil, []ctap2.CredentialParam{p(pk, ctap2.AlgES384), p(pk, ctap2.AlgES256)}, ctap2.AlgES384},
		{"EdDSA first", nil, []ctap2.CredentialParam{p(pk, ctap2.AlgEdDSA), p(pk, ctap2.AlgES256)}, ctap2.AlgEdDSA},
		{"RS256 skipped", nil, []ctap2.CredentialParam{p(pk, ctap2.AlgRS256), p(pk, ctap2.AlgES384), p(pk, ctap2.AlgES256)}, ctap2.AlgES384},
		{"unknown alg skipped", nil, []ctap2.CredentialParam{p(pk, -36), p(pk, -47), p(pk, ctap2.AlgEdDSA)}, ctap2.AlgEdDSA},
		{"other type skipped", nil, []ctap2.CredentialParam{p("secret-key", ctap2.AlgES256), p(pk, ctap2.AlgES384), p(pk, ctap2.AlgES256)}, ctap2.AlgES384},
		{"configured algorithms only", []ctap2.COSEAlgorithm{ctap2.AlgES256}, []ctap2.CredentialParam{p(pk, ctap2.AlgEdDSA), p(pk, ctap2.AlgES384), p(pk, ctap2.AlgES256)}, ctap2.AlgES256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newSoftkey(t, Config{Algorithms: tt.algs})
			req := mcRequest("a.example", []byte("u"))
			req.PubKeyCredParams = tt.params
			c := makeCredential(t, a, req)
			if c.key.Alg != tt.want {
				t.Errorf("credential alg %v, want %v", c.key.Alg, tt.want)
			}
		})
	}

	a := newSoftkey(t, Config{Algorithms: []ctap2.COSEAlgorithm{ctap2.AlgES256}})
	got, _ := call(t, a, ctap2.CmdMakeCredential, mcRequest("a.example", []byte("u"), ctap2.AlgEdDSA, ctap2.AlgES384))
	wantStatus(t, "makeCredential with only unconfigured algorithms", got, ctap2.ErrUnsupportedAlgorithm)

	if _, err := New(store.NewMemory(store.Meta{}), Config{Algorithms: []ctap2.COSEAlgorithm{ctap2.AlgRS256}}); err == nil {
		t.Error("New accepted RS256, which the softkey cannot generate")
	}
}

func TestExcludeList(t *testing.T) {
	newPair := func(t *testing.T, presence PresencePolicy) (*Authenticator, *madeCredential, *madeCredential) {
		a := newSoftkey(t, Config{Presence: presence})
		// Credentials are made with presence granted; the policy applies afterwards.
		auto := newSoftkeyOn(t, shared(a.st), Config{})
		sealed := makeCredential(t, auto, mcRequest("a.example", []byte("sealed")))
		resident := makeCredential(t, auto, residentRequest("a.example", []byte("resident")))
		return a, sealed, resident
	}
	for _, presence := range []PresencePolicy{PresenceAuto, PresenceDeny} {
		t.Run(string(presence), func(t *testing.T) {
			a, sealed, resident := newPair(t, presence)
			for _, c := range []*madeCredential{sealed, resident} {
				for _, rk := range []bool{false, true} {
					req := mcRequest("a.example", []byte("new"))
					if rk {
						req = residentRequest("a.example", []byte("new"))
					}
					req.ExcludeList = []ctap2.CredentialDescriptor{
						{Type: ctap2.CredentialType, ID: []byte("foreign")},
						{Type: ctap2.CredentialType, ID: c.id},
					}
					got, _ := call(t, a, ctap2.CmdMakeCredential, req)
					wantStatus(t, "makeCredential with an excluded credential", got, ctap2.ErrCredentialExcluded)
				}
			}
			if n, _ := a.st.CountCredentials(); n != 1 {
				t.Errorf("store holds %d credentials after exclusions, want 1", n)
			}
		})
	}

	a, sealed, resident := newPair(t, PresenceAuto)
	for _, tc := range []struct {
		name string
		rpID string
		d    ctap2.CredentialDescriptor
	}{
		{"sealed, other RP", "b.example", ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: sealed.id}},
		{"resident, other RP", "b.example", ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: resident.id}},
		{"other type", "a.example", ctap2.CredentialDescriptor{Type: "secret-key", ID: sealed.id}},
		{"flipped bit", "a.example", ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: flip(sealed.id, 100)}},
	} {
		req := mcRequest(tc.rpID, []byte("new"))
		req.ExcludeList = []ctap2.CredentialDescriptor{tc.d}
		got, _ := call(t, a, ctap2.CmdMakeCredential, req)
		wantStatus(t, tc.name, got, ctap2.StatusOK)
	}

	// The exclusion collects a touch, so that a host cannot probe silently.
	var touches atomic.Int32
	b := newSoftkeyOn(t, shared(a.st), Config{PresenceFunc: func(context.Context, string) (bool, error) {
		touches.Add(1)
		return false, nil
	}})
	req := mcRequest("a.example", []byte("new"))
	req.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: sealed.id}}
	got, _ := call(t, b, ctap2.CmdMakeCredential, req)
	wantStatus(t, "excluded, touch declined", got, ctap2.ErrCredentialExcluded)
	if touches.Load() != 1 {
		t.Errorf("%d touch requests for an excluded credential, want 1", touches.Load())
	}
}
