package ctap2

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"reflect"
	"testing"
)

// Fuzz targets. Each has a round-trip property on top of "no panics"; the seed corpus
// (f.Add and testdata/fuzz/) runs in every plain `go test`.

func FuzzParseAuthData(f *testing.F) {
	for _, s := range [][]byte{adAssertion, adAttested, adAttestedExt, adAssertionExt, exampleRPIDHash} {
		f.Add(s)
	}
	for _, name := range []string{"python-fido2/authdata_mc.hex", "python-fido2/authdata_ga.hex",
		"webauthn4j/authdata_basic.hex", "webauthn4j/authdata_credprotect.hex"} {
		f.Add(golden(f, name))
	}
	f.Add(cat(exampleRPIDHash, unhex("81 00000000 f6")))
	f.Add(cat(exampleRPIDHash, unhex("41 00000000"), testAAGUID, unhex("0000")))
	f.Fuzz(func(t *testing.T, data []byte) {
		ad, err := ParseAuthData(data)
		if err != nil {
			if ad != nil {
				t.Fatal("non-nil AuthData with an error")
			}
			return
		}
		if out := ad.Marshal(); !bytes.Equal(out, data) {
			t.Fatalf("round trip:\n in  %x\n out %x", data, out)
		}
		if (ad.Attested != nil) != ad.Flags.Has(FlagAT) || (ad.Extensions != nil) != ad.Flags.Has(FlagED) {
			t.Fatalf("flags %v disagree with the parts present", ad.Flags)
		}
		if ad.Attested != nil {
			if err := Wellformed(ad.Attested.PublicKey); err != nil {
				t.Fatalf("credential public key is not one CBOR item: %v", err)
			}
			_, _ = ParseCOSEKey(ad.Attested.PublicKey) // must not panic
		}
		again, err := ParseAuthData(ad.Marshal())
		if err != nil || !reflect.DeepEqual(again, ad) {
			t.Fatalf("re-parse: %+v, %v", again, err)
		}
	})
}

func FuzzParseCOSEKey(f *testing.F) {
	for i, alg := range []COSEAlgorithm{AlgES256, AlgES384, AlgEdDSA, AlgECDHESHKDF256} {
		f.Add(coseBytes(f, &COSEKey{Alg: alg, Public: testKey(f, alg, byte(i)).Public()}))
	}
	odd2048 := append([]byte{0x80}, make([]byte, 255)...)
	odd2048[255] = 1
	f.Add(mustCBOR(f, coseRSA{Kty: ktyRSA, Alg: AlgRS256, N: odd2048, E: []byte{1, 0, 1}}))
	f.Add(generatorCOSE)
	f.Add(unhex("a4 01 01 03 27 20 06 21 5820" + "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"))
	f.Add(unhex("a0"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseCOSEKey(data)
		if err != nil {
			return
		}
		enc, err := k.Marshal()
		if err != nil {
			t.Fatalf("parsed key does not marshal: %v", err)
		}
		if err := CheckCanonical(enc); err != nil {
			t.Fatal(err)
		}
		k2, err := ParseCOSEKey(enc)
		if err != nil {
			t.Fatalf("re-parse of %x: %v", enc, err)
		}
		if k2.Alg != k.Alg || !k2.Public.(publicKey).Equal(k.Public) {
			t.Fatalf("round trip changed the key: %+v -> %+v", k, k2)
		}
		if enc2, err := k2.Marshal(); err != nil || !bytes.Equal(enc2, enc) {
			t.Fatalf("second encoding %x differs from %x (%v)", enc2, enc, err)
		}
		if p, err := k.PEM(); err != nil || p == "" {
			t.Fatalf("PEM: %v", err)
		}
		// Verification with a fuzzed key fails cleanly.
		if err := k.Verify(data, data[:min(len(data), ed25519.SignatureSize)]); err == nil {
			t.Log("a key verified its own encoding as a signature")
		}
	})
}

func FuzzUnmarshalInfo(f *testing.F) {
	f.Add(golden(f, "python-fido2/info.hex"))
	f.Add(golden(f, "python-fido2/info_extra_key.hex"))
	f.Add(cat(unhex("a3 01 81 68 4649444f5f325f30 03 50"), testAAGUID, unhex("05 1b ffffffffffffffff")))
	remaining := uint(25)
	f.Add(mustCBOR(f, Info{
		Versions: []string{"FIDO_2_0", "FIDO_2_1", "FIDO_2_2"}, Extensions: []string{"credProtect", "hmac-secret", "largeBlobKey"},
		AAGUID: testAAGUID, Options: map[string]bool{"rk": true, "clientPin": true, "uv": false, "pinUvAuthToken": true},
		MaxMsgSize: 7609, PinUvAuthProtocols: []uint{2, 1}, MaxCredentialCountInList: 8, MaxCredentialIDLength: 128,
		Transports: []string{"usb", "nfc"}, Algorithms: []CredentialParam{{CredentialType, AlgES256}, {CredentialType, AlgEdDSA}},
		MaxSerializedLargeBlobArray: 1024, ForcePINChange: true, MinPINLength: 6, FirmwareVersion: 0x050700,
		MaxCredBlobLength: 32, Certifications: map[string]uint{"FIDO": 2}, RemainingDiscoverableCredentials: &remaining,
		AttestationFormats: []string{"packed", "none"}, PINComplexityPolicy: Bool(false), AuthenticatorConfigCommands: []uint{1, 2, 3},
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var info Info
		if err := Unmarshal(data, &info); err != nil {
			return
		}
		_, _ = info.Option("up")
		if info.MessageSize() <= 0 {
			t.Fatalf("MessageSize() = %d for maxMsgSize %d", info.MessageSize(), info.MaxMsgSize)
		}
		checkReencoding(t, data, &info, func() any { return new(Info) })
	})
}

// checkReencoding is the round-trip property of decoded responses: re-encoding is
// canonical and stable, and when the input was canonical, every value re-encoding emits
// is the input's own (unknown keys and zero values may be dropped, nothing is changed or
// invented).
func checkReencoding(t *testing.T, data []byte, v any, fresh func() any) {
	t.Helper()
	enc, err := Marshal(v)
	if err != nil {
		t.Fatalf("decoded value does not encode: %v", err)
	}
	if err := CheckCanonical(enc); err != nil {
		t.Fatalf("re-encoding is not canonical: %v", err)
	}
	v2 := fresh()
	if err := Unmarshal(enc, v2); err != nil {
		t.Fatalf("re-encoding %x does not decode: %v", enc, err)
	}
	if enc2, err := Marshal(v2); err != nil || !bytes.Equal(enc2, enc) {
		t.Fatalf("encoding is not stable:\n %x\n %x (%v)", enc, enc2, err)
	}
	if CheckCanonical(data) != nil {
		return
	}
	var orig, got any
	if err := Unmarshal(data, &orig); err != nil {
		t.Fatal(err)
	}
	if err := Unmarshal(enc, &got); err != nil {
		t.Fatal(err)
	}
	if err := keptValues(orig, got, "$"); err != nil {
		t.Fatalf("re-encoding changed a value: %v\n in  %x\n out %x", err, data, enc)
	}
}

func keptValues(orig, got any, path string) error {
	if orig == nil && isZero(got) {
		return nil // CBOR null decodes as "absent" and comes back as zero values
	}
	switch g := got.(type) {
	case map[any]any:
		o, ok := orig.(map[any]any)
		if !ok {
			return fmt.Errorf("%s: map, was %T", path, orig)
		}
		for k, gv := range g {
			p := fmt.Sprintf("%s[%v]", path, k)
			ov, present := o[k]
			if !present {
				if !isZero(gv) {
					return fmt.Errorf("%s: invented %v", p, gv)
				}
				continue
			}
			if err := keptValues(ov, gv, p); err != nil {
				return err
			}
		}
		return nil
	case []any:
		o, ok := orig.([]any)
		if !ok || len(o) != len(g) {
			return fmt.Errorf("%s: array of %d, was %v", path, len(g), orig)
		}
		for i := range g {
			if err := keptValues(o[i], g[i], fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	}
	if b, ok := got.([]byte); ok && sameBytes(orig, b) {
		// Known laxity of fxamacker/cbor (no option turns it off): an array of small
		// unsigned integers decodes into a []byte field. The values are kept.
		return nil
	}
	if !reflect.DeepEqual(orig, got) {
		return fmt.Errorf("%s: %#v, was %#v", path, got, orig)
	}
	return nil
}

func sameBytes(orig any, b []byte) bool {
	a, ok := orig.([]any)
	if !ok || len(a) != len(b) {
		return false
	}
	for i, e := range a {
		if n, ok := e.(int64); !ok || n != int64(b[i]) {
			return false
		}
	}
	return true
}

// isZero reports whether v is a zero value, or a map whose values are all zero (a
// struct encoded from nothing).
func isZero(v any) bool {
	if v == nil {
		return true
	}
	if m, ok := v.(map[any]any); ok {
		for _, e := range m {
			if !isZero(e) {
				return false
			}
		}
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.String:
		return rv.Len() == 0
	}
	return rv.IsZero()
}

// FuzzDecodeResponse feeds whole replies (status byte + body) to the Client for getInfo,
// makeCredential and getAssertion, then runs the helpers a caller would run on them.
func FuzzDecodeResponse(f *testing.F) {
	ok := func(b []byte) []byte { return cat([]byte{0}, b) }
	f.Add(byte(0), ok(golden(f, "python-fido2/info.hex")))
	f.Add(byte(1), ok(golden(f, "python-fido2/mc_resp.hex")))
	f.Add(byte(1), ok(golden(f, "python-fido2/mc_resp_packed_yubikey.hex")))
	f.Add(byte(2), ok(golden(f, "python-fido2/ga_resp.hex")))
	f.Add(byte(2), ok(assertionBody(f, 1, 2, &UserEntity{ID: []byte{1}, Name: "a", DisplayName: "A"})))
	f.Add(byte(1), ok(mustCBOR(f, MakeCredentialResponse{Fmt: FormatNone, AuthData: adAttestedExt, AttStmt: unhex("a0"),
		EpAtt: true, LargeBlobKey: make([]byte, 32), UnsignedExtensionOutputs: unhex("a1 6161 f5")})))
	f.Add(byte(0), []byte{byte(ErrInvalidCBOR)})
	f.Add(byte(2), []byte{})
	verifyKey := &COSEKey{Alg: AlgES256, Public: testKey(f, AlgES256, 1).Public()}
	f.Fuzz(func(t *testing.T, which byte, reply []byte) {
		c := NewClient(new(fakeDevice).raw(reply))
		ctx := context.Background()
		switch which % 3 {
		case 0:
			info, err := c.GetInfo(ctx)
			if err != nil {
				return
			}
			if info.MessageSize() <= 0 {
				t.Fatalf("MessageSize() = %d", info.MessageSize())
			}
			checkReencoding(t, reply[1:], info, func() any { return new(Info) })
		case 1:
			resp, err := c.MakeCredential(ctx, &MakeCredentialRequest{ClientDataHash: make([]byte, 32)})
			if err != nil {
				return
			}
			_, _ = resp.ParseAuthData()
			_, _, _ = resp.CredentialKey()
			_, _ = resp.VerifyAttestation(make([]byte, 32))
			checkReencoding(t, reply[1:], resp, func() any { return new(MakeCredentialResponse) })
		case 2:
			resp, err := c.GetAssertion(ctx, &GetAssertionRequest{RPID: "example.com", ClientDataHash: make([]byte, 32)})
			if err != nil {
				return
			}
			_, _ = resp.ParseAuthData()
			_ = resp.Verify(verifyKey, make([]byte, 32))
			checkReencoding(t, reply[1:], resp, func() any { return new(GetAssertionResponse) })
		}
	})
}

// FuzzVerifyAttestation: any statement, authenticator data and format give a result or
// an error, never a panic; a result is only ever reported with an error-free chain.
func FuzzVerifyAttestation(f *testing.F) {
	var mc MakeCredentialResponse
	if err := Unmarshal(golden(f, "python-fido2/mc_resp_packed_yubikey.hex"), &mc); err != nil {
		f.Fatal(err)
	}
	f.Add(mc.Fmt, []byte(mc.AttStmt), mc.AuthData, unhex("985B6187D042FB1258892ED637CEC88617DDF5F6632351A545617AA2B75261BF"))
	priv, authData := credential(f, AlgES256, attAAGUID)
	f.Add(FormatPacked, mustCBOR(f, AttStmt{Alg: AlgES256, Sig: signAtt(f, AlgES256, priv, authData, attCDH[:])}), authData, attCDH[:])
	f.Add(FormatNone, unhex("a0"), authData, attCDH[:])
	appParam := unhex("1194228DA8FDBDEEFD261BD7B6595CFD70A50D70C6407BCF013DE96D4EFB17DE")
	pub, kh, cert, sig := u2fRegistration(f, golden(f, "python-fido2/u2f_register.hex"))
	f.Add(FormatFIDOU2F, mustCBOR(f, AttStmt{Sig: sig, X5C: [][]byte{cert}}), u2fAuthData(f, appParam, pub, kh),
		unhex("687134968222EC17202E42505F8ED2B16AE22F16BB05B88C25DB9E602645F141"))
	f.Fuzz(func(t *testing.T, format string, attStmt, authData, cdh []byte) {
		res, err := VerifyAttestation(format, attStmt, authData, cdh)
		if (res == nil) == (err == nil) {
			t.Fatalf("result %+v with error %v", res, err)
		}
		if err == nil && res.Type == AttestationBasic && len(res.Chain) == 0 {
			t.Fatal("basic attestation without a certificate")
		}
	})
}
