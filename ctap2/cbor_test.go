package ctap2

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMarshalCanonicalMapOrder(t *testing.T) {
	// CTAP2 canonical order is the bytewise order of the encoded keys: major type first
	// (unsigned < negative < text), then shorter encodings, then lexical. Go map
	// iteration order is random, so a stable result also shows the sort is done.
	m := map[any]int{
		"aa": 10, "b": 9, "a": 8, -25: 7, -1: 6, 256: 5, 255: 4, 24: 3, 1: 2, 0: 1,
	}
	want := unhex(`aa
		00 01   01 02   1818 03   18ff 04   190100 05
		20 06   3818 07
		6161 08   6162 09   626161 0a`)
	for i := 0; i < 20; i++ {
		got := mustCBOR(t, m)
		if !bytes.Equal(got, want) {
			t.Fatalf("Marshal = %x\nwant      %x", got, want)
		}
	}
	// RFC 7049 "length-first" canonical order would put -1 (0x20, one byte) before 24
	// (0x1818, two bytes); CTAP2 sorts by major type first.
	if i24, iNeg := bytes.Index(want, []byte{0x18, 0x18}), bytes.IndexByte(want, 0x20); i24 > iNeg {
		t.Fatal("test vector broken")
	}
}

func TestMarshalCanonicalStructOrder(t *testing.T) {
	// Struct fields are emitted in key order, not declaration order: a COSE EC2 key is
	// declared 1, 3, -1, -2, -3 and also sorts that way, a text-keyed struct does not.
	x, y := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
	got := mustCBOR(t, coseEC2{Kty: 2, Alg: AlgES256, Crv: 1, X: x, Y: y})
	want := cat(unhex("a5 01 02 03 26 20 01 21 5820"), x, unhex("22 5820"), y)
	if !bytes.Equal(got, want) {
		t.Errorf("EC2 key = %x\nwant       %x", got, want)
	}

	type reversed struct {
		Z string `cbor:"transports"`
		Y string `cbor:"type"`
		X string `cbor:"id"`
	}
	got = mustCBOR(t, reversed{"c", "b", "a"})
	want = unhex("a3 626964 6161 6474797065 6162 6a7472616e73706f727473 6163")
	if !bytes.Equal(got, want) {
		t.Errorf("text-keyed struct = %x\nwant                 %x", got, want)
	}

	// Mixed integer and text keys in one struct.
	type mixed struct {
		S string `cbor:"a"`
		N int    `cbor:"-1,keyasint"`
		P int    `cbor:"24,keyasint"`
	}
	got = mustCBOR(t, mixed{"x", 1, 2})
	want = unhex("a3 1818 02 20 01 6161 6178")
	if !bytes.Equal(got, want) {
		t.Errorf("mixed struct = %x\nwant           %x", got, want)
	}
}

func TestMarshalShortestForm(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{0, "00"}, {23, "17"}, {24, "1818"}, {255, "18ff"}, {256, "190100"},
		{65535, "19ffff"}, {65536, "1a00010000"}, {uint64(1) << 32, "1b0000000100000000"},
		{-1, "20"}, {-24, "37"}, {-25, "3818"}, {-257, "390100"},
		{[]byte{}, "40"}, {bytes.Repeat([]byte{0}, 24), "5818" + strings.Repeat("00", 24)},
		{"", "60"}, {"a", "6161"}, {[]int{}, "80"}, {map[int]int{}, "a0"},
		{true, "f5"}, {false, "f4"},
	} {
		if got := mustCBOR(t, tc.v); !bytes.Equal(got, unhex(tc.want)) {
			t.Errorf("Marshal(%#v) = %x, want %s", tc.v, got, tc.want)
		}
	}
}

func TestUnmarshalRejects(t *testing.T) {
	for _, tc := range []struct {
		name, hex string
	}{
		{"duplicate int key", "a2 01 01 01 02"},
		{"duplicate text key", "a2 6161 01 6161 02"},
		{"duplicate key nested", "a1 04 a2 62726b f5 62726b f4"},
		{"indefinite array", "9f 01 02 ff"},
		{"indefinite map", "bf 6161 01 ff"},
		{"indefinite byte string", "5f 41 00 41 01 ff"},
		{"indefinite text string", "7f 61 61 ff"},
		{"indefinite nested", "a1 01 9f ff"},
		{"tag 0 date", "c0 74 323031332d30332d32315432303a30343a30305a"},
		{"tag 2 bignum", "c2 41 01"},
		{"tag 24 embedded cbor", "d8 18 41 00"},
		{"tag nested in map", "a1 01 d8 18 41 00"},
		{"invalid utf-8", "62 c3 28"},
		{"trailing bytes", "01 02"},
		{"truncated", "58 20 00"},
		{"truncated map", "a2 01 01"},
		{"empty", ""},
		{"reserved additional info", "1c"},
		{"break outside indefinite", "ff"},
		{"unassigned simple value", "f0"},
		{"simple value 0", "e0"},
		{"simple value 255", "f8ff"},
		{"simple value as an integer field", "a1 05 f0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := unhex(tc.hex)
			var v any
			if err := Unmarshal(data, &v); err == nil {
				t.Errorf("Unmarshal(%x) into any = %#v, want error", data, v)
			}
			var info Info
			if err := Unmarshal(data, &info); err == nil {
				t.Errorf("Unmarshal(%x) into Info succeeded, want error", data)
			}
			if err := CheckCanonical(data); err == nil {
				t.Errorf("CheckCanonical(%x) = nil, want error", data)
			}
		})
	}
}

func TestUnmarshalTagsForbiddenInStructFields(t *testing.T) {
	// A tag where a byte string belongs (AAGUID) and where an unknown key's value sits.
	for _, h := range []string{
		"a2 01 81 6346494f 03 d8 40 50 00000000000000000000000000000000",
		"a3 01 81 6346494f 03 50 00000000000000000000000000000000 1863 c1 00",
	} {
		var info Info
		if err := Unmarshal(unhex(h), &info); err == nil {
			t.Errorf("Unmarshal(%s) accepted a tag", h)
		}
	}
}

func TestWellformed(t *testing.T) {
	if err := Wellformed(unhex("a2 01 01 02 82 01 02")); err != nil {
		t.Errorf("Wellformed(valid) = %v", err)
	}
	// Wellformed checks structure and the strict decoder's limits (no indefinite lengths,
	// no tags, nesting); content rules such as UTF-8 or duplicate keys need a decode.
	for _, h := range []string{"9f ff", "c0 60", "01 01", "a1 01", "58 02 00"} {
		if err := Wellformed(unhex(h)); err == nil {
			t.Errorf("Wellformed(%s) = nil, want error", h)
		}
	}
}

func TestUnmarshalFirst(t *testing.T) {
	var n int
	rest, err := UnmarshalFirst(unhex("1818 6161 ff"), &n)
	if err != nil || n != 24 || !bytes.Equal(rest, unhex("6161 ff")) {
		t.Fatalf("UnmarshalFirst = %d, %x, %v", n, rest, err)
	}
	if _, err := UnmarshalFirst(unhex("9f 01 ff 00"), new(any)); err == nil {
		t.Error("UnmarshalFirst accepted an indefinite-length first item")
	}
}

// nested returns depth levels of one-element arrays around an empty array.
func nested(depth int) []byte {
	return append(bytes.Repeat([]byte{0x81}, depth-1), 0x80)
}

func TestNestingLimit(t *testing.T) {
	if err := Unmarshal(nested(maxNesting), new(any)); err != nil {
		t.Errorf("%d levels: %v", maxNesting, err)
	}
	for _, depth := range []int{maxNesting + 1, 10_000, 1 << 20} {
		if err := Unmarshal(nested(depth), new(any)); err == nil {
			t.Errorf("%d levels accepted", depth)
		}
		if err := Wellformed(nested(depth)); err == nil {
			t.Errorf("Wellformed accepted %d levels", depth)
		}
	}
	// Maps count as levels too: {1: {1: {1: ...}}}.
	deepMap := append(bytes.Repeat([]byte{0xa1, 0x01}, maxNesting), 0xa0)
	if err := Unmarshal(deepMap, new(any)); err == nil {
		t.Errorf("%d levels of maps accepted", maxNesting+1)
	}
	// A real CTAP message (attestation object with a certificate chain) is far below it.
	if err := Unmarshal(golden(t, "python-fido2/mc_resp_packed_yubikey.hex"), new(any)); err != nil {
		t.Error(err)
	}
}

func TestCheckCanonical(t *testing.T) {
	for _, name := range []string{
		"python-fido2/info.hex", "python-fido2/info_extra_key.hex", "python-fido2/mc_resp.hex",
		"python-fido2/mc_resp_packed_yubikey.hex", "python-fido2/ga_resp.hex",
	} {
		if err := CheckCanonical(golden(t, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, h := range []string{"a0", "80", "00", "f6", "a2 01 02 03 04", "a2 18 18 00 20 00", "a2 62 6964 00 64 74797065 00"} {
		if err := CheckCanonical(unhex(h)); err != nil {
			t.Errorf("CheckCanonical(%s) = %v", h, err)
		}
	}

	for _, tc := range []struct {
		name, in, canonical string
	}{
		{"int not shortest", "18 17", "17"},
		{"int in 2 bytes", "19 00ff", "18ff"},
		{"int in 8 bytes", "1b 0000000000000001", "01"},
		{"negative not shortest", "38 00", "20"},
		{"byte string length not shortest", "58 01 00", "41 00"},
		{"text length not shortest", "78 01 61", "61 61"},
		{"array length not shortest", "98 01 01", "81 01"},
		{"map length not shortest", "b8 01 01 01", "a1 01 01"},
		{"int keys unsorted", "a2 02 00 01 00", "a2 01 00 02 00"},
		{"text keys unsorted", "a2 6162 00 6161 00", "a2 6161 00 6162 00"},
		{"longer text key first", "a2 626161 00 6162 00", "a2 6162 00 626161 00"},
		{"text key before int key", "a2 6161 00 01 00", "a2 01 00 6161 00"},
		{"negative key before positive", "a2 20 00 01 00", "a2 01 00 20 00"},
		// RFC 7049 length-first order; CTAP2 wants 24 before -1.
		{"length-first order", "a2 20 00 1818 00", "a2 1818 00 20 00"},
		{"unsorted in nested map", "a1 04 a2 62 7570 f5 62 726b f5", "a1 04 a2 62 726b f5 62 7570 f5"},
		{"undefined", "f7", "f6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckCanonical(unhex(tc.in))
			if !errors.Is(err, ErrNonCanonical) {
				t.Fatalf("CheckCanonical(%s) = %v, want ErrNonCanonical", tc.in, err)
			}
			var nc *NonCanonicalError
			if !errors.As(err, &nc) {
				t.Fatalf("error %T is not a *NonCanonicalError", err)
			}
			if !bytes.Equal(nc.Got, unhex(tc.in)) || !bytes.Equal(nc.Canonical, unhex(tc.canonical)) {
				t.Errorf("NonCanonicalError{Got: %x, Canonical: %x}, want canonical %s", nc.Got, nc.Canonical, tc.canonical)
			}
			if !strings.Contains(err.Error(), "non-canonical") {
				t.Errorf("message %q", err)
			}
			// The canonical form the error offers is itself canonical.
			if err := CheckCanonical(nc.Canonical); err != nil {
				t.Errorf("suggested canonical form %x: %v", nc.Canonical, err)
			}
		})
	}
}

func TestCheckCanonicalKeepsGotIndependent(t *testing.T) {
	in := unhex("18 17")
	err := CheckCanonical(in)
	in[1] = 0xff
	var nc *NonCanonicalError
	if !errors.As(err, &nc) || nc.Got[1] != 0x17 {
		t.Fatalf("NonCanonicalError.Got aliases the caller's buffer: %v", err)
	}
}

func TestUnmarshalIgnoresUnknownKeys(t *testing.T) {
	var plain, extra Info
	if err := Unmarshal(golden(t, "python-fido2/info.hex"), &plain); err != nil {
		t.Fatal(err)
	}
	if err := Unmarshal(golden(t, "python-fido2/info_extra_key.hex"), &extra); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plain, extra) {
		t.Errorf("unknown key 99 changed the result:\n%+v\n%+v", plain, extra)
	}

	// Unknown keys of every shape, at the top level and inside nested structures.
	data := unhex(`a4
		01 81 68 4649444f5f325f31
		03 50 000102030405060708090a0b0c0d0e0f
		04 a3 62 726b f5 64 706c6174 f4 67 756e6b6e6f776e f5
		1864 a2 01 82 f6 f5 6161 43 010203`)
	var info Info
	if err := Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	if !info.HasVersion("FIDO_2_1") || info.AAGUID[15] != 0x0f || !info.Options["rk"] {
		t.Errorf("decoded %+v", info)
	}

	// Unknown text keys in text-keyed structs (an entity with an icon, 2.0 style).
	var user UserEntity
	if err := Unmarshal(unhex("a3 62 6964 41 01 64 69636f6e 69 68747470733a2f2f78 64 6e616d65 61 75"), &user); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(user.ID, []byte{1}) || user.Name != "u" {
		t.Errorf("user = %+v", user)
	}
}

func TestUnmarshalWrongTypes(t *testing.T) {
	for _, h := range []string{
		"a1 01 01",                  // versions: int, not array
		"a1 01 81 01",               // versions: array of int
		"a1 03 60",                  // aaguid: text, not bytes
		"a1 05 20",                  // maxMsgSize: negative
		"a1 05 f5",                  // maxMsgSize: bool
		"a1 04 a1 01 f5",            // options: int key
		"a1 04 a1 6172 01",          // options: int value
		"a1 0a 81 a1 63616c67 6161", // algorithms[0].alg: text
		"81 01",                     // not a map at all
	} {
		var info Info
		if err := Unmarshal(unhex(h), &info); err == nil {
			t.Errorf("Unmarshal(%s) into Info = %+v, want error", h, info)
		}
	}
}

func TestInfoGolden(t *testing.T) {
	data := golden(t, "python-fido2/info.hex")
	var info Info
	if err := Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	want := Info{
		Versions:           []string{"U2F_V2", "FIDO_2_0"},
		Extensions:         []string{"uvm", "hmac-secret"},
		AAGUID:             unhex("f8a011f38c0a4d15800617111f9edc7d"),
		Options:            map[string]bool{"rk": true, "up": true, "plat": false, "clientPin": false},
		MaxMsgSize:         1200,
		PinUvAuthProtocols: []uint{1},
	}
	if !reflect.DeepEqual(info, want) {
		t.Fatalf("Info =\n%+v\nwant\n%+v", info, want)
	}
	if got := mustCBOR(t, info); !bytes.Equal(got, data) {
		t.Errorf("re-encoded Info = %x\nwant               %x", got, data)
	}
	if info.MessageSize() != 1200 || !info.HasVersion("FIDO_2_0") || info.HasVersion("FIDO_2_1") {
		t.Error("MessageSize/HasVersion")
	}
	for _, tc := range []struct {
		name           string
		value, present bool
	}{{"rk", true, true}, {"up", true, true}, {"clientPin", false, true}, {"uv", false, false}, {"bioEnroll", false, false}} {
		if v, p := info.Option(tc.name); v != tc.value || p != tc.present {
			t.Errorf("Option(%q) = %v, %v; want %v, %v", tc.name, v, p, tc.value, tc.present)
		}
	}
	var empty Info
	if v, p := empty.Option("up"); !v || p {
		t.Errorf("absent up = %v, %v; want true (default), false", v, p)
	}
	if empty.MessageSize() != DefaultMaxMsgSize {
		t.Errorf("default MessageSize = %d", empty.MessageSize())
	}
}

func TestUnmarshalKeysAreExact(t *testing.T) {
	// CTAP map keys are case-sensitive: "Alg" and "TYPE" are unknown keys, not "alg"
	// and "type".
	var p CredentialParam
	if err := Unmarshal(unhex("a2 63 416c67 26 64 54595045 6a 7075626c69632d6b6579"), &p); err != nil {
		t.Fatal(err)
	}
	if p != (CredentialParam{}) {
		t.Errorf("case-folded keys were decoded: %+v", p)
	}
	var o Options
	if err := Unmarshal(unhex("a1 62 524b f5"), &o); err != nil || o.RK != nil {
		t.Errorf(`{"RK": true} decoded as rk: %+v, %v`, o, err)
	}
	// A text key "1" is not the integer key 1.
	var info Info
	if err := Unmarshal(unhex("a1 61 31 81 68 4649444f5f325f30"), &info); err != nil || info.Versions != nil {
		t.Errorf(`{"1": [...]} decoded as versions: %+v, %v`, info, err)
	}
}

func TestInfoMessageSizeHuge(t *testing.T) {
	// An authenticator advertising an absurd maxMsgSize must not make every request "too
	// large" through integer overflow.
	for _, n := range []uint{1 << 31, 1<<63 - 1, 1 << 63, ^uint(0)} {
		info := Info{MaxMsgSize: n}
		if got := info.MessageSize(); got < 7609 {
			t.Errorf("MaxMsgSize %d: MessageSize() = %d", n, got)
		}
	}
}
