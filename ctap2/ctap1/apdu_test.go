package ctap1

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
)

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseAPDUCases(t *testing.T) {
	data64 := bytes.Repeat([]byte{0xab}, 64)
	data300 := bytes.Repeat([]byte{0xcd}, 300)
	for _, tc := range []struct {
		name     string
		in       []byte
		data     []byte
		ne       int
		extended bool
	}{
		{"case 1", unhex("00 03 00 00"), nil, 0, false},
		{"case 2S", unhex("00 03 00 00 00"), nil, 256, false},
		{"case 2S Le 6", unhex("00 03 00 00 06"), nil, 6, false},
		{"case 3S", append(unhex("00 01 00 00 40"), data64...), data64, 0, false},
		{"case 4S (NFC)", append(append(unhex("00 01 03 00 40"), data64...), 0x00), data64, 256, false},
		{"case 3S one byte", unhex("00 02 07 00 01 ee"), []byte{0xee}, 0, false},
		{"case 2E", unhex("00 03 00 00 00 00 00"), nil, 65536, true},
		{"case 2E Le 0100", unhex("00 03 00 00 00 01 00"), nil, 256, true},
		{"case 3E (missing Le)", append(unhex("00 01 00 00 00 00 40"), data64...), data64, 0, true},
		{"case 4E (HID)", append(append(unhex("00 01 00 00 00 00 40"), data64...), 0, 0), data64, 65536, true},
		{"case 4E long", append(append(unhex("00 02 03 00 00 01 2c"), data300...), 0x01, 0x00), data300, 256, true},
		{"zero Lc with Le (python-fido2 VERSION)", unhex("00 03 00 00 00 00 00 00 00"), nil, 65536, true},
		{"zero Lc with Le 0040", unhex("00 03 00 00 00 00 00 00 40"), nil, 64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAPDU(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if a.CLA != tc.in[0] || a.INS != tc.in[1] || a.P1 != tc.in[2] || a.P2 != tc.in[3] {
				t.Errorf("header %02x %02x %02x %02x", a.CLA, a.INS, a.P1, a.P2)
			}
			if !bytes.Equal(a.Data, tc.data) || a.Ne != tc.ne || a.Extended != tc.extended {
				t.Errorf("got data %d bytes, Ne %d, extended %v; want %d, %d, %v", len(a.Data), a.Ne, a.Extended, len(tc.data), tc.ne, tc.extended)
			}
			out, err := a.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tc.name, "zero Lc") && !bytes.Equal(out, tc.in) {
				t.Errorf("Marshal = %x, want %x", out, tc.in)
			}
		})
	}
}

func TestParseAPDULengthErrors(t *testing.T) {
	data64 := bytes.Repeat([]byte{0xab}, 64)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"three bytes", unhex("00 03 00")},
		{"short Lc larger than data", append(unhex("00 01 00 00 41"), data64...)},
		{"short Lc two smaller than data", append(unhex("00 01 00 00 3e"), data64...)},
		{"short Lc with two trailing bytes", append(append(unhex("00 01 00 00 40"), data64...), 0, 0)},
		{"extended truncated Lc", unhex("00 01 00 00 00 00")},
		{"extended Lc larger than data", append(unhex("00 01 00 00 00 00 41"), data64...)},
		{"extended Lc smaller than data", append(unhex("00 01 00 00 00 00 3f"), data64...)},
		{"extended with one-byte Le", append(append(unhex("00 01 00 00 00 00 40"), data64...), 0)},
		{"extended with three-byte Le", append(append(unhex("00 01 00 00 00 00 40"), data64...), 0, 0, 0)},
		{"zero Lc with one more byte", unhex("00 03 00 00 00 00 00 00")},
		{"zero Lc with data", unhex("00 03 00 00 00 00 00 01 02 03")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAPDU(tc.in)
			if err == nil {
				t.Fatalf("parsed %+v", a)
			}
			if !errors.Is(err, SWWrongLength) || !errors.Is(err, ErrAPDULength) || !errors.Is(err, ctap2.ErrInvalidLength) {
				t.Errorf("error %v: want 0x6700 / INVALID_LENGTH", err)
			}
		})
	}
}

func TestMarshalAPDUChoosesEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    APDU
		want string
	}{
		{"short no Le", APDU{INS: 1, Data: []byte{1, 2}}, "00 01 00 00 02 01 02"},
		{"short Le 256", APDU{INS: 1, Data: []byte{1}, Ne: 256}, "00 01 00 00 01 01 00"},
		{"Ne 257 forces extended", APDU{INS: 1, Data: []byte{1}, Ne: 257}, "00 01 00 00 00 00 01 01 01 01"},
		{"extended no data", APDU{INS: 3, Ne: 65536, Extended: true}, "00 03 00 00 00 00 00"},
		{"extended no data no Ne", APDU{INS: 3, Extended: true}, "00 03 00 00"},
	} {
		got, err := tc.a.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, unhex(tc.want)) {
			t.Errorf("%s: %x, want %s", tc.name, got, tc.want)
		}
	}
	long := APDU{Data: make([]byte, 256)}
	if b, _ := long.Marshal(); b[4] != 0 || b[5] != 1 || b[6] != 0 {
		t.Errorf("256 data bytes not extended: % x", b[:7])
	}
	if _, err := (&APDU{Data: make([]byte, 65536)}).Marshal(); err == nil {
		t.Error("65536 data bytes encoded")
	}
	if _, err := (&APDU{Ne: 65537}).Marshal(); err == nil {
		t.Error("Ne 65537 encoded")
	}
}

func TestHIDAndShortCommands(t *testing.T) {
	got, err := HIDCommand(InsVersion, 0, 0, nil)
	if err != nil || !bytes.Equal(got, unhex("00 03 00 00 00 00 00 00 00")) {
		t.Errorf("HID VERSION = %x, %v", got, err)
	}
	got, _ = HIDCommand(InsAuthenticate, 7, 0, []byte{9})
	if !bytes.Equal(got, unhex("00 02 07 00 00 00 01 09 00 00")) {
		t.Errorf("HID AUTHENTICATE = %x", got)
	}
	got, _ = ShortCommand(InsRegister, 0, 0, []byte{9})
	if !bytes.Equal(got, unhex("00 01 00 00 01 09 00")) {
		t.Errorf("short REGISTER = %x", got)
	}
	if _, err := ShortCommand(InsAuthenticate, 3, 0, make([]byte, 256)); err == nil {
		t.Error("256 bytes in a short APDU")
	}
	for _, b := range [][]byte{got, unhex("00 03 00 00 00 00 00 00 00")} {
		if _, err := ParseAPDU(b); err != nil {
			t.Errorf("own encoding %x does not parse: %v", b, err)
		}
	}
}

func TestParseResponse(t *testing.T) {
	data, sw, err := ParseResponse(unhex("55 32 46 5f 56 32 90 00"))
	if err != nil || string(data) != Version || sw != SWNoError {
		t.Errorf("got %q %v %v", data, sw, err)
	}
	if _, sw, err := ParseResponse(unhex("69 85")); err != nil || sw != SWConditionsNotSatisfied {
		t.Errorf("got %v %v", sw, err)
	}
	if _, _, err := ParseResponse([]byte{0x90}); err == nil {
		t.Error("one byte parsed")
	}
	if got := Response([]byte("ab"), SWWrongData); !bytes.Equal(got, unhex("61 62 6a 80")) {
		t.Errorf("Response = %x", got)
	}
}

func TestStatusWords(t *testing.T) {
	for _, tc := range []struct {
		sw     StatusWord
		status ctap2.StatusError
		text   string
	}{
		{SWNoError, ctap2.StatusOK, "U2F status 0x9000 (no error)"},
		{SWConditionsNotSatisfied, ctap2.ErrUPRequired, "U2F status 0x6985 (conditions of use not satisfied)"},
		{SWWrongData, ctap2.ErrInvalidCredential, "U2F status 0x6A80 (wrong data)"},
		{SWWrongLength, ctap2.ErrInvalidLength, "U2F status 0x6700 (wrong length)"},
		{SWInsNotSupported, ctap2.ErrInvalidCommand, "U2F status 0x6D00 (instruction not supported)"},
		{SWClaNotSupported, ctap2.ErrInvalidCommand, "U2F status 0x6E00 (class not supported)"},
		{SWCommandNotAllowed, ctap2.ErrNotAllowed, "U2F status 0x6986 (command not allowed)"},
		{SWIncorrectP1P2, ctap2.ErrInvalidParameter, "U2F status 0x6A86 (incorrect P1 or P2)"},
		{StatusWord(0x6400), ctap2.ErrOther, "U2F status 0x6400"},
	} {
		if got := tc.sw.Status(); got != tc.status {
			t.Errorf("%04x: status %v, want %v", uint16(tc.sw), got, tc.status)
		}
		if got := tc.sw.Error(); got != tc.text {
			t.Errorf("%04x: %q, want %q", uint16(tc.sw), got, tc.text)
		}
		if tc.sw == SWNoError {
			continue
		}
		wrapped := errors.Join(errors.New("context"), tc.sw)
		if s, ok := ctap2.StatusOf(wrapped); !ok || s != tc.status {
			t.Errorf("%04x: StatusOf = %v %v", uint16(tc.sw), s, ok)
		}
		if !errors.Is(wrapped, tc.sw) {
			t.Errorf("%04x: errors.Is(sw) false", uint16(tc.sw))
		}
		if !bytes.Equal(tc.sw.Bytes(), []byte{byte(tc.sw >> 8), byte(tc.sw)}) {
			t.Errorf("%04x: Bytes %x", uint16(tc.sw), tc.sw.Bytes())
		}
	}
}
