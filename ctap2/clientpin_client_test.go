package ctap2

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ctapkit/ctapkit/transport"
)

// refAuthenticator is a tiny authenticator-side clientPIN written from the spec
// (CTAP 2.1 §6.5) with the same primitives, for driving the Client through whole
// flows: retries, the three-in-a-row block, key regeneration, permissions and
// tokens. The softkey has the real one.
type refAuthenticator struct {
	t           testing.TB
	protocols   []uint
	options     map[string]bool // besides clientPin, which follows the PIN
	noClientPIN bool            // leave clientPin out of getInfo
	minPIN      int
	ka          *ecdh.PrivateKey
	pinHash     []byte
	retries     int
	inARow      int
	token       []byte
	perms       Permission
	rpID        string
	uvStatus    StatusError // answer to a UV token request (0: success)
	uvRetries   int
	requests    []ClientPINRequest
	credRandom  []byte
}

func newRefAuthenticator(t testing.TB, protocols ...uint) *refAuthenticator {
	a := &refAuthenticator{t: t, protocols: protocols, retries: MaxPINRetries, uvRetries: 5,
		options: map[string]bool{"pinUvAuthToken": true}, credRandom: bytes.Repeat([]byte{0xc5}, 32)}
	a.newKeyAgreement()
	return a
}

func (a *refAuthenticator) newKeyAgreement() {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		a.t.Fatal(err)
	}
	a.ka = k
}

func (a *refAuthenticator) info() *Info {
	opts := map[string]bool{}
	if !a.noClientPIN {
		opts["clientPin"] = a.pinHash != nil
	}
	for k, v := range a.options {
		opts[k] = v
	}
	return &Info{Versions: []string{"FIDO_2_0", "FIDO_2_1"}, AAGUID: make([]byte, 16), Options: opts,
		PinUvAuthProtocols: a.protocols, MinPINLength: uint(a.minPIN)}
}

func (a *refAuthenticator) Transact(_ context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	if cmd != transport.CmdCBOR || len(data) == 0 {
		return []byte{byte(ErrInvalidCommand)}, nil
	}
	var body any
	var status StatusError
	switch Command(data[0]) {
	case CmdGetInfo:
		body = a.info()
	case CmdClientPIN:
		var req ClientPINRequest
		if err := Unmarshal(data[1:], &req); err != nil {
			return []byte{byte(ErrInvalidCBOR)}, nil
		}
		a.requests = append(a.requests, req)
		body, status = a.clientPIN(&req)
	default:
		status = ErrInvalidCommand
	}
	if status != StatusOK {
		return []byte{byte(status)}, nil
	}
	out := []byte{0}
	if body != nil {
		out = append(out, mustCBOR(a.t, body)...)
	}
	return out, nil
}

func (a *refAuthenticator) Info() transport.DeviceInfo { return transport.DeviceInfo{URI: "ref:"} }
func (a *refAuthenticator) Close() error               { return nil }

func (a *refAuthenticator) sharedSecret(p PINProtocol, cose []byte) ([]byte, StatusError) {
	peer, err := ParseKeyAgreementKey(cose)
	if err != nil {
		return nil, ErrInvalidParameter
	}
	ss, err := SharedSecret(p, a.ka, peer)
	if err != nil {
		return nil, ErrInvalidParameter
	}
	return ss, StatusOK
}

// checkPIN is the spec's "decrement, then compare" with the power-cycle block.
func (a *refAuthenticator) checkPIN(p PINProtocol, ss, pinHashEnc []byte) StatusError {
	if a.retries == 0 {
		return ErrPINBlocked
	}
	if a.inARow >= 3 {
		return ErrPINAuthBlocked
	}
	a.retries--
	h, err := p.Decrypt(ss, pinHashEnc)
	if err != nil || !bytes.Equal(h, a.pinHash) {
		a.newKeyAgreement()
		a.inARow++
		switch {
		case a.retries == 0:
			return ErrPINBlocked
		case a.inARow >= 3:
			return ErrPINAuthBlocked
		}
		return ErrPINInvalid
	}
	a.retries, a.inARow = MaxPINRetries, 0
	return StatusOK
}

func (a *refAuthenticator) issueToken(p PINProtocol, ss []byte, perms Permission, rpID string) (any, StatusError) {
	a.token = make([]byte, 32)
	rand.Read(a.token)
	a.perms, a.rpID = perms, rpID
	enc, err := p.Encrypt(ss, a.token)
	if err != nil {
		return nil, ErrOther
	}
	return &ClientPINResponse{PinUvAuthToken: enc}, StatusOK
}

func (a *refAuthenticator) clientPIN(req *ClientPINRequest) (any, StatusError) {
	p := PINProtocolByVersion(req.PinUvAuthProtocol)
	if p == nil {
		return nil, ErrInvalidParameter
	}
	switch req.SubCommand {
	case PINGetRetries:
		r, pc := uint(a.retries), a.inARow >= 3
		return &ClientPINResponse{PinRetries: &r, PowerCycleState: &pc}, StatusOK
	case PINGetUVRetries:
		r := uint(a.uvRetries)
		return &ClientPINResponse{UVRetries: &r}, StatusOK
	case PINGetKeyAgreement:
		k, err := KeyAgreementKey(a.ka.PublicKey())
		if err != nil {
			a.t.Fatal(err)
		}
		return &ClientPINResponse{KeyAgreement: k}, StatusOK
	}
	ss, st := a.sharedSecret(p, req.KeyAgreement)
	if st != StatusOK {
		return nil, st
	}
	switch req.SubCommand {
	case PINSetPIN, PINChangePIN:
		msg := req.NewPinEnc
		if req.SubCommand == PINChangePIN {
			if a.pinHash == nil {
				return nil, ErrPINNotSet
			}
			msg = cat(req.NewPinEnc, req.PinHashEnc)
		} else if a.pinHash != nil {
			return nil, ErrPINAuthInvalid
		}
		if !p.Verify(ss, msg, req.PinUvAuthParam) {
			return nil, ErrPINAuthInvalid
		}
		if req.SubCommand == PINChangePIN {
			if st := a.checkPIN(p, ss, req.PinHashEnc); st != StatusOK {
				return nil, st
			}
		}
		padded, err := p.Decrypt(ss, req.NewPinEnc)
		if err != nil {
			return nil, ErrInvalidParameter
		}
		pin, err := UnpadPIN(padded)
		if err != nil {
			return nil, ErrInvalidParameter
		}
		if utf8.RuneCount(pin) < max(4, a.minPIN) {
			return nil, ErrPINPolicyViolation
		}
		a.pinHash, a.retries, a.token = PINHash(pin), MaxPINRetries, nil
		return nil, StatusOK
	case PINGetPINToken, PINGetPINUvAuthTokenUsingPinWithPerms:
		if a.pinHash == nil {
			return nil, ErrPINNotSet
		}
		legacy := req.SubCommand == PINGetPINToken
		if legacy && (req.Permissions != 0 || req.RPID != "") || !legacy && req.Permissions == 0 {
			return nil, ErrInvalidParameter
		}
		if st := a.checkPIN(p, ss, req.PinHashEnc); st != StatusOK {
			return nil, st
		}
		perms := req.Permissions
		if legacy {
			perms = PermMakeCredential | PermGetAssertion
		}
		return a.issueToken(p, ss, perms, req.RPID)
	case PINGetPINUvAuthTokenUsingUvWithPerms:
		if req.Permissions == 0 {
			return nil, ErrInvalidParameter
		}
		if a.uvStatus != StatusOK {
			if a.uvRetries > 0 {
				a.uvRetries--
			}
			return nil, a.uvStatus
		}
		return a.issueToken(p, ss, req.Permissions, req.RPID)
	}
	return nil, ErrInvalidSubcommand
}

// hmacSecret is the authenticator's side of hmac-secret for one credential.
func (a *refAuthenticator) hmacSecret(in *HMACSecretInput) ([]byte, StatusError) {
	p := PINProtocolByVersion(in.Protocol())
	ss, st := a.sharedSecret(p, in.KeyAgreement)
	if st != StatusOK {
		return nil, st
	}
	if !p.Verify(ss, in.SaltEnc, in.SaltAuth) {
		return nil, ErrPINAuthInvalid
	}
	salts, err := p.Decrypt(ss, in.SaltEnc)
	if err != nil || (len(salts) != 32 && len(salts) != 64) {
		return nil, ErrInvalidParameter
	}
	var out []byte
	for i := 0; i < len(salts); i += 32 {
		out = append(out, hmacSHA256(a.credRandom, salts[i:i+32])...)
	}
	enc, err := p.Encrypt(ss, out)
	if err != nil {
		return nil, ErrOther
	}
	return enc, StatusOK
}

func (a *refAuthenticator) lastRequest(t *testing.T) ClientPINRequest {
	t.Helper()
	if len(a.requests) == 0 {
		t.Fatal("no clientPIN request")
	}
	return a.requests[len(a.requests)-1]
}

func pinError(t *testing.T, err error, status StatusError, retries int) {
	t.Helper()
	var pe *PINError
	if !errors.As(err, &pe) || !errors.Is(err, status) || pe.Retries != retries {
		t.Fatalf("err = %v, want %v with %d retries", err, status, retries)
	}
}

// TestClientPINVectors replays python-fido2's exchanges through the Client with the
// same fixed platform key and IVs: every request must be byte-identical and every
// result the same.
func TestClientPINVectors(t *testing.T) {
	ctx := context.Background()
	v := loadPINVectors(t)
	plat := mustECDHKey(t, v.PlatformPrivateKey)
	replay := func(t *testing.T, info []byte, ex pyExchange, op func(context.Context, *Client) error) {
		t.Helper()
		dev := new(fakeDevice).reply(info)
		for _, e := range ex.Exchange {
			dev.raw(e.Reply)
		}
		var ivs []byte
		for _, iv := range ex.IVs {
			ivs = append(ivs, iv...)
		}
		rnd := bytes.NewReader(ivs)
		if err := op(withPINFixture(ctx, &pinFixture{own: plat, rand: rnd}), NewClient(dev)); err != nil {
			t.Fatal(err)
		}
		var sent [][]byte
		for _, s := range dev.sent(t) {
			if !bytes.Equal(s, []byte{byte(CmdGetInfo)}) {
				sent = append(sent, s)
			}
		}
		if len(sent) != len(ex.Exchange) {
			t.Fatalf("sent %d requests, python-fido2 %d", len(sent), len(ex.Exchange))
		}
		for i, e := range ex.Exchange {
			if !bytes.Equal(sent[i], e.Request) {
				t.Errorf("request %d:\n ours   %x\n python %x", i, sent[i], e.Request)
			}
		}
		if rnd.Len() != 0 {
			t.Errorf("%d IV bytes unused", rnd.Len())
		}
	}
	for _, pv := range v.Protocols {
		for _, sp := range pv.SetPin {
			replay(t, pv.Info, sp.pyExchange, func(ctx context.Context, c *Client) error { return c.SetPIN(ctx, sp.Pin) })
		}
		for _, cp := range pv.ChangePin {
			replay(t, pv.Info, cp.pyExchange, func(ctx context.Context, c *Client) error {
				return c.ChangePIN(ctx, cp.CurrentPin, cp.NewPin)
			})
		}
		for _, pt := range pv.PinToken {
			info := pv.Info
			if pt.Legacy {
				info = pv.LegacyInfo
			}
			replay(t, info, pt.pyExchange, func(ctx context.Context, c *Client) error {
				tok, err := c.PINToken(ctx, pt.Pin, pt.Permissions, pt.RPID)
				if err != nil {
					return err
				}
				checkHex(t, "token", tok.Token, pt.Token)
				checkHex(t, "Param", tok.Param(pt.ClientDataHash), pt.Param)
				if tok.Protocol.Version() != pv.Version {
					t.Errorf("token protocol %d", tok.Protocol.Version())
				}
				if pt.Legacy && (tok.Permissions != 0 || tok.RPID != "") || !pt.Legacy && (tok.Permissions != pt.Permissions || tok.RPID != pt.RPID) {
					t.Errorf("token permissions %#x rpID %q", tok.Permissions, tok.RPID)
				}
				return nil
			})
		}
		for _, ut := range pv.UVToken {
			replay(t, pv.Info, ut.pyExchange, func(ctx context.Context, c *Client) error {
				tok, err := c.UVToken(ctx, ut.Permissions, ut.RPID)
				if err == nil {
					checkHex(t, "UV token", tok.Token, ut.Token)
				}
				return err
			})
		}
		replay(t, pv.Info, pv.PinRetries.pyExchange, func(ctx context.Context, c *Client) error {
			n, pc, err := c.PINRetries(ctx)
			if n != pv.PinRetries.Retries || pc != pv.PinRetries.PowerCycle {
				t.Errorf("PINRetries = %d, %v", n, pc)
			}
			return err
		})
		replay(t, pv.Info, pv.UVRetries.pyExchange, func(ctx context.Context, c *Client) error {
			n, err := c.UVRetries(ctx)
			if n != pv.UVRetries.Retries {
				t.Errorf("UVRetries = %d", n)
			}
			return err
		})
		for _, hs := range pv.HMACSecret {
			replay(t, pv.Info, hs.pyExchange, func(ctx context.Context, c *Client) error {
				h, err := c.NewHMACSecret(ctx)
				if err != nil {
					return err
				}
				var salt2 []byte
				if len(hs.Salts) == 2 {
					salt2 = hs.Salts[1]
				}
				in, err := h.Input(hs.Salts[0], salt2)
				if err != nil {
					return err
				}
				checkHex(t, "saltEnc", in.SaltEnc, hs.SaltEnc)
				checkHex(t, "saltAuth", in.SaltAuth, hs.SaltAuth)
				o1, o2, err := h.Outputs(hs.OutputEnc)
				var want []byte
				for _, o := range hs.Outputs {
					want = append(want, o...)
				}
				checkHex(t, "outputs", cat(o1, o2), want)
				return err
			})
		}
	}
}

func TestClientPINFlow(t *testing.T) {
	ctx := context.Background()
	for _, v := range []uint{1, 2} {
		a := newRefAuthenticator(t, v)
		c := NewClient(a)
		if _, err := c.PINToken(ctx, "1234", PermGetAssertion, "example.com"); !errors.Is(err, ErrPINNotSet) {
			t.Fatalf("token without a PIN: %v", err)
		}
		if err := c.SetPIN(ctx, "1234"); err != nil {
			t.Fatal(err)
		}
		if req := a.lastRequest(t); req.PinUvAuthProtocol != v || req.SubCommand != PINSetPIN {
			t.Errorf("setPIN request %+v", req)
		}
		if !bytes.Equal(a.pinHash, PINHash([]byte("1234"))) {
			t.Fatal("authenticator stored another PIN")
		}
		if n, pc, err := c.PINRetries(ctx); n != 8 || pc || err != nil {
			t.Errorf("PINRetries = %d, %v, %v", n, pc, err)
		}
		// SetPIN again: the cache was refreshed, so the error says why.
		if err := c.SetPIN(ctx, "5678"); !errors.Is(err, ErrPINAuthInvalid) || !strings.Contains(err.Error(), "already set") {
			t.Errorf("second SetPIN: %v", err)
		}

		_, err := c.PINToken(ctx, "0000", PermGetAssertion, "example.com")
		pinError(t, err, ErrPINInvalid, 7)
		if !strings.Contains(err.Error(), "CTAP2_ERR_PIN_INVALID (7 retries left)") {
			t.Errorf("message %q", err)
		}
		tok, err := c.PINToken(ctx, "1234", PermMakeCredential|PermGetAssertion, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tok.Token, a.token) || a.perms != PermMakeCredential|PermGetAssertion || a.rpID != "example.com" {
			t.Errorf("token %x perms %#x rp %q; authenticator has %x", tok.Token, a.perms, a.rpID, a.token)
		}
		if req := a.lastRequest(t); req.SubCommand != PINGetPINUvAuthTokenUsingPinWithPerms {
			t.Errorf("subcommand %#x", req.SubCommand)
		}
		if n, _, _ := c.PINRetries(ctx); n != 8 {
			t.Errorf("retries not reset by the right PIN: %d", n)
		}

		// The token's params verify on the authenticator's side.
		cdh := bytes.Repeat([]byte{0xcd}, 32)
		mc := &MakeCredentialRequest{ClientDataHash: cdh}
		tok.ProtectMakeCredential(mc)
		ga := &GetAssertionRequest{ClientDataHash: cdh}
		tok.ProtectGetAssertion(ga)
		for _, pr := range []struct {
			param []byte
			proto uint
		}{{mc.PinUvAuthParam, mc.PinUvAuthProtocol}, {ga.PinUvAuthParam, ga.PinUvAuthProtocol}} {
			if pr.proto != v || !PINProtocolByVersion(v).Verify(a.token, cdh, pr.param) {
				t.Errorf("protected request does not verify: %x v%d", pr.param, pr.proto)
			}
		}

		if err := c.ChangePIN(ctx, "9999", "12345678"); err == nil {
			t.Fatal("ChangePIN with a wrong current PIN succeeded")
		} else {
			pinError(t, err, ErrPINInvalid, 7)
		}
		if err := c.ChangePIN(ctx, "1234", "12345678"); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.pinHash, PINHash([]byte("12345678"))) {
			t.Error("PIN not changed")
		}
		if _, err := c.PINToken(ctx, "1234", PermGetAssertion, ""); !errors.Is(err, ErrPINInvalid) {
			t.Errorf("old PIN after change: %v", err)
		}
		if _, err := c.PINToken(ctx, "12345678", PermCredentialManagement, ""); err != nil {
			t.Errorf("new PIN: %v", err)
		}
	}
}

func TestClientPINBlocking(t *testing.T) {
	ctx := context.Background()
	a := newRefAuthenticator(t, 2)
	c := NewClient(a)
	if err := c.SetPIN(ctx, "1234"); err != nil {
		t.Fatal(err)
	}
	_, err := c.PINToken(ctx, "1111", PermGetAssertion, "")
	pinError(t, err, ErrPINInvalid, 7)
	_, err = c.PINToken(ctx, "1111", PermGetAssertion, "")
	pinError(t, err, ErrPINInvalid, 6)
	_, err = c.PINToken(ctx, "1111", PermGetAssertion, "")
	pinError(t, err, ErrPINAuthBlocked, 5)
	if n, pc, err := c.PINRetries(ctx); n != 5 || !pc || err != nil {
		t.Errorf("PINRetries after three = %d, %v, %v", n, pc, err)
	}
	// Even the right PIN fails until a power cycle, without costing a retry.
	_, err = c.PINToken(ctx, "1234", PermGetAssertion, "")
	pinError(t, err, ErrPINAuthBlocked, 5)
	for want := 4; want > 0; want-- {
		a.inARow = 0 // power cycle
		_, err = c.PINToken(ctx, "1111", PermGetAssertion, "")
		pinError(t, err, ErrPINInvalid, want)
	}
	a.inARow = 0
	_, err = c.PINToken(ctx, "1111", PermGetAssertion, "")
	pinError(t, err, ErrPINBlocked, 0)
	_, err = c.PINToken(ctx, "1234", PermGetAssertion, "")
	pinError(t, err, ErrPINBlocked, 0)
	err = c.ChangePIN(ctx, "1234", "5678")
	pinError(t, err, ErrPINBlocked, 0)

	// Retries unknown when getRetries itself fails.
	dev := new(fakeDevice).reply(mustCBOR(t, a.info())).
		reply(mustCBOR(t, &ClientPINResponse{KeyAgreement: mustKA(t, a.ka)})).
		raw([]byte{byte(ErrPINInvalid)}).
		raw([]byte{byte(ErrOther)})
	_, err = NewClient(dev).PINToken(ctx, "1234", PermGetAssertion, "")
	pinError(t, err, ErrPINInvalid, -1)
	if !strings.HasSuffix(err.Error(), "CTAP2_ERR_PIN_INVALID") {
		t.Errorf("message %q", err)
	}
}

func mustKA(t testing.TB, k *ecdh.PrivateKey) []byte {
	b, err := KeyAgreementKey(k.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClientPINValidation(t *testing.T) {
	ctx := context.Background()
	a := newRefAuthenticator(t, 2, 1)
	a.minPIN = 6
	c := NewClient(a)
	for _, bad := range []string{"", "12345", "€€€€€", strings.Repeat("9", 64), strings.Repeat("€", 22),
		"123456\xff", "1234\x0056"} {
		if err := c.SetPIN(ctx, bad); !errors.Is(err, ErrBadPIN) {
			t.Errorf("SetPIN(%q) = %v, want ErrBadPIN", bad, err)
		}
		if _, ok := StatusOf(c.SetPIN(ctx, bad)); ok {
			t.Errorf("SetPIN(%q): a local error carries a CTAP status", bad)
		}
	}
	if len(a.requests) != 0 {
		t.Fatalf("bad PINs reached the authenticator: %+v", a.requests)
	}
	// Code points count, not bytes: six 3-byte characters are enough; 63 bytes is
	// the limit.
	if err := c.SetPIN(ctx, "€€€€€€"); err != nil {
		t.Fatal(err)
	}
	if req := a.lastRequest(t); req.PinUvAuthProtocol != 2 {
		t.Errorf("protocol %d, want 2 preferred over 1", req.PinUvAuthProtocol)
	}
	// A minimum raised after the PIN was set does not reject the current PIN,
	// only a new one.
	a.minPIN = 8
	c = NewClient(a)
	if err := c.ChangePIN(ctx, "€€€€€€", "1234567"); !errors.Is(err, ErrBadPIN) || !strings.Contains(err.Error(), "new PIN") {
		t.Errorf("short new PIN: %v", err)
	}
	if err := c.ChangePIN(ctx, "€€€€€€", strings.Repeat("9", 63)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PINToken(ctx, strings.Repeat("9", 64), PermGetAssertion, ""); !errors.Is(err, ErrBadPIN) {
		t.Errorf("64-byte current PIN: %v", err)
	}
	if err := c.ChangePIN(ctx, "\xff", "12345678"); !errors.Is(err, ErrBadPIN) || !strings.Contains(err.Error(), "current PIN") {
		t.Errorf("non-UTF-8 current PIN: %v", err)
	}
	n := len(a.requests)
	if _, err := c.PINToken(ctx, strings.Repeat("9", 63), 0, ""); err == nil || !strings.Contains(err.Error(), "no permissions") {
		t.Errorf("zero permissions: %v", err)
	}
	if len(a.requests) != n {
		t.Error("a request with no permissions was sent")
	}
}

func TestClientPINProtocolChoice(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		protocols []uint
		options   map[string]bool
		want      uint
		err       error
	}{
		{[]uint{1, 2}, nil, 2, nil},
		{[]uint{2}, nil, 2, nil},
		{[]uint{1}, nil, 1, nil},
		{[]uint{3, 1}, nil, 1, nil},
		{[]uint{3}, nil, 0, ErrNoPINProtocol},
		{nil, nil, 0, ErrNoPINProtocol},
		{[]uint{2}, map[string]bool{"uv": true}, 0, ErrNoClientPIN},
	} {
		info := &Info{Versions: []string{"FIDO_2_0"}, AAGUID: make([]byte, 16), PinUvAuthProtocols: tc.protocols,
			Options: map[string]bool{"clientPin": false}}
		if tc.options != nil {
			info.Options = tc.options
		}
		dev := new(fakeDevice).reply(mustCBOR(t, info)).reply(unhex("a2 03 08 04 f4"))
		n, _, err := NewClient(dev).PINRetries(ctx)
		if !errors.Is(err, tc.err) {
			t.Errorf("%v %v: err %v, want %v", tc.protocols, tc.options, err, tc.err)
			continue
		}
		sent := dev.sent(t)
		if tc.err != nil {
			if len(sent) != 1 {
				t.Errorf("%v: sent %x after a local error", tc.protocols, sent)
			}
			continue
		}
		var req ClientPINRequest
		if err := Unmarshal(sent[1][1:], &req); err != nil || req.PinUvAuthProtocol != tc.want || n != 8 {
			t.Errorf("%v: request %+v (%v), retries %d; want protocol %d", tc.protocols, req, err, n, tc.want)
		}
	}
}

func TestClientPINLegacyToken(t *testing.T) {
	ctx := context.Background()
	a := newRefAuthenticator(t, 1)
	delete(a.options, "pinUvAuthToken")
	c := NewClient(a)
	if err := c.SetPIN(ctx, "1234"); err != nil {
		t.Fatal(err)
	}
	// Permissions and RP ID are dropped, not sent: the 2.0 command refuses them.
	tok, err := c.PINToken(ctx, "1234", PermCredentialManagement, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	req := a.lastRequest(t)
	if req.SubCommand != PINGetPINToken || req.Permissions != 0 || req.RPID != "" {
		t.Errorf("legacy request %+v", req)
	}
	if tok.Permissions != 0 || tok.RPID != "" || !bytes.Equal(tok.Token, a.token) {
		t.Errorf("legacy token %+v", tok)
	}
	if _, err := c.PINToken(ctx, "1234", 0, ""); err != nil {
		t.Errorf("legacy token needs no permissions: %v", err)
	}
	if _, err := c.UVToken(ctx, PermGetAssertion, ""); !errors.Is(err, ErrNoBuiltinUV) {
		t.Errorf("UVToken without uv: %v", err)
	}
}

func TestClientUVToken(t *testing.T) {
	ctx := context.Background()
	a := newRefAuthenticator(t, 2)
	a.options["uv"] = true
	c := NewClient(a)
	tok, err := c.UVToken(ctx, PermGetAssertion, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	req := a.lastRequest(t)
	if req.SubCommand != PINGetPINUvAuthTokenUsingUvWithPerms || req.Permissions != PermGetAssertion || req.RPID != "example.com" || req.PinHashEnc != nil {
		t.Errorf("request %+v", req)
	}
	if !bytes.Equal(tok.Token, a.token) || tok.Permissions != PermGetAssertion || tok.RPID != "example.com" {
		t.Errorf("token %+v", tok)
	}
	if n, err := c.UVRetries(ctx); n != 5 || err != nil {
		t.Errorf("UVRetries = %d, %v", n, err)
	}
	a.uvStatus = ErrUVInvalid
	_, err = c.UVToken(ctx, PermGetAssertion, "")
	pinError(t, err, ErrUVInvalid, 4)
	a.uvStatus = ErrUVBlocked
	_, err = c.UVToken(ctx, PermGetAssertion, "")
	pinError(t, err, ErrUVBlocked, 0)
	a.uvStatus = ErrOperationDenied
	if _, err = c.UVToken(ctx, PermGetAssertion, ""); !errors.Is(err, ErrOperationDenied) {
		t.Errorf("denied: %v", err)
	} else if pe := (*PINError)(nil); errors.As(err, &pe) {
		t.Errorf("denied UV is not a PIN error: %v", err)
	}
	if _, err := c.UVToken(ctx, 0, ""); err == nil {
		t.Error("UVToken without permissions")
	}

	a.options["pinUvAuthToken"] = false
	if _, err := NewClient(a).UVToken(ctx, PermGetAssertion, ""); !errors.Is(err, ErrNoUVToken) {
		t.Errorf("UVToken without pinUvAuthToken: %v", err)
	}
	// UV retries work on a key with built-in UV and no PIN support at all.
	a.noClientPIN = true
	if n, err := NewClient(a).UVRetries(ctx); n != 2 || err != nil {
		t.Errorf("UVRetries = %d, %v", n, err)
	}
}

func TestClientPINMalformedReplies(t *testing.T) {
	ctx := context.Background()
	a := newRefAuthenticator(t, 2)
	a.pinHash = PINHash([]byte("1234"))
	info := mustCBOR(t, a.info())
	ka := mustKA(t, a.ka)
	other := mustKA(t, mustECDHKey(t, bytes.Repeat([]byte{9}, 32)))
	var bad coseEC2
	if err := Unmarshal(ka, &bad); err != nil {
		t.Fatal(err)
	}
	bad.Y[0] ^= 1
	token := func(n int) []byte {
		// Encrypted under a secret the client cannot know: decrypts to garbage of
		// the given length, which must still be length-checked.
		enc, _ := PINProtocolTwo{}.Encrypt(make([]byte, 64), make([]byte, n))
		return mustCBOR(t, &ClientPINResponse{PinUvAuthToken: enc})
	}
	for name, replies := range map[string][][]byte{
		"no key agreement":   {{}},
		"key off the curve":  {mustCBOR(t, &ClientPINResponse{KeyAgreement: mustCBOR(t, bad)})},
		"no token":           {mustCBOR(t, &ClientPINResponse{KeyAgreement: ka}), {}},
		"token of 16 (v2)":   {mustCBOR(t, &ClientPINResponse{KeyAgreement: other}), token(16)},
		"token of 48":        {mustCBOR(t, &ClientPINResponse{KeyAgreement: other}), token(48)},
		"token not in block": {mustCBOR(t, &ClientPINResponse{KeyAgreement: other}), mustCBOR(t, &ClientPINResponse{PinUvAuthToken: make([]byte, 40)})},
	} {
		dev := new(fakeDevice).reply(info).reply(replies...)
		if _, err := NewClient(dev).PINToken(ctx, "1234", PermGetAssertion, ""); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("%s: %v, want ErrMalformedResponse", name, err)
		}
	}
	for name, body := range map[string][]byte{"empty": {}, "no retries": unhex("a1 04 f4")} {
		dev := new(fakeDevice).reply(info).reply(body)
		if _, _, err := NewClient(dev).PINRetries(ctx); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("retries %s: %v", name, err)
		}
	}
	// forcePINChange: 0x09 answers PIN_POLICY_VIOLATION, and the error says why.
	dev := new(fakeDevice).reply(info).reply(mustCBOR(t, &ClientPINResponse{KeyAgreement: ka})).raw([]byte{byte(ErrPINPolicyViolation)})
	if _, err := NewClient(dev).PINToken(ctx, "1234", PermGetAssertion, ""); !errors.Is(err, ErrPINPolicyViolation) ||
		!strings.Contains(err.Error(), "PIN change first") {
		t.Errorf("forcePINChange: %v", err)
	}
	dev = new(fakeDevice).reply(info).reply(unhex("a1 03 1b 0000000100000000"))
	if _, _, err := NewClient(dev).PINRetries(ctx); !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("2^32 retries: %v", err)
	}
}

func TestClientHMACSecret(t *testing.T) {
	ctx := context.Background()
	for _, v := range []uint{1, 2} {
		a := newRefAuthenticator(t, v)
		c := NewClient(a)
		salt1, salt2 := PRFSalt([]byte("first")), PRFSalt([]byte("second"))
		h, err := c.NewHMACSecret(ctx)
		if err != nil {
			t.Fatal(err)
		}
		in, err := h.Input(salt1, salt2)
		if err != nil {
			t.Fatal(err)
		}
		if in.Protocol() != v || (v == 1) != (in.PinUvAuthProtocol == 0) {
			t.Errorf("v%d input protocol field %d", v, in.PinUvAuthProtocol)
		}
		// Through the request encoding, as an authenticator receives it.
		m, err := (&GetAssertionExtensions{HMACSecret: in}).Map()
		if err != nil {
			t.Fatal(err)
		}
		var got HMACSecretInput
		if err := Unmarshal(m[ExtHMACSecret], &got); err != nil {
			t.Fatal(err)
		}
		enc, st := a.hmacSecret(&got)
		if st != StatusOK {
			t.Fatalf("authenticator: %v", st)
		}
		o1, o2, err := h.Outputs(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(o1, hmacSHA256(a.credRandom, salt1)) || !bytes.Equal(o2, hmacSHA256(a.credRandom, salt2)) {
			t.Errorf("v%d outputs %x %x", v, o1, o2)
		}

		// One salt; and a reply with two outputs for it is refused.
		h, err = c.NewHMACSecret(ctx)
		if err != nil {
			t.Fatal(err)
		}
		in, _ = h.Input(salt1, nil)
		enc, _ = a.hmacSecret(in)
		if o1, o2, err := h.Outputs(enc); err != nil || o2 != nil || !bytes.Equal(o1, hmacSHA256(a.credRandom, salt1)) {
			t.Errorf("one salt: %x %x %v", o1, o2, err)
		}
		two, _ := h.Protocol.Encrypt(h.SharedSecret, make([]byte, 64))
		if _, _, err := h.Outputs(two); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("two outputs for one salt: %v", err)
		}
		for _, n := range []int{0, 16, 48, 96} {
			e, _ := h.Protocol.Encrypt(h.SharedSecret, make([]byte, n))
			if _, _, err := h.Outputs(e); err == nil {
				t.Errorf("%d-byte output accepted", n)
			}
		}
		// A tampered saltEnc fails the authenticator's saltAuth check.
		in.SaltEnc[len(in.SaltEnc)-1] ^= 1
		if _, st := a.hmacSecret(in); st != ErrPINAuthInvalid {
			t.Errorf("tampered saltEnc: %v", st)
		}
		for _, bad := range [][2][]byte{{salt1[:31], nil}, {salt1, salt2[:16]}, {nil, nil}, {append(salt1, 0), nil}} {
			if _, err := h.Input(bad[0], bad[1]); !errors.Is(err, ErrHMACSecretSalt) {
				t.Errorf("salts of %d and %d bytes: %v", len(bad[0]), len(bad[1]), err)
			}
		}
	}
	// No protocol in getInfo: nothing to agree keys with.
	a := newRefAuthenticator(t)
	if _, err := NewClient(a).NewHMACSecret(ctx); !errors.Is(err, ErrNoPINProtocol) {
		t.Errorf("no protocols: %v", err)
	}
}
