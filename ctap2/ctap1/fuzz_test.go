package ctap1

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
)

// FuzzParseAPDU: no panic; a parsed APDU re-encodes to the same bytes (except the
// zero-Lc-with-Le form, which re-encodes as case 2E) and re-parses to the same
// fields; a refused one is always the 0x6700 status.
func FuzzParseAPDU(f *testing.F) {
	for _, s := range []string{
		"00030000", "0003000000", "00030000000000", "000300000000000000",
		"00010000020102", "0001000002010200", "000100000000020102", "0001000000000201020000",
		"00020700000001ee0000", "000100", "00010000ff", "0001000000", "000100000001",
	} {
		f.Add(unhex(s))
	}
	reg, _ := HIDCommand(InsRegister, 0, 0, make([]byte, 64))
	f.Add(reg)
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAPDU(b)
		if err != nil {
			if !errors.Is(err, SWWrongLength) {
				t.Fatalf("%x: error %v is not 0x6700", b, err)
			}
			return
		}
		out, err := a.Marshal()
		if err != nil {
			t.Fatalf("%x: parsed %+v does not encode: %v", b, a, err)
		}
		lenient := len(b) == 9 && b[4] == 0 && b[5] == 0 && b[6] == 0
		if !lenient && !bytes.Equal(out, b) {
			t.Fatalf("%x re-encodes as %x", b, out)
		}
		again, err := ParseAPDU(out)
		if err != nil {
			t.Fatalf("%x: own encoding %x does not parse: %v", b, out, err)
		}
		if again.CLA != a.CLA || again.INS != a.INS || again.P1 != a.P1 || again.P2 != a.P2 ||
			!bytes.Equal(again.Data, a.Data) || again.Ne != a.Ne || again.Extended != a.Extended {
			t.Fatalf("%x: %+v re-parses as %+v", b, a, again)
		}
	})
}

// FuzzParseMessages runs every U2F message parser on the same input. Property: no
// panic; whatever parses re-encodes to exactly the input.
func FuzzParseMessages(f *testing.F) {
	f.Add(byte(3), golden(f, "python-fido2/u2f_register.hex"))
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add(byte(7), signedAuthentication(f, key, [32]byte{1}, [32]byte{2}, 1, 42).Marshal())
	req, _ := (&AuthenticateRequest{KeyHandle: []byte{1, 2, 3}}).Marshal()
	f.Add(byte(8), req)
	f.Add(byte(0), make([]byte, 64))
	f.Fuzz(func(t *testing.T, p1 byte, b []byte) {
		if r, err := ParseRegisterResponse(b); err == nil {
			if out, err := r.Marshal(); err != nil || !bytes.Equal(out, b) {
				t.Fatalf("register response %x re-encodes as %x (%v)", b, out, err)
			}
			if _, err := r.MakeCredentialResponse([32]byte{}); err != nil {
				t.Fatalf("register response %x does not convert: %v", b, err)
			}
		}
		if r, err := ParseAuthenticateResponse(b); err == nil {
			if out := r.Marshal(); !bytes.Equal(out, b) {
				t.Fatalf("authenticate response %x re-encodes as %x", b, out)
			}
			if _, err := r.GetAssertionResponse([32]byte{}, []byte{1}).ParseAuthData(); err != nil {
				t.Fatalf("authenticate response %x gives bad authData: %v", b, err)
			}
		}
		if r, err := ParseAuthenticateRequest(p1, b); err == nil {
			if out, err := r.Marshal(); err != nil || !bytes.Equal(out, b) || byte(r.Control) != p1 {
				t.Fatalf("authenticate request %x re-encodes as %x (%v)", b, out, err)
			}
		} else if !errors.Is(err, SWWrongLength) {
			t.Fatalf("authenticate request error %v is not 0x6700", err)
		}
		if r, err := ParseRegisterRequest(b); err == nil && !bytes.Equal(r.Marshal(), b) {
			t.Fatalf("register request %x does not round-trip", b)
		}
	})
}
