package ctap2

import "math"

// Info is the authenticatorGetInfo response (CTAP 2.1 §6.4, 2.2 additions).
type Info struct {
	Versions                         []string          `cbor:"1,keyasint"`
	Extensions                       []string          `cbor:"2,keyasint,omitempty"`
	AAGUID                           []byte            `cbor:"3,keyasint"`
	Options                          map[string]bool   `cbor:"4,keyasint,omitempty"`
	MaxMsgSize                       uint              `cbor:"5,keyasint,omitempty"`
	PinUvAuthProtocols               []uint            `cbor:"6,keyasint,omitempty"`
	MaxCredentialCountInList         uint              `cbor:"7,keyasint,omitempty"`
	MaxCredentialIDLength            uint              `cbor:"8,keyasint,omitempty"`
	Transports                       []string          `cbor:"9,keyasint,omitempty"`
	Algorithms                       []CredentialParam `cbor:"10,keyasint,omitempty"`
	MaxSerializedLargeBlobArray      uint              `cbor:"11,keyasint,omitempty"`
	ForcePINChange                   bool              `cbor:"12,keyasint,omitempty"`
	MinPINLength                     uint              `cbor:"13,keyasint,omitempty"`
	FirmwareVersion                  uint              `cbor:"14,keyasint,omitempty"`
	MaxCredBlobLength                uint              `cbor:"15,keyasint,omitempty"`
	MaxRPIDsForSetMinPINLength       uint              `cbor:"16,keyasint,omitempty"`
	PreferredPlatformUVAttempts      uint              `cbor:"17,keyasint,omitempty"`
	UVModality                       uint              `cbor:"18,keyasint,omitempty"`
	Certifications                   map[string]uint   `cbor:"19,keyasint,omitempty"`
	RemainingDiscoverableCredentials *uint             `cbor:"20,keyasint,omitempty"`
	VendorPrototypeConfigCommands    []uint            `cbor:"21,keyasint,omitempty"`
	AttestationFormats               []string          `cbor:"22,keyasint,omitempty"`
	UVCountSinceLastPINEntry         uint              `cbor:"23,keyasint,omitempty"`
	LongTouchForReset                bool              `cbor:"24,keyasint,omitempty"`
	EncIdentifier                    []byte            `cbor:"25,keyasint,omitempty"`
	TransportsForReset               []string          `cbor:"26,keyasint,omitempty"`
	PINComplexityPolicy              *bool             `cbor:"27,keyasint,omitempty"`
	PINComplexityPolicyURL           []byte            `cbor:"28,keyasint,omitempty"`
	MaxPINLength                     uint              `cbor:"29,keyasint,omitempty"`
	EncCredStoreState                []byte            `cbor:"30,keyasint,omitempty"`
	AuthenticatorConfigCommands      []uint            `cbor:"31,keyasint,omitempty"`
}

// Defaults the spec gives for absent getInfo fields.
const (
	DefaultMaxMsgSize   = 1024
	DefaultMinPINLength = 4
)

// Option reports an option's value and whether the authenticator listed it at all.
// "up" defaults to true when absent (CTAP 2.1 §6.4); every other option to false.
func (i *Info) Option(name string) (value, present bool) {
	v, ok := i.Options[name]
	if !ok && name == "up" {
		return true, false
	}
	return v, ok
}

// MessageSize is maxMsgSize, or the spec default when the key does not say.
func (i *Info) MessageSize() int {
	if i.MaxMsgSize == 0 {
		return DefaultMaxMsgSize
	}
	if i.MaxMsgSize > math.MaxInt {
		return math.MaxInt
	}
	return int(i.MaxMsgSize)
}

// HasVersion reports whether versions lists v (e.g. "FIDO_2_1").
func (i *Info) HasVersion(v string) bool {
	for _, s := range i.Versions {
		if s == v {
			return true
		}
	}
	return false
}
