package ctap2

import (
	"errors"
	"fmt"
)

// Authenticator extension identifiers (CTAP 2.1 §12, 2.2 for hmac-secret-mc).
const (
	ExtCredProtect  = "credProtect"
	ExtHMACSecret   = "hmac-secret"
	ExtHMACSecretMC = "hmac-secret-mc"
	ExtCredBlob     = "credBlob"
	ExtLargeBlobKey = "largeBlobKey"
	ExtMinPINLength = "minPinLength"
)

// credProtect levels (CTAP 2.1 §12.1).
const (
	CredProtectUVOptional             uint = 1 // userVerificationOptional
	CredProtectUVOptionalWithCredList uint = 2 // userVerificationOptionalWithCredentialIDList
	CredProtectUVRequired             uint = 3 // userVerificationRequired
)

// ErrExtension reports an extension input or output of the wrong type or range.
var ErrExtension = errors.New("bad extension value")

// MakeCredentialExtensions are the typed makeCredential extension inputs; zero
// values are left out. Map gives the request's Extensions map.
type MakeCredentialExtensions struct {
	CredProtect uint // 1..3; 0 sends nothing
	HMACSecret  bool // "hmac-secret": true
	// HMACSecretMC asks for hmac-secret outputs at creation (CTAP 2.2); it implies
	// HMACSecret. Build it with HMACSecret.Input.
	HMACSecretMC *HMACSecretInput
	CredBlob     []byte // stored with the credential, at most getInfo maxCredBlobLength; empty sends nothing
	LargeBlobKey bool   // the key comes back in the response's LargeBlobKey, for rk credentials
	MinPINLength bool   // the RP must be on the authenticator's minPinLength list
}

// Map encodes the inputs with their CBOR types (credProtect uint, credBlob bytes,
// the rest true), or returns nil when there are none.
func (e *MakeCredentialExtensions) Map() (map[string]RawMessage, error) {
	m := map[string]RawMessage{}
	if e.CredProtect != 0 {
		if e.CredProtect > CredProtectUVRequired {
			return nil, fmt.Errorf("%w: credProtect %d (want 1, 2 or 3)", ErrExtension, e.CredProtect)
		}
		m[ExtCredProtect] = mustMarshal(e.CredProtect)
	}
	if e.HMACSecret || e.HMACSecretMC != nil {
		m[ExtHMACSecret] = cborTrue
	}
	if e.HMACSecretMC != nil {
		in, err := Marshal(e.HMACSecretMC)
		if err != nil {
			return nil, err
		}
		m[ExtHMACSecretMC] = in
	}
	if len(e.CredBlob) > 0 {
		m[ExtCredBlob] = mustMarshal(e.CredBlob)
	}
	if e.LargeBlobKey {
		m[ExtLargeBlobKey] = cborTrue
	}
	if e.MinPINLength {
		m[ExtMinPINLength] = cborTrue
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// GetAssertionExtensions are the typed getAssertion extension inputs.
type GetAssertionExtensions struct {
	HMACSecret   *HMACSecretInput // from HMACSecret.Input
	CredBlob     bool             // "credBlob": true returns the stored blob
	LargeBlobKey bool             // the key comes back in the response's LargeBlobKey
}

// Map encodes the inputs, or returns nil when there are none.
func (e *GetAssertionExtensions) Map() (map[string]RawMessage, error) {
	m := map[string]RawMessage{}
	if e.HMACSecret != nil {
		in, err := Marshal(e.HMACSecret)
		if err != nil {
			return nil, err
		}
		m[ExtHMACSecret] = in
	}
	if e.CredBlob {
		m[ExtCredBlob] = cborTrue
	}
	if e.LargeBlobKey {
		m[ExtLargeBlobKey] = cborTrue
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

var cborTrue = RawMessage{0xf5}

func mustMarshal(v any) RawMessage {
	b, err := Marshal(v)
	if err != nil {
		panic(err) // only called with uint and []byte
	}
	return b
}

// ExtensionOutputs are the authenticator extension outputs of authenticator data
// (AuthData.Extensions), typed. makeCredential and getAssertion use different types
// for the same identifier, so each has its own field; absent outputs are zero/nil.
type ExtensionOutputs struct {
	CredProtect uint // makeCredential: the level applied, 0 if absent
	// HMACSecret is makeCredential's "hmac-secret": whether the credential has one.
	HMACSecret *bool
	// HMACSecretOutput is getAssertion's "hmac-secret", and HMACSecretMC
	// makeCredential's "hmac-secret-mc": encrypted outputs for HMACSecret.Outputs.
	HMACSecretOutput []byte
	HMACSecretMC     []byte
	// CredBlobStored is makeCredential's "credBlob": whether the blob was stored.
	CredBlobStored *bool
	// CredBlob is getAssertion's "credBlob": the blob, empty (not nil) if none.
	CredBlob     []byte
	MinPINLength *uint // makeCredential: the current minimum PIN length
	// Other holds every other output as sent.
	Other map[string]RawMessage
}

// ParseExtensionOutputs decodes an authenticator data extensions map. Known outputs
// must have their spec type (hmac-secret and credBlob a bool or a byte string,
// credProtect 1..3); unknown ones are kept in Other. Empty input gives empty outputs.
func ParseExtensionOutputs(ext []byte) (*ExtensionOutputs, error) {
	out := &ExtensionOutputs{}
	if len(ext) == 0 {
		return out, nil
	}
	var m map[string]RawMessage
	if err := Unmarshal(ext, &m); err != nil {
		return nil, fmt.Errorf("extension outputs: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("extension outputs: %w: not a map", ErrExtension)
	}
	for id, raw := range m {
		var err error
		switch id {
		case ExtCredProtect:
			var v uint
			if err = decodeTyped(raw, cborUint, &v); err == nil && (v < 1 || v > 3) {
				err = fmt.Errorf("%w: level %d", ErrExtension, v)
			}
			out.CredProtect = v
		case ExtHMACSecret:
			if cborMajor(raw) == cborBytes {
				out.HMACSecretOutput, err = decodeBytes(raw)
			} else {
				out.HMACSecret, err = decodeBool(raw)
			}
		case ExtHMACSecretMC:
			out.HMACSecretMC, err = decodeBytes(raw)
		case ExtCredBlob:
			if cborMajor(raw) == cborBytes {
				out.CredBlob, err = decodeBytes(raw)
			} else {
				out.CredBlobStored, err = decodeBool(raw)
			}
		case ExtMinPINLength:
			out.MinPINLength = new(uint)
			err = decodeTyped(raw, cborUint, out.MinPINLength)
		default:
			if out.Other == nil {
				out.Other = map[string]RawMessage{}
			}
			out.Other[id] = raw
		}
		if err != nil {
			return nil, fmt.Errorf("extension output %q: %w", id, err)
		}
	}
	return out, nil
}

// Marshal encodes the outputs as an authenticator data extensions map (canonical
// CBOR), or returns nil when there are none. An authenticator builds its outputs
// this way; ParseExtensionOutputs(Marshal()) gives them back.
func (o *ExtensionOutputs) Marshal() ([]byte, error) {
	m := make(map[string]any, len(o.Other)+4)
	for id, raw := range o.Other {
		m[id] = raw
	}
	if o.CredProtect != 0 {
		m[ExtCredProtect] = o.CredProtect
	}
	if o.HMACSecret != nil && o.HMACSecretOutput != nil {
		return nil, fmt.Errorf("%w: hmac-secret is both a bool and outputs", ErrExtension)
	}
	if o.HMACSecret != nil {
		m[ExtHMACSecret] = *o.HMACSecret
	}
	if o.HMACSecretOutput != nil {
		m[ExtHMACSecret] = o.HMACSecretOutput
	}
	if o.HMACSecretMC != nil {
		m[ExtHMACSecretMC] = o.HMACSecretMC
	}
	if o.CredBlobStored != nil && o.CredBlob != nil {
		return nil, fmt.Errorf("%w: credBlob is both a bool and a blob", ErrExtension)
	}
	if o.CredBlobStored != nil {
		m[ExtCredBlob] = *o.CredBlobStored
	}
	if o.CredBlob != nil {
		m[ExtCredBlob] = o.CredBlob
	}
	if o.MinPINLength != nil {
		m[ExtMinPINLength] = *o.MinPINLength
	}
	if len(m) == 0 {
		return nil, nil
	}
	return Marshal(m)
}

// CBOR major types as they appear in the top three bits of an item's first byte.
const (
	cborUint  = 0
	cborBytes = 2
)

// decodeBool accepts exactly CBOR false or true (not null, undefined or a float).
func decodeBool(raw RawMessage) (*bool, error) {
	switch string(raw) {
	case "\xf4":
		return Bool(false), nil
	case "\xf5":
		return Bool(true), nil
	}
	return nil, fmt.Errorf("%w: not a CBOR bool", ErrExtension)
}

// decodeBytes decodes a byte string; an empty one is non-nil.
func decodeBytes(raw RawMessage) ([]byte, error) {
	var b []byte
	if err := decodeTyped(raw, cborBytes, &b); err != nil {
		return nil, err
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

func cborMajor(raw []byte) int {
	if len(raw) == 0 {
		return -1
	}
	return int(raw[0] >> 5)
}

// decodeTyped decodes raw into v after checking its major type, so that e.g. a
// negative integer or a text string never passes for a uint or bytes.
func decodeTyped(raw RawMessage, major int, v any) error {
	if got := cborMajor(raw); got != major {
		return fmt.Errorf("%w: CBOR major type %d, want %d", ErrExtension, got, major)
	}
	if err := Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: %w", ErrExtension, err)
	}
	return nil
}
