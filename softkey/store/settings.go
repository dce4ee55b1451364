package store

import (
	"bytes"
	"errors"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
)

// DefaultPINRetries and DefaultUVRetries are the retry counters of a fresh or reset
// authenticator (CTAP 2.1 §6.5.2.2: 8 PIN retries).
const (
	DefaultPINRetries = 8
	DefaultUVRetries  = 8
)

// Settings is the authenticator's persistent PIN state and configuration. Each
// SetSettings is one durable write, so a wrong PIN's decremented retry counter
// survives a crash or a kill between attempts.
type Settings struct {
	// PINHash is LEFT(SHA-256(PIN), 16); nil when no PIN is set.
	PINHash []byte
	// PINCodePoints is the length of the current PIN in Unicode code points, kept
	// so that raising minPINLength can force a change of a PIN now too short.
	PINCodePoints  int
	PINRetries     int
	UVRetries      int
	ForcePINChange bool
	// MinPINLength is the current minimum in code points; 0 means the default, 4.
	MinPINLength int
	// MinPINLengthRPIDs may read minPINLength through the extension.
	MinPINLengthRPIDs []string
	AlwaysUV          bool
	// EnterpriseAttestation is the "ep" option, enabled through authenticatorConfig.
	EnterpriseAttestation bool
}

// DefaultSettings is the state of a fresh authenticator: no PIN, full retries.
func DefaultSettings() Settings {
	return Settings{PINRetries: DefaultPINRetries, UVRetries: DefaultUVRetries}
}

func (s Settings) clone() Settings {
	s.PINHash = bytes.Clone(s.PINHash)
	s.MinPINLengthRPIDs = slices.Clone(s.MinPINLengthRPIDs)
	return s
}

// RPInfo summarises one relying party's resident credentials, for credential
// management's RP enumeration.
type RPInfo struct {
	ID          string
	Name        string
	IDHash      [32]byte
	Credentials int
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

func encodeSettings(s Settings) ([]byte, error) {
	return ctap2.Marshal(settingsRecord(s))
}

func decodeSettings(b []byte) (Settings, error) {
	var r settingsRecord
	if err := ctap2.Unmarshal(b, &r); err != nil {
		return Settings{}, err
	}
	if r.PINRetries < 0 || r.PINRetries > DefaultPINRetries || r.UVRetries < 0 || r.UVRetries > DefaultUVRetries ||
		(r.PINHash != nil && len(r.PINHash) != 16) {
		return Settings{}, errors.New("settings out of range")
	}
	return Settings(r), nil
}
