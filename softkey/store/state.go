package store

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

// stateRecord is a whole softkey state, independent of any file format: what Create,
// Encrypt and Import write into a new file, and the plaintext of a backup (canonical
// CBOR). Credentials keep their insertion sequence numbers, so that their order
// (newerThan's tie-break) survives.
type stateRecord struct {
	AAGUID       []byte `cbor:"1,keyasint"`
	CreatedSec   int64  `cbor:"2,keyasint"`
	CreatedNsec  int64  `cbor:"3,keyasint,omitempty"`
	Attestation  string `cbor:"4,keyasint,omitempty"`
	MasterSecret []byte `cbor:"5,keyasint"`
	Counter      uint32 `cbor:"6,keyasint"`
	Seq          uint64 `cbor:"7,keyasint"`
	// Settings is an encoded settings record; nil when never written.
	Settings     []byte `cbor:"8,keyasint,omitempty"`
	LargeBlob    []byte `cbor:"9,keyasint,omitempty"`
	HasLargeBlob bool   `cbor:"10,keyasint,omitempty"`
	// Creds are credential records (record.go) one after the other, not a CBOR
	// array: the decoder bounds arrays at 131072 elements, states may hold more.
	Creds []byte `cbor:"11,keyasint,omitempty"`
	// NCreds is the number of records in Creds.
	NCreds uint64 `cbor:"12,keyasint,omitempty"`
	// AttKey is an encoded attestation record (attestation.go); nil when the state
	// has no batch attestation key.
	AttKey []byte `cbor:"13,keyasint,omitempty"`
}

func newStateRecord(m Meta) *stateRecord {
	return &stateRecord{AAGUID: m.AAGUID[:], CreatedSec: m.Created.Unix(), CreatedNsec: int64(m.Created.Nanosecond()),
		Attestation: m.Attestation, MasterSecret: m.MasterSecret}
}

// meta is the identity of a file of the given format holding st.
func (st *stateRecord) meta(version int) Meta {
	m := Meta{MasterSecret: bytes.Clone(st.MasterSecret), FormatVersion: version,
		Created: time.Unix(st.CreatedSec, st.CreatedNsec).UTC(), Attestation: st.Attestation}
	copy(m.AAGUID[:], st.AAGUID)
	return m
}

// validate checks everything but the credential records, which writeState decodes.
func (st *stateRecord) validate() error {
	switch {
	case len(st.AAGUID) != 16:
		return fmt.Errorf("AAGUID is %d bytes", len(st.AAGUID))
	case len(st.MasterSecret) != MasterSecretSize:
		return fmt.Errorf("master secret is %d bytes", len(st.MasterSecret))
	case st.CreatedNsec < 0 || st.CreatedNsec >= int64(time.Second):
		return errors.New("creation time out of range")
	case !st.HasLargeBlob && st.LargeBlob != nil:
		return errors.New("large-blob array without its flag")
	}
	switch st.Attestation {
	case "", "self", "none", "batch":
	default:
		return fmt.Errorf("unknown attestation mode %q", st.Attestation)
	}
	if st.Settings != nil {
		if _, err := decodeSettings(st.Settings); err != nil {
			return err
		}
	}
	if st.AttKey != nil {
		if _, err := decodeAttestation(st.AttKey); err != nil {
			return err
		}
	}
	return nil
}

// records calls fn for each credential record in st.Creds.
func (st *stateRecord) records(fn func(rec []byte) error) error {
	rest := st.Creds
	var n uint64
	for len(rest) > 0 {
		var raw ctap2.RawMessage
		var err error
		if rest, err = ctap2.UnmarshalFirst(rest, &raw); err != nil {
			return fmt.Errorf("credential record %d: %w", n, err)
		}
		if err := fn(raw); err != nil {
			return err
		}
		n++
	}
	if n != st.NCreds {
		return fmt.Errorf("%d credential records, the state says %d", n, st.NCreds)
	}
	return nil
}

// readState reads the whole state of an open file in one transaction; meta is the
// file's identity.
func readState(b buckets, meta Meta) (*stateRecord, error) {
	st := newStateRecord(meta.clone())
	var err error
	if st.Counter, err = b.counter(); err != nil {
		return nil, err
	}
	if st.Seq, err = b.getUint64(keySeq); err != nil {
		return nil, err
	}
	count, err := b.getUint64(keyCount)
	if err != nil {
		return nil, err
	}
	raw, err := b.getMeta(keySettings)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		s, err := decodeSettings(raw)
		if err != nil {
			return nil, damagef("settings: %v", err)
		}
		if st.Settings, err = encodeSettings(s); err != nil {
			return nil, err
		}
	}
	if st.LargeBlob, err = b.getMeta(keyLargeBlob); err != nil {
		return nil, err
	}
	st.HasLargeBlob = st.LargeBlob != nil
	if st.AttKey, err = b.getMeta(keyAttestation); err != nil {
		return nil, err
	}
	if st.AttKey != nil {
		if _, err := decodeAttestation(st.AttKey); err != nil {
			return nil, damagef("%v", err)
		}
	}
	if len(st.LargeBlob) == 0 {
		st.LargeBlob = nil // omitted in CBOR; HasLargeBlob keeps an empty array
	}
	var creds bytes.Buffer
	c := b.creds.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		rec, err := b.s.open(bucketCreds, k, v)
		if err != nil {
			return nil, err
		}
		if _, _, err := b.decodeStored(rec, k, nil); err != nil {
			return nil, err
		}
		creds.Write(rec)
		st.NCreds++
	}
	if st.NCreds != count {
		return nil, damagef("%d credential records, the count says %d", st.NCreds, count)
	}
	st.Creds = creds.Bytes()
	return st, nil
}
