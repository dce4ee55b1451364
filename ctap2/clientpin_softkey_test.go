package ctap2_test

// The host's clientPIN, tokens and extensions against the softkey, in process. The
// softkey is written from the spec separately from the host side, so each checks
// the other; the package is external because softkey imports ctap2.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// softDevice carries CBOR messages straight into a softkey.
type softDevice struct{ a *softkey.Authenticator }

func (d softDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	if cmd != transport.CmdCBOR {
		return nil, errors.New("softDevice: CBOR only")
	}
	return d.a.HandleCBOR(ctx, data, func(byte) {}), nil
}

func (d softDevice) Info() transport.DeviceInfo {
	return transport.DeviceInfo{URI: "soft:mem", Transport: "soft"}
}

func (d softDevice) Close() error { return nil }

func newSoftClient(t *testing.T, cfg softkey.Config) *ctap2.Client {
	t.Helper()
	a, err := softkey.New(store.NewMemory(store.Meta{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return ctap2.NewClient(softDevice{a})
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func mcReq(rpID string) *ctap2.MakeCredentialRequest {
	return &ctap2.MakeCredentialRequest{
		ClientDataHash:   hash("mc " + rpID),
		RP:               &ctap2.RPEntity{ID: rpID},
		User:             &ctap2.UserEntity{ID: []byte("user"), Name: "user"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
	}
}

func gaReq(rpID string, credID []byte) *ctap2.GetAssertionRequest {
	return &ctap2.GetAssertionRequest{
		RPID:           rpID,
		ClientDataHash: hash("ga " + rpID),
		AllowList:      []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: credID}},
	}
}

func wantPINError(t *testing.T, err error, status ctap2.StatusError, retries int) {
	t.Helper()
	var pe *ctap2.PINError
	if !errors.As(err, &pe) || !errors.Is(err, status) || pe.Retries != retries {
		t.Fatalf("err = %v, want %v with %d retries", err, status, retries)
	}
}

func authFlags(t *testing.T, authData []byte) ctap2.AuthFlags {
	t.Helper()
	ad, err := ctap2.ParseAuthData(authData)
	if err != nil {
		t.Fatal(err)
	}
	return ad.Flags
}

func TestClientPINSoftkey(t *testing.T) {
	ctx := context.Background()
	c := newSoftClient(t, softkey.Config{})
	if err := c.SetPIN(ctx, "123"); !errors.Is(err, ctap2.ErrBadPIN) {
		t.Fatalf("3-digit PIN: %v", err)
	}
	if err := c.SetPIN(ctx, "1234"); err != nil {
		t.Fatal(err)
	}
	if n, pc, err := c.PINRetries(ctx); n != 8 || pc || err != nil {
		t.Fatalf("PINRetries = %d, %v, %v", n, pc, err)
	}
	if err := c.SetPIN(ctx, "5678"); !errors.Is(err, ctap2.ErrPINAuthInvalid) {
		t.Errorf("SetPIN with a PIN set: %v", err)
	}
	_, err := c.PINToken(ctx, "4321", ctap2.PermMakeCredential, "a.example")
	wantPINError(t, err, ctap2.ErrPINInvalid, 7)

	// A protected makeCredential; the token cannot make a second one, nor one
	// for another RP.
	tok, err := c.PINToken(ctx, "1234", ctap2.PermMakeCredential|ctap2.PermGetAssertion, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	if v := tok.Protocol.Version(); v != 2 {
		t.Errorf("protocol %d, want 2", v)
	}
	other := mcReq("b.example")
	tok.ProtectMakeCredential(other)
	if _, err := c.MakeCredential(ctx, other); !errors.Is(err, ctap2.ErrPINAuthInvalid) {
		t.Errorf("token for a.example used for b.example: %v", err)
	}
	mc := mcReq("a.example")
	tok.ProtectMakeCredential(mc)
	resp, err := c.MakeCredential(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	if f := authFlags(t, resp.AuthData); !f.Has(ctap2.FlagUV | ctap2.FlagUP) {
		t.Errorf("protected makeCredential flags %v", f)
	}
	credID, _, err := resp.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.MakeCredential(ctx, mc); !errors.Is(err, ctap2.ErrPINAuthInvalid) {
		t.Errorf("token reused after a makeCredential: %v", err)
	}
	// Without a token the protected key refuses a discoverable credential (it may
	// allow non-discoverable ones: makeCredUvNotRqd).
	rk := mcReq("a.example")
	rk.Options = &ctap2.Options{RK: ctap2.Bool(true)}
	if _, err := c.MakeCredential(ctx, rk); !errors.Is(err, ctap2.ErrPUATRequired) {
		t.Errorf("unprotected discoverable makeCredential: %v", err)
	}

	// A ga-only token cannot make credentials; it signs with UV.
	tok, err = c.PINToken(ctx, "1234", ctap2.PermGetAssertion, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	mc = mcReq("a.example")
	tok.ProtectMakeCredential(mc)
	if _, err := c.MakeCredential(ctx, mc); !errors.Is(err, ctap2.ErrPINAuthInvalid) {
		t.Errorf("ga token used for makeCredential: %v", err)
	}
	ga := gaReq("a.example", credID)
	tok.ProtectGetAssertion(ga)
	gr, err := c.GetAssertion(ctx, ga)
	if err != nil {
		t.Fatal(err)
	}
	if f := authFlags(t, gr.AuthData); !f.Has(ctap2.FlagUV) {
		t.Errorf("protected getAssertion flags %v", f)
	}

	// changePIN: old PIN and tokens stop working.
	tok, err = c.PINToken(ctx, "1234", ctap2.PermGetAssertion, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	err = c.ChangePIN(ctx, "0000", "87654321")
	wantPINError(t, err, ctap2.ErrPINInvalid, 7)
	if err := c.ChangePIN(ctx, "1234", "87654321"); err != nil {
		t.Fatal(err)
	}
	ga = gaReq("a.example", credID)
	tok.ProtectGetAssertion(ga)
	if _, err := c.GetAssertion(ctx, ga); !errors.Is(err, ctap2.ErrPINAuthInvalid) {
		t.Errorf("token from before changePIN: %v", err)
	}
	if _, err := c.PINToken(ctx, "1234", ctap2.PermGetAssertion, ""); !errors.Is(err, ctap2.ErrPINInvalid) {
		t.Errorf("old PIN: %v", err)
	}
	if _, err := c.PINToken(ctx, "87654321", ctap2.PermGetAssertion, ""); err != nil {
		t.Errorf("new PIN: %v", err)
	}

	// Three wrong in a row: blocked until power cycle, retries reported.
	for i, want := range []ctap2.StatusError{ctap2.ErrPINInvalid, ctap2.ErrPINInvalid, ctap2.ErrPINAuthBlocked} {
		_, err := c.PINToken(ctx, "11111111", ctap2.PermGetAssertion, "")
		wantPINError(t, err, want, 7-i)
	}
	if n, pc, err := c.PINRetries(ctx); n != 5 || !pc || err != nil {
		t.Errorf("PINRetries after three = %d, %v, %v", n, pc, err)
	}
}

func TestClientUVSoftkey(t *testing.T) {
	ctx := context.Background()
	c := newSoftClient(t, softkey.Config{UV: softkey.UVPass})
	n, err := c.UVRetries(ctx)
	if err != nil || n <= 0 {
		t.Fatalf("UVRetries = %d, %v", n, err)
	}
	tok, err := c.UVToken(ctx, ctap2.PermMakeCredential, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	mc := mcReq("a.example")
	tok.ProtectMakeCredential(mc)
	resp, err := c.MakeCredential(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	if f := authFlags(t, resp.AuthData); !f.Has(ctap2.FlagUV) {
		t.Errorf("UV-token makeCredential flags %v", f)
	}

	c = newSoftClient(t, softkey.Config{UV: softkey.UVFail})
	n, err = c.UVRetries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.UVToken(ctx, ctap2.PermGetAssertion, "")
	wantPINError(t, err, ctap2.ErrUVInvalid, n-1)

	c = newSoftClient(t, softkey.Config{})
	if _, err := c.UVToken(ctx, ctap2.PermGetAssertion, ""); !errors.Is(err, ctap2.ErrNoBuiltinUV) {
		t.Errorf("UVToken without built-in UV: %v", err)
	}
}

func TestClientExtensionsSoftkey(t *testing.T) {
	ctx := context.Background()
	c := newSoftClient(t, softkey.Config{UV: softkey.UVPass})
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Extensions, ctap2.ExtHMACSecret) || !slices.Contains(info.Extensions, ctap2.ExtCredProtect) {
		t.Skipf("softkey lists extensions %v, without hmac-secret and credProtect", info.Extensions)
	}
	ext, err := (&ctap2.MakeCredentialExtensions{HMACSecret: true, CredProtect: ctap2.CredProtectUVOptionalWithCredList}).Map()
	if err != nil {
		t.Fatal(err)
	}
	mc := mcReq("a.example")
	mc.Extensions = ext
	resp, err := c.MakeCredential(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := resp.ParseAuthData()
	if err != nil {
		t.Fatal(err)
	}
	out, err := ctap2.ParseExtensionOutputs(ad.Extensions)
	if err != nil {
		t.Fatal(err)
	}
	if out.HMACSecret == nil || !*out.HMACSecret || out.CredProtect != ctap2.CredProtectUVOptionalWithCredList {
		t.Fatalf("makeCredential outputs %+v", out)
	}
	credID, _, err := resp.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}

	salt1, salt2 := ctap2.PRFSalt([]byte("first")), ctap2.PRFSalt([]byte("second"))
	secrets := func(uv bool) (o1, o2 []byte) {
		t.Helper()
		h, err := c.NewHMACSecret(ctx)
		if err != nil {
			t.Fatal(err)
		}
		in, err := h.Input(salt1, salt2)
		if err != nil {
			t.Fatal(err)
		}
		ga := gaReq("a.example", credID)
		if ga.Extensions, err = (&ctap2.GetAssertionExtensions{HMACSecret: in}).Map(); err != nil {
			t.Fatal(err)
		}
		if uv {
			tok, err := c.UVToken(ctx, ctap2.PermGetAssertion, "a.example")
			if err != nil {
				t.Fatal(err)
			}
			tok.ProtectGetAssertion(ga)
		}
		gr, err := c.GetAssertion(ctx, ga)
		if err != nil {
			t.Fatal(err)
		}
		ad, err := ctap2.ParseAuthData(gr.AuthData)
		if err != nil {
			t.Fatal(err)
		}
		if ad.Flags.Has(ctap2.FlagUV) != uv {
			t.Fatalf("flags %v with uv=%v", ad.Flags, uv)
		}
		out, err := ctap2.ParseExtensionOutputs(ad.Extensions)
		if err != nil {
			t.Fatal(err)
		}
		o1, o2, err = h.Outputs(out.HMACSecretOutput)
		if err != nil {
			t.Fatalf("hmac-secret output %x: %v", out.HMACSecretOutput, err)
		}
		return o1, o2
	}
	a1, a2 := secrets(false)
	b1, b2 := secrets(false)
	u1, u2 := secrets(true)
	v1, _ := secrets(true)
	if !bytes.Equal(a1, b1) || !bytes.Equal(a2, b2) || !bytes.Equal(u1, v1) {
		t.Error("hmac-secret outputs are not stable across assertions")
	}
	if bytes.Equal(a1, a2) || bytes.Equal(a1, u1) || bytes.Equal(a2, u2) {
		t.Error("hmac-secret outputs do not differ between salts, or with and without UV")
	}
}
