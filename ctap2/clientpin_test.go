package ctap2

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestPadPIN(t *testing.T) {
	for _, tc := range []struct {
		pin    string
		min    uint
		ok     bool
		reason string
	}{
		{"1234", 0, true, ""},
		{"1234", 4, true, ""},
		{"123", 0, false, "at least 4 characters"},
		{"123", 3, false, "at least 4 characters"}, // never below the spec's 4
		{"12345", 6, false, "at least 6 characters long, not 5"},
		{"ñññ", 0, false, "not 3"},                                // 6 bytes, 3 code points
		{"ñ\u0303ññ", 0, true, ""},                                // a combining mark is a code point of its own
		{"\U0001F600\U0001F600\U0001F600\U0001F600", 4, true, ""}, // 16 bytes
		{strings.Repeat("a", 63), 63, true, ""},
		{strings.Repeat("a", 64), 0, false, "at most 63 bytes"},
		{strings.Repeat("é", 32), 0, false, "at most 63 bytes"}, // 64 bytes, 32 code points
		{"", 0, false, "empty"},
		{"12\xc3", 0, false, "UTF-8"},
		{"\xed\xa0\x80123", 0, false, "UTF-8"}, // an encoded surrogate
		{"12\x0034", 0, false, "NUL"},
	} {
		padded, err := PadPIN(tc.pin, tc.min)
		if !tc.ok {
			if !errors.Is(err, ErrBadPIN) || !strings.Contains(err.Error(), tc.reason) || padded != nil {
				t.Errorf("PadPIN(%q, %d) = %x, %v; want ErrBadPIN mentioning %q", tc.pin, tc.min, padded, err, tc.reason)
			}
			continue
		}
		if err != nil {
			t.Errorf("PadPIN(%q, %d): %v", tc.pin, tc.min, err)
			continue
		}
		if len(padded) != 64 || !bytes.HasPrefix(padded, []byte(tc.pin)) ||
			len(bytes.TrimRight(padded, "\x00")) != len(tc.pin) {
			t.Errorf("PadPIN(%q) = %x", tc.pin, padded)
		}
		if back, err := UnpadPIN(padded); err != nil || string(back) != tc.pin {
			t.Errorf("UnpadPIN(PadPIN(%q)) = %q, %v", tc.pin, back, err)
		}
	}
}

func TestUnpadPIN(t *testing.T) {
	for name, in := range map[string][]byte{
		"short":        make([]byte, 63),
		"long":         make([]byte, 65),
		"no zero":      bytes.Repeat([]byte{'1'}, 64),
		"80 (v2 size)": make([]byte, 80),
	} {
		if _, err := UnpadPIN(in); !errors.Is(err, ErrPINProtocolInput) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// All zeros is an empty PIN: unpadding does not judge policy.
	if pin, err := UnpadPIN(make([]byte, 64)); err != nil || len(pin) != 0 {
		t.Errorf("zeros: %q, %v", pin, err)
	}
}

func TestPINHash(t *testing.T) {
	// LEFT(SHA-256("1234"), 16).
	if got := PINHash([]byte("1234")); !bytes.Equal(got, unhex("03ac674216f3e15c761ee1a5e255f067")) {
		t.Errorf("PINHash(1234) = %x", got)
	}
}
