package softkey

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
)

// hmac-secret (CTAP 2.1 §12.5) and hmac-secret-mc (CTAP 2.2). The platform sends
// salts encrypted under a PIN/UV auth protocol shared secret made with the softkey's
// clientPIN key agreement key; the softkey answers HMAC-SHA-256(CredRandom, salt)
// for each, encrypted the same way.
//
// CredRandomWithUV and CredRandomWithoutUV are not random values stored with the
// credential but derived, as OpenSK derives them from the private key:
//
//	CredRandom = HKDF-SHA-256(IKM = master secret, salt = none,
//	                          info = credRandomInfo || uv (0x00 or 0x01) || credential ID, L = 32)
//
// Every credential ID is unique (a random resident handle, or a sealed ID with a
// random nonce) and cannot be forged without the master secret, so the values are
// as unpredictable as random ones, yet sealed IDs need no room for 64 more bytes and
// resident credentials no extra field. They stay stable across restarts (the master
// secret is persisted) and die with authenticatorReset, which replaces the master
// secret. Only credentials made with hmac-secret (or hmac-secret-mc) answer; the
// softkey records that in a flag.
const credRandomInfo = "ctapkit softkey hmac-secret CredRandom v1"

// hmacSecretInput is a decoded hmac-secret (or hmac-secret-mc) input: {1:
// keyAgreement, 2: saltEnc, 3: saltAuth, 4: pinUvAuthProtocol (default 1)}.
type hmacSecretInput struct {
	keyAgreement ctap2.RawMessage
	saltEnc      []byte
	saltAuth     []byte
	protocol     uint
}

type hmacSecretWire struct {
	KeyAgreement ctap2.RawMessage `cbor:"1,keyasint"`
	SaltEnc      []byte           `cbor:"2,keyasint"`
	SaltAuth     []byte           `cbor:"3,keyasint"`
	Protocol     *uint            `cbor:"4,keyasint"`
}

// parseHMACSecretInput checks the input's shape: a map (else CBOR_UNEXPECTED_TYPE)
// with keys 1, 2 and 3 (else MISSING_PARAMETER) and protocol 1 or 2 (else
// INVALID_PARAMETER). The key and the MAC are checked by openSalts.
func parseHMACSecretInput(raw ctap2.RawMessage) (*hmacSecretInput, error) {
	if cborMajor(raw) != 5 {
		return nil, ctap2.ErrCBORUnexpectedType
	}
	var w hmacSecretWire
	if err := decodeParams(raw, &w); err != nil {
		return nil, err
	}
	if w.KeyAgreement == nil || w.SaltEnc == nil || w.SaltAuth == nil {
		return nil, ctap2.ErrMissingParameter
	}
	in := &hmacSecretInput{keyAgreement: w.KeyAgreement, saltEnc: w.SaltEnc, saltAuth: w.SaltAuth, protocol: 1}
	if w.Protocol != nil {
		in.protocol = *w.Protocol
	}
	if in.protocol != 1 && in.protocol != 2 {
		return nil, ctap2.ErrInvalidParameter
	}
	return in, nil
}

// hmacSecretSalts are opened salts and the shared secret that encrypts the outputs.
type hmacSecretSalts struct {
	protocol uint
	ss       []byte
	salts    []byte // 32 or 64 bytes
}

// openSalts runs the authenticator's half of the exchange: key agreement (a bad
// platform key is INVALID_PARAMETER), saltAuth over saltEnc (PIN_AUTH_INVALID), then
// decryption, which must give one or two 32-byte salts (INVALID_PARAMETER).
func (a *Authenticator) openSalts(in *hmacSecretInput) (*hmacSecretSalts, error) {
	p := a.pinProtocol(in.protocol)
	if p == nil {
		return nil, ctap2.ErrInvalidParameter
	}
	ss, err := a.decapsulate(p, in.keyAgreement)
	if err != nil {
		return nil, err
	}
	if !p.Verify(ss, in.saltEnc, in.saltAuth) {
		return nil, ctap2.ErrPINAuthInvalid
	}
	salts, err := p.Decrypt(ss, in.saltEnc)
	if err != nil || (len(salts) != 32 && len(salts) != 64) {
		return nil, ctap2.ErrInvalidParameter
	}
	return &hmacSecretSalts{protocol: in.protocol, ss: ss, salts: salts}, nil
}

// hmacSecretOutput is encrypt(ss, HMAC(CredRandom, salt1) [|| HMAC(CredRandom,
// salt2)]) for the credential credID, with the CredRandom the UV bit picks.
func (a *Authenticator) hmacSecretOutput(s *hmacSecretSalts, credID []byte, uv bool) ([]byte, error) {
	cr, err := a.credRandom(credID, uv)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	out := make([]byte, 0, len(s.salts))
	for salt := range slices.Chunk(s.salts, 32) {
		m := hmac.New(sha256.New, cr)
		m.Write(salt)
		out = m.Sum(out)
	}
	enc, err := a.pinProtocol(s.protocol).Encrypt(s.ss, out)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	return enc, nil
}

// credRandom derives CredRandomWithUV (uv) or CredRandomWithoutUV of a credential.
func (a *Authenticator) credRandom(credID []byte, uv bool) ([]byte, error) {
	flag := "\x00"
	if uv {
		flag = "\x01"
	}
	return hkdf.Key(sha256.New, a.meta.MasterSecret, nil, credRandomInfo+flag+string(credID), 32)
}
