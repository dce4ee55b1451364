package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ctapkit/ctapkit/ctap2"
)

// DefaultPINRetries and DefaultUVRetries are the retry counters of a fresh or reset
// authenticator (CTAP 2.1 §6.5.2.2: 8 PIN retries). They are also the largest values
// a store accepts.
const (
	DefaultPINRetries = ctap2.MaxPINRetries
	DefaultUVRetries  = 8
)

// PINHashSize is the length of Settings.PINHash: LEFT(SHA-256(PIN), 16).
const PINHashSize = 16

// Settings is the authenticator's persistent PIN state and configuration. Each
// SetSettings is one durable write, so a wrong PIN's decremented retry counter
// survives a crash or a kill between attempts.
//
// SetSettings refuses values out of range (see the field comments) rather than store
// something a later Open would refuse as damaged. Empty PINHash and
// MinPINLengthRPIDs are stored as nil.
type Settings struct {
	// PINHash is LEFT(SHA-256(PIN), 16); nil when no PIN is set.
	PINHash []byte
	// PINCodePoints is the length of the current PIN in Unicode code points, kept
	// so that raising minPINLength can force a change of a PIN now too short;
	// 0..ctap2.MaxPINLength (a PIN has at most 63 bytes, so at most 63 code points).
	PINCodePoints int
	// PINRetries is 0..DefaultPINRetries, UVRetries 0..DefaultUVRetries.
	PINRetries     int
	UVRetries      int
	ForcePINChange bool
	// MinPINLength is the current minimum in code points, 0..ctap2.MaxPINLength; 0
	// means the default, 4.
	MinPINLength int
	// MinPINLengthRPIDs may read minPINLength through the extension; valid UTF-8.
	MinPINLengthRPIDs []string
	AlwaysUV          bool
	// EnterpriseAttestation is the "ep" option, enabled through authenticatorConfig.
	EnterpriseAttestation bool
}

// DefaultSettings is the state of a fresh authenticator: no PIN, full retries.
func DefaultSettings() Settings {
	return Settings{PINRetries: DefaultPINRetries, UVRetries: DefaultUVRetries}
}

// clone returns a deep copy in normal form (empty slices are nil), the form a DB
// returns after a round trip through CBOR.
func (s Settings) clone() Settings {
	if len(s.PINHash) == 0 {
		s.PINHash = nil
	} else {
		s.PINHash = bytes.Clone(s.PINHash)
	}
	if len(s.MinPINLengthRPIDs) == 0 {
		s.MinPINLengthRPIDs = nil
	} else {
		s.MinPINLengthRPIDs = slices.Clone(s.MinPINLengthRPIDs)
	}
	return s
}

func (s *Settings) validate() error {
	inRange := func(what string, v, max int) error {
		if v < 0 || v > max {
			return fmt.Errorf("settings: %s %d out of range 0..%d", what, v, max)
		}
		return nil
	}
	if len(s.PINHash) != 0 && len(s.PINHash) != PINHashSize {
		return fmt.Errorf("settings: PIN hash is %d bytes, want %d", len(s.PINHash), PINHashSize)
	}
	if err := errors.Join(
		inRange("PIN length", s.PINCodePoints, ctap2.MaxPINLength),
		inRange("PIN retries", s.PINRetries, DefaultPINRetries),
		inRange("UV retries", s.UVRetries, DefaultUVRetries),
		inRange("minimum PIN length", s.MinPINLength, ctap2.MaxPINLength),
	); err != nil {
		return err
	}
	for _, id := range s.MinPINLengthRPIDs {
		if !utf8.ValidString(id) {
			return errors.New("settings: a minPINLength RP ID is not valid UTF-8")
		}
	}
	return nil
}

// RPInfo summarises one relying party's resident credentials, for credential
// management's RP enumeration.
type RPInfo struct {
	// ID and Name are those stored with the RP's newest credential (newest as in
	// CredentialsByRP): an RP may rename itself, and its latest registration tells
	// its current name.
	ID          string
	Name        string
	IDHash      [32]byte
	Credentials int
}

// compareRPs orders RelyingParties' result: by ID, then (for RPs whose IDs are equal,
// which only inconsistent callers can make) by IDHash, so the order is total.
func compareRPs(a, b RPInfo) int {
	if c := strings.Compare(a.ID, b.ID); c != 0 {
		return c
	}
	return bytes.Compare(a.IDHash[:], b.IDHash[:])
}

// settingsRecord is the stored form of Settings, in the meta bucket under
// "settings": canonical CBOR with small integer keys, like credential records.
type settingsRecord struct {
	PINHash               []byte   `cbor:"1,keyasint,omitempty"`
	PINCodePoints         int      `cbor:"2,keyasint,omitempty"`
	PINRetries            int      `cbor:"3,keyasint"`
	UVRetries             int      `cbor:"4,keyasint"`
	ForcePINChange        bool     `cbor:"5,keyasint,omitempty"`
	MinPINLength          int      `cbor:"6,keyasint,omitempty"`
	MinPINLengthRPIDs     []string `cbor:"7,keyasint,omitempty"`
	AlwaysUV              bool     `cbor:"8,keyasint,omitempty"`
	EnterpriseAttestation bool     `cbor:"9,keyasint,omitempty"`
}

// encodeSettings validates s and encodes it.
func encodeSettings(s Settings) ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	b, err := ctap2.Marshal(settingsRecord(s.clone()))
	if err != nil {
		return nil, fmt.Errorf("encoding settings: %w", err)
	}
	return b, nil
}

// decodeSettings is the inverse of encodeSettings. It refuses what encodeSettings
// never writes: CBOR the strict decoder rejects, values out of range, and a PIN hash
// that is present but not PINHashSize bytes (an empty one included).
func decodeSettings(b []byte) (Settings, error) {
	var r settingsRecord
	if err := ctap2.Unmarshal(b, &r); err != nil {
		return Settings{}, fmt.Errorf("decoding settings: %w", err)
	}
	if r.PINHash != nil && len(r.PINHash) != PINHashSize {
		return Settings{}, fmt.Errorf("settings: PIN hash is %d bytes, want %d", len(r.PINHash), PINHashSize)
	}
	s := Settings(r).clone()
	if err := s.validate(); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// newerAt is newerThan on creation times and insertion sequence numbers.
func newerAt(a, b time.Time, seqA, seqB uint64) bool {
	if !a.Equal(b) {
		return a.After(b)
	}
	return seqA > seqB
}
