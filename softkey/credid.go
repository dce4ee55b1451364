package softkey

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Credential IDs start with a format byte. Sealed IDs carry the private key itself
// (non-resident credentials cost no storage); resident IDs are random handles of a
// record in the store.
//
// Two sealed formats exist. Both are format || nonce(12) || AES-256-GCM(plaintext)
// with associated data format || rpIdHash, under one key derived from the master
// secret; the format byte in the associated data keeps an ID of one format from
// being passed off as the other.
//
//   - 0x01, for credentials without per-credential extension data (and every U2F key
//     handle): plaintext alg (int16, big-endian) || raw key. IDs of this format made
//     by earlier versions keep working unchanged.
//   - 0x03, for credentials with extension data: plaintext
//     alg (int16, big-endian) || credProtect (1..3) || flags || keyLen || raw key ||
//     records, where flags bit 0 marks a credential made with hmac-secret and each
//     record is tag || len || value (tag 0x01: the credBlob, at most
//     maxCredBlobLength bytes, at most once). Unknown flag bits or tags make the ID
//     not open at all, so that data a newer softkey sealed (a restriction, say) is
//     never silently dropped; the same holds for a credProtect level outside 1..3.
//     The hmac-secret CredRandoms are not sealed: they are derived from the master
//     secret and the ID (hmacsecret.go).
const (
	credIDSealed    byte = 0x01
	credIDResident  byte = 0x02
	credIDSealedExt byte = 0x03

	residentIDSize = 32
	sealNonceSize  = 12
	sealOverhead   = 1 + sealNonceSize + 2 + 16 // format, nonce, algorithm, GCM tag
	// sealExtHeader is what format 0x03 adds before the key: credProtect, flags, keyLen.
	sealExtHeader = 3
)

// Format 0x03 flags and record tags.
const (
	sealFlagHMACSecret byte = 0x01
	sealFlagsKnown          = sealFlagHMACSecret

	sealTagCredBlob byte = 0x01
)

// credIDWrapInfo labels the HKDF derivation of the sealing key from the master
// secret; a new master secret (authenticatorReset) invalidates every sealed ID.
const credIDWrapInfo = "ctapkit softkey credential ID sealing v1"

// sealedExtensions is the extension data a sealed credential ID carries besides its
// key. The zero value is a credential without any, sealed in format 0x01.
type sealedExtensions struct {
	credProtect uint8 // 0 or 1: userVerificationOptional
	hmacSecret  bool  // made with hmac-secret: CredRandoms exist
	credBlob    []byte
}

func (e sealedExtensions) empty() bool {
	return e.credProtect <= 1 && !e.hmacSecret && len(e.credBlob) == 0
}

// credentialSealer seals private keys into credential IDs with AES-256-GCM. The
// associated data binds each ID to its RP: an ID presented for another rpIdHash does
// not open, so a credential cannot be used across RPs (CTAP 2.1 §6.1.2 step 12).
type credentialSealer struct {
	aead cipher.AEAD
	rnd  io.Reader
}

func newCredentialSealer(masterSecret []byte, rnd io.Reader) (*credentialSealer, error) {
	key, err := hkdf.Key(sha256.New, masterSecret, nil, credIDWrapInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("deriving credential sealing key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &credentialSealer{aead: aead, rnd: rnd}, nil
}

// seal returns a sealed credential ID for rawKey and ext: format 0x01 when ext is
// empty, else 0x03 (see the format comment above).
func (s *credentialSealer) seal(rpIDHash [32]byte, alg ctap2.COSEAlgorithm, rawKey []byte, ext sealedExtensions) ([]byte, error) {
	format := credIDSealed
	plain := binary.BigEndian.AppendUint16(make([]byte, 0, 2+sealExtHeader+len(rawKey)+2+len(ext.credBlob)), uint16(int16(alg)))
	if !ext.empty() {
		if len(rawKey) > 0xff || len(ext.credBlob) > maxCredBlobLength || ext.credProtect > 3 {
			return nil, fmt.Errorf("credential data does not fit a sealed ID")
		}
		format = credIDSealedExt
		var flags byte
		if ext.hmacSecret {
			flags |= sealFlagHMACSecret
		}
		plain = append(plain, max(ext.credProtect, 1), flags, byte(len(rawKey)))
		plain = append(plain, rawKey...)
		if len(ext.credBlob) > 0 {
			plain = append(plain, sealTagCredBlob, byte(len(ext.credBlob)))
			plain = append(plain, ext.credBlob...)
		}
	} else {
		plain = append(plain, rawKey...)
	}
	id := make([]byte, 1+sealNonceSize, 1+sealNonceSize+len(plain)+s.aead.Overhead())
	id[0] = format
	nonce := id[1 : 1+sealNonceSize]
	if _, err := io.ReadFull(s.rnd, nonce); err != nil {
		return nil, fmt.Errorf("credential ID nonce: %w", err)
	}
	return s.aead.Seal(id, nonce, plain, sealAD(format, rpIDHash)), nil
}

// open returns the algorithm, raw key and extension data sealed in id for rpIDHash;
// ok is false for any ID this authenticator did not seal for that RP, and for IDs
// whose content it does not fully understand.
func (s *credentialSealer) open(rpIDHash [32]byte, id []byte) (alg ctap2.COSEAlgorithm, rawKey []byte, ext sealedExtensions, ok bool) {
	if len(id) < sealOverhead || (id[0] != credIDSealed && id[0] != credIDSealedExt) {
		return 0, nil, ext, false
	}
	nonce, box := id[1:1+sealNonceSize], id[1+sealNonceSize:]
	plain, err := s.aead.Open(nil, nonce, box, sealAD(id[0], rpIDHash))
	if err != nil || len(plain) < 2 {
		return 0, nil, ext, false
	}
	alg = ctap2.COSEAlgorithm(int16(binary.BigEndian.Uint16(plain)))
	if id[0] == credIDSealed {
		return alg, plain[2:], ext, true
	}
	ext, rawKey, ok = parseSealedExt(plain[2:])
	return alg, rawKey, ext, ok
}

// parseSealedExt reads the format 0x03 plaintext after the algorithm.
func parseSealedExt(b []byte) (sealedExtensions, []byte, bool) {
	var ext sealedExtensions
	if len(b) < sealExtHeader {
		return ext, nil, false
	}
	level, flags, keyLen := b[0], b[1], int(b[2])
	b = b[sealExtHeader:]
	if level < 1 || level > 3 || flags&^sealFlagsKnown != 0 || len(b) < keyLen {
		return ext, nil, false
	}
	ext.credProtect = level
	ext.hmacSecret = flags&sealFlagHMACSecret != 0
	rawKey, b := b[:keyLen], b[keyLen:]
	for len(b) > 0 {
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			return ext, nil, false
		}
		tag, value := b[0], b[2:2+int(b[1])]
		b = b[2+int(b[1]):]
		switch {
		case tag == sealTagCredBlob && ext.credBlob == nil && len(value) <= maxCredBlobLength:
			ext.credBlob = bytes.Clone(value)
		default:
			return ext, nil, false
		}
	}
	return ext, rawKey, true
}

func sealAD(format byte, rpIDHash [32]byte) []byte {
	return append([]byte{format}, rpIDHash[:]...)
}
