package webauthn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Errors a browser reports as DOMExceptions of the same names. Errors from the
// authenticator wrap these and the ctap2.StatusError behind them.
var (
	// ErrNotAllowed: the user or the key declined, or the timeout ran out.
	ErrNotAllowed = errors.New("NotAllowedError")
	// ErrInvalidState: a credential of excludeCredentials is on the key.
	ErrInvalidState = errors.New("InvalidStateError: the key already holds one of excludeCredentials")
	// ErrNotSupported: the options ask for something neither ctapkit nor the key
	// does (no acceptable algorithm, a required extension the key lacks).
	ErrNotSupported = errors.New("NotSupportedError")
)

// Client plays the browser's part between a relying party's options and an
// authenticator: it checks the origin and RP ID, builds clientDataJSON, maps the
// options and extensions to CTAP, runs user verification, and returns the
// response JSON the RP's server verifies. It is not safe for concurrent use.
type Client struct {
	// CTAP is the authenticator. Its keepalive callback shows touch notices.
	CTAP *ctap2.Client
	// Origin is the web origin the RP's page would have, e.g.
	// "https://example.com" or "http://localhost:8080".
	Origin string
	// PIN is asked for the key's PIN when user verification needs it and the key
	// has no built-in UV; nil means "no PIN available".
	PIN func(ctx context.Context) (string, error)
	// SelectAccount chooses among several discoverable credentials for one RP
	// (most recent first), as a browser's account chooser does; nil takes the
	// first.
	SelectAccount func(accounts []Account) (int, error)
	// Attachment is the response's authenticatorAttachment: "cross-platform"
	// (default) for a roaming key.
	Attachment string
}

// Account is one discoverable credential offered to SelectAccount.
type Account struct {
	CredentialID []byte
	UserID       []byte
	Name         string
	DisplayName  string
}

// Longest and shortest timeouts browsers honour (Chromium clamps the RP's timeout
// to this range; a missing one is 5 minutes).
const (
	minTimeout     = 10 * time.Second
	maxTimeout     = 10 * time.Minute
	defaultTimeout = 5 * time.Minute
)

func withRPTimeout(ctx context.Context, ms uint32) (context.Context, context.CancelFunc) {
	d := defaultTimeout
	if ms > 0 {
		d = min(max(time.Duration(ms)*time.Millisecond, minTimeout), maxTimeout)
	}
	return context.WithTimeout(ctx, d)
}

// session is what one create() or get() learned of the key.
type session struct {
	c     *Client
	info  *ctap2.Info
	rpID  string
	token *ctap2.PINToken // the pinUvAuthToken of the request, if any
}

// ceremony is what create() and get() start the same way: the RP ID checked
// against the origin, the client data, the RP's timeout and the key's getInfo.
type ceremony struct {
	*session
	clientData CollectedClientData
	ctx        context.Context
	cancel     context.CancelFunc
}

func (c *Client) begin(ctx context.Context, typ string, challenge []byte, rpID string, timeoutMS uint32) (*ceremony, error) {
	if c.CTAP == nil {
		return nil, errors.New("webauthn: Client.CTAP is nil")
	}
	origin, err := ParseOrigin(c.Origin)
	if err != nil {
		return nil, err
	}
	if rpID, err = origin.RPID(rpID); err != nil {
		return nil, err
	}
	ctx, cancel := withRPTimeout(ctx, timeoutMS)
	info, err := c.CTAP.Info(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("getInfo: %w", err)
	}
	return &ceremony{
		session:    &session{c: c, info: info, rpID: rpID},
		clientData: CollectedClientData{Type: typ, Challenge: challenge, Origin: origin.Serialized},
		ctx:        ctx, cancel: cancel,
	}, nil
}

func (s *session) option(name string) bool {
	v, _ := s.info.Option(name)
	return v
}

// canVerify is whether the key can verify its user: a PIN is set, or built-in UV
// is configured.
func (s *session) canVerify() bool { return s.option("clientPin") || s.option("uv") }

// authorize gets a pinUvAuthToken with perms for the RP: by built-in UV when the
// key offers tokens through it, else with the PIN. It returns nil, nil when the
// key cannot verify its user at all.
func (s *session) authorize(ctx context.Context, perms ctap2.Permission) (*ctap2.PINToken, error) {
	if s.option("uv") && s.option("pinUvAuthToken") {
		tok, err := s.c.CTAP.UVToken(ctx, perms, s.rpID)
		if err == nil || !errors.Is(err, ctap2.ErrUVBlocked) || !s.option("clientPin") {
			return tok, wrapUV(err)
		}
		// Built-in UV is blocked: fall back to the PIN, as platforms do.
	}
	if !s.option("clientPin") {
		return nil, nil
	}
	if s.c.PIN == nil {
		return nil, fmt.Errorf("%w: the key needs its PIN and none was given", ErrNotAllowed)
	}
	pin, err := s.c.PIN(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := s.c.CTAP.PINToken(ctx, pin, perms, s.rpID)
	return tok, wrapUV(err)
}

func wrapUV(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("verifying the user: %w", err)
}

// verified runs a makeCredential or getAssertion with the user verification
// userVerification asks for, as browsers do: "required" needs a token (or, on a
// CTAP 2.0 key with built-in UV and no PIN, the uv option); "preferred" uses one
// when the key can verify; "discouraged" does not, unless the key insists
// (PUAT_REQUIRED: alwaysUv, or discoverable credentials on a key with a PIN).
func (s *session) verified(ctx context.Context, userVerification string, perms ctap2.Permission,
	cdh []byte, opts **ctap2.Options, setParam func([]byte, uint), call func() error) error {
	protect := func() error {
		tok, err := s.authorize(ctx, perms)
		if err != nil {
			return err
		}
		if tok == nil {
			return fmt.Errorf("%w: user verification needed, but the key has no PIN and no built-in UV (set a PIN first: ctapkit pin set)", ErrNotAllowed)
		}
		s.token = tok
		setParam(tok.Param(cdh), tok.Protocol.Version())
		if *opts != nil {
			(*opts).UV = nil // the token carries the verification
		}
		return nil
	}
	switch userVerification {
	case "required":
		if s.option("uv") && !s.option("pinUvAuthToken") && !s.option("clientPin") {
			if *opts == nil {
				*opts = &ctap2.Options{}
			}
			(*opts).UV = ctap2.Bool(true)
		} else if err := protect(); err != nil {
			return err
		}
	case "preferred", "":
		if s.canVerify() {
			if s.option("uv") && !s.option("pinUvAuthToken") && !s.option("clientPin") {
				if *opts == nil {
					*opts = &ctap2.Options{}
				}
				(*opts).UV = ctap2.Bool(true)
			} else if err := protect(); err != nil {
				return err
			}
		}
	}
	err := call()
	if s.token == nil && errors.Is(err, ctap2.ErrPUATRequired) {
		if perr := protect(); perr != nil {
			return perr
		}
		err = call()
	}
	return err
}

// ctapError turns an authenticator's refusal into the DOMException a browser
// would report, keeping the CTAP status for callers that look.
func ctapError(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ctap2.ErrCredentialExcluded):
		return fmt.Errorf("%s: %w: %w", op, ErrInvalidState, err)
	case errors.Is(err, ctap2.ErrUnsupportedAlgorithm):
		return fmt.Errorf("%s: %w: the key supports none of pubKeyCredParams: %w", op, ErrNotSupported, err)
	case errors.Is(err, ctap2.ErrOperationDenied), errors.Is(err, ctap2.ErrNoCredentials),
		errors.Is(err, ctap2.ErrUserActionTimeout), errors.Is(err, ctap2.ErrKeepaliveCancel),
		errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w: %w", op, ErrNotAllowed, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// transports is what the response says the key can be reached by: getInfo's
// transports, else the one in use.
func (s *session) transports() []string {
	if len(s.info.Transports) > 0 {
		return s.info.Transports
	}
	switch s.c.CTAP.Device().Info().Transport {
	case "hid", "soft":
		return []string{"usb"}
	case "pcsc":
		return []string{"nfc"}
	}
	return []string{}
}

func (c *Client) attachment() string {
	if c.Attachment != "" {
		return c.Attachment
	}
	return "cross-platform"
}

// usableCredentials drops descriptors a key cannot hold (other types, IDs longer
// than its maxCredentialIdLength) and converts the rest.
func (s *session) usableCredentials(list []CredentialDescriptor) []ctap2.CredentialDescriptor {
	var out []ctap2.CredentialDescriptor
	for _, d := range list {
		if d.Type != ctap2.CredentialType || len(d.ID) == 0 {
			continue
		}
		if m := s.info.MaxCredentialIDLength; m > 0 && uint(len(d.ID)) > m {
			continue
		}
		out = append(out, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: d.ID})
	}
	return out
}

// presentCredentials narrows a credential list to the ones on this key, with
// silent (up=false) getAssertions in batches of maxCredentialCountInList, as
// Chromium does before an excludeList or allowList too long for the key, or
// before a per-credential PRF evaluation.
func (s *session) presentCredentials(ctx context.Context, list []ctap2.CredentialDescriptor) ([]ctap2.CredentialDescriptor, error) {
	batch := int(s.info.MaxCredentialCountInList)
	if batch <= 0 {
		batch = 1
	}
	var found []ctap2.CredentialDescriptor
	probe := make([]byte, 32) // any clientDataHash: nothing signed is kept
	for len(list) > 0 {
		n := min(batch, len(list))
		chunk := list[:n]
		list = list[n:]
		for len(chunk) > 0 {
			r, err := s.c.CTAP.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: s.rpID, ClientDataHash: probe,
				AllowList: chunk, Options: &ctap2.Options{UP: ctap2.Bool(false)}})
			if errors.Is(err, ctap2.ErrNoCredentials) {
				break
			}
			if errors.Is(err, ctap2.ErrPUATRequired) {
				// The key answers nothing without user verification (alwaysUv):
				// no silent probing, the whole list goes in the real request.
				return append(append(found, chunk...), list...), nil
			}
			if err != nil {
				return nil, fmt.Errorf("looking for credentials on the key: %w", err)
			}
			hit := chunk[0]
			if r.Credential != nil {
				hit = *r.Credential
			}
			found = append(found, hit)
			// Look again without it: a batch may hold more than one.
			var rest []ctap2.CredentialDescriptor
			for _, d := range chunk {
				if string(d.ID) != string(hit.ID) {
					rest = append(rest, d)
				}
			}
			if len(rest) == len(chunk) {
				break
			}
			chunk = rest
		}
	}
	return found, nil
}
