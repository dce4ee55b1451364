package softkey

import (
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
const (
	credIDSealed   byte = 0x01
	credIDResident byte = 0x02

	residentIDSize = 32
	sealNonceSize  = 12
	sealOverhead   = 1 + sealNonceSize + 2 + 16 // format, nonce, algorithm, GCM tag
)

// credIDWrapInfo labels the HKDF derivation of the sealing key from the master
// secret; a new master secret (authenticatorReset) invalidates every sealed ID.
const credIDWrapInfo = "ctapkit softkey credential ID sealing v1"

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

// seal returns 0x01 || nonce || AES-GCM(alg || rawKey) with associated data
// 0x01 || rpIdHash.
func (s *credentialSealer) seal(rpIDHash [32]byte, alg ctap2.COSEAlgorithm, rawKey []byte) ([]byte, error) {
	id := make([]byte, 1+sealNonceSize, sealOverhead+len(rawKey))
	id[0] = credIDSealed
	nonce := id[1 : 1+sealNonceSize]
	if _, err := io.ReadFull(s.rnd, nonce); err != nil {
		return nil, fmt.Errorf("credential ID nonce: %w", err)
	}
	plain := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(rawKey)), uint16(int16(alg)))
	plain = append(plain, rawKey...)
	return s.aead.Seal(id, nonce, plain, sealAD(rpIDHash)), nil
}

// open returns the algorithm and raw key sealed in id for rpIDHash; ok is false for
// any ID this authenticator did not seal for that RP.
func (s *credentialSealer) open(rpIDHash [32]byte, id []byte) (alg ctap2.COSEAlgorithm, rawKey []byte, ok bool) {
	if len(id) < sealOverhead || id[0] != credIDSealed {
		return 0, nil, false
	}
	nonce, box := id[1:1+sealNonceSize], id[1+sealNonceSize:]
	plain, err := s.aead.Open(nil, nonce, box, sealAD(rpIDHash))
	if err != nil || len(plain) < 2 {
		return 0, nil, false
	}
	alg = ctap2.COSEAlgorithm(int16(binary.BigEndian.Uint16(plain)))
	return alg, plain[2:], true
}

func sealAD(rpIDHash [32]byte) []byte {
	return append([]byte{credIDSealed}, rpIDHash[:]...)
}
