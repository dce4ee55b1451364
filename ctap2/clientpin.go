package ctap2

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// PINSubcommand is a clientPIN subCommand (CTAP 2.1 §6.5.5).
type PINSubcommand uint

const (
	PINGetRetries                         PINSubcommand = 0x01
	PINGetKeyAgreement                    PINSubcommand = 0x02
	PINSetPIN                             PINSubcommand = 0x03
	PINChangePIN                          PINSubcommand = 0x04
	PINGetPINToken                        PINSubcommand = 0x05
	PINGetPINUvAuthTokenUsingUvWithPerms  PINSubcommand = 0x06
	PINGetUVRetries                       PINSubcommand = 0x07
	PINGetPINUvAuthTokenUsingPinWithPerms PINSubcommand = 0x09
)

// Permission is a pinUvAuthToken permission bit (CTAP 2.1 §6.5.5.7).
type Permission uint

const (
	PermMakeCredential       Permission = 0x01 // mc
	PermGetAssertion         Permission = 0x02 // ga
	PermCredentialManagement Permission = 0x04 // cm
	PermBioEnrollment        Permission = 0x08 // be
	PermLargeBlobWrite       Permission = 0x10 // lbw
	PermAuthenticatorConfig  Permission = 0x20 // acfg
	PermPersistentCredMgmtRO Permission = 0x40 // pcmr [2.2]
	knownPermissions         Permission = 0x7F
)

// ClientPINRequest is authenticatorClientPIN (CTAP 2.1 §6.5.5).
type ClientPINRequest struct {
	PinUvAuthProtocol uint          `cbor:"1,keyasint,omitempty"`
	SubCommand        PINSubcommand `cbor:"2,keyasint,omitempty"`
	KeyAgreement      RawMessage    `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    []byte        `cbor:"4,keyasint,omitempty"`
	NewPinEnc         []byte        `cbor:"5,keyasint,omitempty"`
	PinHashEnc        []byte        `cbor:"6,keyasint,omitempty"`
	Permissions       Permission    `cbor:"9,keyasint,omitempty"`
	RPID              string        `cbor:"10,keyasint,omitempty"`
}

// ClientPINResponse is the clientPIN reply; which fields are set depends on the
// subcommand.
type ClientPINResponse struct {
	KeyAgreement    RawMessage `cbor:"1,keyasint,omitempty"`
	PinUvAuthToken  []byte     `cbor:"2,keyasint,omitempty"`
	PinRetries      *uint      `cbor:"3,keyasint,omitempty"`
	PowerCycleState *bool      `cbor:"4,keyasint,omitempty"`
	UVRetries       *uint      `cbor:"5,keyasint,omitempty"`
}

// PIN limits (CTAP 2.1 §6.5.1): at least 4 code points, at most 63 bytes of UTF-8,
// padded with zeros to 64 bytes on the wire; 8 retries.
const (
	MaxPINLength    = 63
	PaddedPINLength = 64
	MaxPINRetries   = 8
)

// PINToken is a pinUvAuthToken together with the protocol that obtained it. It
// authenticates the requests that need one (CTAP 2.1 §6.5.5.7, table in §7.5 of
// ctap-reference): makeCredential, getAssertion, credentialManagement,
// authenticatorConfig and largeBlobs writes.
//
// An authenticator drops a token's mc and ga permissions after one makeCredential
// or getAssertion that collected user presence, so get a new token for each of
// those; cm, acfg and lbw tokens stay usable until they expire or a new token is
// issued.
type PINToken struct {
	Protocol PINProtocol
	Token    []byte
	// Permissions and RPID are what was asked for; both are zero for a CTAP 2.0
	// getPinToken token, which carries no permissions.
	Permissions Permission
	RPID        string
}

// Param returns the pinUvAuthParam of msg under the token.
func (t *PINToken) Param(msg []byte) []byte { return t.Protocol.Authenticate(t.Token, msg) }

// Protect returns the pinUvAuthParam and pinUvAuthProtocol of a makeCredential or
// getAssertion request with clientDataHash (the message is the hash alone):
//
//	req.PinUvAuthParam, req.PinUvAuthProtocol = tok.Protect(req.ClientDataHash)
//
// ProtectMakeCredential and ProtectGetAssertion do exactly that. Do not also set
// options.uv: a request carrying a pinUvAuthParam has been verified already.
func (t *PINToken) Protect(clientDataHash []byte) (param []byte, protocol uint) {
	return t.Param(clientDataHash), t.Protocol.Version()
}

// ProtectMakeCredential sets req's pinUvAuthParam and pinUvAuthProtocol from its
// clientDataHash; set the hash first.
func (t *PINToken) ProtectMakeCredential(req *MakeCredentialRequest) {
	req.PinUvAuthParam, req.PinUvAuthProtocol = t.Protect(req.ClientDataHash)
}

// ProtectGetAssertion sets req's pinUvAuthParam and pinUvAuthProtocol from its
// clientDataHash; set the hash first.
func (t *PINToken) ProtectGetAssertion(req *GetAssertionRequest) {
	req.PinUvAuthParam, req.PinUvAuthProtocol = t.Protect(req.ClientDataHash)
}

// ErrBadPIN reports a PIN refused before anything is sent: not UTF-8, containing a
// NUL, too short or too long. It is never an authenticator status.
var ErrBadPIN = errors.New("unusable PIN")

// PadPIN checks a new PIN against the CTAP rules and returns paddedPin, the PIN's
// UTF-8 bytes followed by zeros up to 64 bytes (CTAP 2.1 §6.5.5.5).
//
// The PIN must be valid UTF-8 without NUL characters, at least max(4, minLength)
// code points long and at most 63 bytes. CTAP wants PINs in Unicode Normalization
// Form C; the standard library cannot normalize, so the caller must pass an NFC
// string (input methods and terminals almost always produce NFC already; a PIN typed
// in decomposed form would hash differently from the same PIN typed elsewhere).
func PadPIN(pin string, minLength uint) ([]byte, error) {
	if err := checkPINText(pin); err != nil {
		return nil, err
	}
	minLength = max(minLength, DefaultMinPINLength)
	if n := utf8.RuneCountInString(pin); uint(n) < minLength {
		return nil, fmt.Errorf("%w: it must be at least %d characters long, not %d", ErrBadPIN, minLength, n)
	}
	padded := make([]byte, PaddedPINLength)
	copy(padded, pin)
	return padded, nil
}

// checkPINText is what any PIN (also the current one, which may predate a longer
// minimum length) must satisfy: non-empty UTF-8 without NUL, at most 63 bytes.
func checkPINText(pin string) error {
	switch {
	case pin == "":
		return fmt.Errorf("%w: it is empty", ErrBadPIN)
	case !utf8.ValidString(pin):
		return fmt.Errorf("%w: it is not valid UTF-8", ErrBadPIN)
	case strings.IndexByte(pin, 0) >= 0:
		return fmt.Errorf("%w: it contains a NUL character", ErrBadPIN)
	case len(pin) > MaxPINLength:
		return fmt.Errorf("%w: it must be at most %d bytes of UTF-8, not %d", ErrBadPIN, MaxPINLength, len(pin))
	}
	return nil
}

// UnpadPIN is the authenticator's side of PadPIN: paddedPin must be 64 bytes ending
// in at least one zero; the trailing zeros are removed. It checks neither length nor
// encoding of the PIN itself (that is the authenticator's policy).
func UnpadPIN(padded []byte) ([]byte, error) {
	if len(padded) != PaddedPINLength || padded[PaddedPINLength-1] != 0 {
		return nil, fmt.Errorf("%w: padded PIN must be %d bytes ending in a zero", ErrPINProtocolInput, PaddedPINLength)
	}
	return bytes.TrimRight(padded, "\x00"), nil
}

// PINHash is LEFT(SHA-256(pin), 16), what pinHashEnc carries and what an
// authenticator stores.
func PINHash(pin []byte) []byte {
	h := sha256.Sum256(pin)
	return h[:16]
}
