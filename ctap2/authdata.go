package ctap2

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// AuthFlags is the flags byte of authenticator data (WebAuthn §6.1).
type AuthFlags byte

// Flag bits of authenticator data.
const (
	FlagUP AuthFlags = 0x01 // user present
	FlagUV AuthFlags = 0x04 // user verified
	FlagBE AuthFlags = 0x08 // backup eligible
	FlagBS AuthFlags = 0x10 // backed up
	FlagAT AuthFlags = 0x40 // attested credential data included
	FlagED AuthFlags = 0x80 // extension data included
)

// Has reports whether every bit of f2 is set.
func (f AuthFlags) Has(f2 AuthFlags) bool { return f&f2 == f2 }

func (f AuthFlags) String() string {
	var s []string
	for _, b := range []struct {
		f AuthFlags
		n string
	}{{FlagUP, "UP"}, {FlagUV, "UV"}, {FlagBE, "BE"}, {FlagBS, "BS"}, {FlagAT, "AT"}, {FlagED, "ED"}} {
		if f.Has(b.f) {
			s = append(s, b.n)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// MaxCredentialIDLength is WebAuthn's bound on credential IDs.
const MaxCredentialIDLength = 1023

// AttestedCredentialData is the credential part of makeCredential authenticator data.
type AttestedCredentialData struct {
	AAGUID       [16]byte
	CredentialID []byte
	PublicKey    []byte // COSE_Key, one CBOR item
}

// AuthData is parsed authenticator data (WebAuthn §6.1, CTAP 2.1 §6.1).
type AuthData struct {
	RPIDHash   [32]byte
	Flags      AuthFlags
	SignCount  uint32
	Attested   *AttestedCredentialData // present iff FlagAT
	Extensions []byte                  // CBOR map, present iff FlagED
}

// RPIDHash returns SHA-256 of the RP ID, as in authenticator data.
func RPIDHash(rpID string) [32]byte { return sha256.Sum256([]byte(rpID)) }

var errAuthDataShort = errors.New("authenticator data too short")

// ParseAuthData parses authenticator data strictly: flags must match the parts present,
// the COSE key and extensions must each be exactly one well-formed CBOR item, and no
// bytes may follow them. On failure it returns a nil *AuthData.
func ParseAuthData(b []byte) (*AuthData, error) {
	s := cryptobyte.String(b)
	var a AuthData
	var hash []byte
	var flags uint8
	if !s.ReadBytes(&hash, 32) || !s.ReadUint8(&flags) || !s.ReadUint32(&a.SignCount) {
		return nil, errAuthDataShort
	}
	copy(a.RPIDHash[:], hash)
	a.Flags = AuthFlags(flags)
	if a.Flags.Has(FlagAT) {
		var acd AttestedCredentialData
		var aaguid []byte
		var credID cryptobyte.String
		if !s.ReadBytes(&aaguid, 16) || !s.ReadUint16LengthPrefixed(&credID) {
			return nil, errors.New("authenticator data: truncated attested credential data")
		}
		if len(credID) == 0 || len(credID) > MaxCredentialIDLength {
			return nil, fmt.Errorf("authenticator data: credential ID length %d out of range", len(credID))
		}
		copy(acd.AAGUID[:], aaguid)
		acd.CredentialID = append([]byte(nil), credID...)
		var key RawMessage
		rest, err := UnmarshalFirst(s, &key)
		if err != nil {
			return nil, fmt.Errorf("authenticator data: credential public key: %w", err)
		}
		acd.PublicKey = append([]byte(nil), key...)
		s = cryptobyte.String(rest)
		a.Attested = &acd
	}
	if a.Flags.Has(FlagED) {
		var ext map[string]RawMessage
		if err := Unmarshal(s, &ext); err != nil {
			return nil, fmt.Errorf("authenticator data: extensions: %w", err)
		}
		if ext == nil { // CBOR null decodes into a map without error
			return nil, errors.New("authenticator data: extensions: not a CBOR map")
		}
		a.Extensions = append([]byte(nil), s...)
		s = nil
	}
	if len(s) != 0 {
		return nil, fmt.Errorf("authenticator data: %d unexpected trailing bytes", len(s))
	}
	return &a, nil
}

// Marshal encodes the authenticator data; flags AT and ED are set from the parts present.
func (a *AuthData) Marshal() []byte {
	flags := a.Flags &^ (FlagAT | FlagED)
	if a.Attested != nil {
		flags |= FlagAT
	}
	if len(a.Extensions) > 0 {
		flags |= FlagED
	}
	n := 37
	if a.Attested != nil {
		n += 18 + len(a.Attested.CredentialID) + len(a.Attested.PublicKey)
	}
	out := make([]byte, 0, n+len(a.Extensions))
	out = append(out, a.RPIDHash[:]...)
	out = append(out, byte(flags))
	out = binary.BigEndian.AppendUint32(out, a.SignCount)
	if acd := a.Attested; acd != nil {
		out = append(out, acd.AAGUID[:]...)
		out = binary.BigEndian.AppendUint16(out, uint16(len(acd.CredentialID)))
		out = append(out, acd.CredentialID...)
		out = append(out, acd.PublicKey...)
	}
	return append(out, a.Extensions...)
}
