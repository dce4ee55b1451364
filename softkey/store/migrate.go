package store

import (
	"fmt"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// ChangePassphrase re-wraps the master key of an encrypted state file under a new
// passphrase, with a fresh salt and the given argon2id parameters (nil: DefaultKDF).
// Nothing else is rewritten: the master key, and every key derived from it, stay. It
// is one transaction, so the file holds the old header or the new one, never a mix.
func (d *DB) ChangePassphrase(passphrase []byte, kdf *KDFParams) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return ErrClosed
	}
	if d.enc == nil {
		return &stateError{"state file " + d.path + " is not encrypted; encrypt it first", []error{ErrNotEncrypted}}
	}
	p := DefaultKDF
	if kdf != nil {
		p = *kdf
	}
	hdr, err := newCryptoHeader(d.enc.masterKey, passphrase, p)
	if err != nil {
		return fmt.Errorf("changing the passphrase of %s: %w", d.path, err)
	}
	hb, err := ctap2.Marshal(&hdr)
	if err != nil {
		return err
	}
	err = guard(func() error {
		return d.db.Update(func(tx *bolt.Tx) error {
			mb := tx.Bucket(bucketMeta)
			if mb == nil {
				return damagef("a bucket is missing")
			}
			if err := mb.Put(keyHeader, hb); err != nil {
				return err
			}
			return mb.Put(keyCheck, headerCheck(hb))
		})
	})
	if err != nil {
		return fmt.Errorf("changing the passphrase of %s: %w", d.path, inFile(d.path, err))
	}
	d.enc = &encryption{hdr: hdr, masterKey: d.enc.masterKey, s: d.enc.s}
	return nil
}

// Encrypt migrates an unencrypted state file to the encrypted format in place,
// keeping everything: identity, credentials (with their order), counter, PIN state,
// settings, large blobs and the attestation key. The new file is built and fsynced beside the old one and
// renamed over it, so the path always holds one complete state file; d stays open,
// on the new file. A crash midway leaves the old file and at most a temporary file
// named .BASE.*.tmp beside it.
func (d *DB) Encrypt(passphrase []byte, kdf *KDFParams) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db == nil {
		return ErrClosed
	}
	if d.enc != nil {
		return &stateError{"state file " + d.path + " is already encrypted", []error{ErrEncrypted}}
	}
	p := DefaultKDF
	if kdf != nil {
		p = *kdf
	}
	enc, err := newEncryption(passphrase, p)
	if err != nil {
		return fmt.Errorf("encrypting %s: %w", d.path, err)
	}
	var st *stateRecord
	err = guard(func() error {
		return d.db.View(func(tx *bolt.Tx) error {
			var err error
			st, err = readState(bucketsOf(tx, nil), d.Meta())
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("encrypting %s: %w", d.path, inFile(d.path, err))
	}
	// A symlinked state file stays a symlink: the file it names is replaced.
	target, err := filepath.EvalSymlinks(d.path)
	if err != nil {
		return fmt.Errorf("encrypting %s: %w", d.path, err)
	}
	nd, err := build(target, st, enc, true)
	if err != nil {
		return fmt.Errorf("encrypting %s: %w", d.path, err)
	}
	// The old file has lost its name; closing it drops its lock and mapping. The
	// new one is locked already.
	d.db.Close()
	d.db, d.enc = nd.db, enc
	d.metaMu.Lock()
	d.meta.FormatVersion = FormatEncrypted
	d.metaMu.Unlock()
	return nil
}
