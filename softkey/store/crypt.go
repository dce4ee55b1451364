package store

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"runtime/debug"
	"sync"

	"golang.org/x/crypto/argon2"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Encryption at rest (FormatEncrypted). A passphrase and a random salt give, through
// argon2id, a key-wrapping key (KEK); the KEK wraps (AES-256-GCM) a random 256-bit
// master key. HKDF-SHA256 derives from the master key one AES-256-GCM key that seals
// every value of the file, and three HMAC-SHA256 keys that turn RP ID hashes,
// credential IDs and user IDs into index keys. Changing the passphrase re-wraps the
// master key and rewrites nothing else.

// KDFParams are the argon2id parameters that turn a passphrase into a key.
type KDFParams struct {
	Time      uint32 // passes over the memory
	MemoryKiB uint32
	Threads   uint8
}

// DefaultKDF is RFC 9106 §4's argon2id option for memory-constrained machines (64 MiB,
// p=4, t=3) with one more pass: 64 MiB suits CI runners and a long-running softkey
// serve, and t=4 brings a derivation to about 100 ms on an idle 2-core machine
// (about 230 ms on a busy one). Each guess at the passphrase of a stolen file costs
// that much; opening the softkey, once per process, hardly notices.
var DefaultKDF = KDFParams{Time: 4, MemoryKiB: 64 << 10, Threads: 4}

// The bounds keep a damaged or hostile header from making argon2id allocate without
// limit; the lower ones are argon2's own.
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 1 << 20 // 1 GiB
	maxKDFThreads   = 64
)

func (p KDFParams) validate() error {
	if p.Time < 1 || p.Time > maxKDFTime || p.Threads < 1 || p.Threads > maxKDFThreads ||
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB {
		return fmt.Errorf("argon2id parameters out of range: %s", p)
	}
	return nil
}

// String describes the parameters, e.g. "argon2id t=3 m=64 MiB p=4".
func (p KDFParams) String() string {
	m := fmt.Sprintf("%d KiB", p.MemoryKiB)
	if p.MemoryKiB%1024 == 0 {
		m = fmt.Sprintf("%d MiB", p.MemoryKiB/1024)
	}
	return fmt.Sprintf("argon2id t=%d m=%s p=%d", p.Time, m, p.Threads)
}

func (p KDFParams) key(passphrase, salt []byte) []byte {
	k := argon2.IDKey(passphrase, salt, p.Time, p.MemoryKiB, p.Threads, 32)
	if p.MemoryKiB >= 8<<10 {
		// The derivation's memory is garbage now: hand it back to the OS at once
		// rather than leave it to the scavenger, so that a softkey serving for
		// hours does not keep 64 MiB of dead pages in its RSS.
		debug.FreeOSMemory()
	}
	return k
}

const (
	cipherName = "AES-256-GCM"
	kdfName    = "argon2id"
	saltSize   = 16
	keySize    = 32
	nonceSize  = 12
	tagSize    = 16
	// sealOverhead is what sealing adds to a value: the nonce and the GCM tag.
	sealOverhead = nonceSize + tagSize
	// tagLen is the length of an index key made from an RP ID hash or a credential ID.
	tagLen = sha256.Size
)

// cryptoHeader is the plaintext header of an encrypted state file: everything needed
// to unwrap the master key, and nothing about the authenticator.
type cryptoHeader struct {
	Cipher    string `cbor:"1,keyasint"`
	KDF       string `cbor:"2,keyasint"`
	Salt      []byte `cbor:"3,keyasint"`
	Time      uint32 `cbor:"4,keyasint"`
	MemoryKiB uint32 `cbor:"5,keyasint"`
	Threads   uint8  `cbor:"6,keyasint"`
	// Wrapped is nonce || AES-256-GCM(KEK, master key), with the other fields as
	// associated data (wrapAAD).
	Wrapped []byte `cbor:"7,keyasint"`
}

func (h cryptoHeader) params() KDFParams {
	return KDFParams{Time: h.Time, MemoryKiB: h.MemoryKiB, Threads: h.Threads}
}

func (h cryptoHeader) validate() error {
	if h.Cipher != cipherName || h.KDF != kdfName {
		return fmt.Errorf("unknown cipher %q or key derivation %q", h.Cipher, h.KDF)
	}
	if len(h.Salt) < saltSize || len(h.Salt) > 64 {
		return fmt.Errorf("salt is %d bytes", len(h.Salt))
	}
	if len(h.Wrapped) != nonceSize+keySize+tagSize {
		return fmt.Errorf("wrapped master key is %d bytes", len(h.Wrapped))
	}
	return h.params().validate()
}

// wrapAAD binds the wrapped master key to the header's parameters, so that they
// cannot be changed without the passphrase.
func (h cryptoHeader) wrapAAD() ([]byte, error) {
	h.Wrapped = nil
	b, err := ctap2.Marshal(&h)
	if err != nil {
		return nil, err
	}
	return append([]byte("ctapkit-softkey/wrap\x00"), b...), nil
}

// headerCheck is a checksum of the header's bytes, stored beside it: with it, a
// damaged header is told apart from a wrong passphrase (both fail to unwrap).
func headerCheck(hb []byte) []byte {
	h := sha256.New()
	h.Write([]byte("ctapkit-softkey/header-check\x00"))
	h.Write(hb)
	return h.Sum(nil)[:16]
}

// newCryptoHeader wraps masterKey under a fresh salt and the passphrase.
func newCryptoHeader(masterKey, passphrase []byte, p KDFParams) (cryptoHeader, error) {
	if err := p.validate(); err != nil {
		return cryptoHeader{}, err
	}
	if len(passphrase) == 0 {
		return cryptoHeader{}, errors.New("the passphrase is empty")
	}
	h := cryptoHeader{Cipher: cipherName, KDF: kdfName, Salt: make([]byte, saltSize),
		Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads}
	rand.Read(h.Salt) // never fails since Go 1.24
	kek := p.key(passphrase, h.Salt)
	defer clear(kek)
	aead, err := newAEAD(kek)
	if err != nil {
		return cryptoHeader{}, err
	}
	aad, err := h.wrapAAD()
	if err != nil {
		return cryptoHeader{}, err
	}
	nonce := make([]byte, nonceSize, nonceSize+keySize+tagSize)
	rand.Read(nonce)
	h.Wrapped = aead.Seal(nonce, nonce, masterKey, aad)
	return h, nil
}

var errUnwrap = errors.New("the passphrase does not unwrap the master key")

// unwrap derives the KEK from the passphrase (the slow part) and unwraps the master
// key; errUnwrap means a wrong passphrase when the header is known to be intact.
func (h cryptoHeader) unwrap(passphrase []byte) ([]byte, error) {
	kek := h.params().key(passphrase, h.Salt)
	defer clear(kek)
	aead, err := newAEAD(kek)
	if err != nil {
		return nil, err
	}
	aad, err := h.wrapAAD()
	if err != nil {
		return nil, err
	}
	mk, err := aead.Open(nil, h.Wrapped[:nonceSize], h.Wrapped[nonceSize:], aad)
	if err != nil || len(mk) != keySize {
		return nil, errUnwrap
	}
	return mk, nil
}

// randRead fills b from crypto/rand, which never fails since Go 1.24.
func randRead(b []byte) { rand.Read(b) }

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealer holds the keys derived from the master key of an encrypted state file. A
// nil *sealer is the unencrypted format: values are stored as they are and index
// keys are the plain RP ID hashes, credential IDs and user IDs.
type sealer struct {
	version uint32
	aead    cipher.AEAD // safe for concurrent use: it holds only the key schedule
	rp      macPool
	id      macPool
	user    macPool
}

// HKDF info strings: one key per purpose, so that no key is used for two things.
const (
	infoSeal      = "ctapkit-softkey/seal"
	infoIndexRP   = "ctapkit-softkey/index/rp"
	infoIndexCred = "ctapkit-softkey/index/cred"
	infoIndexUser = "ctapkit-softkey/index/user"
)

func newSealer(masterKey []byte, version uint32) (*sealer, error) {
	derive := func(info string) []byte {
		k, err := hkdf.Key(sha256.New, masterKey, nil, info, keySize)
		if err != nil {
			panic(err) // only for lengths HKDF cannot produce
		}
		return k
	}
	sk := derive(infoSeal)
	defer clear(sk)
	aead, err := newAEAD(sk)
	if err != nil {
		return nil, err
	}
	return &sealer{version: version, aead: aead,
		rp: newMACPool(derive(infoIndexRP)), id: newMACPool(derive(infoIndexCred)),
		user: newMACPool(derive(infoIndexUser))}, nil
}

// macPool reuses keyed HMAC states: setting up HMAC-SHA256 costs two blocks.
type macPool struct{ p *sync.Pool }

func newMACPool(key []byte) macPool {
	return macPool{&sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

func (m macPool) sum(parts ...[]byte) []byte {
	h := m.p.Get().(hash.Hash)
	h.Reset()
	for _, p := range parts {
		h.Write(p)
	}
	out := h.Sum(make([]byte, 0, tagLen))
	m.p.Put(h)
	return out
}

// rpTag is the index key of an RP ID hash.
func (s *sealer) rpTag(rpIDHash []byte) []byte {
	if s == nil {
		return bytes.Clone(rpIDHash)
	}
	return s.rp.sum(rpIDHash)
}

// idTag is the index key of a credential ID.
func (s *sealer) idTag(id []byte) []byte {
	if s == nil {
		return bytes.Clone(id)
	}
	return s.id.sum(id)
}

// userTag is the index key of a user ID within its RP. Keyed with the RP ID hash
// too, so that one user handle at two RPs does not show as one tag.
func (s *sealer) userTag(rpIDHash, userID []byte) []byte {
	if s == nil {
		return bytes.Clone(userID)
	}
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(rpIDHash)))
	return s.user.sum(n[:], rpIDHash, userID)
}

// aad binds a sealed value to its place: the format version, the bucket and the
// key. A value moved to another record, bucket or format fails to open.
func (s *sealer) aad(bucket, key []byte) []byte {
	const prefix = "ctapkit-softkey/value\x00"
	out := make([]byte, 0, len(prefix)+5+len(bucket)+len(key))
	out = append(out, prefix...)
	out = binary.BigEndian.AppendUint32(out, s.version)
	out = append(out, byte(len(bucket)))
	out = append(out, bucket...)
	return append(out, key...)
}

// seal returns nonce || AES-256-GCM(value); for the unencrypted format, a copy.
func (s *sealer) seal(bucket, key, value []byte) []byte {
	if s == nil {
		if value == nil {
			return []byte{}
		}
		return bytes.Clone(value)
	}
	out := make([]byte, nonceSize, sealOverhead+len(value))
	rand.Read(out) // a random 96-bit nonce: far fewer than 2^32 seals per key
	return s.aead.Seal(out, out, value, s.aad(bucket, key))
}

// open is the inverse of seal. It returns a copy the caller owns; a present but
// empty value is an empty, non-nil slice.
func (s *sealer) open(bucket, key, sealed []byte) ([]byte, error) {
	if s == nil {
		return append([]byte{}, sealed...), nil
	}
	if len(sealed) < sealOverhead {
		return nil, damagef("%s value %s is too short to be sealed", bucket, describeKey(key))
	}
	out, err := s.aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], s.aad(bucket, key))
	if err != nil {
		return nil, damagef("%s value %s fails authentication", bucket, describeKey(key))
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// describeKey names a record in an error: meta keys are words, index keys are
// keyed hashes (shown shortened) or, unencrypted, raw bytes.
func describeKey(k []byte) string {
	printable := len(k) > 0
	for _, c := range k {
		if c < 0x20 || c > 0x7e {
			printable = false
			break
		}
	}
	if printable && len(k) <= 32 {
		return fmt.Sprintf("%q", k)
	}
	if len(k) > 8 {
		return fmt.Sprintf("%x…", k[:8])
	}
	return fmt.Sprintf("%x", k)
}
