package ctap2

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"

	"github.com/fxamacker/cbor/v2"
)

// The CTAP2 canonical encoding (CTAP 2.1 §8: shortest integers, definite lengths, map
// keys sorted by their encoded bytes, no tags) and a strict decoder, built once.
var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

// maxNesting bounds maps and arrays inside maps and arrays. CTAP messages need about 4
// (an attestation statement's certificate chain); the slack keeps odd but valid
// extension inputs working while refusing nesting bombs.
const maxNesting = 16

func init() {
	var err error
	if encMode, err = cbor.CTAP2EncOptions().EncMode(); err != nil {
		panic(err)
	}
	// Only false, true, null and undefined are assigned simple values; the decoder
	// would otherwise turn e.g. simple(16) into the integer 16.
	var unassigned []func(*cbor.SimpleValueRegistry) error
	for sv := 0; sv < 256; sv++ {
		if sv < 20 || sv > 31 {
			unassigned = append(unassigned, cbor.WithRejectedSimpleValue(cbor.SimpleValue(sv)))
		}
	}
	simple, err := cbor.NewSimpleValueRegistryFromDefaults(unassigned...)
	if err != nil {
		panic(err)
	}
	strict := cbor.DecOptions{
		DupMapKey:             cbor.DupMapKeyEnforcedAPF,
		IndefLength:           cbor.IndefLengthForbidden,
		TagsMd:                cbor.TagsForbidden,
		FieldNameMatching:     cbor.FieldNameMatchingCaseSensitive, // "Alg" is not "alg"
		MaxNestedLevels:       maxNesting,
		UTF8:                  cbor.UTF8RejectInvalid,
		SimpleValues:          simple,
		IntDec:                cbor.IntDecConvertSignedOrBigInt,
		DefaultMapType:        reflect.TypeOf(map[any]any(nil)),
		DefaultByteStringType: reflect.TypeOf([]byte(nil)),
	}
	if decMode, err = strict.DecMode(); err != nil {
		panic(err)
	}
}

// RawMessage is an encoded CBOR item kept as bytes (an extension input, attStmt, COSE key).
type RawMessage = cbor.RawMessage

// Marshal encodes v in CTAP2 canonical form.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes exactly one CBOR item from data into v, rejecting duplicate map
// keys, indefinite lengths, tags, invalid UTF-8 and trailing bytes.
func Unmarshal(data []byte, v any) error { return decMode.Unmarshal(data, v) }

// UnmarshalFirst decodes the first CBOR item of data into v and returns the rest.
func UnmarshalFirst(data []byte, v any) (rest []byte, err error) {
	return decMode.UnmarshalFirst(data, v)
}

// Wellformed reports whether data is exactly one CBOR item accepted by the strict decoder.
func Wellformed(data []byte) error { return decMode.Wellformed(data) }

// ErrNonCanonical is returned (wrapped in *NonCanonicalError) for replies that decode but
// are not in CTAP2 canonical form. Strict hosts such as libfido2 and python-fido2 refuse
// them too, so accepting them would hide an authenticator bug.
var ErrNonCanonical = errors.New("non-canonical CBOR")

// NonCanonicalError carries both encodings so the difference can be reported.
type NonCanonicalError struct {
	Got, Canonical []byte
}

func (e *NonCanonicalError) Error() string {
	return fmt.Sprintf("non-canonical CBOR: got %x, canonical form %x", e.Got, e.Canonical)
}

func (e *NonCanonicalError) Unwrap() error { return ErrNonCanonical }

// CheckCanonical decodes data generically (so unknown keys survive), re-encodes it
// canonically and compares. Floats are outside CTAP2 and are not normalised.
func CheckCanonical(data []byte) error {
	var v any
	if err := decMode.Unmarshal(data, &v); err != nil {
		return err
	}
	re, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	if !bytes.Equal(re, data) {
		return &NonCanonicalError{Got: bytes.Clone(data), Canonical: re}
	}
	return nil
}
