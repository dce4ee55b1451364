package softkey

import (
	"bytes"
	"io"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// Authenticator extensions (CTAP 2.1 §12; hmac-secret-mc from CTAP 2.2). The softkey
// processes the ones below and ignores any other identifier; its outputs are always a
// subset of the inputs, and authenticator data carries the ED flag exactly when it
// has an outputs map.
//
// Per-credential data lives with the credential: resident credentials keep their
// credProtect level in store.Credential.CredProtect and the rest in
// store.Credential.Extra under the extra* keys; sealed (non-resident) credentials
// carry theirs in the credential ID (credid.go, format 0x03). The hmac-secret
// CredRandoms are derived, not stored (hmacsecret.go).
//
// Malformed inputs of a supported extension are answered like decoding errors, as
// OpenSK does: a value of the wrong CBOR type, and a credProtect level outside 1..3,
// is CBOR_UNEXPECTED_TYPE; largeBlobKey false is INVALID_OPTION; an hmac-secret
// input without keys 1, 2 or 3 is MISSING_PARAMETER and one naming a protocol other
// than 1 or 2 INVALID_PARAMETER.
const (
	extCredProtect  = "credProtect"
	extHMACSecret   = "hmac-secret"
	extHMACSecretMC = "hmac-secret-mc"
	extCredBlob     = "credBlob"
	extLargeBlobKey = "largeBlobKey"
	extMinPINLength = "minPinLength"
)

// supportedExtensions is getInfo's extensions list.
var supportedExtensions = []string{extCredProtect, extHMACSecret, extHMACSecretMC, extCredBlob, extLargeBlobKey, extMinPINLength}

// maxCredBlobLength is getInfo's maxCredBlobLength, the spec's minimum: a longer
// credBlob is not stored (output false). It also keeps a sealed P-384 ID with a
// full credBlob (116 bytes) under maxCredentialIDLength.
const maxCredBlobLength = 32

// largeBlobKeySize is the length of a largeBlobKey, an AES-256 key.
const largeBlobKeySize = 32

// Keys of store.Credential.Extra for resident credentials. Values are copied as they
// are; credential management must keep Extra when it rewrites a credential (e.g.
// updateUserInformation), or the credential loses its extensions.
const (
	// extraHMACSecret is present (value 0x01) when the credential was made with
	// hmac-secret; its CredRandoms are derived from the master secret and its ID.
	extraHMACSecret = "hmac-secret"
	// extraCredBlob is the credBlob, 1..maxCredBlobLength bytes; absent when none.
	extraCredBlob = "credBlob"
	// extraLargeBlobKey is the credential's 32-byte largeBlobKey (random at
	// creation); absent when the credential was made without largeBlobKey. Read it
	// with largeBlobKeyOf.
	extraLargeBlobKey = "largeBlobKey"
)

// largeBlobKeyOf returns the largeBlobKey of a resident credential (a copy), or nil
// when it has none. Credential management (response key 0x0B) and getAssertion use
// it; non-resident credentials never have one.
func (a *Authenticator) largeBlobKeyOf(c *store.Credential) []byte {
	if c == nil {
		return nil
	}
	k := c.Extra[extraLargeBlobKey]
	if len(k) != largeBlobKeySize {
		return nil
	}
	return bytes.Clone(k)
}

// credProtectOf is the credProtect level of a resident credential, 1..3; credentials
// stored before credProtect existed (level 0) count as level 1.
func credProtectOf(c *store.Credential) uint8 { return max(c.CredProtect, 1) }

// protection is the credential's credProtect level, 1..3.
func (c *credential) protection() uint8 {
	if c.stored != nil {
		return credProtectOf(c.stored)
	}
	return max(c.sealed.credProtect, 1)
}

// usable applies credProtect (CTAP 2.1 §12.1) to a credential a request found: level
// 3 needs user verification; level 2 without UV only when the request named the
// credential's ID (an allowList or excludeList). A credential that is not usable is
// treated exactly like one that does not exist.
func (c *credential) usable(uv, listed bool) bool {
	switch c.protection() {
	case 3:
		return uv
	case 2:
		return uv || listed
	}
	return true
}

// hasHMACSecret reports whether the credential was made with hmac-secret.
func (c *credential) hasHMACSecret() bool {
	if c.stored != nil {
		return len(c.stored.Extra[extraHMACSecret]) > 0
	}
	return c.sealed.hmacSecret
}

// credBlob is the credential's credBlob; empty, never nil, when it has none.
func (c *credential) credBlob() []byte {
	var b []byte
	if c.stored != nil {
		b = c.stored.Extra[extraCredBlob]
	} else {
		b = c.sealed.credBlob
	}
	return append([]byte{}, b...)
}

// mcExtensions are the makeCredential inputs the softkey understood.
type mcExtensions struct {
	credProtect  uint8 // 0: absent
	hmacSecret   bool
	hmacSecretMC *hmacSecretInput // only with hmacSecret
	credBlob     []byte           // nil: absent
	largeBlobKey bool
	minPINLength bool
}

// parseMCExtensions decodes the supported makeCredential inputs, in a fixed order so
// that a request with several faults always gets the same status.
func parseMCExtensions(m map[string]ctap2.RawMessage) (*mcExtensions, error) {
	var e mcExtensions
	if raw, ok := m[extCredProtect]; ok {
		v, err := extUint(raw)
		if err != nil || v < 1 || v > 3 {
			return nil, ctap2.ErrCBORUnexpectedType
		}
		e.credProtect = uint8(v)
	}
	var err error
	if raw, ok := m[extHMACSecret]; ok {
		if e.hmacSecret, err = extBool(raw); err != nil {
			return nil, err
		}
	}
	if raw, ok := m[extHMACSecretMC]; ok {
		in, err := parseHMACSecretInput(raw)
		if err != nil {
			return nil, err
		}
		// CTAP 2.2 asks platforms to send "hmac-secret": true along; without it
		// there is no CredRandom to answer from, so the input is ignored.
		if e.hmacSecret {
			e.hmacSecretMC = in
		}
	}
	if raw, ok := m[extCredBlob]; ok {
		if e.credBlob, err = extBytes(raw); err != nil {
			return nil, err
		}
	}
	if raw, ok := m[extLargeBlobKey]; ok {
		if e.largeBlobKey, err = extBool(raw); err != nil {
			return nil, err
		}
		if !e.largeBlobKey {
			return nil, ctap2.ErrInvalidOption
		}
	}
	if raw, ok := m[extMinPINLength]; ok {
		if e.minPINLength, err = extBool(raw); err != nil {
			return nil, err
		}
	}
	return &e, nil
}

// gaExtensions are the getAssertion inputs the softkey understood, and, once user
// presence was collected, the opened hmac-secret salts. getNextAssertion answers
// from the same value.
type gaExtensions struct {
	hmacSecret   *hmacSecretInput
	credBlob     bool
	largeBlobKey bool
	salts        *hmacSecretSalts // set by getAssertion after the touch
}

func parseGAExtensions(m map[string]ctap2.RawMessage) (*gaExtensions, error) {
	var e gaExtensions
	var err error
	if raw, ok := m[extHMACSecret]; ok {
		if e.hmacSecret, err = parseHMACSecretInput(raw); err != nil {
			return nil, err
		}
	}
	if raw, ok := m[extCredBlob]; ok {
		if e.credBlob, err = extBool(raw); err != nil {
			return nil, err
		}
	}
	if raw, ok := m[extLargeBlobKey]; ok {
		if e.largeBlobKey, err = extBool(raw); err != nil {
			return nil, err
		}
		if !e.largeBlobKey {
			return nil, ctap2.ErrInvalidOption
		}
	}
	return &e, nil
}

// newCredExtensions is what makeCredential's extension processing (step 11) decided
// for the credential it is about to make.
type newCredExtensions struct {
	credProtect  uint8 // the level applied, 1..3
	hmacSecret   bool
	credBlob     []byte // nil: none stored
	largeBlobKey []byte // resident credentials only
	salts        *hmacSecretSalts
	outputs      map[string]any // everything but hmac-secret-mc, which needs the ID
}

// processMCExtensions runs after the touch and before the credential exists, so that
// a failure (a bad hmac-secret-mc input) stores nothing.
func (a *Authenticator) processMCExtensions(e *mcExtensions, rpID string, rk bool, s store.Settings) (*newCredExtensions, error) {
	n := &newCredExtensions{credProtect: max(e.credProtect, 1), outputs: map[string]any{}}
	if e.credProtect != 0 {
		n.outputs[extCredProtect] = uint(n.credProtect)
	}
	if e.hmacSecret {
		n.hmacSecret = true
		n.outputs[extHMACSecret] = true
		if e.hmacSecretMC != nil {
			salts, err := a.openSalts(e.hmacSecretMC)
			if err != nil {
				return nil, err
			}
			n.salts = salts
		}
	}
	if e.credBlob != nil {
		ok := len(e.credBlob) <= maxCredBlobLength
		if ok && len(e.credBlob) > 0 {
			n.credBlob = e.credBlob
		}
		n.outputs[extCredBlob] = ok
	}
	// largeBlobKey is for discoverable credentials only: a non-resident one has
	// nowhere to keep the key, and the input is ignored, as OpenSK does.
	if e.largeBlobKey && rk {
		n.largeBlobKey = make([]byte, largeBlobKeySize)
		if _, err := io.ReadFull(a.rnd, n.largeBlobKey); err != nil {
			return nil, ctap2.ErrOther
		}
	}
	if e.minPINLength && slices.Contains(s.MinPINLengthRPIDs, rpID) {
		n.outputs[extMinPINLength] = uint(minPINLength(s))
	}
	return n, nil
}

// sealed is the part of n a sealed credential ID carries.
func (n *newCredExtensions) sealed() sealedExtensions {
	return sealedExtensions{credProtect: n.credProtect, hmacSecret: n.hmacSecret, credBlob: n.credBlob}
}

// apply records n in a new resident credential.
func (n *newCredExtensions) apply(c *store.Credential) {
	c.CredProtect = n.credProtect
	set := func(k string, v []byte) {
		if c.Extra == nil {
			c.Extra = map[string][]byte{}
		}
		c.Extra[k] = bytes.Clone(v)
	}
	if n.hmacSecret {
		set(extraHMACSecret, []byte{1})
	}
	if n.credBlob != nil {
		set(extraCredBlob, n.credBlob)
	}
	if n.largeBlobKey != nil {
		set(extraLargeBlobKey, n.largeBlobKey)
	}
}

// mcOutputs encodes makeCredential's extension outputs for the new credential
// (hmac-secret-mc uses its ID and the UV bit of the response); nil when there are
// none.
func (a *Authenticator) mcOutputs(n *newCredExtensions, credID []byte, uv bool) ([]byte, error) {
	out := n.outputs
	if n.salts != nil {
		enc, err := a.hmacSecretOutput(n.salts, credID, uv)
		if err != nil {
			return nil, err
		}
		out[extHMACSecretMC] = enc
	}
	return encodeOutputs(out)
}

// gaOutputs encodes getAssertion's extension outputs for c; nil when there are none.
// hmac-secret answers only for credentials made with it.
func (a *Authenticator) gaOutputs(e *gaExtensions, c *credential, uv bool) ([]byte, error) {
	if e == nil {
		return nil, nil
	}
	out := map[string]any{}
	if e.credBlob {
		out[extCredBlob] = c.credBlob()
	}
	if e.salts != nil && c.hasHMACSecret() {
		enc, err := a.hmacSecretOutput(e.salts, c.id, uv)
		if err != nil {
			return nil, err
		}
		out[extHMACSecret] = enc
	}
	return encodeOutputs(out)
}

func encodeOutputs(out map[string]any) ([]byte, error) {
	if len(out) == 0 {
		return nil, nil
	}
	b, err := ctap2.Marshal(out)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	return b, nil
}

// extBool accepts exactly CBOR false or true.
func extBool(raw ctap2.RawMessage) (bool, error) {
	switch string(raw) {
	case "\xf4":
		return false, nil
	case "\xf5":
		return true, nil
	}
	return false, ctap2.ErrCBORUnexpectedType
}

// extUint accepts an unsigned integer.
func extUint(raw ctap2.RawMessage) (uint64, error) {
	var v uint64
	if cborMajor(raw) != 0 || ctap2.Unmarshal(raw, &v) != nil {
		return 0, ctap2.ErrCBORUnexpectedType
	}
	return v, nil
}

// extBytes accepts a byte string; an empty one is non-nil.
func extBytes(raw ctap2.RawMessage) ([]byte, error) {
	var b []byte
	if cborMajor(raw) != 2 || ctap2.Unmarshal(raw, &b) != nil {
		return nil, ctap2.ErrCBORUnexpectedType
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// cborMajor is the major type of a CBOR item, -1 for no bytes.
func cborMajor(raw []byte) int {
	if len(raw) == 0 {
		return -1
	}
	return int(raw[0] >> 5)
}
