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
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ctapkit/ctapkit/ctap2"
)

// The state file layout (FormatVersion 1), one bbolt file:
//
//	meta     "magic"   → stateMagic, the type marker
//	         "version" → format version, uint32 big-endian
//	         "header"  → CBOR {1: encrypted (false), 2: created Unix seconds,
//	                     3: created nanoseconds, 4: AAGUID, 5: attestation mode}
//	         "secret"  → master secret
//	         "counter" → signature counter ceiling, uint32 big-endian
//	         "seq"     → last insertion sequence number, uint64 big-endian
//	         "count"   → number of credentials, uint64 big-endian
//	         "settings"  → CBOR settings record (settings.go); absent = defaults
//	         "largeblob" → serialized large-blob array; absent = never written
//	creds    rpIdHash || credential ID → credential record (record.go)
//	credids  credential ID → rpIdHash || user ID (lookup by ID)
//	users    rpIdHash || user ID → credential ID (one credential per account)
//
// Credentials of one RP are adjacent in creds, so CredentialsByRP is a cursor Seek
// and a walk over exactly that RP's records.
var (
	bucketMeta    = []byte("meta")
	bucketCreds   = []byte("creds")
	bucketCredIDs = []byte("credids")
	bucketUsers   = []byte("users")

	keyMagic     = []byte("magic")
	keyVersion   = []byte("version")
	keyHeader    = []byte("header")
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

var (
	// ErrPassphraseUnsupported: Create was asked for an encrypted state file, which
	// this version cannot make yet.
	ErrPassphraseUnsupported = errors.New("encryption at rest is not available yet")
	// ErrNewerVersion: the state file was written by a newer ctapkit. Open leaves it
	// untouched.
	ErrNewerVersion = errors.New("state file was written by a newer version of ctapkit")
)

// CreateOptions configure a new state file.
type CreateOptions struct {
	// NoPassphrase must be true: it is the explicit choice of an unencrypted state
	// file, the only kind this version makes.
	NoPassphrase bool
	// Rand is the source of the master secret and AAGUID; nil means crypto/rand.
	Rand io.Reader
	// AAGUID, when set, replaces the random one.
	AAGUID *[16]byte
	// Attestation is the attestation mode: "self", "none", "batch" or "" (the
	// softkey's default).
	Attestation string
}

// DB is a Store kept in a bbolt file. Every write is one transaction, durable (fsynced)
// when the call returns. The file is locked while open: another Open, in this process
// or another, fails with ErrInUse.
type DB struct {
	path string

	mu sync.RWMutex // guards db against Close; operations hold it shared
	db *bolt.DB     // nil after Close

	metaMu sync.Mutex
	meta   Meta
	header header

	scanned atomic.Int64 // records visited by CredentialsByRP, for the index test
}

type header struct {
	Encrypted   bool   `cbor:"1,keyasint"`
	CreatedSec  int64  `cbor:"2,keyasint"`
	CreatedNsec int64  `cbor:"3,keyasint,omitempty"`
	AAGUID      []byte `cbor:"4,keyasint"`
	Attestation string `cbor:"5,keyasint,omitempty"`
}

// stateError is an error about one state file: "path: message", matching every error
// in errs.
type stateError struct {
	path, msg string
	errs      []error
}

func (e *stateError) Error() string   { return e.path + ": " + e.msg }
func (e *stateError) Unwrap() []error { return e.errs }

func notSoftkey(path, reason string) error {
	return &stateError{path, ErrNotSoftkey.Error() + " (" + reason + ")", []error{ErrNotSoftkey}}
}

func inUse(path string) error {
	return &stateError{path, ErrInUse.Error(), []error{ErrInUse}}
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
	if !opts.NoPassphrase {
		return nil, fmt.Errorf("creating softkey state %s: %w; pass --no-passphrase to store it unencrypted",
			path, ErrPassphraseUnsupported)
	}
	switch opts.Attestation {
	case "", "self", "none", "batch":
	default:
		return nil, fmt.Errorf("creating softkey state %s: unknown attestation mode %q (want self, batch or none)",
			path, opts.Attestation)
	}
	meta, err := NewMeta(opts.Rand, opts.AAGUID)
	if err != nil {
		return nil, fmt.Errorf("creating softkey state %s: %w", path, err)
	}
	meta.Attestation = opts.Attestation
	hdr := header{
		CreatedSec:  meta.Created.Unix(),
		CreatedNsec: int64(meta.Created.Nanosecond()),
		AAGUID:      meta.AAGUID[:],
		Attestation: meta.Attestation,
	}

	if _, err := os.Lstat(path); err == nil {
		return nil, existsError(path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("creating softkey state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating softkey state: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("creating softkey state: %w", err)
	}
	tmp := f.Name()
	f.Close()
	published := false
	defer func() {
		if !published {
			os.Remove(tmp)
		}
	}()

	bdb, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("creating softkey state %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error { return initTx(tx, meta, hdr) })
	if err == nil {
		err = publish(tmp, path)
	}
	if err != nil {
		bdb.Close()
		var se *stateError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, fmt.Errorf("creating softkey state %s: %w", path, err)
	}
	published = true
	syncDir(dir)
	return &DB{path: path, db: bdb, meta: meta, header: hdr}, nil
}

func existsError(path string) error {
	return &stateError{path, "file already exists; not overwriting it", []error{fs.ErrExist}}
}

func encodeHeader(h header) ([]byte, error) { return ctap2.Marshal(&h) }

// initTx writes the layout of a new state file.
func initTx(tx *bolt.Tx, meta Meta, hdr header) error {
	hb, err := encodeHeader(hdr)
	if err != nil {
		return err
	}
	mb, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketCreds, bucketCredIDs, bucketUsers} {
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	for _, kv := range []struct{ k, v []byte }{
		{keyMagic, []byte(stateMagic)},
		{keyVersion, binary.BigEndian.AppendUint32(nil, uint32(meta.FormatVersion))},
		{keyHeader, hb},
		{keySecret, meta.MasterSecret},
		{keyCounter, binary.BigEndian.AppendUint32(nil, 0)},
		{keySeq, binary.BigEndian.AppendUint64(nil, 0)},
		{keyCount, binary.BigEndian.AppendUint64(nil, 0)},
	} {
		if err := mb.Put(kv.k, kv.v); err != nil {
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

// Open opens an existing state file. Before anything can write to it, the file is
// checked read-only: a missing file is ErrNotExist (and fs.ErrNotExist), anything that
// is not a complete softkey state file is ErrNotSoftkey, a file of a newer format is
// ErrNewerVersion; in each case the file is left exactly as it was. A file held by
// another opener gives ErrInUse after a short wait.
func Open(path string) (*DB, error) {
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
	// Read the identity again under the exclusive lock: the file may have been
	// replaced between the check and the open.
	err = guard(func() error {
		return bdb.View(func(tx *bolt.Tx) error {
			var err error
			d.meta, d.header, err = loadMeta(path, tx)
			return err
		})
	})
	if err != nil {
		bdb.Close()
		return nil, notSoftkeyIfDamaged(path, err)
	}
	return d, nil
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
		return &stateError{path, ErrNotExist.Error(), []error{ErrNotExist, fs.ErrNotExist}}
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return notSoftkey(path, "not a valid bbolt database: "+err.Error())
	}
	return fmt.Errorf("opening softkey state %s: %w", path, err)
}

// checkFile checks path without writing to it: our own reading of the bbolt header
// first (so that bbolt never maps a file that is too short for its own metadata),
// then a read-only bbolt open under a shared lock to check our buckets.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &stateError{path, ErrNotExist.Error(), []error{ErrNotExist, fs.ErrNotExist}}
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
		if reason := checkBoltHeader(f, fi.Size()); reason != "" {
			err = notSoftkey(path, reason)
		}
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
			_, _, err := loadMeta(path, tx)
			return err
		})
	})
	return notSoftkeyIfDamaged(path, err)
}

var errDamaged = errors.New("state file is damaged")

// guard turns a panic or memory fault inside bbolt (a damaged file) into errDamaged.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errDamaged, r)
		}
	}()
	return fn()
}

func notSoftkeyIfDamaged(path string, err error) error {
	if errors.Is(err, errDamaged) {
		return notSoftkey(path, err.Error())
	}
	return err
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

// checkBoltHeader returns why f (of the given size) is not a complete bbolt file, or
// "" when its metadata is sound and all the pages it refers to are present.
func checkBoltHeader(f *os.File, size int64) string {
	if size == 0 {
		return "the file is empty"
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
			return "the file is too short to be a bbolt database"
		case m0.badMagic:
			return "it is not a bbolt database"
		default:
			return "its bbolt header is damaged"
		}
	}
	if pageSize < 1024 || pageSize > 1<<24 || pageSize&(pageSize-1) != 0 {
		return fmt.Sprintf("its bbolt page size %d is invalid", pageSize)
	}
	m1, ok1 := parseBoltMeta(read(pageSize))
	// bbolt uses the valid meta page with the higher transaction ID.
	m := m0
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		m = m1
	}
	if int64(m.pageSize) != pageSize {
		return "its bbolt header is damaged"
	}
	if m.pgid < 2 || m.root >= m.pgid || (m.freelist != boltNoFreelist && m.freelist >= m.pgid) {
		return "its bbolt header is damaged"
	}
	if m.pgid > uint64(size/pageSize) {
		return fmt.Sprintf("it is truncated (%d bytes, the database needs %d)", size, m.pgid*uint64(pageSize))
	}
	return ""
}

// loadMeta reads and checks the softkey identity of an open state file.
func loadMeta(path string, tx *bolt.Tx) (Meta, header, error) {
	var hdr header
	mb := tx.Bucket(bucketMeta)
	if mb == nil || string(mb.Get(keyMagic)) != stateMagic {
		return Meta{}, hdr, notSoftkey(path, "a bbolt database without softkey data")
	}
	v := mb.Get(keyVersion)
	if len(v) != 4 {
		return Meta{}, hdr, notSoftkey(path, "its format version record is damaged")
	}
	version := binary.BigEndian.Uint32(v)
	if version == 0 {
		return Meta{}, hdr, notSoftkey(path, "format version 0")
	}
	if version > FormatVersion {
		return Meta{}, hdr, &stateError{path, fmt.Sprintf(
			"state format version %d is newer than this ctapkit supports (%d); use a newer ctapkit",
			version, FormatVersion), []error{ErrNewerVersion}}
	}
	damaged := func(what string) error { return notSoftkey(path, "its "+what+" is damaged") }
	if err := ctap2.Unmarshal(mb.Get(keyHeader), &hdr); err != nil || len(hdr.AAGUID) != 16 ||
		hdr.CreatedNsec < 0 || hdr.CreatedNsec >= int64(time.Second) {
		return Meta{}, hdr, damaged("header")
	}
	if hdr.Encrypted {
		return Meta{}, hdr, &stateError{path,
			"the state file is encrypted, which this version of ctapkit cannot read; use a newer ctapkit",
			[]error{ErrPassphraseUnsupported}}
	}
	secret := mb.Get(keySecret)
	if len(secret) != MasterSecretSize {
		return Meta{}, hdr, damaged("master secret")
	}
	if len(mb.Get(keyCounter)) != 4 || len(mb.Get(keySeq)) != 8 || len(mb.Get(keyCount)) != 8 {
		return Meta{}, hdr, damaged("metadata")
	}
	if raw := mb.Get(keySettings); raw != nil {
		// Checked here, read-only, so that a damaged PIN state (which could hand out
		// fresh retries or lose the PIN) refuses the file before anything writes to it.
		if _, err := decodeSettings(raw); err != nil {
			return Meta{}, hdr, notSoftkey(path, "its settings record (PIN state) is damaged: "+err.Error())
		}
	}
	for _, name := range [][]byte{bucketCreds, bucketCredIDs, bucketUsers} {
		if tx.Bucket(name) == nil {
			return Meta{}, hdr, damaged("credential index")
		}
	}
	m := Meta{
		MasterSecret:  bytes.Clone(secret),
		FormatVersion: int(version),
		Created:       time.Unix(hdr.CreatedSec, hdr.CreatedNsec).UTC(),
		Attestation:   hdr.Attestation,
	}
	copy(m.AAGUID[:], hdr.AAGUID)
	return m, hdr, nil
}

// Path returns the state file's path as given to Create or Open.
func (d *DB) Path() string { return d.path }

// Encrypted reports whether the state file is encrypted at rest (always false for now:
// encryption comes in a later format version).
func (d *DB) Encrypted() bool {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	return d.header.Encrypted
}

// Meta implements Store.
func (d *DB) Meta() Meta {
	d.metaMu.Lock()
	defer d.metaMu.Unlock()
	return d.meta.clone()
}

// buckets are the open buckets of one transaction.
type buckets struct {
	meta, creds, credIDs, users *bolt.Bucket
}

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
	err := guard(func() error {
		return run(func(tx *bolt.Tx) error {
			b := buckets{tx.Bucket(bucketMeta), tx.Bucket(bucketCreds), tx.Bucket(bucketCredIDs), tx.Bucket(bucketUsers)}
			if b.meta == nil || b.creds == nil || b.credIDs == nil || b.users == nil {
				return errDamaged
			}
			return fn(b)
		})
	})
	if errors.Is(err, errDamaged) {
		return fmt.Errorf("%s: %w", d.path, err)
	}
	return err
}

func (d *DB) view(fn func(b buckets) error) error   { return d.tx(false, fn) }
func (d *DB) update(fn func(b buckets) error) error { return d.tx(true, fn) }

func getUint64(b *bolt.Bucket, key []byte) (uint64, error) {
	v := b.Get(key)
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: meta %q", errDamaged, key)
	}
	return binary.BigEndian.Uint64(v), nil
}

func putUint64(b *bolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, binary.BigEndian.AppendUint64(nil, v))
}

func addCount(b buckets, delta int) error {
	n, err := getUint64(b.meta, keyCount)
	if err != nil {
		return err
	}
	if delta < 0 && n < uint64(-delta) {
		return fmt.Errorf("%w: credential count below zero", errDamaged)
	}
	return putUint64(b.meta, keyCount, n+uint64(delta))
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
	err := d.update(func(b buckets) error { return b.meta.Put(keySecret, secret) })
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

func putTx(b buckets, c *Credential) error {
	seq, err := getUint64(b.meta, keySeq)
	if err != nil {
		return err
	}
	seq++
	rec, err := encodeCredential(c, seq)
	if err != nil {
		return err
	}
	if _, err := removeTx(b, c.ID); err != nil {
		return err
	}
	userKey := cat(c.RPIDHash[:], c.User.ID)
	if old := b.users.Get(userKey); old != nil {
		if _, err := removeTx(b, bytes.Clone(old)); err != nil {
			return err
		}
	}
	if err := b.creds.Put(cat(c.RPIDHash[:], c.ID), rec); err != nil {
		return err
	}
	if err := b.credIDs.Put(bytes.Clone(c.ID), userKey); err != nil {
		return err
	}
	if err := b.users.Put(userKey, bytes.Clone(c.ID)); err != nil {
		return err
	}
	if err := putUint64(b.meta, keySeq, seq); err != nil {
		return err
	}
	return addCount(b, 1)
}

// removeTx deletes the credential with that ID and its index entries; false if there
// was none.
func removeTx(b buckets, id []byte) (bool, error) {
	v := b.credIDs.Get(id)
	if v == nil {
		return false, nil
	}
	if len(v) < 32 {
		return false, fmt.Errorf("%w: credential index entry", errDamaged)
	}
	userKey := bytes.Clone(v)
	credKey := cat(userKey[:32], id)
	if u := b.users.Get(userKey); bytes.Equal(u, id) {
		if err := b.users.Delete(userKey); err != nil {
			return false, err
		}
	}
	if err := b.creds.Delete(credKey); err != nil {
		return false, err
	}
	if err := b.credIDs.Delete(bytes.Clone(id)); err != nil {
		return false, err
	}
	return true, addCount(b, -1)
}

// Credential implements Store.
func (d *DB) Credential(id []byte) (*Credential, error) {
	var c *Credential
	err := d.view(func(b buckets) error {
		v := b.credIDs.Get(id)
		if v == nil {
			return ErrNotFound
		}
		if len(v) < 32 {
			return fmt.Errorf("%w: credential index entry", errDamaged)
		}
		rec := b.creds.Get(cat(v[:32], id))
		if rec == nil {
			return fmt.Errorf("%w: credential index points to a missing record", errDamaged)
		}
		var err error
		if c, _, err = decodeStored(rec, v[:32], id); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// decodeStored decodes a record and checks that it is the one its key names.
func decodeStored(rec, rpIDHash, id []byte) (*Credential, uint64, error) {
	c, seq, err := decodeCredential(rec)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errDamaged, err)
	}
	if !bytes.Equal(c.RPIDHash[:], rpIDHash) || !bytes.Equal(c.ID, id) {
		return nil, 0, fmt.Errorf("%w: credential record under the wrong key", errDamaged)
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
		prefix := rpIDHash[:]
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			d.scanned.Add(1)
			c, seq, err := decodeStored(v, prefix, k[len(prefix):])
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
		ok, err := removeTx(b, id)
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
		n, err = getUint64(b.meta, keyCount)
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
		return putUint64(b.meta, keyCount, 0)
	})
}

// CounterCeiling implements Store.
func (d *DB) CounterCeiling() (uint32, error) {
	var v uint32
	err := d.view(func(b buckets) error {
		raw := b.meta.Get(keyCounter)
		if len(raw) != 4 {
			return fmt.Errorf("%w: counter", errDamaged)
		}
		v = binary.BigEndian.Uint32(raw)
		return nil
	})
	return v, err
}

// SetCounterCeiling implements Store.
func (d *DB) SetCounterCeiling(v uint32) error {
	return d.update(func(b buckets) error {
		return b.meta.Put(keyCounter, binary.BigEndian.AppendUint32(nil, v))
	})
}

// Settings implements Store.
func (d *DB) Settings() (Settings, error) {
	s := DefaultSettings()
	err := d.view(func(b buckets) error {
		raw := b.meta.Get(keySettings)
		if raw == nil {
			return nil
		}
		var err error
		if s, err = decodeSettings(raw); err != nil {
			return fmt.Errorf("%w: settings: %v", errDamaged, err)
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
	if err := d.update(func(b buckets) error { return b.meta.Put(keySettings, raw) }); err != nil {
		return fmt.Errorf("storing settings: %w", err)
	}
	return nil
}

// LargeBlobArray implements Store.
func (d *DB) LargeBlobArray() ([]byte, error) {
	var out []byte
	err := d.view(func(b buckets) error {
		out = bytes.Clone(b.meta.Get(keyLargeBlob))
		return nil
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
		return b.meta.Put(keyLargeBlob, v)
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
			newestAt  time.Time
			newestSeq uint64
		)
		c := b.creds.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) <= 32 {
				return fmt.Errorf("%w: credential key", errDamaged)
			}
			var r rpRecord
			if err := ctap2.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: credential record: %v", errDamaged, err)
			}
			if !bytes.Equal(r.RPIDHash, k[:32]) {
				return fmt.Errorf("%w: credential record under the wrong key", errDamaged)
			}
			var at time.Time
			if r.HasCreated {
				at = time.Unix(r.CreatedSec, r.CreatedNsec)
			}
			n := len(rps)
			if n == 0 || !bytes.Equal(rps[n-1].IDHash[:], k[:32]) {
				info := RPInfo{ID: r.RPID, Name: r.RPName}
				copy(info.IDHash[:], k[:32])
				rps = append(rps, info)
				newestAt, newestSeq = at, r.Seq
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
