package ctap2

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"math"
)

// Host side of authenticatorClientPIN (CTAP 2.1 §6.5). Every method picks the PIN/UV
// auth protocol from getInfo (2 if offered, else 1) and runs a fresh key agreement
// per operation, as the spec asks.

// Errors for authenticators that cannot do what was asked; they are decided from
// getInfo before anything else is sent.
var (
	ErrNoClientPIN   = errors.New("the authenticator does not support a PIN (no clientPin option)")
	ErrNoBuiltinUV   = errors.New("the authenticator has no built-in user verification (no uv option)")
	ErrNoUVToken     = errors.New("the authenticator cannot issue tokens from built-in user verification (pinUvAuthToken is not true)")
	ErrNoPINProtocol = errors.New("the authenticator offers no PIN/UV auth protocol this client knows (1 or 2)")
)

// PreferredPINProtocol returns protocol 2 when info lists it, else protocol 1, else
// ErrNoPINProtocol.
func PreferredPINProtocol(info *Info) (PINProtocol, error) {
	for _, want := range []uint{2, 1} {
		for _, v := range info.PinUvAuthProtocols {
			if v == want {
				return PINProtocolByVersion(v), nil
			}
		}
	}
	return nil, ErrNoPINProtocol
}

// pinFixture fixes the platform's ephemeral key and protocol 2 IVs so that tests can
// compare requests byte for byte with python-fido2's. Only tests attach one.
type pinFixture struct {
	own  *ecdh.PrivateKey
	rand io.Reader
}

type pinFixtureKey struct{}

func withPINFixture(ctx context.Context, f *pinFixture) context.Context {
	return context.WithValue(ctx, pinFixtureKey{}, f)
}

func fixtureOf(ctx context.Context) *pinFixture {
	f, _ := ctx.Value(pinFixtureKey{}).(*pinFixture)
	return f
}

type pinNeed int

const (
	needNothing   pinNeed = iota // a protocol only (hmac-secret key agreement)
	needClientPIN                // the clientPin option present
	needUV                       // the uv option present
)

// pinProtocol reads (cached) getInfo and chooses the protocol.
func (c *Client) pinProtocol(ctx context.Context, need pinNeed) (PINProtocol, *Info, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	switch need {
	case needClientPIN:
		if _, ok := info.Options["clientPin"]; !ok {
			return nil, nil, ErrNoClientPIN
		}
	case needUV:
		if _, ok := info.Options["uv"]; !ok {
			return nil, nil, ErrNoBuiltinUV
		}
	}
	p, err := PreferredPINProtocol(info)
	if err != nil {
		return nil, nil, err
	}
	if f := fixtureOf(ctx); f != nil && f.rand != nil && p.Version() == 2 {
		p = PINProtocolTwo{Rand: f.rand}
	}
	return p, info, nil
}

func (c *Client) clientPIN(ctx context.Context, req *ClientPINRequest) (*ClientPINResponse, error) {
	var resp ClientPINResponse
	if err := c.Call(ctx, CmdClientPIN, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// forgetInfo drops the cached getInfo after the PIN changed (clientPin,
// forcePINChange and the like are stale now); the next Info asks again.
func (c *Client) forgetInfo() {
	c.mu.Lock()
	c.info = nil
	c.mu.Unlock()
}

func retriesValue(op string, n *uint) (int, error) {
	if n == nil {
		return 0, fmt.Errorf("%s: no retry count in the reply: %w", op, ErrMalformedResponse)
	}
	if *n > math.MaxInt32 {
		return 0, fmt.Errorf("%s: retry count %d out of range: %w", op, *n, ErrMalformedResponse)
	}
	return int(*n), nil
}

// PINRetries asks how many PIN attempts are left (getPINRetries) and whether the
// authenticator needs a power cycle before the next one (three wrong PINs in a row).
func (c *Client) PINRetries(ctx context.Context) (retries int, powerCycleRequired bool, err error) {
	p, _, err := c.pinProtocol(ctx, needClientPIN)
	if err != nil {
		return 0, false, fmt.Errorf("getting PIN retries: %w", err)
	}
	return c.pinRetries(ctx, p)
}

func (c *Client) pinRetries(ctx context.Context, p PINProtocol) (int, bool, error) {
	resp, err := c.clientPIN(ctx, &ClientPINRequest{PinUvAuthProtocol: p.Version(), SubCommand: PINGetRetries})
	if err != nil {
		return 0, false, fmt.Errorf("getting PIN retries: %w", err)
	}
	n, err := retriesValue("getting PIN retries", resp.PinRetries)
	if err != nil {
		return 0, false, err
	}
	return n, resp.PowerCycleState != nil && *resp.PowerCycleState, nil
}

// UVRetries asks how many built-in user verification attempts are left
// (getUVRetries, CTAP 2.1).
func (c *Client) UVRetries(ctx context.Context) (int, error) {
	p, _, err := c.pinProtocol(ctx, needUV)
	if err != nil {
		return 0, fmt.Errorf("getting UV retries: %w", err)
	}
	return c.uvRetries(ctx, p)
}

func (c *Client) uvRetries(ctx context.Context, p PINProtocol) (int, error) {
	resp, err := c.clientPIN(ctx, &ClientPINRequest{PinUvAuthProtocol: p.Version(), SubCommand: PINGetUVRetries})
	if err != nil {
		return 0, fmt.Errorf("getting UV retries: %w", err)
	}
	return retriesValue("getting UV retries", resp.UVRetries)
}

// KeyAgreement returns the authenticator's current key agreement key for protocol p
// (getKeyAgreement): a COSE_Key, already checked to be a P-256 point. Pass it to
// Encapsulate.
func (c *Client) KeyAgreement(ctx context.Context, p PINProtocol) ([]byte, error) {
	resp, err := c.clientPIN(ctx, &ClientPINRequest{PinUvAuthProtocol: p.Version(), SubCommand: PINGetKeyAgreement})
	if err != nil {
		return nil, fmt.Errorf("getting key agreement: %w", err)
	}
	if len(resp.KeyAgreement) == 0 {
		return nil, fmt.Errorf("getting key agreement: no key in the reply: %w", ErrMalformedResponse)
	}
	if _, err := ParseKeyAgreementKey(resp.KeyAgreement); err != nil {
		return nil, fmt.Errorf("getting key agreement: %w: %w", ErrMalformedResponse, err)
	}
	return resp.KeyAgreement, nil
}

// encapsulate runs getKeyAgreement and the platform's ECDH.
func (c *Client) encapsulate(ctx context.Context, p PINProtocol) (platformKey, sharedSecret []byte, err error) {
	peer, err := c.KeyAgreement(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	var own *ecdh.PrivateKey
	if f := fixtureOf(ctx); f != nil {
		own = f.own
	}
	return Encapsulate(p, peer, own)
}

// pinFailure turns a wrong-PIN or wrong-UV status into a *PINError that knows how
// many attempts are left, asking the authenticator as python-fido2 and libfido2 do.
// Other errors pass through.
func (c *Client) pinFailure(ctx context.Context, p PINProtocol, err error) error {
	status, ok := StatusOf(err)
	if !ok {
		return err
	}
	switch status {
	case ErrPINInvalid, ErrPINAuthBlocked:
		n, _, rerr := c.pinRetries(ctx, p)
		if rerr != nil {
			n = -1
		}
		return &PINError{Status: status, Retries: n}
	case ErrUVInvalid:
		n, rerr := c.uvRetries(ctx, p)
		if rerr != nil {
			n = -1
		}
		return &PINError{Status: status, Retries: n}
	case ErrPINBlocked, ErrUVBlocked:
		return &PINError{Status: status, Retries: 0}
	}
	return err
}

func minPINLength(info *Info) uint {
	return max(info.MinPINLength, DefaultMinPINLength)
}

// SetPIN sets the first PIN of an authenticator that has none (setPIN). The PIN
// must satisfy PadPIN with the authenticator's minPINLength; see PadPIN about NFC.
func (c *Client) SetPIN(ctx context.Context, pin string) error {
	p, info, err := c.pinProtocol(ctx, needClientPIN)
	if err != nil {
		return fmt.Errorf("setting PIN: %w", err)
	}
	padded, err := PadPIN(pin, minPINLength(info))
	if err != nil {
		return fmt.Errorf("setting PIN: %w", err)
	}
	platformKey, ss, err := c.encapsulate(ctx, p)
	if err != nil {
		return fmt.Errorf("setting PIN: %w", err)
	}
	newPinEnc, err := p.Encrypt(ss, padded)
	if err != nil {
		return fmt.Errorf("setting PIN: %w", err)
	}
	_, err = c.clientPIN(ctx, &ClientPINRequest{
		PinUvAuthProtocol: p.Version(),
		SubCommand:        PINSetPIN,
		KeyAgreement:      platformKey,
		PinUvAuthParam:    p.Authenticate(ss, newPinEnc),
		NewPinEnc:         newPinEnc,
	})
	if err != nil {
		if errors.Is(err, ErrPINAuthInvalid) && info.Options["clientPin"] {
			return fmt.Errorf("setting PIN: a PIN is already set, change it instead: %w", err)
		}
		return fmt.Errorf("setting PIN: %w", err)
	}
	c.forgetInfo()
	return nil
}

// ChangePIN replaces the current PIN (changePIN). The new PIN must satisfy PadPIN
// with the authenticator's minPINLength; the current one only needs to be
// non-empty UTF-8 of at most 63 bytes, since a minimum raised after it was set does
// not make it wrong. A wrong current PIN gives a *PINError with the retries left
// (errors.Is(err, ErrPINInvalid) holds).
func (c *Client) ChangePIN(ctx context.Context, currentPIN, newPIN string) error {
	p, info, err := c.pinProtocol(ctx, needClientPIN)
	if err != nil {
		return fmt.Errorf("changing PIN: %w", err)
	}
	if err := checkPINText(currentPIN); err != nil {
		return fmt.Errorf("changing PIN: current PIN: %w", err)
	}
	padded, err := PadPIN(newPIN, minPINLength(info))
	if err != nil {
		return fmt.Errorf("changing PIN: new PIN: %w", err)
	}
	platformKey, ss, err := c.encapsulate(ctx, p)
	if err != nil {
		return fmt.Errorf("changing PIN: %w", err)
	}
	// python-fido2 encrypts the PIN hash first; the same order keeps protocol 2
	// requests byte-identical for the same IVs.
	pinHashEnc, err := p.Encrypt(ss, PINHash([]byte(currentPIN)))
	if err != nil {
		return fmt.Errorf("changing PIN: %w", err)
	}
	newPinEnc, err := p.Encrypt(ss, padded)
	if err != nil {
		return fmt.Errorf("changing PIN: %w", err)
	}
	msg := append(append([]byte(nil), newPinEnc...), pinHashEnc...)
	_, err = c.clientPIN(ctx, &ClientPINRequest{
		PinUvAuthProtocol: p.Version(),
		SubCommand:        PINChangePIN,
		KeyAgreement:      platformKey,
		PinUvAuthParam:    p.Authenticate(ss, msg),
		NewPinEnc:         newPinEnc,
		PinHashEnc:        pinHashEnc,
	})
	if err != nil {
		return fmt.Errorf("changing PIN: %w", c.pinFailure(ctx, p, err))
	}
	c.forgetInfo()
	return nil
}

// PINToken gets a pinUvAuthToken with the PIN. When getInfo's pinUvAuthToken option
// is true it uses getPinUvAuthTokenUsingPinWithPermissions (0x09) with perms (which
// must not be zero) and, unless empty, the permissions RP ID rpID; otherwise the
// CTAP 2.0 getPinToken (0x05), which takes neither and ignores both. A wrong PIN
// gives a *PINError with the retries left (errors.Is(err, ErrPINInvalid) holds);
// the current PIN only needs to be non-empty UTF-8 of at most 63 bytes. While
// getInfo's forcePINChange is true, authenticators refuse tokens
// (CTAP2_ERR_PIN_POLICY_VIOLATION from 0x09, CTAP2_ERR_PIN_INVALID from 0x05):
// call ChangePIN first.
func (c *Client) PINToken(ctx context.Context, pin string, perms Permission, rpID string) (*PINToken, error) {
	p, info, err := c.pinProtocol(ctx, needClientPIN)
	if err != nil {
		return nil, fmt.Errorf("getting PIN token: %w", err)
	}
	if err := checkPINText(pin); err != nil {
		return nil, fmt.Errorf("getting PIN token: %w", err)
	}
	withPerms := info.Options["pinUvAuthToken"]
	if withPerms && perms == 0 {
		return nil, errors.New("getting PIN token: no permissions requested")
	}
	platformKey, ss, err := c.encapsulate(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("getting PIN token: %w", err)
	}
	pinHashEnc, err := p.Encrypt(ss, PINHash([]byte(pin)))
	if err != nil {
		return nil, fmt.Errorf("getting PIN token: %w", err)
	}
	req := &ClientPINRequest{
		PinUvAuthProtocol: p.Version(),
		SubCommand:        PINGetPINToken,
		KeyAgreement:      platformKey,
		PinHashEnc:        pinHashEnc,
	}
	if withPerms {
		req.SubCommand, req.Permissions, req.RPID = PINGetPINUvAuthTokenUsingPinWithPerms, perms, rpID
	} else {
		perms, rpID = 0, ""
	}
	resp, err := c.clientPIN(ctx, req)
	if err != nil {
		if errors.Is(err, ErrPINPolicyViolation) {
			// What 0x09 answers while forcePINChange is set.
			return nil, fmt.Errorf("getting PIN token: the authenticator requires a PIN change first: %w", err)
		}
		return nil, fmt.Errorf("getting PIN token: %w", c.pinFailure(ctx, p, err))
	}
	tok, err := decryptToken(p, ss, resp.PinUvAuthToken)
	if err != nil {
		return nil, fmt.Errorf("getting PIN token: %w", err)
	}
	return &PINToken{Protocol: p, Token: tok, Permissions: perms, RPID: rpID}, nil
}

// UVToken gets a pinUvAuthToken with the authenticator's built-in user verification
// (getPinUvAuthTokenUsingUvWithPermissions, CTAP 2.1) for perms, bound to rpID
// unless empty. Failed verification gives a *PINError with the UV retries left
// (errors.Is(err, ErrUVInvalid) holds).
func (c *Client) UVToken(ctx context.Context, perms Permission, rpID string) (*PINToken, error) {
	p, info, err := c.pinProtocol(ctx, needUV)
	if err != nil {
		return nil, fmt.Errorf("getting UV token: %w", err)
	}
	if !info.Options["pinUvAuthToken"] {
		return nil, fmt.Errorf("getting UV token: %w", ErrNoUVToken)
	}
	if perms == 0 {
		return nil, errors.New("getting UV token: no permissions requested")
	}
	platformKey, ss, err := c.encapsulate(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("getting UV token: %w", err)
	}
	resp, err := c.clientPIN(ctx, &ClientPINRequest{
		PinUvAuthProtocol: p.Version(),
		SubCommand:        PINGetPINUvAuthTokenUsingUvWithPerms,
		KeyAgreement:      platformKey,
		Permissions:       perms,
		RPID:              rpID,
	})
	if err != nil {
		return nil, fmt.Errorf("getting UV token: %w", c.pinFailure(ctx, p, err))
	}
	tok, err := decryptToken(p, ss, resp.PinUvAuthToken)
	if err != nil {
		return nil, fmt.Errorf("getting UV token: %w", err)
	}
	return &PINToken{Protocol: p, Token: tok, Permissions: perms, RPID: rpID}, nil
}

// decryptToken decrypts pinUvAuthToken and checks its length: 16 or 32 bytes for
// protocol 1, 32 for protocol 2.
func decryptToken(p PINProtocol, sharedSecret, enc []byte) ([]byte, error) {
	if len(enc) == 0 {
		return nil, fmt.Errorf("no token in the reply: %w", ErrMalformedResponse)
	}
	tok, err := p.Decrypt(sharedSecret, enc)
	if err != nil {
		return nil, fmt.Errorf("decrypting the token: %w: %w", ErrMalformedResponse, err)
	}
	if ok := len(tok) == 32 || (p.Version() == 1 && len(tok) == 16); !ok {
		return nil, fmt.Errorf("token of %d bytes for PIN protocol %d: %w", len(tok), p.Version(), ErrMalformedResponse)
	}
	return tok, nil
}
