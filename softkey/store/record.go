package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

// credRecord is the stored form of a Credential: canonical CBOR with small integer
// keys, decoded strictly (ctap2.Unmarshal). Unknown keys are ignored, so a later
// format may add fields without breaking older readers of the same FormatVersion.
type credRecord struct {
	ID              []byte            `cbor:"1,keyasint"`
	RPID            string            `cbor:"2,keyasint,omitempty"`
	RPName          string            `cbor:"3,keyasint,omitempty"`
	RPIDHash        []byte            `cbor:"4,keyasint"`
	UserID          []byte            `cbor:"5,keyasint"`
	UserName        string            `cbor:"6,keyasint,omitempty"`
	UserDisplayName string            `cbor:"7,keyasint,omitempty"`
	Alg             int64             `cbor:"8,keyasint"`
	PrivateKey      []byte            `cbor:"9,keyasint"`
	CreatedSec      int64             `cbor:"10,keyasint,omitempty"` // Unix seconds; absent for the zero time
	CreatedNsec     int64             `cbor:"11,keyasint,omitempty"`
	HasCreated      bool              `cbor:"12,keyasint,omitempty"`
	CredProtect     uint8             `cbor:"13,keyasint,omitempty"`
	Extra           map[string][]byte `cbor:"14,keyasint,omitempty"`
	// Seq is the store-wide insertion sequence, the tie-break of newerThan.
	Seq uint64 `cbor:"15,keyasint"`
}

// encodeCredential encodes c with its insertion sequence number.
func encodeCredential(c *Credential, seq uint64) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	r := credRecord{
		ID:              c.ID,
		RPID:            c.RPID,
		RPName:          c.RPName,
		RPIDHash:        c.RPIDHash[:],
		UserID:          c.User.ID,
		UserName:        c.User.Name,
		UserDisplayName: c.User.DisplayName,
		Alg:             int64(c.Alg),
		PrivateKey:      c.PrivateKey,
		CredProtect:     c.CredProtect,
		Extra:           c.Extra,
		Seq:             seq,
	}
	if !c.Created.IsZero() {
		r.HasCreated = true
		r.CreatedSec = c.Created.Unix()
		r.CreatedNsec = int64(c.Created.Nanosecond())
	}
	b, err := ctap2.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("encoding credential: %w", err)
	}
	return b, nil
}

// decodeCredential is the inverse of encodeCredential. It rejects records that are not
// strict canonical-decoder CBOR or that describe an invalid credential, so a damaged
// record is an error and never a half-filled credential.
func decodeCredential(b []byte) (*Credential, uint64, error) {
	var r credRecord
	if err := ctap2.Unmarshal(b, &r); err != nil {
		return nil, 0, fmt.Errorf("decoding credential record: %w", err)
	}
	if len(r.RPIDHash) != 32 {
		return nil, 0, fmt.Errorf("decoding credential record: rpIdHash is %d bytes", len(r.RPIDHash))
	}
	if r.CreatedNsec < 0 || r.CreatedNsec >= int64(time.Second) {
		return nil, 0, errors.New("decoding credential record: creation time out of range")
	}
	if int64(int(r.Alg)) != r.Alg {
		return nil, 0, errors.New("decoding credential record: algorithm out of range")
	}
	c := &Credential{
		ID:          r.ID,
		RPID:        r.RPID,
		RPName:      r.RPName,
		User:        ctap2.UserEntity{ID: r.UserID, Name: r.UserName, DisplayName: r.UserDisplayName},
		Alg:         ctap2.COSEAlgorithm(r.Alg),
		PrivateKey:  r.PrivateKey,
		CredProtect: r.CredProtect,
		Extra:       r.Extra,
	}
	copy(c.RPIDHash[:], r.RPIDHash)
	if r.HasCreated {
		c.Created = time.Unix(r.CreatedSec, r.CreatedNsec).UTC()
	} else if r.CreatedSec != 0 || r.CreatedNsec != 0 {
		return nil, 0, errors.New("decoding credential record: creation time without its flag")
	}
	if len(c.Extra) == 0 {
		c.Extra = nil
	}
	if err := c.validate(); err != nil {
		return nil, 0, fmt.Errorf("decoding credential record: %w", err)
	}
	return c, r.Seq, nil
}
