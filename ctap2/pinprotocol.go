package ctap2

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// PINProtocol is a PIN/UV auth protocol (CTAP 2.1 §6.5.6, §6.5.7): how the two sides
// agree on a shared secret and use it to encrypt PINs, tokens and hmac-secret salts
// and to authenticate requests. Both the host Client and the softkey use these
// implementations, so each side's tests check the other; golden vectors from
// python-fido2 pin them to an independent implementation.
type PINProtocol interface {
	// Version is 1 or 2, the pinUvAuthProtocol value on the wire.
	Version() uint
	// KDF derives the shared secret from the ECDH x-coordinate Z.
	KDF(z []byte) []byte
	// Encrypt and Decrypt use the shared secret (or, for hmac-secret, the same).
	Encrypt(sharedSecret, plaintext []byte) ([]byte, error)
	Decrypt(sharedSecret, ciphertext []byte) ([]byte, error)
	// Authenticate computes a pinUvAuthParam over msg with key (a shared secret or
	// a pinUvAuthToken).
	Authenticate(key, msg []byte) []byte
	// Verify checks a pinUvAuthParam in constant time.
	Verify(key, msg, param []byte) bool
}

// PINProtocolByVersion returns protocol 1 or 2, or nil.
func PINProtocolByVersion(v uint) PINProtocol {
	switch v {
	case 1:
		return PINProtocolOne{}
	case 2:
		return PINProtocolTwo{Rand: nil}
	}
	return nil
}

// ErrPINProtocolInput reports a ciphertext or key of the wrong size.
var ErrPINProtocolInput = errors.New("pin protocol: malformed input")

// PINProtocolOne is pinUvAuthProtocol 1: SHA-256(Z), AES-256-CBC with a zero IV,
// HMAC-SHA-256 truncated to 16 bytes.
type PINProtocolOne struct{}

func (PINProtocolOne) Version() uint { return 1 }

func (PINProtocolOne) KDF(z []byte) []byte {
	h := sha256.Sum256(z)
	return h[:]
}

func (PINProtocolOne) Encrypt(key, pt []byte) ([]byte, error) {
	return cbcCrypt(key, make([]byte, aes.BlockSize), pt, true)
}

func (PINProtocolOne) Decrypt(key, ct []byte) ([]byte, error) {
	return cbcCrypt(key, make([]byte, aes.BlockSize), ct, false)
}

func (PINProtocolOne) Authenticate(key, msg []byte) []byte {
	return hmacSHA256(key, msg)[:16]
}

func (p PINProtocolOne) Verify(key, msg, param []byte) bool {
	return len(param) == 16 && subtle.ConstantTimeCompare(p.Authenticate(key, msg), param) == 1
}

// PINProtocolTwo is pinUvAuthProtocol 2: HKDF-derived HMAC and AES keys, AES-256-CBC
// with a random IV prepended, full 32-byte HMAC-SHA-256.
type PINProtocolTwo struct {
	// Rand supplies IVs; nil means crypto/rand. Golden-vector tests fix it.
	Rand io.Reader
}

func (PINProtocolTwo) Version() uint { return 2 }

var zeroSalt = make([]byte, 32)

func (PINProtocolTwo) KDF(z []byte) []byte {
	hmacKey, _ := hkdf.Key(sha256.New, z, zeroSalt, "CTAP2 HMAC key", 32)
	aesKey, _ := hkdf.Key(sha256.New, z, zeroSalt, "CTAP2 AES key", 32)
	return append(hmacKey, aesKey...)
}

// aesKey is the AES half of a protocol 2 shared secret; a 32-byte key (a token) is
// used whole, as the spec's "key[32:64] when 64 bytes" rule implies.
func (PINProtocolTwo) aesKey(key []byte) []byte {
	if len(key) == 64 {
		return key[32:]
	}
	return key
}

func (p PINProtocolTwo) Encrypt(key, pt []byte) ([]byte, error) {
	rnd := p.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	iv := make([]byte, aes.BlockSize)
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return nil, err
	}
	ct, err := cbcCrypt(p.aesKey(key), iv, pt, true)
	if err != nil {
		return nil, err
	}
	return append(iv, ct...), nil
}

func (p PINProtocolTwo) Decrypt(key, ct []byte) ([]byte, error) {
	if len(ct) < aes.BlockSize {
		return nil, ErrPINProtocolInput
	}
	return cbcCrypt(p.aesKey(key), ct[:aes.BlockSize], ct[aes.BlockSize:], false)
}

func (PINProtocolTwo) Authenticate(key, msg []byte) []byte {
	return hmacSHA256(key[:min(len(key), 32)], msg)
}

func (p PINProtocolTwo) Verify(key, msg, param []byte) bool {
	return len(param) == 32 && subtle.ConstantTimeCompare(p.Authenticate(key, msg), param) == 1
}

func cbcCrypt(key, iv, in []byte, encrypt bool) ([]byte, error) {
	if len(in)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of AES blocks", ErrPINProtocolInput, len(in))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPINProtocolInput, err)
	}
	out := make([]byte, len(in))
	if encrypt {
		cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, in)
	} else {
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, in)
	}
	return out, nil
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// KeyAgreementKey converts a P-256 ECDH public key to the COSE form (alg -25)
// that clientPIN exchanges.
func KeyAgreementKey(pub *ecdh.PublicKey) ([]byte, error) {
	raw := pub.Bytes() // 04 || X || Y
	if len(raw) != 65 {
		return nil, errors.New("key agreement key is not an uncompressed P-256 point")
	}
	return Marshal(coseEC2{Kty: ktyEC2, Alg: AlgECDHESHKDF256, Crv: crvP256, X: raw[1:33], Y: raw[33:]})
}

// ParseKeyAgreementKey parses a peer's COSE key agreement key (curve point checked).
func ParseKeyAgreementKey(cose []byte) (*ecdh.PublicKey, error) {
	var k coseEC2
	if err := Unmarshal(cose, &k); err != nil {
		return nil, fmt.Errorf("key agreement key: %w", err)
	}
	if k.Kty != ktyEC2 || k.Crv != crvP256 || len(k.X) != 32 || len(k.Y) != 32 {
		return nil, errors.New("key agreement key: not a P-256 EC2 key")
	}
	pub, err := ecdh.P256().NewPublicKey(append(append([]byte{4}, k.X...), k.Y...))
	if err != nil {
		return nil, fmt.Errorf("key agreement key: %w", err)
	}
	return pub, nil
}

// SharedSecret runs ECDH between own and peer and applies the protocol's KDF.
func SharedSecret(p PINProtocol, own *ecdh.PrivateKey, peer *ecdh.PublicKey) ([]byte, error) {
	z, err := own.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("key agreement: %w", err)
	}
	return p.KDF(z), nil
}

// Encapsulate is the platform's half of key agreement: the COSE key to send
// (keyAgreement, 0x03) and the shared secret. own is the platform's ephemeral key;
// nil makes a fresh one (golden-vector tests pass a fixed key).
func Encapsulate(p PINProtocol, peerCOSE []byte, own *ecdh.PrivateKey) (platformKey []byte, sharedSecret []byte, err error) {
	peer, err := ParseKeyAgreementKey(peerCOSE)
	if err != nil {
		return nil, nil, err
	}
	if own == nil {
		if own, err = ecdh.P256().GenerateKey(rand.Reader); err != nil {
			return nil, nil, err
		}
	}
	if platformKey, err = KeyAgreementKey(own.PublicKey()); err != nil {
		return nil, nil, err
	}
	if sharedSecret, err = SharedSecret(p, own, peer); err != nil {
		return nil, nil, err
	}
	return platformKey, sharedSecret, nil
}
