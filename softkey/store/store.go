// Package store keeps the softkey's state: its identity (AAGUID, master secret), its
// resident credentials and the reserved ceiling of its signature counter.
//
// Two implementations share one interface and one test suite: NewMemory for ephemeral
// authenticators (soft:mem, tests) and DB, a bbolt file, for soft:<path>. Every write of
// DB is one bbolt transaction, durable when the call returns, so an acknowledged
// credential survives kill -9. The counter is not written per signature: the engine
// reserves blocks of values ahead (see CounterCeiling) so that a crash can only make
// the counter jump forwards, never backwards.
//
// A state file is unencrypted (FormatPlain, made with --no-passphrase) or encrypted
// at rest (FormatEncrypted): everything but a small header — keys, RP IDs, user
// names, settings, large blobs — sealed with AES-256-GCM under keys that a
// passphrase unlocks (crypt.go), and indexed by keyed hashes instead of RP ID hashes
// and credential IDs. Encrypt migrates a plain file in place; Export and Import move
// a whole state through a passphrase-protected backup (backup.go).
package store

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"
	"unicode/utf8"

	"github.com/ctapkit/ctapkit/ctap2"
)

// State format versions. A plain file keeps format 1, the layout every state made
// before encryption has; Create writes it for NoPassphrase, so that such files stay
// readable by older ctapkits too.
const (
	// FormatPlain: values and index keys stored as they are.
	FormatPlain = 1
	// FormatEncrypted: a plaintext crypto header; values sealed, index keys keyed hashes.
	FormatEncrypted = 2
	// FormatVersion is the newest format this package reads and writes.
	FormatVersion = FormatEncrypted
)

// MasterSecretSize is the length of the master secret from which the softkey derives
// its credential-wrapping keys.
const MasterSecretSize = 32

// Sentinel errors; match them with errors.Is.
var (
	// ErrNotFound: no credential with that ID.
	ErrNotFound = errors.New("credential not found")
	// ErrInUse: another process (or another open in this one) holds the state file.
	ErrInUse = errors.New("state file in use by another process")
	// ErrNotSoftkey: the file exists but is not a ctapkit softkey state file. Open
	// leaves such files untouched.
	ErrNotSoftkey = errors.New("not a ctapkit softkey state file")
	// ErrNotExist: the state file does not exist. It also matches fs.ErrNotExist.
	ErrNotExist = errors.New("state file does not exist")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("store is closed")
	// ErrDamaged: a softkey state file (or backup) whose contents fail a check: a
	// sealed value that fails authentication, a truncated file, a record that does
	// not decode. Open and the reads that find it leave the file untouched.
	ErrDamaged = errors.New("state file is damaged")
	// ErrNewerVersion: the state file was written by a newer ctapkit. Open leaves it
	// untouched.
	ErrNewerVersion = errors.New("state file was written by a newer version of ctapkit")
	// ErrPassphraseRequired: the state file is encrypted and no passphrase was
	// given, or Create was given neither a passphrase nor NoPassphrase.
	ErrPassphraseRequired = errors.New("a passphrase is needed")
	// ErrWrongPassphrase: the passphrase does not unlock the state file or backup.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrUnsafeFile: the state file belongs to another user or other users may
	// read or write it. Open refuses it, untouched.
	ErrUnsafeFile = errors.New("state file is not private to its owner")
	// ErrNotEncrypted and ErrEncrypted: the operation needs a state file that is
	// (ChangePassphrase) or is not yet (Encrypt) encrypted.
	ErrNotEncrypted = errors.New("state file is not encrypted")
	ErrEncrypted    = errors.New("state file is already encrypted")
)

// Credential is a resident (discoverable) credential.
type Credential struct {
	ID       []byte
	RPID     string
	RPName   string
	RPIDHash [32]byte
	User     ctap2.UserEntity
	Alg      ctap2.COSEAlgorithm
	// PrivateKey is PKCS #8 DER.
	PrivateKey []byte
	Created    time.Time
	// CredProtect is the credProtect level (1..3), 0 when never set; used by a later issue.
	CredProtect uint8
	// Extra holds per-credential data of later features (credBlob, hmac-secret
	// CredRandoms, largeBlobKey) without a format change.
	Extra map[string][]byte
}

// Clone returns a deep copy, so that callers never share slices with a store.
func (c *Credential) Clone() *Credential {
	if c == nil {
		return nil
	}
	d := *c
	d.ID = bytes.Clone(c.ID)
	d.User.ID = bytes.Clone(c.User.ID)
	d.PrivateKey = bytes.Clone(c.PrivateKey)
	d.Extra = cloneExtra(c.Extra)
	return &d
}

func (c *Credential) validate() error {
	switch {
	case len(c.ID) == 0 || len(c.ID) > ctap2.MaxCredentialIDLength:
		return fmt.Errorf("credential ID length %d out of range", len(c.ID))
	case len(c.User.ID) == 0 || len(c.User.ID) > ctap2.MaxUserIDLength:
		return fmt.Errorf("user ID length %d out of range", len(c.User.ID))
	case len(c.PrivateKey) == 0:
		return errors.New("credential has no private key")
	case !utf8.ValidString(c.RPID) || !utf8.ValidString(c.RPName) ||
		!utf8.ValidString(c.User.Name) || !utf8.ValidString(c.User.DisplayName):
		return errors.New("credential has a name that is not valid UTF-8")
	}
	for k := range c.Extra {
		if !utf8.ValidString(k) {
			return errors.New("credential has an extra key that is not valid UTF-8")
		}
	}
	return nil
}

// Meta is the authenticator's identity and the state file's header.
type Meta struct {
	AAGUID        [16]byte
	MasterSecret  []byte // MasterSecretSize bytes
	FormatVersion int
	Created       time.Time
	// Attestation is the attestation mode chosen at creation ("self", "none",
	// "batch"); empty means the softkey's default.
	Attestation string
}

func (m Meta) clone() Meta {
	m.MasterSecret = bytes.Clone(m.MasterSecret)
	return m
}

// NewMeta makes a fresh identity: a random master secret and, unless aaguid is given, a
// random (version 4 UUID) AAGUID. rnd nil means crypto/rand; a seeded reader gives a
// reproducible identity for golden tests.
func NewMeta(rnd io.Reader, aaguid *[16]byte) (Meta, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	m := Meta{FormatVersion: FormatVersion, Created: time.Now().UTC().Truncate(time.Second)}
	m.MasterSecret = make([]byte, MasterSecretSize)
	if _, err := io.ReadFull(rnd, m.MasterSecret); err != nil {
		return Meta{}, fmt.Errorf("generating master secret: %w", err)
	}
	if aaguid != nil {
		m.AAGUID = *aaguid
	} else {
		if _, err := io.ReadFull(rnd, m.AAGUID[:]); err != nil {
			return Meta{}, fmt.Errorf("generating AAGUID: %w", err)
		}
		m.AAGUID[6] = m.AAGUID[6]&0x0f | 0x40 // RFC 9562 version 4
		m.AAGUID[8] = m.AAGUID[8]&0x3f | 0x80 // RFC 9562 variant
	}
	return m, nil
}

// Store is the softkey's persistence. Implementations are safe for concurrent use;
// returned credentials are copies.
type Store interface {
	// Meta returns the identity; it is read once at open, so it cannot fail.
	Meta() Meta
	// SetMasterSecret replaces the master secret (authenticatorReset).
	SetMasterSecret(secret []byte) error
	// PutCredential inserts c, replacing a credential with the same ID or with the same
	// RPIDHash and User.ID (CTAP 2.1 §6.1.2 step 12: one credential per account).
	PutCredential(c *Credential) error
	// Credential returns the credential with that ID, or ErrNotFound.
	Credential(id []byte) (*Credential, error)
	// CredentialsByRP returns the RP's credentials, newest first, through an index.
	CredentialsByRP(rpIDHash [32]byte) ([]*Credential, error)
	// DeleteCredential removes one credential (ErrNotFound if absent).
	DeleteCredential(id []byte) error
	CountCredentials() (int, error)
	DeleteAllCredentials() error
	// CounterCeiling is the persisted bound of the signature counter: no value above it
	// was ever handed out. The engine starts from it after open.
	CounterCeiling() (uint32, error)
	SetCounterCeiling(uint32) error
	// Settings returns the PIN state and configuration; DefaultSettings() when
	// none was ever written.
	Settings() (Settings, error)
	// SetSettings stores s, durable when it returns; it refuses settings out of
	// range (Settings documents the ranges) and stores nothing then.
	SetSettings(s Settings) error
	// LargeBlobArray is the serialized large-blob array (CTAP 2.1 §6.10); nil when
	// never written, which the engine serves as the empty array.
	LargeBlobArray() ([]byte, error)
	SetLargeBlobArray([]byte) error
	// RelyingParties lists the RPs that have resident credentials, ordered by ID,
	// with the count of each; ID and name are those of the RP's newest credential.
	RelyingParties() ([]RPInfo, error)
	Close() error
}

// newerThan orders by creation time, newest first; ties (an injected clock that
// stands still) fall back to insertion order, newest first.
func newerThan(a, b *Credential, seqA, seqB uint64) bool {
	return newerAt(a.Created, b.Created, seqA, seqB)
}

func cloneExtra(m map[string][]byte) map[string][]byte {
	if m == nil {
		return nil
	}
	out := maps.Clone(m)
	for k, v := range out {
		out[k] = bytes.Clone(v)
	}
	return out
}
