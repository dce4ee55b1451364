package ctap2

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"fmt"
)

// hmac-secret (CTAP 2.1 §12.5) and hmac-secret-mc (CTAP 2.2): the platform sends one
// or two 32-byte salts encrypted under a PIN-protocol shared secret; the
// authenticator returns HMAC-SHA-256(CredRandom, salt) for each, encrypted the same
// way. CredRandom differs with and without user verification.

// HMACSecretSaltLength is the length of each salt and each output.
const HMACSecretSaltLength = 32

// HMACSecretInput is the "hmac-secret" getAssertion input (and the "hmac-secret-mc"
// makeCredential input): {1: keyAgreement, 2: saltEnc, 3: saltAuth, 4:
// pinUvAuthProtocol}. Protocol 1 leaves key 4 out, as libfido2 does, because CTAP
// 2.0 authenticators know only keys 1 to 3; absent means protocol 1.
type HMACSecretInput struct {
	KeyAgreement      RawMessage `cbor:"1,keyasint,omitempty"`
	SaltEnc           []byte     `cbor:"2,keyasint,omitempty"`
	SaltAuth          []byte     `cbor:"3,keyasint,omitempty"`
	PinUvAuthProtocol uint       `cbor:"4,keyasint,omitempty"`
}

// Protocol is the input's pinUvAuthProtocol, 1 when absent.
func (in *HMACSecretInput) Protocol() uint {
	if in.PinUvAuthProtocol == 0 {
		return 1
	}
	return in.PinUvAuthProtocol
}

// HMACSecret is the platform's state for one hmac-secret exchange: the key agreement
// it sends and the shared secret that decrypts the outputs. Make one per
// getAssertion with Client.NewHMACSecret (or NewHMACSecret with a key agreement key
// obtained elsewhere), build the input with Input, put it in the request with
// GetAssertionExtensions, and decrypt the authData output with Outputs.
type HMACSecret struct {
	Protocol     PINProtocol
	PlatformKey  []byte // COSE key agreement key sent to the authenticator
	SharedSecret []byte
	salts        int // salts of the last Input, 0 before
}

// NewHMACSecret runs the platform's half of key agreement against the
// authenticator's COSE key agreement key. own is the platform's ephemeral key; nil
// makes a fresh one.
func NewHMACSecret(p PINProtocol, authenticatorKey []byte, own *ecdh.PrivateKey) (*HMACSecret, error) {
	platformKey, ss, err := Encapsulate(p, authenticatorKey, own)
	if err != nil {
		return nil, fmt.Errorf("hmac-secret: %w", err)
	}
	return &HMACSecret{Protocol: p, PlatformKey: platformKey, SharedSecret: ss}, nil
}

// NewHMACSecret asks the authenticator for its key agreement key (with PIN/UV auth
// protocol 2 if it offers it, else 1) and prepares an hmac-secret exchange. It needs
// no PIN; the authenticator must list a pinUvAuthProtocol in getInfo.
func (c *Client) NewHMACSecret(ctx context.Context) (*HMACSecret, error) {
	p, _, err := c.pinProtocol(ctx, needNothing)
	if err != nil {
		return nil, fmt.Errorf("hmac-secret: %w", err)
	}
	peer, err := c.KeyAgreement(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("hmac-secret: %w", err)
	}
	var own *ecdh.PrivateKey
	if f := fixtureOf(ctx); f != nil {
		own = f.own
	}
	return NewHMACSecret(p, peer, own)
}

// ErrHMACSecretSalt reports a salt that is not 32 bytes.
var ErrHMACSecretSalt = errors.New("hmac-secret salts must be 32 bytes")

// Input encrypts and authenticates salt1 and, unless nil, salt2.
func (h *HMACSecret) Input(salt1, salt2 []byte) (*HMACSecretInput, error) {
	if len(salt1) != HMACSecretSaltLength || (salt2 != nil && len(salt2) != HMACSecretSaltLength) {
		return nil, fmt.Errorf("%w (got %d and %d)", ErrHMACSecretSalt, len(salt1), len(salt2))
	}
	salts := append(append([]byte(nil), salt1...), salt2...)
	saltEnc, err := h.Protocol.Encrypt(h.SharedSecret, salts)
	if err != nil {
		return nil, fmt.Errorf("hmac-secret: %w", err)
	}
	in := &HMACSecretInput{
		KeyAgreement: h.PlatformKey,
		SaltEnc:      saltEnc,
		SaltAuth:     h.Protocol.Authenticate(h.SharedSecret, saltEnc),
	}
	if v := h.Protocol.Version(); v != 1 {
		in.PinUvAuthProtocol = v
	}
	h.salts = len(salts) / HMACSecretSaltLength
	return in, nil
}

// Outputs decrypts the authenticator's "hmac-secret" (or "hmac-secret-mc") output
// into one or two 32-byte secrets; output2 is nil when one salt was sent. After
// Input it also checks that the number of outputs matches the number of salts.
func (h *HMACSecret) Outputs(encrypted []byte) (output1, output2 []byte, err error) {
	pt, err := h.Protocol.Decrypt(h.SharedSecret, encrypted)
	if err != nil {
		return nil, nil, fmt.Errorf("hmac-secret output: %w", err)
	}
	n := len(pt) / HMACSecretSaltLength
	if (len(pt) != 32 && len(pt) != 64) || (h.salts != 0 && n != h.salts) {
		return nil, nil, fmt.Errorf("hmac-secret output: %d bytes of secrets for %d salts: %w", len(pt), h.salts, ErrMalformedResponse)
	}
	if n == 2 {
		return pt[:32], pt[32:], nil
	}
	return pt, nil, nil
}

// PRFSalt maps a WebAuthn PRF input (prf.eval.first or .second) to the hmac-secret
// salt: SHA-256("WebAuthn PRF" || 0x00 || input).
func PRFSalt(input []byte) []byte {
	h := sha256.New()
	h.Write([]byte("WebAuthn PRF\x00"))
	h.Write(input)
	return h.Sum(nil)
}
