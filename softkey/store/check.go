package store

import "bytes"

// Check reads and authenticates every value of the state file and checks that the
// indexes agree with the records and the count: what a backup or an inspection
// wants to know before it trusts the file. Open checks the header and the metadata
// only, so that opening stays fast with many credentials; Check finds a damaged
// credential record too (ErrDamaged, the file untouched).
func (d *DB) Check() error {
	return d.view(func(b buckets) error {
		if _, err := loadCheckedMeta(b); err != nil {
			return err
		}
		count, err := b.getUint64(keyCount)
		if err != nil {
			return err
		}
		var n uint64
		c := b.creds.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			rec, err := b.s.open(bucketCreds, k, v)
			if err != nil {
				return err
			}
			cred, _, err := b.decodeStored(rec, k, nil)
			if err != nil {
				return err
			}
			idT := k[32:]
			userKey := cat(k[:32], b.s.userTag(cred.RPIDHash[:], cred.User.ID))
			if got, err := b.get(b.credIDs, bucketCredIDs, idT); err != nil {
				return err
			} else if !bytes.Equal(got, userKey) {
				return damagef("credential ID index entry %s does not match its record", describeKey(idT))
			}
			if got, err := b.get(b.users, bucketUsers, userKey); err != nil {
				return err
			} else if !bytes.Equal(got, idT) {
				return damagef("account index entry %s does not match its record", describeKey(userKey))
			}
			n++
		}
		// Every index entry authenticates, and there are no more of them than records.
		for _, ix := range []struct {
			name []byte
			b    interface {
				ForEach(func(k, v []byte) error) error
			}
		}{{bucketCredIDs, b.credIDs}, {bucketUsers, b.users}} {
			var m uint64
			if err := ix.b.ForEach(func(k, v []byte) error {
				m++
				_, err := b.s.open(ix.name, k, v)
				return err
			}); err != nil {
				return err
			}
			if m != n {
				return damagef("%s index has %d entries for %d credentials", ix.name, m, n)
			}
		}
		if n != count {
			return damagef("%d credential records, the count says %d", n, count)
		}
		return nil
	})
}

// loadCheckedMeta checks the metadata values in either format.
func loadCheckedMeta(b buckets) (Meta, error) {
	if b.s != nil {
		return loadSealedMeta(b)
	}
	for _, k := range []struct {
		key  []byte
		size int
	}{{keySecret, MasterSecretSize}, {keyCounter, 4}, {keySeq, 8}, {keyCount, 8}} {
		if v := b.meta.Get(k.key); len(v) != k.size {
			return Meta{}, damagef("meta value %q is missing or has the wrong size", k.key)
		}
	}
	if raw := b.meta.Get(keySettings); raw != nil {
		if _, err := decodeSettings(raw); err != nil {
			return Meta{}, damagef("its settings record (PIN state) does not decode: %v", err)
		}
	}
	if raw := b.meta.Get(keyAttestation); raw != nil {
		if _, err := decodeAttestation(raw); err != nil {
			return Meta{}, damagef("its %v", err)
		}
	}
	return Meta{}, nil
}
