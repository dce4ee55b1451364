package ctap1

import (
	"errors"
	"fmt"
)

// APDU is an ISO 7816-4 command APDU.
type APDU struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	// Ne is the expected response length of the Le field: 0 when the command has no
	// Le; 1..256 for a short Le (Le 00 = 256); 1..65536 for an extended one (0000 =
	// 65536). U2F keys ignore it beyond its presence.
	Ne int
	// Extended is true for the extended-length encoding (a 0x00 byte, then two-byte
	// Lc and Le), the one U2F uses over USB HID.
	Extended bool
}

// Length limits of the two encodings.
const (
	maxShortData    = 255
	maxShortNe      = 256
	maxExtendedData = 65535
	maxExtendedNe   = 65536
)

// ErrAPDULength is what ParseAPDU returns for a command whose length fields do not
// match its size; it is the status word a card answers for it (0x6700).
var ErrAPDULength error = SWWrongLength

// ParseAPDU decodes a command APDU in any of the ISO 7816-4 cases, short or extended:
//
//	case 1   CLA INS P1 P2
//	case 2S  CLA INS P1 P2 Le
//	case 3S  CLA INS P1 P2 Lc data            (Lc 1..255)
//	case 4S  CLA INS P1 P2 Lc data Le
//	case 2E  CLA INS P1 P2 00 Le1 Le2
//	case 3E  CLA INS P1 P2 00 Lc1 Lc2 data    (Lc 1..65535)
//	case 4E  CLA INS P1 P2 00 Lc1 Lc2 data Le1 Le2
//
// It also accepts CLA INS P1 P2 00 00 00 Le1 Le2, an extended command with a zero Lc
// and no data: python-fido2 and libfido2 send VERSION that way over USB, always
// framing U2F as "00 INS P1 P2 00 Lc1 Lc2 data 00 00". Anything else, including an Lc
// that disagrees with the bytes present, is ErrAPDULength (0x6700). The data aliases b.
func ParseAPDU(b []byte) (*APDU, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("command APDU of %d bytes: %w", len(b), ErrAPDULength)
	}
	a := &APDU{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return a, nil
	case len(body) == 1: // case 2S
		a.Ne = shortNe(body[0])
		return a, nil
	case body[0] != 0: // short with Lc
		lc := int(body[0])
		switch len(body) {
		case 1 + lc: // case 3S
		case 2 + lc: // case 4S
			a.Ne = shortNe(body[1+lc])
		default:
			return nil, fmt.Errorf("short APDU with Lc %d and %d body bytes: %w", lc, len(body), ErrAPDULength)
		}
		a.Data = body[1 : 1+lc]
		return a, nil
	}
	// Extended: body[0] == 0 and at least one more byte.
	a.Extended = true
	if len(body) < 3 {
		return nil, fmt.Errorf("extended APDU with %d body bytes: %w", len(body), ErrAPDULength)
	}
	n := int(body[1])<<8 | int(body[2])
	if len(body) == 3 { // case 2E: the two bytes are Le
		a.Ne = extendedNe(n)
		return a, nil
	}
	rest := body[3:]
	switch {
	case n == 0 && len(rest) == 2: // zero Lc, then Le (python-fido2, libfido2)
		a.Ne = extendedNe(int(rest[0])<<8 | int(rest[1]))
		return a, nil
	case n == 0:
		return nil, fmt.Errorf("extended APDU with zero Lc and %d more bytes: %w", len(rest), ErrAPDULength)
	case len(rest) == n: // case 3E
	case len(rest) == n+2: // case 4E
		a.Ne = extendedNe(int(rest[n])<<8 | int(rest[n+1]))
	default:
		return nil, fmt.Errorf("extended APDU with Lc %d and %d data bytes: %w", n, len(rest), ErrAPDULength)
	}
	a.Data = rest[:n]
	return a, nil
}

func shortNe(le byte) int {
	if le == 0 {
		return maxShortNe
	}
	return int(le)
}

func extendedNe(le int) int {
	if le == 0 {
		return maxExtendedNe
	}
	return le
}

// Marshal encodes the APDU. It uses the extended encoding when a.Extended is set or
// when the data or Ne do not fit a short one. An extended command without data is
// encoded as case 2E (or case 1 without Ne); HIDCommand gives the U2F-over-HID
// framing instead.
func (a *APDU) Marshal() ([]byte, error) {
	if len(a.Data) > maxExtendedData || a.Ne < 0 || a.Ne > maxExtendedNe {
		return nil, errors.New("apdu: data or Ne too long")
	}
	out := make([]byte, 4, 9+len(a.Data))
	out[0], out[1], out[2], out[3] = a.CLA, a.INS, a.P1, a.P2
	if !a.Extended && len(a.Data) <= maxShortData && a.Ne <= maxShortNe {
		if len(a.Data) > 0 {
			out = append(out, byte(len(a.Data)))
			out = append(out, a.Data...)
		}
		if a.Ne > 0 {
			out = append(out, byte(a.Ne)) // 256 encodes as 00
		}
		return out, nil
	}
	switch {
	case len(a.Data) > 0:
		out = append(out, 0, byte(len(a.Data)>>8), byte(len(a.Data)))
		out = append(out, a.Data...)
		if a.Ne > 0 {
			out = append(out, byte(a.Ne>>8), byte(a.Ne)) // 65536 encodes as 0000
		}
	case a.Ne > 0:
		out = append(out, 0, byte(a.Ne>>8), byte(a.Ne))
	}
	return out, nil
}

// HIDCommand returns the framing U2F uses over CTAPHID_MSG (U2F HID v1.2 and what
// libfido2 and python-fido2 send): 00 INS P1 P2 00 Lc1 Lc2 data 00 00, with the
// three Lc bytes present even when there is no data. CLA is always 0.
func HIDCommand(ins, p1, p2 byte, data []byte) ([]byte, error) {
	if len(data) > maxExtendedData {
		return nil, errors.New("apdu: data too long")
	}
	out := make([]byte, 0, 9+len(data))
	out = append(out, 0, ins, p1, p2, 0, byte(len(data)>>8), byte(len(data)))
	out = append(out, data...)
	return append(out, 0, 0), nil
}

// ShortCommand returns a short case 3S/4S command with Le 00, as NFC readers that
// cannot carry extended APDUs need; data must be at most 255 bytes.
func ShortCommand(ins, p1, p2 byte, data []byte) ([]byte, error) {
	if len(data) > maxShortData {
		return nil, fmt.Errorf("apdu: %d data bytes do not fit a short APDU", len(data))
	}
	a := APDU{INS: ins, P1: p1, P2: p2, Data: data, Ne: maxShortNe}
	return a.Marshal()
}

// Response builds a response APDU: data || SW1 SW2.
func Response(data []byte, sw StatusWord) []byte {
	out := make([]byte, 0, len(data)+2)
	return append(append(out, data...), byte(sw>>8), byte(sw))
}

// ParseResponse splits a response APDU into its data and status word.
func ParseResponse(b []byte) (data []byte, sw StatusWord, err error) {
	if len(b) < 2 {
		return nil, 0, fmt.Errorf("response APDU of %d bytes: no status word", len(b))
	}
	n := len(b) - 2
	return b[:n], StatusWord(b[n])<<8 | StatusWord(b[n+1]), nil
}
