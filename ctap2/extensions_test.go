package ctap2

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestMakeCredentialExtensionsMap(t *testing.T) {
	e := &MakeCredentialExtensions{CredProtect: 2, HMACSecret: true, CredBlob: []byte{1, 2, 3}, LargeBlobKey: true, MinPINLength: true}
	m, err := e.Map()
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(`a5
		68 63726564426c6f62 43 010203
		6b 6372656450726f74656374 02
		6b 686d61632d736563726574 f5
		6c 6c61726765426c6f624b6579 f5
		6c 6d696e50696e4c656e677468 f5`)
	if got := mustCBOR(t, m); !bytes.Equal(got, want) {
		t.Errorf("extensions\n got  %x\n want %x", got, want)
	}
	// In the request they are key 6.
	req := &MakeCredentialRequest{Extensions: m}
	if got := mustCBOR(t, req); !bytes.Equal(got, cat(unhex("a1 06"), want)) {
		t.Errorf("request %x", got)
	}

	// Nothing set: no map at all, so the request has no key 6.
	if m, err := (&MakeCredentialExtensions{}).Map(); m != nil || err != nil {
		t.Errorf("empty: %v, %v", m, err)
	}
	if m, _ := (&MakeCredentialExtensions{CredBlob: []byte{}}).Map(); m != nil {
		t.Errorf("empty credBlob sent: %v", m)
	}
	for _, lvl := range []uint{1, 3} {
		m, err := (&MakeCredentialExtensions{CredProtect: lvl}).Map()
		if err != nil || !bytes.Equal(m[ExtCredProtect], []byte{byte(lvl)}) {
			t.Errorf("credProtect %d: %x, %v", lvl, m[ExtCredProtect], err)
		}
	}
	for _, lvl := range []uint{4, 255, 1 << 20} {
		if _, err := (&MakeCredentialExtensions{CredProtect: lvl}).Map(); !errors.Is(err, ErrExtension) {
			t.Errorf("credProtect %d: %v", lvl, err)
		}
	}

	// hmac-secret-mc carries the input map and implies "hmac-secret": true.
	in := &HMACSecretInput{KeyAgreement: unhex("a0"), SaltEnc: []byte{1}, SaltAuth: []byte{2}, PinUvAuthProtocol: 2}
	m, err = (&MakeCredentialExtensions{HMACSecretMC: in}).Map()
	if err != nil {
		t.Fatal(err)
	}
	wantMC := unhex(`a2
		6b 686d61632d736563726574 f5
		6e 686d61632d7365637265742d6d63 a4 01 a0 02 41 01 03 41 02 04 02`)
	if got := mustCBOR(t, m); !bytes.Equal(got, wantMC) {
		t.Errorf("hmac-secret-mc\n got  %x\n want %x", got, wantMC)
	}
}

func TestGetAssertionExtensionsMap(t *testing.T) {
	in := &HMACSecretInput{KeyAgreement: unhex("a0"), SaltEnc: []byte{1}, SaltAuth: []byte{2}}
	m, err := (&GetAssertionExtensions{HMACSecret: in, CredBlob: true, LargeBlobKey: true}).Map()
	if err != nil {
		t.Fatal(err)
	}
	// Protocol 1: key 4 left out.
	want := unhex(`a3
		68 63726564426c6f62 f5
		6b 686d61632d736563726574 a3 01 a0 02 41 01 03 41 02
		6c 6c61726765426c6f624b6579 f5`)
	if got := mustCBOR(t, m); !bytes.Equal(got, want) {
		t.Errorf("extensions\n got  %x\n want %x", got, want)
	}
	req := &GetAssertionRequest{RPID: "a", Extensions: m}
	if got := mustCBOR(t, req); !bytes.Equal(got, cat(unhex("a2 01 61 61 04"), want)) {
		t.Errorf("request %x", got)
	}
	if m, err := (&GetAssertionExtensions{}).Map(); m != nil || err != nil {
		t.Errorf("empty: %v, %v", m, err)
	}
}

func TestParseExtensionOutputs(t *testing.T) {
	u := func(n uint) *uint { return &n }
	for _, tc := range []struct {
		name string
		cbor string
		want ExtensionOutputs
	}{
		{"makeCredential", `a6
			68 63726564426c6f62 f5
			6b 6372656450726f74656374 03
			6b 686d61632d736563726574 f5
			6c 6d696e50696e4c656e677468 06
			6e 686d61632d7365637265742d6d63 42 abcd
			71 746869726450617274795061796d656e74 f4`,
			ExtensionOutputs{CredBlobStored: Bool(true), CredProtect: 3, HMACSecret: Bool(true), MinPINLength: u(6),
				HMACSecretMC: []byte{0xab, 0xcd}, Other: map[string]RawMessage{"thirdPartyPayment": {0xf4}}}},
		{"makeCredential, nothing granted", `a2 68 63726564426c6f62 f4 6b 686d61632d736563726574 f4`,
			ExtensionOutputs{CredBlobStored: Bool(false), HMACSecret: Bool(false)}},
		{"getAssertion", `a2 68 63726564426c6f62 40 6b 686d61632d736563726574 43 010203`,
			ExtensionOutputs{CredBlob: []byte{}, HMACSecretOutput: []byte{1, 2, 3}}},
		{"empty map", `a0`, ExtensionOutputs{}},
		{"nothing", ``, ExtensionOutputs{}},
	} {
		data := unhex(tc.cbor)
		got, err := ParseExtensionOutputs(data)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%s:\n got  %+v\n want %+v", tc.name, *got, tc.want)
		}
		back, err := got.Marshal()
		if err != nil {
			t.Errorf("%s: Marshal: %v", tc.name, err)
		}
		if len(data) > 1 && !bytes.Equal(back, data) {
			t.Errorf("%s: Marshal\n got  %x\n want %x", tc.name, back, data)
		}
		if len(data) <= 1 && back != nil {
			t.Errorf("%s: Marshal of no outputs = %x", tc.name, back)
		}
	}

	// A real credProtect output from webauthn4j's test data.
	ad, err := ParseAuthData(golden(t, "webauthn4j/authdata_credprotect.hex"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := ParseExtensionOutputs(ad.Extensions)
	if err != nil || out.CredProtect == 0 {
		t.Errorf("webauthn4j authData: %+v, %v", out, err)
	}

	for name, bad := range map[string]string{
		"array":              `80`,
		"null":               `f6`,
		"bad CBOR":           `a1 61`,
		"trailing":           `a0 00`,
		"int key":            `a1 01 f5`,
		"duplicate":          `a2 6b 6372656450726f74656374 01 6b 6372656450726f74656374 02`,
		"credProtect 0":      `a1 6b 6372656450726f74656374 00`,
		"credProtect 4":      `a1 6b 6372656450726f74656374 04`,
		"credProtect -1":     `a1 6b 6372656450726f74656374 20`,
		"credProtect text":   `a1 6b 6372656450726f74656374 61 31`,
		"hmac-secret null":   `a1 6b 686d61632d736563726574 f6`,
		"hmac-secret int":    `a1 6b 686d61632d736563726574 01`,
		"hmac-secret text":   `a1 6b 686d61632d736563726574 61 61`,
		"hmac-secret float":  `a1 6b 686d61632d736563726574 f9 3c00`,
		"hmac-secret-mc t":   `a1 6e 686d61632d7365637265742d6d63 f5`,
		"credBlob undefined": `a1 68 63726564426c6f62 f7`,
		"credBlob array":     `a1 68 63726564426c6f62 80`,
		"minPinLength -1":    `a1 6c 6d696e50696e4c656e677468 20`,
		"minPinLength true":  `a1 6c 6d696e50696e4c656e677468 f5`,
	} {
		if out, err := ParseExtensionOutputs(unhex(bad)); err == nil {
			t.Errorf("%s: accepted as %+v", name, out)
		}
	}

	for name, o := range map[string]*ExtensionOutputs{
		"hmac-secret both": {HMACSecret: Bool(true), HMACSecretOutput: []byte{1}},
		"credBlob both":    {CredBlobStored: Bool(true), CredBlob: []byte{}},
	} {
		if _, err := o.Marshal(); !errors.Is(err, ErrExtension) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func FuzzParseExtensionOutputs(f *testing.F) {
	f.Add(unhex(`a2 68 63726564426c6f62 40 6b 686d61632d736563726574 43 010203`))
	f.Add(unhex(`a3 68 63726564426c6f62 f5 6b 6372656450726f74656374 03 6c 6d696e50696e4c656e677468 06`))
	f.Add(unhex(`a1 6e 686d61632d7365637265742d6d63 42 abcd`))
	f.Add(unhex(`a1 63 666f6f a1 01 02`))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := ParseExtensionOutputs(data)
		if err != nil {
			if out != nil {
				t.Fatal("outputs with an error")
			}
			return
		}
		enc, err := out.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed outputs: %v", err)
		}
		again, err := ParseExtensionOutputs(enc)
		if err != nil || !reflect.DeepEqual(again, out) {
			t.Fatalf("re-parse of %x: %+v, %v; want %+v", enc, again, err, out)
		}
		// Canonical input with at least one output comes back byte for byte.
		if enc != nil && CheckCanonical(data) == nil && !bytes.Equal(enc, data) {
			t.Fatalf("round trip:\n in  %x\n out %x", data, enc)
		}
	})
}
