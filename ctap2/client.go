package ctap2

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ctapkit/ctapkit/transport"
)

// Client drives an authenticator over any transport.Device with typed CTAP2 commands.
// It is safe for concurrent use, but an authenticator runs one command at a time, so
// calls are serialized. Stateful sequences (getAssertion then getNextAssertion) must
// not be interleaved with other commands by the caller.
//
// A key that speaks only CTAP1/U2F is recognised (see WithU2FFallback): Info then
// describes it as version U2F_V2, MakeCredential and GetAssertion go to the fallback,
// and every other command fails with ErrU2FOnly without being sent.
type Client struct {
	dev         transport.Device
	onKeepalive func(status byte)
	fallback    U2FFallback

	mu   sync.Mutex
	info *Info // cached getInfo, for message-size checks
	mode int   // modeUnknown, modeCTAP2 or modeU2F
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithKeepaliveFunc reports keepalive status changes (transport.StatusProcessing,
// transport.StatusUPNeeded) during every command, e.g. to show "touch your key".
func WithKeepaliveFunc(fn func(status byte)) ClientOption {
	return func(c *Client) { c.onKeepalive = fn }
}

// NewClient returns a Client for dev. It sends nothing until the first call.
func NewClient(dev transport.Device, opts ...ClientOption) *Client {
	c := &Client{dev: dev}
	for _, o := range opts {
		o(c)
	}
	c.decideFromTransport()
	return c
}

// Device returns the underlying device.
func (c *Client) Device() transport.Device { return c.dev }

// ErrMalformedResponse wraps replies that decode but break the spec's shape rules.
var ErrMalformedResponse = errors.New("malformed response")

// Call sends a CTAP2 command with req (nil: no parameters) and decodes the reply into
// resp (nil: the reply must be empty or is ignored). A non-zero status becomes a
// StatusError; a reply that is not canonical CBOR is refused.
func (c *Client) Call(ctx context.Context, cmd Command, req, resp any) error {
	if c.isU2F() {
		return fmt.Errorf("%v: %w", cmd, ErrU2FOnly)
	}
	msg := []byte{byte(cmd)}
	if req != nil {
		body, err := Marshal(req)
		if err != nil {
			return fmt.Errorf("%v: encoding request: %w", cmd, err)
		}
		msg = append(msg, body...)
	}
	c.mu.Lock()
	info := c.info
	c.mu.Unlock()
	if info != nil && len(msg) > info.MessageSize() {
		return fmt.Errorf("%v: request of %d bytes exceeds the key's maximum of %d: %w", cmd, len(msg), info.MessageSize(), ErrRequestTooLarge)
	}
	if c.onKeepalive != nil {
		ctx = transport.WithKeepalive(ctx, c.onKeepalive)
	}
	reply, err := c.dev.Transact(ctx, transport.CmdCBOR, msg)
	if err != nil {
		return fmt.Errorf("%v: %w", cmd, err)
	}
	if len(reply) == 0 {
		return fmt.Errorf("%v: empty reply: %w", cmd, ErrMalformedResponse)
	}
	if status := StatusError(reply[0]); status != StatusOK {
		return status
	}
	body := reply[1:]
	if resp == nil || len(body) == 0 {
		return nil
	}
	if err := CheckCanonical(body); err != nil {
		return fmt.Errorf("%v: %w", cmd, err)
	}
	if err := Unmarshal(body, resp); err != nil {
		return fmt.Errorf("%v: decoding reply: %w", cmd, err)
	}
	return nil
}

// GetInfo asks the authenticator for its capabilities and caches the answer. For a
// U2F-only key it returns, without asking, what such a key offers: versions
// ["U2F_V2"], ES256, option up, a zero AAGUID (see U2FOnly).
func (c *Client) GetInfo(ctx context.Context) (*Info, error) {
	if c.isU2F() {
		return u2fInfo(), nil
	}
	var info Info
	if err := c.Call(ctx, CmdGetInfo, nil, &info); err != nil {
		if c.getInfoFailedU2F(ctx, err) {
			c.mu.Lock()
			c.mode, c.info = modeU2F, u2fInfo()
			c.mu.Unlock()
			return u2fInfo(), nil
		}
		return nil, err
	}
	if len(info.Versions) == 0 || len(info.AAGUID) != 16 {
		return nil, fmt.Errorf("getInfo: missing versions or a 16-byte aaguid: %w", ErrMalformedResponse)
	}
	c.mu.Lock()
	c.info, c.mode = &info, modeCTAP2
	c.mu.Unlock()
	return &info, nil
}

// Info returns the cached getInfo answer, asking the authenticator the first time.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	c.mu.Lock()
	info := c.info
	c.mu.Unlock()
	if info != nil {
		return info, nil
	}
	return c.GetInfo(ctx)
}

// MakeCredential registers a new credential (CTAP 2.1 §6.1).
func (c *Client) MakeCredential(ctx context.Context, req *MakeCredentialRequest) (*MakeCredentialResponse, error) {
	if u2f, err := c.useU2F(ctx); err != nil {
		return nil, fmt.Errorf("makeCredential: %w", err)
	} else if u2f {
		return c.u2fMakeCredential(ctx, req)
	}
	var resp MakeCredentialResponse
	if err := c.Call(ctx, CmdMakeCredential, req, &resp); err != nil {
		return nil, err
	}
	if resp.Fmt == "" || len(resp.AuthData) == 0 || len(resp.AttStmt) == 0 {
		return nil, fmt.Errorf("makeCredential: missing fmt, authData or attStmt: %w", ErrMalformedResponse)
	}
	return &resp, nil
}

// GetAssertion signs a challenge with a credential (CTAP 2.1 §6.2). When the allow list
// has exactly one entry the authenticator may omit the credential; it is filled in.
func (c *Client) GetAssertion(ctx context.Context, req *GetAssertionRequest) (*GetAssertionResponse, error) {
	if u2f, err := c.useU2F(ctx); err != nil {
		return nil, fmt.Errorf("getAssertion: %w", err)
	} else if u2f {
		return c.u2fGetAssertion(ctx, req)
	}
	var resp GetAssertionResponse
	if err := c.Call(ctx, CmdGetAssertion, req, &resp); err != nil {
		return nil, err
	}
	if resp.Credential == nil && len(req.AllowList) == 1 {
		d := req.AllowList[0]
		resp.Credential = &CredentialDescriptor{Type: d.Type, ID: d.ID}
	}
	return &resp, checkAssertion("getAssertion", &resp)
}

// GetNextAssertion returns the next credential of the preceding getAssertion.
func (c *Client) GetNextAssertion(ctx context.Context) (*GetAssertionResponse, error) {
	var resp GetAssertionResponse
	if err := c.Call(ctx, CmdGetNextAssertion, nil, &resp); err != nil {
		return nil, err
	}
	return &resp, checkAssertion("getNextAssertion", &resp)
}

func checkAssertion(op string, r *GetAssertionResponse) error {
	if r.Credential == nil || len(r.AuthData) == 0 || len(r.Signature) == 0 {
		return fmt.Errorf("%s: missing credential, authData or signature: %w", op, ErrMalformedResponse)
	}
	return nil
}

// GetAssertions runs getAssertion and then getNextAssertion for every further
// credential the authenticator reports, returning all assertions in its order.
func (c *Client) GetAssertions(ctx context.Context, req *GetAssertionRequest) ([]*GetAssertionResponse, error) {
	first, err := c.GetAssertion(ctx, req)
	if err != nil {
		return nil, err
	}
	all := []*GetAssertionResponse{first}
	for n := first.NumberOfCredentials; uint(len(all)) < n; {
		next, err := c.GetNextAssertion(ctx)
		if err != nil {
			return all, fmt.Errorf("assertion %d of %d: %w", len(all)+1, n, err)
		}
		all = append(all, next)
	}
	return all, nil
}

// Reset wipes the authenticator: credentials, PIN and settings (CTAP 2.1 §6.6). Keys
// accept it only shortly after power-up and only with a touch.
func (c *Client) Reset(ctx context.Context) error {
	return c.Call(ctx, CmdReset, nil, nil)
}

// Selection waits for the user to touch this authenticator (CTAP 2.1 §6.9).
func (c *Client) Selection(ctx context.Context) error {
	return c.Call(ctx, CmdSelection, nil, nil)
}
