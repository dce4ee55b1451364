package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ctapkit/ctapkit/ctap2"
)

// The state file layout, one bbolt file. Both formats share the buckets and the shape
// of their keys; FormatEncrypted seals every value and replaces the raw identifiers
// in keys by keyed hashes (crypt.go). In the table, RP = rpIdHash, ID = credential
// ID, U = user ID for FormatPlain; for FormatEncrypted RP = HMAC(index/rp, rpIdHash),
// ID = HMAC(index/cred, credential ID), U = HMAC(index/user, len || rpIdHash || user
// ID), all 32 bytes, and each value v is stored as nonce || AES-256-GCM(v) with the
// associated data "ctapkit-softkey/value\0" || version (uint32) || len(bucket) ||
// bucket || key.
//
//	meta     "magic"     → stateMagic, the type marker            (plaintext)
//	         "version"   → format version, uint32 big-endian      (plaintext)
//	         "header"    → plain: CBOR {1: encrypted (false), 2: created Unix seconds,
//	                       3: created nanoseconds, 4: AAGUID, 5: attestation mode}
//	                       encrypted: CBOR cryptoHeader (cipher, argon2id salt and
//	                       parameters, wrapped master key)          (plaintext)
//	         "check"     → encrypted only: checksum of "header"     (plaintext)
//	         "identity"  → encrypted only: CBOR {1: AAGUID, 2: created seconds,
//	                       3: nanoseconds, 4: attestation mode}
//	         "secret"    → master secret
//	         "counter"   → signature counter ceiling, uint32 big-endian
//	         "seq"       → last insertion sequence number, uint64 big-endian
//	         "count"     → number of credentials, uint64 big-endian
//	         "settings"  → CBOR settings record (settings.go); absent = defaults
//	         "largeblob" → serialized large-blob array; absent = never written
//	         "attestation" → CBOR {1: batch attestation key (PKCS #8 DER),
//	                       2: its certificates (DER, leaf first)}; absent = none
//	creds    RP || ID → credential record (record.go)
//	credids  ID → RP || U (lookup by ID)
//	users    RP || U → ID (one credential per account)
//
// Credentials of one RP are adjacent in creds, so CredentialsByRP is a cursor Seek
// and a walk over exactly that RP's records, in both formats.
var (
	bucketMeta    = []byte("meta")
	bucketCreds   = []byte("creds")
	bucketCredIDs = []byte("credids")
	bucketUsers   = []byte("users")

	keyMagic     = []byte("magic")
	keyVersion   = []byte("version")
	keyHeader    = []byte("header")
	keyCheck     = []byte("check")
	keyIdentity  = []byte("identity")
	keySecret    = []byte("secret")
	keyCounter   = []byte("counter")
	keySeq       = []byte("seq")
	keyCount     = []byte("count")
	keySettings  = []byte("settings")
	keyLargeBlob = []byte("largeblob")
)

const stateMagic = "ctapkit-softkey-state"

// lockTimeout bounds the wait for another opener's lock: a second Open fails quickly
// with ErrInUse rather than hanging.
const lockTimeout = 100 * time.Millisecond

// writeState's transactions: the first holds writeChunkFirst credentials, each
// next one twice as many, up to writeChunkMax.
const (
	writeChunkFirst = 1000
	writeChunkMax   = 10000
)

// CreateOptions configure a new state file.
type CreateOptions struct {
	// Passphrase encrypts the state file at rest (FormatEncrypted). Create does not
	// keep it.
	Passphrase []byte
	// NoPassphrase is the explicit choice of an unencrypted state file
	// (FormatPlain); exactly one of Passphrase and NoPassphrase must be given.
	NoPassphrase bool
	// KDF sets the argon2id parameters; nil means DefaultKDF.
	KDF *KDFParams
	// Rand is the source of the master secret and AAGUID; nil means crypto/rand.
	// The encryption keys always come from crypto/rand.
	Rand io.Reader
	// AAGUID, when set, replaces the random one.
	AAGUID *[16]byte
	// Attestation is the attestation mode: "self", "none", "batch" or "" (the
	// softkey's default).
	Attestation string
	// AttestationKey (PKCS #8 DER) and AttestationCerts (DER, leaf first) are a
	// batch attestation key and its chain, stored like a credential's private key
	// (see AttestationStore); both or neither. "batch" needs them; with another
	// mode they serve enterprise attestation only.
	AttestationKey   []byte
	AttestationCerts [][]byte
}

// encryption returns the new file's encryption, nil for an unencrypted one.
func (o CreateOptions) encryption() (*encryption, error) {
	switch {
	case o.NoPassphrase && len(o.Passphrase) > 0:
		return nil, errors.New("both a passphrase and NoPassphrase given")
	case o.NoPassphrase:
		return nil, nil
	case len(o.Passphrase) == 0:
		return nil, fmt.Errorf("%w (or --no-passphrase to store it unencrypted)", ErrPassphraseRequired)
	}
	kdf := DefaultKDF
	if o.KDF != nil {
		kdf = *o.KDF
	}
	return newEncryption(o.Passphrase, kdf)
}

// encryption is the unlocked state of an encrypted file.
type encryption struct {
	hdr       cryptoHeader
	masterKey []byte // kept to re-wrap it under a new passphrase
	s         *sealer
}

func newEncryption(passphrase []byte, kdf KDFParams) (*encryption, error) {
	mk := make([]byte, keySize)
	randRead(mk)
	hdr, err := newCryptoHeader(mk, passphrase, kdf)
	if err != nil {
		return nil, err
	}
	s, err := newSealer(mk, FormatEncrypted)
	if err != nil {
		return nil, err
	}
	return &encryption{hdr: hdr, masterKey: mk, s: s}, nil
}

// sealer is nil for an unencrypted file.
func (e *encryption) sealer() *sealer {
	if e == nil {
		return nil
	}
	return e.s
}

func (e *encryption) version() int {
	if e == nil {
		return FormatPlain
	}
	return FormatEncrypted
}

// DB is a Store kept in a bbolt file. Every write is one transaction, durable (fsynced)
// when the call returns. The file is locked while open: another Open, in this process
// or another, fails with ErrInUse.
type DB struct {
	path string

	mu sync.RWMutex // guards db and enc against Close and Encrypt; operations hold it shared
	db *bolt.DB     // nil after Close

	metaMu sync.Mutex
	meta   Meta
	enc    *encryption // nil: unencrypted

	scanned atomic.Int64 // records visited by CredentialsByRP, for the index test
}

// header is the plaintext header of an unencrypted (FormatPlain) state file.
type header struct {
	Encrypted   bool   `cbor:"1,keyasint"`
	CreatedSec  int64  `cbor:"2,keyasint"`
	CreatedNsec int64  `cbor:"3,keyasint,omitempty"`
	AAGUID      []byte `cbor:"4,keyasint"`
	Attestation string `cbor:"5,keyasint,omitempty"`
}

// identityRecord is the sealed identity of an encrypted state file.
type identityRecord struct {
	AAGUID      []byte `cbor:"1,keyasint"`
	CreatedSec  int64  `cbor:"2,keyasint"`
	CreatedNsec int64  `cbor:"3,keyasint,omitempty"`
	Attestation string `cbor:"4,keyasint,omitempty"`
}

// stateError is an error about one state file, matching every error in errs.
type stateError struct {
	msg  string
	errs []error
}

func (e *stateError) Error() string   { return e.msg }
func (e *stateError) Unwrap() []error { return e.errs }

func notSoftkey(path, reason string) error {
	return &stateError{path + ": " + ErrNotSoftkey.Error() + " (" + reason + ")", []error{ErrNotSoftkey}}
}

func inUse(path string) error {
	return &stateError{path + ": " + ErrInUse.Error(), []error{ErrInUse}}
}

func notExist(path string) error {
	return &stateError{path + ": " + ErrNotExist.Error(), []error{ErrNotExist, fs.ErrNotExist}}
}

func damagedFile(path, reason string) error {
	return &stateError{"state file " + path + " is damaged: " + reason, []error{ErrDamaged}}
}

func newerVersion(path string, version uint32) error {
	return &stateError{fmt.Sprintf("state file %s was made by a newer ctapkit (format %d); this one reads up to format %d",
		path, version, FormatVersion), []error{ErrNewerVersion}}
}

func wrongPassphrase(path string) error {
	return &stateError{"wrong passphrase for " + path, []error{ErrWrongPassphrase}}
}

// damage is ErrDamaged found inside a transaction; DB methods turn it into an error
// that names the file (damagedFile).
type damage struct{ reason string }

func (e *damage) Error() string        { return ErrDamaged.Error() + ": " + e.reason }
func (e *damage) Is(target error) bool { return target == ErrDamaged }

func damagef(format string, args ...any) error {
	return &damage{fmt.Sprintf(format, args...)}
}

// errDamaged is ErrDamaged under its older, internal name.
var errDamaged = ErrDamaged

// inFile names path in a damage error; other errors pass through.
func inFile(path string, err error) error {
	var d *damage
	if errors.As(err, &d) {
		return damagedFile(path, d.reason)
	}
	return err
}

// Create makes a new state file at path with a fresh identity and returns it open.
// It refuses an existing path (the error matches fs.ErrExist) and leaves that file
// alone. The file is built under a temporary name in the same directory and linked
// into place only when complete, so a crash never leaves a half-made state file.
// Missing parent directories are created with mode 0700; the file has mode 0600.
func Create(path string, opts CreateOptions) (*DB, error) {
	if path == "" {
		return nil, errors.New("creating softkey state: no path given")
	}
	switch opts.Attestation {
	case "", "self", "none", "batch":
	default:
		return nil, fmt.Errorf("creating softkey state %s: unknown attestation mode %q (want self, batch or none)",
			path, opts.Attestation)
	}
	var att []byte
	if opts.AttestationKey != nil || opts.AttestationCerts != nil {
		var err error
		if att, err = encodeAttestation(opts.AttestationKey, opts.AttestationCerts); err != nil {
			return nil, fmt.Errorf("creating softkey state %s: %w", path, err)
		}
	} else if opts.Attestation == "batch" {
		// The softkey would refuse to start on such a state.
		return nil, fmt.Errorf("creating softkey state %s: batch attestation needs an attestation key", path)
	}
	enc, err := opts.encryption()
	if err != nil {
		return nil, fmt.Errorf("creating softkey state %s: %w", path, err)
	}
	meta, err := NewMeta(opts.Rand, opts.AAGUID)
	if err != nil {
		return nil, fmt.Errorf("creating softkey state %s: %w", path, err)
	}
	meta.Attestation = opts.Attestation
	st := newStateRecord(meta)
	st.AttKey = att
	return build(path, st, enc, false)
}

// build writes st into a new state file beside path and then gives it path's name:
// linked, never replacing a file, or (replace) renamed over the file there. It
// returns the new file open.
func build(path string, st *stateRecord, enc *encryption, replace bool) (*DB, error) {
	wrap := func(err error) error {
		var se *stateError
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("creating softkey state %s: %w", path, err)
	}
	if !replace {
		if _, err := os.Lstat(path); err == nil {
			return nil, existsError(path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, wrap(err)
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, wrap(err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return nil, wrap(err)
	}
	tmp := f.Name()
	f.Close()
	published := false
	defer func() {
		if !published {
			os.Remove(tmp)
		}
	}()

	// Nobody sees the temporary file before it is complete: its transactions need
	// not be durable one by one, one fsync at the end makes all of them so.
	bdb, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout, NoSync: true})
	if err != nil {
		return nil, wrap(err)
	}
	err = writeState(bdb, st, enc)
	if err == nil {
		err = bdb.Sync()
		bdb.NoSync = false
	}
	if err == nil {
		if replace {
			err = os.Rename(tmp, path)
		} else {
			err = publish(tmp, path)
		}
	}
	if err != nil {
		bdb.Close()
		return nil, wrap(err)
	}
	published = true
	syncDir(dir)
	return &DB{path: path, db: bdb, meta: st.meta(enc.version()), enc: enc}, nil
}

func existsError(path string) error {
	return &stateError{path + ": file already exists; not overwriting it", []error{fs.ErrExist}}
}

func encodeHeader(h header) ([]byte, error) { return ctap2.Marshal(&h) }

// writeState writes the whole layout of a new state file holding st: the metadata in
// one transaction, then the credentials in transactions of growing size. bbolt splits
// nodes only at commit, so one transaction of 100,000 inserts at random keys (keyed
// hashes are random keys) takes over a minute; chunks take seconds.
func writeState(db *bolt.DB, st *stateRecord, enc *encryption) error {
	if err := st.validate(); err != nil {
		return err
	}
	var recs [][]byte
	if err := st.records(func(rec []byte) error { recs = append(recs, rec); return nil }); err != nil {
		return err
	}
	if err := db.Update(func(tx *bolt.Tx) error { return writeLayout(tx, st, enc) }); err != nil {
		return err
	}
	s := enc.sealer()
	for size := writeChunkFirst; len(recs) > 0; size = min(2*size, writeChunkMax) {
		chunk := recs[:min(size, len(recs))]
		recs = recs[len(chunk):]
		err := db.Update(func(tx *bolt.Tx) error {
			b := bucketsOf(tx, s)
			for _, rec := range chunk {
				c, seq, err := decodeCredential(rec)
				if err != nil {
					return err
				}
				if seq > st.Seq {
					return fmt.Errorf("credential %x has sequence number %d, beyond the state's %d", c.ID, seq, st.Seq)
				}
				if err := insertTx(b, c, seq); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// writeLayout writes the buckets and the metadata of a new state file holding st.
func writeLayout(tx *bolt.Tx, st *stateRecord, enc *encryption) error {
	mb, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketCreds, bucketCredIDs, bucketUsers} {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	b := bucketsOf(tx, enc.sealer())
	plain := []struct{ k, v []byte }{
		{keyMagic, []byte(stateMagic)},
		{keyVersion, binary.BigEndian.AppendUint32(nil, uint32(enc.version()))},
	}
	var sealed []struct{ k, v []byte }
	if enc == nil {
		hb, err := encodeHeader(header{CreatedSec: st.CreatedSec, CreatedNsec: st.CreatedNsec,
			AAGUID: st.AAGUID, Attestation: st.Attestation})
		if err != nil {
			return err
		}
		plain = append(plain, struct{ k, v []byte }{keyHeader, hb})
	} else {
		hb, err := ctap2.Marshal(&enc.hdr)
		if err != nil {
			return err
		}
		ib, err := ctap2.Marshal(&identityRecord{AAGUID: st.AAGUID, CreatedSec: st.CreatedSec,
			CreatedNsec: st.CreatedNsec, Attestation: st.Attestation})
		if err != nil {
			return err
		}
		plain = append(plain, struct{ k, v []byte }{keyHeader, hb}, struct{ k, v []byte }{keyCheck, headerCheck(hb)})
		sealed = append(sealed, struct{ k, v []byte }{keyIdentity, ib})
	}
	sealed = append(sealed, []struct{ k, v []byte }{
		{keySecret, st.MasterSecret},
		{keyCounter, binary.BigEndian.AppendUint32(nil, st.Counter)},
		{keySeq, binary.BigEndian.AppendUint64(nil, st.Seq)},
		{keyCount, binary.BigEndian.AppendUint64(nil, 0)},
	}...)
	if st.Settings != nil {
		sealed = append(sealed, struct{ k, v []byte }{keySettings, st.Settings})
	}
	if st.HasLargeBlob {
		sealed = append(sealed, struct{ k, v []byte }{keyLargeBlob, st.LargeBlob})
	}
	if st.AttKey != nil {
		sealed = append(sealed, struct{ k, v []byte }{keyAttestation, st.AttKey})
	}
	for _, kv := range plain {
		if err := mb.Put(kv.k, kv.v); err != nil {
			return err
		}
	}
	for _, kv := range sealed {
		if err := b.putMeta(kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// publish gives the finished temporary file its name, never replacing an existing
// file. A hard link is atomic and fails on an existing name; on file systems without
// hard links it falls back to a check and a rename.
func publish(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil {
		os.Remove(tmp)
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return existsError(path)
	}
	if _, serr := os.Lstat(path); serr == nil {
		return existsError(path)
	}
	return os.Rename(tmp, path)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// OpenOptions configure Open.
type OpenOptions struct {
	// Passphrase returns the passphrase of an encrypted state file. It is called
	// only for one, once the file is checked and locked, so a prompt never asks in
	// vain; Open clears the returned slice after use. Without it an encrypted file
	// fails with ErrPassphraseRequired.
	Passphrase func() ([]byte, error)
}

// Open opens an existing state file without a passphrase: an unencrypted one, or
// an encrypted one fails with ErrPassphraseRequired. See OpenWith.
func Open(path string) (*DB, error) { return OpenWith(path, OpenOptions{}) }

// OpenWith opens an existing state file. Before anything can write to it, the file is
// checked read-only: a missing file is ErrNotExist (and fs.ErrNotExist), one that
// belongs to another user or that others may read or write is ErrUnsafeFile, one that
// is not a softkey state file at all is ErrNotSoftkey, a damaged one (truncated, a
// sealed value that fails authentication) ErrDamaged, a file of a newer format
// ErrNewerVersion, a wrong passphrase ErrWrongPassphrase; in each case the file is
// left exactly as it was. A file held by another opener gives ErrInUse after a short
// wait.
func OpenWith(path string, opts OpenOptions) (*DB, error) {
	if path == "" {
		return nil, errors.New("opening softkey state: no path given")
	}
	if err := checkFile(path); err != nil {
		return nil, err
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, OpenFile: openNoCreate})
	if err != nil {
		return nil, boltOpenError(path, err)
	}
	d := &DB{path: path, db: bdb}
	if err := d.load(opts); err != nil {
		bdb.Close()
		return nil, err
	}
	return d, nil
}

// load reads the identity under the exclusive lock (the file may have been replaced
// since checkFile) and, for an encrypted file, unlocks it.
func (d *DB) load(opts OpenOptions) error {
	var fh fileHeader
	err := guard(func() error {
		return d.db.View(func(tx *bolt.Tx) error {
			var err error
			if fh, err = loadHeader(d.path, tx); err != nil {
				return err
			}
			if fh.version == FormatPlain {
				d.meta, err = loadPlainMeta(d.path, tx, fh)
			}
			return err
		})
	})
	if err != nil || fh.version == FormatPlain {
		return inFile(d.path, err)
	}
	if opts.Passphrase == nil {
		return &stateError{"state file " + d.path + " is encrypted: " + ErrPassphraseRequired.Error(),
			[]error{ErrPassphraseRequired}}
	}
	pass, err := opts.Passphrase()
	if err != nil {
		return err
	}
	mk, err := fh.crypto.unwrap(pass)
	clear(pass) // KDFParams.key has handed argon2id's memory back to the OS
	if errors.Is(err, errUnwrap) {
		return wrongPassphrase(d.path)
	} else if err != nil {
		return fmt.Errorf("opening softkey state %s: %w", d.path, err)
	}
	s, err := newSealer(mk, FormatEncrypted)
	if err != nil {
		return err
	}
	d.enc = &encryption{hdr: fh.crypto, masterKey: mk, s: s}
	err = guard(func() error {
		return d.db.View(func(tx *bolt.Tx) error {
			var err error
			d.meta, err = loadSealedMeta(bucketsOf(tx, s))
			return err
		})
	})
	return inFile(d.path, err)
}

// openNoCreate keeps bbolt from creating a file that vanished after validation.
func openNoCreate(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag&^os.O_CREATE, perm)
}

func boltOpenError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return inUse(path)
	case errors.Is(err, fs.ErrNotExist):
		return notExist(path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return notSoftkey(path, "not a valid bbolt database: "+err.Error())
	}
	return fmt.Errorf("opening softkey state %s: %w", path, err)
}

// checkFile checks path without writing to it: our own reading of the bbolt header
// first (so that bbolt never maps a file that is too short for its own metadata),
// then a read-only bbolt open under a shared lock to check the magic, that the file
// is private to us (owner and mode), and our header and buckets.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return notExist(path)
	} else if err != nil {
		return fmt.Errorf("opening softkey state: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening softkey state: %w", err)
	}
	switch {
	case fi.IsDir():
		err = notSoftkey(path, "it is a directory")
	case !fi.Mode().IsRegular():
		err = notSoftkey(path, "it is not a regular file")
	default:
		err = checkBoltHeader(path, f, fi.Size())
	}
	f.Close()
	if err != nil {
		return err
	}

	bdb, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout, OpenFile: openNoCreate})
	if err != nil {
		return boltOpenError(path, err)
	}
	defer bdb.Close()
	err = guard(func() error {
		return bdb.View(func(tx *bolt.Tx) error {
			// A file that is not ours at all says so first; one of ours must be
			// private before anything else in it counts.
			if mb := tx.Bucket(bucketMeta); mb == nil || string(mb.Get(keyMagic)) != stateMagic {
				return notSoftkey(path, "a bbolt database without softkey data")
			}
			if err := checkPrivate(path, fi); err != nil {
				return err
			}
			fh, err := loadHeader(path, tx)
			if err == nil && fh.version == FormatPlain {
				_, err = loadPlainMeta(path, tx, fh)
			}
			return err
		})
	})
	return inFile(path, err)
}

// guard turns a panic or memory fault inside bbolt (a damaged file) into ErrDamaged.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = damagef("%v", r)
		}
	}()
	return fn()
}

// bbolt's on-disk meta page (go.etcd.io/bbolt/internal/common): a 16-byte page header,
// then magic, version, page size, flags (uint32 each), root bucket (root pgid,
// sequence), freelist pgid, high-water pgid, txid and an FNV-1a checksum of the fields
// before it, all uint64 in native byte order.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64
	boltNoFreelist = ^uint64(0)
)

type boltMeta struct {
	pageSize             uint32
	root, freelist, pgid uint64
	txid                 uint64
	badMagic             bool
}

func parseBoltMeta(b []byte) (m boltMeta, ok bool) {
	if len(b) < boltPageHeader+boltMetaSize {
		return m, false
	}
	b = b[boltPageHeader:]
	ne := binary.NativeEndian
	if ne.Uint32(b[0:]) != boltMagic {
		m.badMagic = true
		return m, false
	}
	if ne.Uint32(b[4:]) != boltVersion {
		return m, false
	}
	if fnv64a(b[:56]) != ne.Uint64(b[56:]) {
		return m, false
	}
	m.pageSize = ne.Uint32(b[8:])
	m.root = ne.Uint64(b[16:])
	m.freelist = ne.Uint64(b[32:])
	m.pgid = ne.Uint64(b[40:])
	m.txid = ne.Uint64(b[48:])
	return m, true
}

func fnv64a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// checkBoltHeader returns why f (of the given size) is not a complete bbolt file:
// ErrNotSoftkey when it is not one, ErrDamaged when it is a truncated one; nil when
// its metadata is sound and all the pages it refers to are present.
func checkBoltHeader(path string, f *os.File, size int64) error {
	if size == 0 {
		return notSoftkey(path, "the file is empty")
	}
	read := func(off int64) []byte {
		buf := make([]byte, boltPageHeader+boltMetaSize)
		n, _ := f.ReadAt(buf, off)
		return buf[:n]
	}
	first := read(0)
	m0, ok0 := parseBoltMeta(first)
	var pageSize int64
	if ok0 {
		pageSize = int64(m0.pageSize)
	} else {
		// Like bbolt: the first meta page may be torn; find the second one.
		for i := 0; i <= 14; i++ {
			if m, ok := parseBoltMeta(read(1024 << i)); ok && int64(m.pageSize) == 1024<<i {
				pageSize = 1024 << i
				break
			}
		}
	}
	if pageSize == 0 {
		switch {
		case len(first) < boltPageHeader+boltMetaSize:
			return notSoftkey(path, "the file is too short to be a bbolt database")
		case m0.badMagic:
			return notSoftkey(path, "it is not a bbolt database")
		default:
			return notSoftkey(path, "its bbolt header is damaged")
		}
	}
	if pageSize < 1024 || pageSize > 1<<24 || pageSize&(pageSize-1) != 0 {
		return notSoftkey(path, fmt.Sprintf("its bbolt page size %d is invalid", pageSize))
	}
	m1, ok1 := parseBoltMeta(read(pageSize))
	// bbolt uses the valid meta page with the higher transaction ID.
	m := m0
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		m = m1
	}
	if int64(m.pageSize) != pageSize {
		return notSoftkey(path, "its bbolt header is damaged")
	}
	if m.pgid < 2 || m.root >= m.pgid || (m.freelist != boltNoFreelist && m.freelist >= m.pgid) {
		return notSoftkey(path, "its bbolt header is damaged")
	}
	if m.pgid > uint64(size/pageSize) {
		return damagedFile(path, fmt.Sprintf("it is truncated (%d bytes, the database needs %d)", size, m.pgid*uint64(pageSize)))
	}
	return nil
}

// fileHeader is what a state file tells before any passphrase.
type fileHeader struct {
	version uint32
	plain   header       // FormatPlain
	crypto  cryptoHeader // FormatEncrypted
}

// loadHeader reads and checks the plaintext part of a state file: magic, version,
// header and buckets.
func loadHeader(path string, tx *bolt.Tx) (fileHeader, error) {
	var fh fileHeader
	mb := tx.Bucket(bucketMeta)
	if mb == nil || string(mb.Get(keyMagic)) != stateMagic {
		return fh, notSoftkey(path, "a bbolt database without softkey data")
	}
	v := mb.Get(keyVersion)
	if len(v) != 4 {
		return fh, notSoftkey(path, "its format version record is damaged")
	}
	fh.version = binary.BigEndian.Uint32(v)
	if fh.version == 0 {
		return fh, notSoftkey(path, "format version 0")
	}
	if fh.version > FormatVersion {
		return fh, newerVersion(path, fh.version)
	}
	for _, name := range [][]byte{bucketCreds, bucketCredIDs, bucketUsers} {
		if tx.Bucket(name) == nil {
			return fh, notSoftkey(path, "its credential index is damaged")
		}
	}
	hb := mb.Get(keyHeader)
	switch fh.version {
	case FormatPlain:
		h := &fh.plain
		if err := ctap2.Unmarshal(hb, h); err != nil || len(h.AAGUID) != 16 || h.Encrypted ||
			h.CreatedNsec < 0 || h.CreatedNsec >= int64(time.Second) {
			return fh, notSoftkey(path, "its header is damaged")
		}
	case FormatEncrypted:
		if !bytes.Equal(mb.Get(keyCheck), headerCheck(hb)) {
			return fh, damagedFile(path, "its encryption header fails its checksum")
		}
		if err := ctap2.Unmarshal(hb, &fh.crypto); err != nil {
			return fh, damagedFile(path, "its encryption header does not decode: "+err.Error())
		}
		if err := fh.crypto.validate(); err != nil {
			return fh, damagedFile(path, "its encryption header: "+err.Error())
		}
	}
	return fh, nil
}

// loadPlainMeta reads and checks the identity of an unencrypted state file.
func loadPlainMeta(path string, tx *bolt.Tx, fh fileHeader) (Meta, error) {
	mb := tx.Bucket(bucketMeta)
	damaged := func(what string) error { return notSoftkey(path, "its "+what+" is damaged") }
	secret := mb.Get(keySecret)
	if len(secret) != MasterSecretSize {
		return Meta{}, damaged("master secret")
	}
	if len(mb.Get(keyCounter)) != 4 || len(mb.Get(keySeq)) != 8 || len(mb.Get(keyCount)) != 8 {
		return Meta{}, damaged("metadata")
	}
	if raw := mb.Get(keySettings); raw != nil {
		// Checked here, read-only, so that a damaged PIN state (which could hand out
		// fresh retries or lose the PIN) refuses the file before anything writes to it.
		if _, err := decodeSettings(raw); err != nil {
			return Meta{}, notSoftkey(path, "its settings record (PIN state) is damaged: "+err.Error())
		}
	}
	if raw := mb.Get(keyAttestation); raw != nil {
		if _, err := decodeAttestation(raw); err != nil {
			return Meta{}, notSoftkey(path, "its attestation key record is damaged: "+err.Error())
		}
	}
	h := fh.plain
	m := Meta{
		MasterSecret:  bytes.Clone(secret),
		FormatVersion: FormatPlain,
		Created:       time.Unix(h.CreatedSec, h.CreatedNsec).UTC(),
		Attestation:   h.Attestation,
	}
	copy(m.AAGUID[:], h.AAGUID)
	return m, nil
}

// loadSealedMeta opens and checks every meta value of an encrypted state file, so
// that a damaged one is found at open rather than in the middle of a request.
func loadSealedMeta(b buckets) (Meta, error) {
	get := func(key []byte, size int) ([]byte, error) {
		v, err := b.getMeta(key)
		if err != nil {
			return nil, err
		}
		if v == nil || (size > 0 && len(v) != size) {
			return nil, damagef("meta value %q is missing or has the wrong size", key)
		}
		return v, nil
	}
	ib, err := get(keyIdentity, 0)
	if err != nil {
		return Meta{}, err
	}
	var id identityRecord
	if err := ctap2.Unmarshal(ib, &id); err != nil || len(id.AAGUID) != 16 ||
		id.CreatedNsec < 0 || id.CreatedNsec >= int64(time.Second) {
		return Meta{}, damagef("its identity record does not decode")
	}
	secret, err := get(keySecret, MasterSecretSize)
	if err != nil {
		return Meta{}, err
	}
	for _, k := range []struct {
		key  []byte
		size int
	}{{keyCounter, 4}, {keySeq, 8}, {keyCount, 8}} {
		if _, err := get(k.key, k.size); err != nil {
			return Meta{}, err
		}
	}
	raw, err := b.getMeta(keySettings)
	if err != nil {
		return Meta{}, err
	}
	if raw != nil {
		if _, err := decodeSettings(raw); err != nil {
			return Meta{}, damagef("its settings record (PIN state) does not decode: %v", err)
		}
	}
	if _, err := b.getMeta(keyLargeBlob); err != nil {
		return Meta{}, err
	}
	if raw, err := b.getMeta(keyAttestation); err != nil {
		return Meta{}, err
	} else if raw != nil {
		if _, err := decodeAttestation(raw); err != nil {
			return Meta{}, damagef("its %v", err)
		}
	}
	m := Meta{
		MasterSecret:  secret,
		FormatVersion: FormatEncrypted,
		Created:       time.Unix(id.CreatedSec, id.CreatedNsec).UTC(),
		Attestation:   id.Attestation,
	}
	copy(m.AAGUID[:], id.AAGUID)
	return m, nil
}

// Path returns the state file's path as given to Create or Open.
func (d *DB) Path() string { return d.path }

// Encrypted reports whether the state file is encrypted at rest.
func (d *DB) Encrypted() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.enc != nil
}

// Encryption describes how the state file is encrypted; ok is false for an
// unencrypted one.
func (d *DB) Encryption() (info EncryptionInfo, ok bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.enc == nil {
		return EncryptionInfo{}, false
	}
	return EncryptionInfo{Cipher: d.enc.hdr.Cipher, KDF: d.enc.hdr.params()}, true
}

// EncryptionInfo is what Encryption reports.
type EncryptionInfo struct {
	Cipher string // "AES-256-GCM"
	KDF    KDFParams
}

// Meta implements Store.
func (d *DB) Meta() Meta {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	return d.meta.clone()
}

// buckets are the open buckets of one transaction, with the file's sealer (nil for an
// unencrypted file).
type buckets struct {
	meta, creds, credIDs, users *bolt.Bucket
	s                           *sealer
}

func bucketsOf(tx *bolt.Tx, s *sealer) buckets {
	return buckets{tx.Bucket(bucketMeta), tx.Bucket(bucketCreds), tx.Bucket(bucketCredIDs), tx.Bucket(bucketUsers), s}
}

// get returns the opened value under key in the bucket called name, a copy the
// caller owns; nil when there is none.
func (b buckets) get(bk *bolt.Bucket, name, key []byte) ([]byte, error) {
	raw := bk.Get(key)
	if raw == nil {
		return nil, nil
	}
	return b.s.open(name, key, raw)
}

// put seals v for key in the bucket called name.
func (b buckets) put(bk *bolt.Bucket, name, key, v []byte) error {
	return bk.Put(key, b.s.seal(name, key, v))
}

func (b buckets) getMeta(key []byte) ([]byte, error) { return b.get(b.meta, bucketMeta, key) }
func (b buckets) putMeta(key, v []byte) error        { return b.put(b.meta, bucketMeta, key, v) }

func (d *DB) tx(write bool, fn func(b buckets) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.db == nil {
		return ErrClosed
	}
	run := d.db.View
	if write {
		run = d.db.Update
	}
	s := d.enc.sealer()
	err := guard(func() error {
		return run(func(tx *bolt.Tx) error {
			b := bucketsOf(tx, s)
			if b.meta == nil || b.creds == nil || b.credIDs == nil || b.users == nil {
				return damagef("a bucket is missing")
			}
			return fn(b)
		})
	})
	return inFile(d.path, err)
}

func (d *DB) view(fn func(b buckets) error) error   { return d.tx(false, fn) }
func (d *DB) update(fn func(b buckets) error) error { return d.tx(true, fn) }

func (b buckets) getUint64(key []byte) (uint64, error) {
	v, err := b.getMeta(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, damagef("meta %q", key)
	}
	return binary.BigEndian.Uint64(v), nil
}

func (b buckets) putUint64(key []byte, v uint64) error {
	return b.putMeta(key, binary.BigEndian.AppendUint64(nil, v))
}

func (b buckets) counter() (uint32, error) {
	raw, err := b.getMeta(keyCounter)
	if err != nil {
		return 0, err
	}
	if len(raw) != 4 {
		return 0, damagef("counter")
	}
	return binary.BigEndian.Uint32(raw), nil
}

func addCount(b buckets, delta int) error {
	n, err := b.getUint64(keyCount)
	if err != nil {
		return err
	}
	if delta < 0 && n < uint64(-delta) {
		return damagef("credential count below zero")
	}
	return b.putUint64(keyCount, n+uint64(delta))
}

func cat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

// SetMasterSecret implements Store.
func (d *DB) SetMasterSecret(secret []byte) error {
	if len(secret) != MasterSecretSize {
		return fmt.Errorf("master secret is %d bytes, want %d", len(secret), MasterSecretSize)
	}
	secret = bytes.Clone(secret)
	err := d.update(func(b buckets) error { return b.putMeta(keySecret, secret) })
	if err != nil {
		return fmt.Errorf("storing master secret: %w", err)
	}
	d.metaMu.Lock()
	d.meta.MasterSecret = secret
	d.metaMu.Unlock()
	return nil
}

// PutCredential implements Store.
func (d *DB) PutCredential(c *Credential) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("storing credential: %w", err)
	}
	if err := d.update(func(b buckets) error { return putTx(b, c) }); err != nil {
		return fmt.Errorf("storing credential: %w", err)
	}
	return nil
}

// putTx stores c with the next insertion sequence number, replacing a credential
// with the same ID or account.
func putTx(b buckets, c *Credential) error {
	seq, err := b.getUint64(keySeq)
	if err != nil {
		return err
	}
	seq++
	if _, err := removeTx(b, b.s.idTag(c.ID)); err != nil {
		return err
	}
	rpT := b.s.rpTag(c.RPIDHash[:])
	old, err := b.get(b.users, bucketUsers, cat(rpT, b.s.userTag(c.RPIDHash[:], c.User.ID)))
	if err != nil {
		return err
	}
	if old != nil {
		if _, err := removeTx(b, old); err != nil {
			return err
		}
	}
	if err := insertTx(b, c, seq); err != nil {
		return err
	}
	return b.putUint64(keySeq, seq)
}

// insertTx writes c's record and index entries, which must not exist yet.
func insertTx(b buckets, c *Credential, seq uint64) error {
	rec, err := encodeCredential(c, seq)
	if err != nil {
		return err
	}
	rpT := b.s.rpTag(c.RPIDHash[:])
	idT := b.s.idTag(c.ID)
	credKey := cat(rpT, idT)
	userKey := cat(rpT, b.s.userTag(c.RPIDHash[:], c.User.ID))
	if b.creds.Get(credKey) != nil || b.credIDs.Get(idT) != nil || b.users.Get(userKey) != nil {
		return fmt.Errorf("credential %x is there twice", c.ID)
	}
	if err := b.put(b.creds, bucketCreds, credKey, rec); err != nil {
		return err
	}
	if err := b.put(b.credIDs, bucketCredIDs, idT, userKey); err != nil {
		return err
	}
	if err := b.put(b.users, bucketUsers, userKey, idT); err != nil {
		return err
	}
	return addCount(b, 1)
}

// removeTx deletes the credential whose ID has the index key idT, and its index
// entries; false if there was none.
func removeTx(b buckets, idT []byte) (bool, error) {
	userKey, err := b.get(b.credIDs, bucketCredIDs, idT)
	if err != nil || userKey == nil {
		return false, err
	}
	if len(userKey) < 32 {
		return false, damagef("credential index entry")
	}
	credKey := cat(userKey[:32], idT)
	u, err := b.get(b.users, bucketUsers, userKey)
	if err != nil {
		return false, err
	}
	if bytes.Equal(u, idT) {
		if err := b.users.Delete(userKey); err != nil {
			return false, err
		}
	}
	if err := b.creds.Delete(credKey); err != nil {
		return false, err
	}
	if err := b.credIDs.Delete(bytes.Clone(idT)); err != nil {
		return false, err
	}
	return true, addCount(b, -1)
}

// Credential implements Store.
func (d *DB) Credential(id []byte) (*Credential, error) {
	var c *Credential
	err := d.view(func(b buckets) error {
		idT := b.s.idTag(id)
		v, err := b.get(b.credIDs, bucketCredIDs, idT)
		if err != nil {
			return err
		}
		if v == nil {
			return ErrNotFound
		}
		if len(v) < 32 {
			return damagef("credential index entry")
		}
		key := cat(v[:32], idT)
		rec, err := b.get(b.creds, bucketCreds, key)
		if err != nil {
			return err
		}
		if rec == nil {
			return damagef("credential index points to a missing record")
		}
		c, _, err = b.decodeStored(rec, key, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// decodeStored decodes an opened record and checks that it is the one its key
// names. rpIDHash, when known, is compared directly instead of through its tag.
func (b buckets) decodeStored(rec, key []byte, rpIDHash []byte) (*Credential, uint64, error) {
	c, seq, err := decodeCredential(rec)
	if err != nil {
		return nil, 0, damagef("%v", err)
	}
	if len(key) <= 32 {
		return nil, 0, damagef("credential key")
	}
	rpOK := bytes.Equal(c.RPIDHash[:], rpIDHash)
	if rpIDHash == nil {
		rpOK = bytes.Equal(b.s.rpTag(c.RPIDHash[:]), key[:32])
	}
	if !rpOK || !bytes.Equal(b.s.idTag(c.ID), key[32:]) {
		return nil, 0, damagef("credential record under the wrong key")
	}
	return c, seq, nil
}

// CredentialsByRP implements Store: a cursor seeks to the RP's prefix of creds and
// visits only that RP's records.
func (d *DB) CredentialsByRP(rpIDHash [32]byte) ([]*Credential, error) {
	type entry struct {
		c   *Credential
		seq uint64
	}
	var found []entry
	err := d.view(func(b buckets) error {
		cur := b.creds.Cursor()
		prefix := b.s.rpTag(rpIDHash[:])
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			d.scanned.Add(1)
			rec, err := b.s.open(bucketCreds, k, v)
			if err != nil {
				return err
			}
			c, seq, err := b.decodeStored(rec, k, rpIDHash[:])
			if err != nil {
				return err
			}
			found = append(found, entry{c, seq})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(found, func(a, b entry) int {
		switch {
		case newerThan(a.c, b.c, a.seq, b.seq):
			return -1
		case newerThan(b.c, a.c, b.seq, a.seq):
			return 1
		}
		return 0
	})
	out := make([]*Credential, len(found))
	for i, e := range found {
		out[i] = e.c
	}
	return out, nil
}

// DeleteCredential implements Store.
func (d *DB) DeleteCredential(id []byte) error {
	return d.update(func(b buckets) error {
		ok, err := removeTx(b, b.s.idTag(id))
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
}

// CountCredentials implements Store.
func (d *DB) CountCredentials() (int, error) {
	var n uint64
	err := d.view(func(b buckets) error {
		var err error
		n, err = b.getUint64(keyCount)
		return err
	})
	return int(n), err
}

// DeleteAllCredentials implements Store. The insertion sequence carries on.
func (d *DB) DeleteAllCredentials() error {
	return d.update(func(b buckets) error {
		tx := b.meta.Tx()
		for _, name := range [][]byte{bucketCreds, bucketCredIDs, bucketUsers} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		return b.putUint64(keyCount, 0)
	})
}

// CounterCeiling implements Store.
func (d *DB) CounterCeiling() (uint32, error) {
	var v uint32
	err := d.view(func(b buckets) error {
		var err error
		v, err = b.counter()
		return err
	})
	return v, err
}

// SetCounterCeiling implements Store.
func (d *DB) SetCounterCeiling(v uint32) error {
	return d.update(func(b buckets) error {
		return b.putMeta(keyCounter, binary.BigEndian.AppendUint32(nil, v))
	})
}

// Settings implements Store.
func (d *DB) Settings() (Settings, error) {
	s := DefaultSettings()
	err := d.view(func(b buckets) error {
		raw, err := b.getMeta(keySettings)
		if err != nil || raw == nil {
			return err
		}
		if s, err = decodeSettings(raw); err != nil {
			return damagef("settings: %v", err)
		}
		return nil
	})
	return s, err
}

// SetSettings implements Store: one fsynced transaction, so a decremented retry
// counter is on disk when it returns. Settings out of range are refused, never stored.
func (d *DB) SetSettings(s Settings) error {
	raw, err := encodeSettings(s)
	if err != nil {
		return err
	}
	if err := d.update(func(b buckets) error { return b.putMeta(keySettings, raw) }); err != nil {
		return fmt.Errorf("storing settings: %w", err)
	}
	return nil
}

// LargeBlobArray implements Store.
func (d *DB) LargeBlobArray() ([]byte, error) {
	var out []byte
	err := d.view(func(b buckets) error {
		var err error
		out, err = b.getMeta(keyLargeBlob)
		return err
	})
	return out, err
}

// SetLargeBlobArray implements Store; nil deletes the array (LargeBlobArray is nil
// again), an empty slice stores an empty one.
func (d *DB) SetLargeBlobArray(v []byte) error {
	// bbolt keeps the value until the transaction commits; a copy is immune to the
	// caller changing it meanwhile.
	v = bytes.Clone(v)
	err := d.update(func(b buckets) error {
		if v == nil {
			return b.meta.Delete(keyLargeBlob)
		}
		return b.putMeta(keyLargeBlob, v)
	})
	if err != nil {
		return fmt.Errorf("storing large-blob array: %w", err)
	}
	return nil
}

// rpRecord is the part of a credential record (credRecord) that RelyingParties
// reads. Decoding into it skips the key material and extras; a full decode of every
// record costs about 1.7 times as much (BenchmarkRelyingParties), and decoding the
// names of the newest record only, in a second step, costs more, not less: the strict
// decoder's duplicate-key check of the skipped entries dominates.
type rpRecord struct {
	RPID        string `cbor:"2,keyasint,omitempty"`
	RPName      string `cbor:"3,keyasint,omitempty"`
	RPIDHash    []byte `cbor:"4,keyasint"`
	CreatedSec  int64  `cbor:"10,keyasint,omitempty"`
	CreatedNsec int64  `cbor:"11,keyasint,omitempty"`
	HasCreated  bool   `cbor:"12,keyasint,omitempty"`
	Seq         uint64 `cbor:"15,keyasint"`
}

// RelyingParties implements Store. Records of one RP are adjacent in creds, so one
// cursor walk groups them. Every record is decoded (as an rpRecord), since the RP's ID
// and name are those of its newest credential, in the order of CredentialsByRP.
func (d *DB) RelyingParties() ([]RPInfo, error) {
	var rps []RPInfo
	err := d.view(func(b buckets) error {
		var (
			groupTag  []byte // the key prefix of the last RP in rps
			newestAt  time.Time
			newestSeq uint64
		)
		c := b.creds.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) <= 32 {
				return damagef("credential key")
			}
			rec, err := b.s.open(bucketCreds, k, v)
			if err != nil {
				return err
			}
			var r rpRecord
			if err := ctap2.Unmarshal(rec, &r); err != nil {
				return damagef("credential record: %v", err)
			}
			if len(r.RPIDHash) != 32 {
				return damagef("credential record: rpIdHash is %d bytes", len(r.RPIDHash))
			}
			var at time.Time
			if r.HasCreated {
				at = time.Unix(r.CreatedSec, r.CreatedNsec)
			}
			n := len(rps)
			if n == 0 || !bytes.Equal(groupTag, k[:32]) {
				// An RP's first record is checked against the key (one keyed hash per
				// RP), the others against the first's rpIdHash.
				if !bytes.Equal(b.s.rpTag(r.RPIDHash), k[:32]) {
					return damagef("credential record under the wrong key")
				}
				groupTag = bytes.Clone(k[:32])
				info := RPInfo{ID: r.RPID, Name: r.RPName}
				copy(info.IDHash[:], r.RPIDHash)
				rps = append(rps, info)
				newestAt, newestSeq = at, r.Seq
			} else if !bytes.Equal(rps[n-1].IDHash[:], r.RPIDHash) {
				return damagef("credential record under the wrong key")
			} else if newerAt(at, newestAt, r.Seq, newestSeq) {
				rps[n-1].ID, rps[n-1].Name = r.RPID, r.RPName
				newestAt, newestSeq = at, r.Seq
			}
			rps[len(rps)-1].Credentials++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rps, compareRPs)
	return rps, nil
}

// Close implements Store: it releases the file and its lock. Closing twice is fine;
// other calls afterwards return ErrClosed.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return nil
	}
	err := d.db.Close()
	d.db = nil
	return err
}

// scannedRecords counts records visited by CredentialsByRP (index test).
func (d *DB) scannedRecords() int64 { return d.scanned.Load() }

// shellQuote makes path safe to paste into a shell command.
func shellQuote(path string) string {
	for _, c := range path {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '.' || c == '_' || c == '-' || c == '+' || c == ':' || c == '@') {
			return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
		}
	}
	return path
}
