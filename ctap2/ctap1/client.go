package ctap1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
)

// DefaultPollInterval is how often Register and Authenticate repeat a command that a
// key answered with 0x6985 (test of user presence required), as libfido2 does.
const DefaultPollInterval = 100 * time.Millisecond

// Client drives a U2F key over a transport.Device: each message is one
// transport.CmdMsg transaction (CTAPHID_MSG over USB; the NFC transport passes the APDU
// on as it is). U2F keys answer at once, so operations that need a touch are repeated
// until the key says yes or ctx ends.
type Client struct {
	dev          transport.Device
	onKeepalive  func(status byte)
	short        bool
	pollInterval time.Duration
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithKeepaliveFunc reports transport.StatusUPNeeded once the key asks for a touch
// (its first 0x6985), and whatever keepalives the transport relays, e.g. to show
// "touch your key".
func WithKeepaliveFunc(fn func(status byte)) ClientOption {
	return func(c *Client) { c.onKeepalive = fn }
}

// WithShortAPDUs sends short APDUs (Lc <= 255, Le 00), for NFC readers that cannot
// carry extended ones. Commands whose data does not fit are still sent extended.
// Without it the Client uses the USB framing of HIDCommand.
func WithShortAPDUs() ClientOption {
	return func(c *Client) { c.short = true }
}

// WithPollInterval changes the DefaultPollInterval.
func WithPollInterval(d time.Duration) ClientOption {
	return func(c *Client) {
		if d > 0 {
			c.pollInterval = d
		}
	}
}

// Client emulates makeCredential and getAssertion, so a ctap2.Client can hand a
// U2F-only key's requests to it (ctap2.WithU2FFallback).
var _ ctap2.U2FFallback = (*Client)(nil)

// NewClient returns a Client for dev. It sends nothing until the first call.
func NewClient(dev transport.Device, opts ...ClientOption) *Client {
	c := &Client{dev: dev, pollInterval: DefaultPollInterval}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Device returns the underlying device.
func (c *Client) Device() transport.Device { return c.dev }

// Transmit sends one command APDU with CLA 0 and returns the response data and
// status word; a status word other than 0x9000 is not an error here.
func (c *Client) Transmit(ctx context.Context, ins, p1, p2 byte, data []byte) ([]byte, StatusWord, error) {
	var cmd []byte
	var err error
	if c.short && len(data) <= maxShortData {
		cmd, err = ShortCommand(ins, p1, p2, data)
	} else {
		cmd, err = HIDCommand(ins, p1, p2, data)
	}
	if err != nil {
		return nil, 0, err
	}
	if c.onKeepalive != nil {
		ctx = transport.WithKeepalive(ctx, c.onKeepalive)
	}
	reply, err := c.dev.Transact(ctx, transport.CmdMsg, cmd)
	if err != nil {
		return nil, 0, err
	}
	return ParseResponse(reply)
}

// call sends one command and returns its data; a status word other than 0x9000 is
// returned as the error.
func (c *Client) call(ctx context.Context, ins, p1 byte, data []byte) ([]byte, error) {
	resp, sw, err := c.Transmit(ctx, ins, p1, 0, data)
	if err != nil {
		return nil, err
	}
	if sw != SWNoError {
		return nil, sw
	}
	return resp, nil
}

// poll repeats a command while the key answers 0x6985, every poll interval, until it
// answers anything else or ctx ends (an error wrapping ctx.Err()).
func (c *Client) poll(ctx context.Context, ins, p1 byte, data []byte) ([]byte, error) {
	notify := c.onKeepalive
	if notify == nil {
		notify = transport.KeepaliveFunc(ctx)
	}
	told := false
	for {
		resp, sw, err := c.Transmit(ctx, ins, p1, 0, data)
		switch {
		case err != nil:
			return nil, err
		case sw == SWNoError:
			return resp, nil
		case sw != SWConditionsNotSatisfied:
			return nil, sw
		}
		if !told {
			notify(transport.StatusUPNeeded)
			told = true
		}
		t := time.NewTimer(c.pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for user presence: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Version asks for the U2F protocol version; U2F keys answer "U2F_V2".
func (c *Client) Version(ctx context.Context) (string, error) {
	resp, err := c.call(ctx, InsVersion, 0, nil)
	if err != nil {
		return "", fmt.Errorf("u2f version: %w", err)
	}
	return string(resp), nil
}

// Register creates a key pair for the application, waiting for a touch. The response
// is parsed but not verified; RegisterResponse.Verify checks its signature.
func (c *Client) Register(ctx context.Context, req *RegisterRequest) (*RegisterResponse, error) {
	resp, err := c.poll(ctx, InsRegister, 0, req.Marshal())
	if err != nil {
		return nil, fmt.Errorf("u2f register: %w", err)
	}
	r, err := ParseRegisterResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("u2f %w", err)
	}
	return r, nil
}

// Authenticate signs with a key handle. EnforcePresence waits for a touch;
// DontEnforcePresence signs at once; CheckOnly never signs (use CheckKeyHandle).
// An unknown key handle or wrong application is SWWrongData, which errors.Is also
// matches as ctap2.ErrInvalidCredential.
func (c *Client) Authenticate(ctx context.Context, req *AuthenticateRequest) (*AuthenticateResponse, error) {
	if req.Control == CheckOnly {
		return nil, errors.New("u2f authenticate: check-only produces no signature; use CheckKeyHandle")
	}
	data, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	var resp []byte
	if req.Control == EnforcePresence {
		resp, err = c.poll(ctx, InsAuthenticate, byte(req.Control), data)
	} else {
		resp, err = c.call(ctx, InsAuthenticate, byte(req.Control), data)
	}
	if err != nil {
		return nil, fmt.Errorf("u2f authenticate: %w", err)
	}
	r, err := ParseAuthenticateResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("u2f %w", err)
	}
	if req.Control == EnforcePresence && r.UserPresence&userPresenceFlag == 0 {
		return nil, errors.New("u2f authenticate: key signed without user presence")
	}
	return r, nil
}

// CheckKeyHandle asks whether keyHandle is this key's for application without a
// touch (AUTHENTICATE check-only): 0x6985 is true, 0x6A80 false.
func (c *Client) CheckKeyHandle(ctx context.Context, application [ApplicationSize]byte, keyHandle []byte) (bool, error) {
	req := AuthenticateRequest{Control: CheckOnly, Application: application, KeyHandle: keyHandle}
	data, err := req.Marshal()
	if err != nil {
		return false, err
	}
	_, sw, err := c.Transmit(ctx, InsAuthenticate, byte(CheckOnly), 0, data)
	switch {
	case err != nil:
		return false, fmt.Errorf("u2f check key handle: %w", err)
	case sw == SWConditionsNotSatisfied:
		return true, nil
	case sw == SWWrongData:
		return false, nil
	case sw == SWNoError:
		return false, errors.New("u2f check key handle: key signed a check-only request")
	}
	return false, fmt.Errorf("u2f check key handle: %w", sw)
}

// Dummy parameters of the REGISTER that collects a touch before a host reports an
// excluded credential or no credentials, so that a key cannot be probed silently
// (libfido2's values).
var dummyParameter = [32]byte(bytes.Repeat([]byte{0xff}, 32))

func (c *Client) collectTouch(ctx context.Context) error {
	_, err := c.Register(ctx, &RegisterRequest{Challenge: dummyParameter, Application: dummyParameter})
	return err
}

// MakeCredential emulates authenticatorMakeCredential on a U2F key (CTAP 2.1 §10.2):
// every excludeList entry is tried with check-only (a match collects a touch with a
// dummy REGISTER and then fails with CREDENTIAL_EXCLUDED), then REGISTER with
// challenge = clientDataHash and application = rpIdHash. The result has format
// "fido-u2f". U2F keys make ES256, non-discoverable credentials without UV or
// extensions: other algorithms are UNSUPPORTED_ALGORITHM, rk or uv UNSUPPORTED_OPTION;
// extensions are ignored, as a CTAP2 key ignores ones it does not know.
func (c *Client) MakeCredential(ctx context.Context, req *ctap2.MakeCredentialRequest) (*ctap2.MakeCredentialResponse, error) {
	switch {
	case req.ClientDataHash == nil || req.RP == nil || req.RP.ID == "" || req.User == nil || req.PubKeyCredParams == nil:
		return nil, fmt.Errorf("u2f makeCredential: %w", ctap2.ErrMissingParameter)
	case len(req.ClientDataHash) != ChallengeSize:
		return nil, fmt.Errorf("u2f makeCredential: %w", ctap2.ErrInvalidParameter)
	case req.Options != nil && req.Options.RK != nil && *req.Options.RK:
		return nil, fmt.Errorf("u2f makeCredential: U2F keys have no discoverable credentials: %w", ctap2.ErrUnsupportedOption)
	case req.Options != nil && req.Options.UV != nil && *req.Options.UV, req.PinUvAuthParam != nil:
		return nil, fmt.Errorf("u2f makeCredential: U2F keys have no user verification: %w", ctap2.ErrUnsupportedOption)
	case req.EnterpriseAttestation != 0:
		return nil, fmt.Errorf("u2f makeCredential: no enterprise attestation: %w", ctap2.ErrInvalidParameter)
	}
	es256 := false
	for _, p := range req.PubKeyCredParams {
		es256 = es256 || (p.Type == ctap2.CredentialType && p.Alg == ctap2.AlgES256)
	}
	if !es256 {
		return nil, fmt.Errorf("u2f makeCredential: U2F keys make only ES256 credentials: %w", ctap2.ErrUnsupportedAlgorithm)
	}
	app := ctap2.RPIDHash(req.RP.ID)
	for _, d := range req.ExcludeList {
		if !usableHandle(d) {
			continue
		}
		found, err := c.CheckKeyHandle(ctx, app, d.ID)
		if err != nil {
			return nil, fmt.Errorf("u2f makeCredential: %w", err)
		}
		if found {
			if err := c.collectTouch(ctx); err != nil {
				return nil, fmt.Errorf("u2f makeCredential: excluded credential: %w", err)
			}
			return nil, ctap2.ErrCredentialExcluded
		}
	}
	reg, err := c.Register(ctx, &RegisterRequest{Challenge: [32]byte(req.ClientDataHash), Application: app})
	if err != nil {
		return nil, err
	}
	return reg.MakeCredentialResponse(app)
}

// GetAssertion emulates authenticatorGetAssertion on a U2F key (CTAP 2.1 §10.2): each
// allowList entry is tried with AUTHENTICATE (enforce presence, or don't-enforce for
// up=false) until one is the key's; the first is returned, without
// numberOfCredentials. When none is, the key is touched with a dummy REGISTER (not for
// up=false) and the answer is NO_CREDENTIALS, as from a CTAP2 key. An empty allowList
// is NO_CREDENTIALS at once: U2F keys have no discoverable credentials.
func (c *Client) GetAssertion(ctx context.Context, req *ctap2.GetAssertionRequest) (*ctap2.GetAssertionResponse, error) {
	switch {
	case req.RPID == "" || req.ClientDataHash == nil:
		return nil, fmt.Errorf("u2f getAssertion: %w", ctap2.ErrMissingParameter)
	case len(req.ClientDataHash) != ChallengeSize:
		return nil, fmt.Errorf("u2f getAssertion: %w", ctap2.ErrInvalidParameter)
	case req.Options != nil && req.Options.RK != nil:
		return nil, fmt.Errorf("u2f getAssertion: %w", ctap2.ErrUnsupportedOption)
	case req.Options != nil && req.Options.UV != nil && *req.Options.UV, req.PinUvAuthParam != nil:
		return nil, fmt.Errorf("u2f getAssertion: U2F keys have no user verification: %w", ctap2.ErrUnsupportedOption)
	}
	if len(req.AllowList) == 0 {
		return nil, fmt.Errorf("u2f getAssertion: U2F keys have no discoverable credentials: %w", ctap2.ErrNoCredentials)
	}
	up := req.Options == nil || req.Options.UP == nil || *req.Options.UP
	control := EnforcePresence
	if !up {
		control = DontEnforcePresence
	}
	app := ctap2.RPIDHash(req.RPID)
	for _, d := range req.AllowList {
		if !usableHandle(d) {
			continue
		}
		resp, err := c.Authenticate(ctx, &AuthenticateRequest{
			Control: control, Challenge: [32]byte(req.ClientDataHash), Application: app, KeyHandle: d.ID,
		})
		if errors.Is(err, SWWrongData) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("u2f getAssertion: %w", err)
		}
		return resp.GetAssertionResponse(app, d.ID), nil
	}
	if up {
		if err := c.collectTouch(ctx); err != nil {
			return nil, fmt.Errorf("u2f getAssertion: no credentials: %w", err)
		}
	}
	return nil, ctap2.ErrNoCredentials
}

// usableHandle reports whether a descriptor can be sent as a U2F key handle.
func usableHandle(d ctap2.CredentialDescriptor) bool {
	return d.Type == ctap2.CredentialType && len(d.ID) > 0 && len(d.ID) <= MaxKeyHandleSize
}
