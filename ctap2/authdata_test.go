package ctap2

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// Hand-built authenticator data. The credential key is the P-256 generator point (the
// public key of private scalar 1), so it is a valid ES256 COSE key anyone can check.
var (
	exampleRPIDHash = unhex("a379a6f6eeafb9a55e378c118034e2751e682fab9f2d30ab13d2125586ce1947") // SHA-256("example.com")
	p256Gx          = unhex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296")
	p256Gy          = unhex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
	generatorCOSE   = cat(unhex("a5 01 02 03 26 20 01 21 5820"), p256Gx, unhex("22 5820"), p256Gy)
	testAAGUID      = unhex("00112233445566778899aabbccddeeff")
	testCredID      = unhex("000102030405060708090a0b0c0d0e0f")
	credProtectExt  = unhex("a1 6b 6372656450726f74656374 02") // {"credProtect": 2}
	hmacSecretExt   = cat(unhex("a1 6b 686d61632d736563726574 5820"), bytes.Repeat([]byte{0x5a}, 32))

	// getAssertion: UP|UV, signCount 0x01020304, nothing else: 37 bytes.
	adAssertion = cat(exampleRPIDHash, unhex("05 01020304"))
	// makeCredential: UP|UV|AT, signCount 0, attested credential data.
	adAttested = cat(exampleRPIDHash, unhex("45 00000000"), testAAGUID, unhex("0010"), testCredID, generatorCOSE)
	// makeCredential with credProtect: UP|UV|AT|ED.
	adAttestedExt = cat(exampleRPIDHash, unhex("c5 00000000"), testAAGUID, unhex("0010"), testCredID, generatorCOSE, credProtectExt)
	// getAssertion with an hmac-secret output: UP|ED, signCount 5.
	adAssertionExt = cat(exampleRPIDHash, unhex("81 00000005"), hmacSecretExt)
)

func TestAuthDataHandBuilt(t *testing.T) {
	if len(adAssertion) != 37 {
		t.Fatalf("plain assertion authData is %d bytes", len(adAssertion))
	}
	var hash [32]byte
	copy(hash[:], exampleRPIDHash)
	if RPIDHash("example.com") != hash || sha256.Sum256([]byte("example.com")) != hash {
		t.Fatal("RPIDHash(example.com) differs from the test vector")
	}
	attested := &AttestedCredentialData{AAGUID: [16]byte(testAAGUID), CredentialID: testCredID, PublicKey: generatorCOSE}

	for _, tc := range []struct {
		name string
		in   []byte
		want AuthData
	}{
		{"assertion", adAssertion, AuthData{RPIDHash: hash, Flags: FlagUP | FlagUV, SignCount: 0x01020304}},
		{"attested", adAttested, AuthData{RPIDHash: hash, Flags: FlagUP | FlagUV | FlagAT, Attested: attested}},
		{"attested with extensions", adAttestedExt, AuthData{RPIDHash: hash, Flags: FlagUP | FlagUV | FlagAT | FlagED, Attested: attested, Extensions: credProtectExt}},
		{"assertion with extensions", adAssertionExt, AuthData{RPIDHash: hash, Flags: FlagUP | FlagED, SignCount: 5, Extensions: hmacSecretExt}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ad, err := ParseAuthData(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*ad, tc.want) {
				t.Fatalf("parsed\n%+v\nwant\n%+v", *ad, tc.want)
			}
			if got := ad.Marshal(); !bytes.Equal(got, tc.in) {
				t.Errorf("Marshal = %x\nwant      %x", got, tc.in)
			}
			// Marshalling the expected struct gives the bytes too.
			if got := tc.want.Marshal(); !bytes.Equal(got, tc.in) {
				t.Errorf("want.Marshal = %x", got)
			}
			if ad.Attested != nil {
				key, err := ParseCOSEKey(ad.Attested.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				pub := key.Public.(*ecdsa.PublicKey)
				if key.Alg != AlgES256 || pub.Curve != elliptic.P256() || !bytes.Equal(mustBytes(pub)[1:33], elliptic.P256().Params().Gx.FillBytes(make([]byte, 32))) {
					t.Errorf("credential key = %+v", key)
				}
			}
		})
	}
}

func TestAuthDataParseDoesNotAlias(t *testing.T) {
	in := bytes.Clone(adAttestedExt)
	ad, err := ParseAuthData(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] ^= 0xff
	}
	if !bytes.Equal(ad.Marshal(), adAttestedExt) {
		t.Error("parsed AuthData shares memory with its input")
	}
}

func TestAuthDataGolden(t *testing.T) {
	pf2Hash := [32]byte(unhex("0021f5fc0b85cd22e60623bcd7d1ca48948909249b4776eb515154e57b66ae12"))
	yubicoAAGUID := [16]byte(unhex("f8a011f38c0a4d15800617111f9edc7d"))
	pf2CredID := unhex(`fe3aac036d14c1e1c65518b698dd1da8f596bc33e11072813466c6bf3845691509b80fb76d59309b
		8d39e0a93452688f6ca3a39a76f3fc52744fb73948b15783`)
	localhost := RPIDHash("localhost")

	for _, tc := range []struct {
		file      string
		rpIDHash  [32]byte
		flags     AuthFlags
		signCount uint32
		aaguid    [16]byte
		credID    []byte
		keyX      string
		ext       map[string]any
	}{
		{file: "python-fido2/authdata_mc.hex", rpIDHash: pf2Hash, flags: FlagUP | FlagAT, signCount: 28,
			aaguid: yubicoAAGUID, credID: pf2CredID, keyX: "643566c206dd00227005fa5de69320616ca268043a38f08bde2e9dc45a5cafaf"},
		{file: "python-fido2/authdata_ga.hex", rpIDHash: pf2Hash, flags: FlagUP, signCount: 29},
		{file: "webauthn4j/authdata_basic.hex", rpIDHash: localhost, flags: FlagUP, signCount: 325},
		{file: "webauthn4j/authdata_credprotect.hex", rpIDHash: localhost, flags: FlagUP | FlagUV | FlagAT | FlagED, signCount: 162,
			aaguid: [16]byte(unhex("95442b2ef15e4defb270efb106facb4e")),
			credID: unhex("e256ffbc2076acf614753f25df5de7b6597c61b3305770c6330306457346b1e600c03030"),
			keyX:   "ce747ede833bbac106014f16df34bfd22e1162aa028e9c763ae2f0517ec4ed24",
			ext:    map[string]any{"credProtect": int64(2)}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in := golden(t, tc.file)
			ad, err := ParseAuthData(in)
			if err != nil {
				t.Fatal(err)
			}
			if ad.RPIDHash != tc.rpIDHash || ad.Flags != tc.flags || ad.SignCount != tc.signCount {
				t.Errorf("header = %x %v %d", ad.RPIDHash, ad.Flags, ad.SignCount)
			}
			if got := ad.Marshal(); !bytes.Equal(got, in) {
				t.Errorf("round trip = %x\nwant        %x", got, in)
			}
			if (ad.Attested != nil) != (tc.credID != nil) {
				t.Fatalf("attested credential data present = %v", ad.Attested != nil)
			}
			if ad.Attested != nil {
				if ad.Attested.AAGUID != tc.aaguid || !bytes.Equal(ad.Attested.CredentialID, tc.credID) {
					t.Errorf("attested = %x %x", ad.Attested.AAGUID, ad.Attested.CredentialID)
				}
				key, err := ParseCOSEKey(ad.Attested.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				if key.Alg != AlgES256 || !bytes.Equal(mustBytes(key.Public.(*ecdsa.PublicKey))[1:33], bigFromHex(tc.keyX).FillBytes(make([]byte, 32))) {
					t.Errorf("key = %+v", key)
				}
			}
			if tc.ext == nil {
				if ad.Extensions != nil {
					t.Errorf("extensions = %x", ad.Extensions)
				}
				return
			}
			var ext map[string]any
			if err := Unmarshal(ad.Extensions, &ext); err != nil || !reflect.DeepEqual(ext, tc.ext) {
				t.Errorf("extensions = %v (%v), want %v", ext, err, tc.ext)
			}
		})
	}
}

func TestAuthDataParseErrors(t *testing.T) {
	hdr := func(flags byte) []byte { return cat(exampleRPIDHash, []byte{flags}, unhex("00000001")) }
	credHdr := func(n int) []byte { return binary.BigEndian.AppendUint16(bytes.Clone(testAAGUID), uint16(n)) }
	longID := func(n int) []byte { return cat(hdr(0x41), credHdr(n), make([]byte, n), generatorCOSE) }

	for _, tc := range []struct {
		name, msg string
		in        []byte
	}{
		{"empty", "too short", nil},
		{"one byte", "too short", []byte{0}},
		{"36 bytes", "too short", adAssertion[:36]},
		{"hash only", "too short", exampleRPIDHash},
		{"AT without data", "attested", hdr(0x41)},
		{"AT with AAGUID only", "attested", cat(hdr(0x41), testAAGUID)},
		{"AT with half a length", "attested", cat(hdr(0x41), testAAGUID, []byte{0})},
		{"AT credential ID longer than data", "attested", cat(hdr(0x41), credHdr(16), testCredID[:15])},
		{"AT empty credential ID", "credential ID length 0", cat(hdr(0x41), credHdr(0), generatorCOSE)},
		{"AT credential ID of 1024 bytes", "credential ID length 1024", longID(1024)},
		{"AT credential ID of 65535 bytes", "credential ID length 65535", longID(65535)},
		{"AT without key", "public key", cat(hdr(0x41), credHdr(16), testCredID)},
		{"AT truncated key", "public key", cat(hdr(0x41), credHdr(16), testCredID, generatorCOSE[:40])},
		{"AT key indefinite length", "public key", cat(hdr(0x41), credHdr(16), testCredID, unhex("bf 01 02 ff"))},
		{"AT key tagged", "public key", cat(hdr(0x41), credHdr(16), testCredID, unhex("d8 18 41 00"))},
		{"ED without extensions", "extensions", hdr(0x81)},
		{"ED extensions not a map", "extensions", cat(hdr(0x81), unhex("01"))},
		{"ED extensions an array", "extensions", cat(hdr(0x81), unhex("80"))},
		{"ED extensions null", "extensions", cat(hdr(0x81), unhex("f6"))},
		{"ED extensions with int keys", "extensions", cat(hdr(0x81), unhex("a1 01 02"))},
		{"ED extensions duplicate keys", "extensions", cat(hdr(0x81), unhex("a2 6161 01 6161 02"))},
		{"ED extensions indefinite", "extensions", cat(hdr(0x81), unhex("bf 6161 01 ff"))},
		{"ED extensions truncated", "extensions", cat(hdr(0x81), credProtectExt[:5])},
		{"ED extensions then trailing", "extensions", cat(hdr(0x81), credProtectExt, []byte{0})},
		{"AT+ED without extensions", "extensions", cat(hdr(0xc1), credHdr(16), testCredID, generatorCOSE)},
		{"trailing byte", "trailing", cat(adAssertion, []byte{0})},
		{"extensions without ED", "trailing", cat(hdr(0x01), credProtectExt)},
		{"attested data without AT", "trailing", cat(hdr(0x01), credHdr(16), testCredID, generatorCOSE)},
		{"AT then extensions without ED", "trailing", cat(hdr(0x41), credHdr(16), testCredID, generatorCOSE, credProtectExt)},
		{"AT then trailing", "trailing", cat(adAttested, []byte{0})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ad, err := ParseAuthData(tc.in)
			if err == nil {
				t.Fatalf("ParseAuthData(%x) = %+v, want error", tc.in, ad)
			}
			if ad != nil {
				t.Errorf("returned %+v with the error", ad)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "authenticator data") {
				t.Errorf("error %q does not say what failed", err)
			}
		})
	}
}

func TestAuthDataCredentialIDLimits(t *testing.T) {
	for _, n := range []int{1, 255, 256, MaxCredentialIDLength} {
		id := bytes.Repeat([]byte{0xab}, n)
		in := cat(exampleRPIDHash, unhex("41 00000000"), testAAGUID, binary.BigEndian.AppendUint16(nil, uint16(n)), id, generatorCOSE)
		ad, err := ParseAuthData(in)
		if err != nil {
			t.Fatalf("credential ID of %d bytes: %v", n, err)
		}
		if !bytes.Equal(ad.Attested.CredentialID, id) || !bytes.Equal(ad.Marshal(), in) {
			t.Errorf("credential ID of %d bytes does not round-trip", n)
		}
	}
}

func TestAuthDataMarshalDerivesFlags(t *testing.T) {
	hash := RPIDHash("example.com")
	// AT and ED in Flags are ignored; the parts present decide.
	ad := AuthData{RPIDHash: hash, Flags: FlagUP | FlagAT | FlagED, SignCount: 1}
	out := ad.Marshal()
	if len(out) != 37 || AuthFlags(out[32]) != FlagUP {
		t.Errorf("flags = %v, len %d", AuthFlags(out[32]), len(out))
	}
	ad = AuthData{RPIDHash: hash, Flags: FlagBE | FlagBS, Extensions: credProtectExt}
	out = ad.Marshal()
	if AuthFlags(out[32]) != FlagBE|FlagBS|FlagED {
		t.Errorf("flags = %v", AuthFlags(out[32]))
	}
	if back, err := ParseAuthData(out); err != nil || back.Flags != FlagBE|FlagBS|FlagED {
		t.Errorf("re-parse: %v, %v", back, err)
	}
	// Counter is big-endian.
	ad = AuthData{RPIDHash: hash, SignCount: 0xdeadbeef}
	if got := ad.Marshal()[33:]; !bytes.Equal(got, unhex("deadbeef")) {
		t.Errorf("sign count bytes %x", got)
	}
}

func TestAuthFlagsString(t *testing.T) {
	for f, want := range map[AuthFlags]string{
		0: "none", FlagUP: "UP", FlagUP | FlagUV: "UP,UV", 0xdd: "UP,UV,BE,BS,AT,ED",
		0x22:            "none", // RFU bits are not named
		FlagAT | FlagUP: "UP,AT",
	} {
		if got := f.String(); got != want {
			t.Errorf("AuthFlags(0x%02x) = %q, want %q", byte(f), got, want)
		}
	}
	if !(FlagUP | FlagUV).Has(FlagUV) || FlagUP.Has(FlagUP|FlagUV) {
		t.Error("Has")
	}
}

func TestResponseAuthDataHelpers(t *testing.T) {
	var mc MakeCredentialResponse
	if err := Unmarshal(golden(t, "python-fido2/mc_resp.hex"), &mc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mc.AuthData, golden(t, "python-fido2/authdata_mc.hex")) || mc.Fmt != FormatPacked {
		t.Fatalf("makeCredential response %+v", mc)
	}
	id, key, err := mc.CredentialKey()
	if err != nil || len(id) != 64 || key.Alg != AlgES256 {
		t.Fatalf("CredentialKey = %x, %+v, %v", id, key, err)
	}
	ad, err := mc.ParseAuthData()
	if err != nil || ad.SignCount != 28 {
		t.Fatalf("ParseAuthData = %+v, %v", ad, err)
	}

	var ga GetAssertionResponse
	if err := Unmarshal(golden(t, "python-fido2/ga_resp.hex"), &ga); err != nil {
		t.Fatal(err)
	}
	if ga.Credential == nil || !bytes.Equal(ga.Credential.ID, id) || ga.Credential.Type != CredentialType {
		t.Errorf("assertion credential %+v", ga.Credential)
	}
	if ad, err := ga.ParseAuthData(); err != nil || ad.SignCount != 29 || ad.Flags != FlagUP {
		t.Errorf("assertion authData %+v, %v", ad, err)
	}
	if got := mustCBOR(t, ga); !bytes.Equal(got, golden(t, "python-fido2/ga_resp.hex")) {
		t.Errorf("getAssertion response does not re-encode to the same bytes: %x", got)
	}

	// An assertion's authenticator data has no credential to extract.
	mc.AuthData = golden(t, "python-fido2/authdata_ga.hex")
	if _, _, err := mc.CredentialKey(); err == nil {
		t.Error("CredentialKey on authData without AT succeeded")
	}
}
