package store

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/ctapkit/ctapkit/ctap2"
)

// A backup file (Export, ReadBackup, Import) is a whole softkey state sealed under its
// own passphrase, independent of the state file's encryption:
//
//	CBOR backupEnvelope || SHA-256(CBOR backupEnvelope)
//
// The envelope names the argon2id parameters and salt; argon2id(passphrase, salt)
// through HKDF-SHA256 ("ctapkit-softkey-backup/key") gives an AES-256-GCM key that
// seals the CBOR stateRecord, with the envelope (without the ciphertext) as associated
// data. The trailing checksum tells a damaged file from a wrong passphrase.

const (
	backupMagic   = "ctapkit-softkey-backup"
	backupVersion = 1
	infoBackupKey = "ctapkit-softkey-backup/key"
)

// ErrNotBackup: the file is not a ctapkit softkey backup.
var ErrNotBackup = errors.New("not a ctapkit softkey backup")

type backupEnvelope struct {
	Magic     string `cbor:"1,keyasint"`
	Version   uint32 `cbor:"2,keyasint"`
	KDF       string `cbor:"3,keyasint"`
	Salt      []byte `cbor:"4,keyasint"`
	Time      uint32 `cbor:"5,keyasint"`
	MemoryKiB uint32 `cbor:"6,keyasint"`
	Threads   uint8  `cbor:"7,keyasint"`
	Nonce     []byte `cbor:"8,keyasint"`
	Sealed    []byte `cbor:"9,keyasint,omitempty"`
}

func (e backupEnvelope) params() KDFParams {
	return KDFParams{Time: e.Time, MemoryKiB: e.MemoryKiB, Threads: e.Threads}
}

func (e backupEnvelope) aad() ([]byte, error) {
	e.Sealed = nil
	return ctap2.Marshal(&e)
}

func (e backupEnvelope) aead(passphrase []byte) (cipher.AEAD, error) {
	pk := e.params().key(passphrase, e.Salt)
	defer clear(pk)
	k, err := hkdf.Key(sha256.New, pk, nil, infoBackupKey, keySize)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	return newAEAD(k)
}

// Export writes a backup of the whole state to w: identity, master secret,
// credentials, signature counter, PIN state and settings, large blobs, attestation key. It is read in
// one transaction, so it is consistent, and sealed under passphrase with the given
// argon2id parameters (nil: DefaultKDF). The state file is only read.
func (d *DB) Export(w io.Writer, passphrase []byte, kdf *KDFParams) error {
	p := DefaultKDF
	if kdf != nil {
		p = *kdf
	}
	if err := p.validate(); err != nil {
		return err
	}
	if len(passphrase) == 0 {
		return errors.New("exporting: the backup passphrase is empty")
	}
	var st *stateRecord
	err := d.view(func(b buckets) error {
		var err error
		st, err = readState(b, d.Meta())
		return err
	})
	if err != nil {
		return fmt.Errorf("exporting %s: %w", d.path, err)
	}
	plain, err := ctap2.Marshal(st)
	if err != nil {
		return err
	}
	defer clear(plain)
	env := backupEnvelope{Magic: backupMagic, Version: backupVersion, KDF: kdfName, Salt: make([]byte, saltSize),
		Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads, Nonce: make([]byte, nonceSize)}
	randRead(env.Salt)
	randRead(env.Nonce)
	aead, err := env.aead(passphrase)
	if err != nil {
		return err
	}
	aad, err := env.aad()
	if err != nil {
		return err
	}
	env.Sealed = aead.Seal(nil, env.Nonce, plain, aad)
	out, err := ctap2.Marshal(&env)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(out)
	if _, err := w.Write(append(out, sum[:]...)); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	return nil
}

// Backup is a decrypted backup, ready for Import.
type Backup struct{ st *stateRecord }

// Meta is the identity of the backed-up softkey (FormatVersion 0: no file yet).
func (b *Backup) Meta() Meta { return b.st.meta(0) }

// Credentials is the number of resident credentials in the backup.
func (b *Backup) Credentials() int { return int(b.st.NCreds) }

// CounterCeiling is the signature counter ceiling at the time of the export; the
// imported softkey continues above it.
func (b *Backup) CounterCeiling() uint32 { return b.st.Counter }

func backupError(name, msg string, errs ...error) error {
	return &stateError{"backup " + name + " " + msg, errs}
}

// ReadBackup decrypts a backup made by Export; name (the file's) is for errors:
// ErrNotBackup, ErrDamaged (the checksum or the contents), ErrNewerVersion,
// ErrWrongPassphrase.
func ReadBackup(name string, data, passphrase []byte) (*Backup, error) {
	looksLike := bytes.Contains(data[:min(len(data), 64)], []byte(backupMagic))
	if !looksLike {
		return nil, &stateError{name + ": " + ErrNotBackup.Error(), []error{ErrNotBackup}}
	}
	if len(data) < sha256.Size {
		return nil, backupError(name, "is damaged: it is truncated", ErrDamaged)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if s := sha256.Sum256(body); !bytes.Equal(s[:], sum) {
		return nil, backupError(name, "is damaged: its checksum does not match (truncated or changed)", ErrDamaged)
	}
	var env backupEnvelope
	if err := ctap2.Unmarshal(body, &env); err != nil || env.Magic != backupMagic {
		return nil, &stateError{name + ": " + ErrNotBackup.Error(), []error{ErrNotBackup}}
	}
	if env.Version > backupVersion {
		return nil, backupError(name, fmt.Sprintf("was made by a newer ctapkit (backup format %d); this one reads up to %d",
			env.Version, backupVersion), ErrNewerVersion)
	}
	if env.Version == 0 || env.KDF != kdfName || len(env.Salt) < saltSize || len(env.Nonce) != nonceSize {
		return nil, backupError(name, "is damaged: its header is invalid", ErrDamaged)
	}
	if err := env.params().validate(); err != nil {
		return nil, backupError(name, "is damaged: "+err.Error(), ErrDamaged)
	}
	aead, err := env.aead(passphrase)
	if err != nil {
		return nil, err
	}
	aad, err := env.aad()
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, env.Nonce, env.Sealed, aad)
	if err != nil {
		return nil, &stateError{"wrong passphrase for backup " + name, []error{ErrWrongPassphrase}}
	}
	defer clear(plain)
	st := new(stateRecord)
	if err := ctap2.Unmarshal(plain, st); err != nil {
		return nil, backupError(name, "is damaged: "+err.Error(), ErrDamaged)
	}
	err = st.validate()
	if err == nil {
		err = st.records(func(rec []byte) error {
			_, _, err := decodeCredential(rec)
			return err
		})
	}
	if err != nil {
		return nil, backupError(name, "is damaged: "+err.Error(), ErrDamaged)
	}
	return &Backup{st: st}, nil
}

// Import creates a new state file at path holding the backup, encrypted or not as
// opts say (their Rand, AAGUID, Attestation and attestation key are not used: those
// come from the backup). Like Create it refuses an existing path and never leaves a half-made file.
// The imported softkey has the same identity and keys, so its credentials keep
// working, and its counter continues above the exported ceiling.
func Import(path string, b *Backup, opts CreateOptions) (*DB, error) {
	if path == "" {
		return nil, errors.New("importing softkey state: no path given")
	}
	enc, err := opts.encryption()
	if err != nil {
		return nil, fmt.Errorf("importing softkey state %s: %w", path, err)
	}
	d, err := build(path, b.st, enc, false)
	if err != nil {
		return nil, err
	}
	return d, nil
}
