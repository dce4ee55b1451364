// Package ctap1 speaks CTAP1, the FIDO U2F raw message format (FIDO U2F Raw Message
// Formats v1.2; CTAP 2.1 §11), on both sides: the ISO 7816-4 command APDUs that carry
// it, the REGISTER, AUTHENTICATE and VERSION messages, a host Client that drives a
// U2F key over any transport.Device (CTAPHID_MSG, or raw APDUs over NFC), and the
// conversion of U2F answers into CTAP2-shaped results (CTAP 2.1 §10.2), so that old
// keys can serve makeCredential and getAssertion.
//
// Status words map onto ctap2.StatusError (StatusWord.Unwrap), so callers match U2F
// failures with errors.Is as they match CTAP2 ones.
package ctap1

import (
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// U2F instructions (the INS byte of a command APDU).
const (
	InsRegister     byte = 0x01
	InsAuthenticate byte = 0x02
	InsVersion      byte = 0x03
)

// Control is the P1 byte of AUTHENTICATE.
type Control byte

// AUTHENTICATE control bytes.
const (
	// EnforcePresence signs only after a test of user presence (UP byte 0x01).
	EnforcePresence Control = 0x03
	// CheckOnly asks whether a key handle belongs to this key for the application,
	// without signing: 0x6985 means it does, 0x6A80 that it does not.
	CheckOnly Control = 0x07
	// DontEnforcePresence signs without a test of user presence (UP byte 0x00;
	// U2F 1.2, not every key supports it).
	DontEnforcePresence Control = 0x08
)

func (c Control) String() string {
	switch c {
	case EnforcePresence:
		return "enforce-user-presence-and-sign"
	case CheckOnly:
		return "check-only"
	case DontEnforcePresence:
		return "dont-enforce-user-presence-and-sign"
	}
	return fmt.Sprintf("control(0x%02x)", byte(c))
}

// Version is the VERSION answer of every U2F key.
const Version = "U2F_V2"

// Sizes of U2F message fields.
const (
	ChallengeSize     = 32 // the challenge parameter: SHA-256 of the client data
	ApplicationSize   = 32 // the application parameter: SHA-256 of the AppID / RP ID
	PublicKeySize     = 65 // uncompressed P-256 point, 0x04 || X || Y
	MaxKeyHandleSize  = 255
	registerReserved  = 0x05 // first byte of a REGISTER response
	registerHashID    = 0x00 // first byte of the data a REGISTER signature covers
	userPresenceFlag  = 0x01 // bit 0 of the UP byte
	authenticateFixed = ChallengeSize + ApplicationSize + 1
)

// StatusWord is the SW1 SW2 trailer of a response APDU. Every value except
// SWNoError is an error; it unwraps to the ctap2.StatusError closest in meaning.
type StatusWord uint16

// Status words of U2F and the ISO 7816 ones hosts meet around it.
const (
	SWNoError                StatusWord = 0x9000
	SWConditionsNotSatisfied StatusWord = 0x6985 // test of user presence required; check-only: key handle is valid
	SWCommandNotAllowed      StatusWord = 0x6986
	SWWrongData              StatusWord = 0x6A80 // unknown key handle, wrong application
	SWFileNotFound           StatusWord = 0x6A82 // SELECT: no FIDO applet
	SWIncorrectP1P2          StatusWord = 0x6A86
	SWWrongLength            StatusWord = 0x6700
	SWInsNotSupported        StatusWord = 0x6D00
	SWClaNotSupported        StatusWord = 0x6E00
	SWUnknown                StatusWord = 0x6F00 // no precise diagnosis
)

var statusWordNames = map[StatusWord]string{
	SWNoError:                "no error",
	SWConditionsNotSatisfied: "conditions of use not satisfied",
	SWCommandNotAllowed:      "command not allowed",
	SWWrongData:              "wrong data",
	SWFileNotFound:           "application not found",
	SWIncorrectP1P2:          "incorrect P1 or P2",
	SWWrongLength:            "wrong length",
	SWInsNotSupported:        "instruction not supported",
	SWClaNotSupported:        "class not supported",
	SWUnknown:                "no precise diagnosis",
}

// Error describes the status word, e.g. "U2F status 0x6A80 (wrong data)".
func (s StatusWord) Error() string {
	if n, ok := statusWordNames[s]; ok {
		return fmt.Sprintf("U2F status 0x%04X (%s)", uint16(s), n)
	}
	return fmt.Sprintf("U2F status 0x%04X", uint16(s))
}

// Status maps the status word onto a CTAP status: 0x6985 is UP_REQUIRED, 0x6A80
// INVALID_CREDENTIAL (U2F keys answer it for a key handle they cannot use), 0x6700
// INVALID_LENGTH, 0x6D00 and 0x6E00 INVALID_COMMAND, 0x6986 NOT_ALLOWED, 0x6A86
// INVALID_PARAMETER, 0x9000 OK and anything else CTAP1_ERR_OTHER.
func (s StatusWord) Status() ctap2.StatusError {
	switch s {
	case SWNoError:
		return ctap2.StatusOK
	case SWConditionsNotSatisfied:
		return ctap2.ErrUPRequired
	case SWWrongData:
		return ctap2.ErrInvalidCredential
	case SWWrongLength:
		return ctap2.ErrInvalidLength
	case SWInsNotSupported, SWClaNotSupported, SWFileNotFound:
		return ctap2.ErrInvalidCommand
	case SWCommandNotAllowed:
		return ctap2.ErrNotAllowed
	case SWIncorrectP1P2:
		return ctap2.ErrInvalidParameter
	}
	return ctap2.ErrOther
}

// Unwrap lets errors.Is and ctap2.StatusOf see the mapped CTAP status.
func (s StatusWord) Unwrap() error { return s.Status() }

// Bytes returns SW1 SW2.
func (s StatusWord) Bytes() []byte { return []byte{byte(s >> 8), byte(s)} }
