package ctap2

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ctapkit/ctapkit/transport"
)

// U2FFallback serves makeCredential and getAssertion on a key that speaks only
// CTAP1/U2F, by emulating them over U2F messages (CTAP 2.1 §10.2). ctap1.Client
// implements it; ctap2 does not import ctap1, which builds on this package.
//
// If it also has a method Version(ctx) (string, error) (U2F VERSION), the Client
// asks it before trusting a failed getInfo to mean "U2F only".
type U2FFallback interface {
	MakeCredential(ctx context.Context, req *MakeCredentialRequest) (*MakeCredentialResponse, error)
	GetAssertion(ctx context.Context, req *GetAssertionRequest) (*GetAssertionResponse, error)
}

// WithU2FFallback lets the Client serve U2F-only keys, as libfido2 and python-fido2
// do: MakeCredential and GetAssertion (and so GetAssertions) go to f once the
// Client has found the key to be U2F-only. It finds that out from the transport when
// the device reports CTAPHID capabilities without CBOR, or when getInfo fails with
// CTAP1_ERR_INVALID_COMMAND (and f's U2F VERSION, if it has one, answers "U2F_V2").
// With a fallback set, the first MakeCredential or GetAssertion asks getInfo first
// (once, cached) to decide.
func WithU2FFallback(f U2FFallback) ClientOption {
	return func(c *Client) { c.fallback = f }
}

// U2FVersion is the getInfo version string of CTAP1/U2F.
const U2FVersion = "U2F_V2"

// ErrU2FOnly is returned (wrapped, with the command's name) for a CTAP2 command a
// U2F-only key cannot run. It also matches ErrInvalidCommand, the status such a key
// gives, so errors.Is and StatusOf see a CTAP error.
var ErrU2FOnly error = u2fOnlyError{}

type u2fOnlyError struct{}

func (u2fOnlyError) Error() string { return "the key speaks only U2F (CTAP1), not CTAP2" }
func (u2fOnlyError) Unwrap() error { return ErrInvalidCommand }

// CTAPHID capability flags of the INIT reply (CTAP 2.1 §11.2.9.1.3), as devices on
// that transport report them through an optional Capabilities() byte method.
const (
	hidCapCBOR byte = 0x04 // implements CBOR (CTAP2)
	hidCapNMSG byte = 0x08 // does NOT implement MSG (CTAP1)
)

// Protocol the Client has decided the key speaks.
const (
	modeUnknown = iota // not known yet: the next getInfo decides
	modeCTAP2
	modeU2F
)

// decideFromTransport sets the mode from the transport's capabilities, without I/O:
// a CTAPHID device that does not implement CBOR but implements MSG is U2F-only.
func (c *Client) decideFromTransport() {
	d, ok := c.dev.(interface{ Capabilities() byte })
	if !ok {
		return
	}
	if caps := d.Capabilities(); caps&hidCapCBOR == 0 && caps&hidCapNMSG == 0 {
		c.mode, c.info = modeU2F, u2fInfo()
	}
}

// u2fInfo is the getInfo a U2F-only key stands for: version U2F_V2, ES256 only, a
// zero AAGUID, no options but user presence, no extensions, no PIN.
func u2fInfo() *Info {
	return &Info{
		Versions:   []string{U2FVersion},
		AAGUID:     make([]byte, 16),
		Options:    map[string]bool{"up": true},
		Algorithms: []CredentialParam{{Type: CredentialType, Alg: AlgES256}},
	}
}

// U2FOnly reports whether the key is served over CTAP1/U2F: it has no CTAP2, and
// Info describes it as version U2F_V2. It decides with getInfo (Info) when not yet
// known; a key that cannot be asked counts as not U2F-only.
func (c *Client) U2FOnly(ctx context.Context) bool {
	if _, err := c.Info(ctx); err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mode == modeU2F
}

func (c *Client) isU2F() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mode == modeU2F
}

// useU2F decides whether makeCredential and getAssertion go over U2F. Without a
// fallback only what is already known counts (no I/O), as before fallbacks existed.
func (c *Client) useU2F(ctx context.Context) (bool, error) {
	c.mu.Lock()
	mode := c.mode
	c.mu.Unlock()
	if mode != modeUnknown || c.fallback == nil {
		return mode == modeU2F, nil
	}
	if _, err := c.Info(ctx); err != nil {
		return false, err
	}
	return c.isU2F(), nil
}

// getInfoFailedU2F reports whether a getInfo that failed with err means a U2F-only
// key: the key (or its transport) does not know the command, there is a fallback, and
// the fallback's U2F VERSION, if it has one, answers U2F_V2.
func (c *Client) getInfoFailedU2F(ctx context.Context, err error) bool {
	if c.fallback == nil || !(errors.Is(err, ErrInvalidCommand) || errors.Is(err, transport.ErrUnsupportedCommand)) {
		return false
	}
	if v, ok := c.fallback.(interface {
		Version(ctx context.Context) (string, error)
	}); ok {
		version, verr := v.Version(ctx)
		return verr == nil && version == U2FVersion
	}
	return true
}

// u2fMakeCredential sends req to the fallback after refusing what U2F cannot do.
func (c *Client) u2fMakeCredential(ctx context.Context, req *MakeCredentialRequest) (*MakeCredentialResponse, error) {
	const op = "makeCredential"
	if c.fallback == nil {
		return nil, fmt.Errorf("%s: %w", op, ErrU2FOnly)
	}
	if o := req.Options; o != nil && o.RK != nil && *o.RK {
		return nil, fmt.Errorf("%s: a U2F-only key has no discoverable credentials: %w", op, ErrUnsupportedOption)
	}
	if err := u2fRefuseUV(op, req.Options, req.PinUvAuthParam); err != nil {
		return nil, err
	}
	if err := u2fRefuseExtensions(op, req.Extensions); err != nil {
		return nil, err
	}
	if req.EnterpriseAttestation != 0 {
		return nil, fmt.Errorf("%s: a U2F-only key has no enterprise attestation: %w", op, ErrInvalidParameter)
	}
	if !slices.Contains(req.PubKeyCredParams, CredentialParam{Type: CredentialType, Alg: AlgES256}) {
		return nil, fmt.Errorf("%s: a U2F-only key makes only ES256 credentials: %w", op, ErrUnsupportedAlgorithm)
	}
	resp, err := c.fallback.MakeCredential(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Fmt == "" || len(resp.AuthData) == 0 || len(resp.AttStmt) == 0 {
		return nil, fmt.Errorf("%s over U2F: missing fmt, authData or attStmt: %w", op, ErrMalformedResponse)
	}
	return resp, nil
}

// u2fGetAssertion sends req to the fallback after refusing what U2F cannot do.
func (c *Client) u2fGetAssertion(ctx context.Context, req *GetAssertionRequest) (*GetAssertionResponse, error) {
	const op = "getAssertion"
	if c.fallback == nil {
		return nil, fmt.Errorf("%s: %w", op, ErrU2FOnly)
	}
	if o := req.Options; o != nil && o.RK != nil {
		return nil, fmt.Errorf("%s: a U2F-only key has no discoverable credentials: %w", op, ErrUnsupportedOption)
	}
	if err := u2fRefuseUV(op, req.Options, req.PinUvAuthParam); err != nil {
		return nil, err
	}
	if err := u2fRefuseExtensions(op, req.Extensions); err != nil {
		return nil, err
	}
	resp, err := c.fallback.GetAssertion(ctx, req)
	if err != nil {
		return nil, err
	}
	if resp.Credential == nil && len(req.AllowList) == 1 {
		d := req.AllowList[0]
		resp.Credential = &CredentialDescriptor{Type: d.Type, ID: d.ID}
	}
	return resp, checkAssertion(op+" over U2F", resp)
}

func u2fRefuseUV(op string, o *Options, pinUvAuthParam []byte) error {
	if (o != nil && o.UV != nil && *o.UV) || pinUvAuthParam != nil {
		return fmt.Errorf("%s: a U2F-only key has no PIN and no user verification: %w", op, ErrUnsupportedOption)
	}
	return nil
}

func u2fRefuseExtensions(op string, ext map[string]RawMessage) error {
	if len(ext) == 0 {
		return nil
	}
	names := make([]string, 0, len(ext))
	for n := range ext {
		names = append(names, n)
	}
	slices.Sort(names)
	return fmt.Errorf("%s: a U2F-only key has no extensions (asked for %s): %w", op, strings.Join(names, ", "), ErrUnsupportedExtension)
}
