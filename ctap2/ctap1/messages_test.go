package ctap1

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

// golden reads a hex vector of the ctap2 package's testdata (# comments allowed).
func golden(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile("../testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var digits strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			digits.WriteString(line)
		}
	}
	return unhex(digits.String())
}

// The YubiKey registration of python-fido2's test_fido_u2f_attestation.
var (
	yubikeyApp       = [32]byte(unhex("1194228DA8FDBDEEFD261BD7B6595CFD70A50D70C6407BCF013DE96D4EFB17DE"))
	yubikeyChallenge = [32]byte(unhex("687134968222EC17202E42505F8ED2B16AE22F16BB05B88C25DB9E602645F141"))
)

func TestRegisterResponseRealYubiKey(t *testing.T) {
	raw := golden(t, "python-fido2/u2f_register.hex")
	r, err := ParseRegisterResponse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.PublicKey) != 65 || r.PublicKey[0] != 4 || len(r.KeyHandle) != int(raw[66]) {
		t.Errorf("public key %d bytes, key handle %d bytes", len(r.PublicKey), len(r.KeyHandle))
	}
	cert, err := x509.ParseCertificate(r.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "Yubico U2F EE Serial 249182324770" {
		t.Errorf("certificate subject %v", cert.Subject)
	}
	req := &RegisterRequest{Challenge: yubikeyChallenge, Application: yubikeyApp}
	if err := r.Verify(req); err != nil {
		t.Errorf("Verify: %v", err)
	}
	other := *req
	other.Challenge[0] ^= 1
	if err := r.Verify(&other); !errors.Is(err, ctap2.ErrBadSignature) {
		t.Errorf("Verify with another challenge: %v", err)
	}
	again, err := r.Marshal()
	if err != nil || !bytes.Equal(again, raw) {
		t.Errorf("Marshal does not round-trip: %v", err)
	}

	mc, err := r.MakeCredentialResponse(yubikeyApp)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Fmt != ctap2.FormatFIDOU2F {
		t.Errorf("fmt %q", mc.Fmt)
	}
	res, err := mc.VerifyAttestation(yubikeyChallenge[:])
	if err != nil {
		t.Fatalf("VerifyAttestation: %v", err)
	}
	if res.Type != ctap2.AttestationBasic || len(res.Chain) != 1 {
		t.Errorf("result %+v", res)
	}
	ad, err := mc.ParseAuthData()
	if err != nil {
		t.Fatal(err)
	}
	if ad.RPIDHash != yubikeyApp || ad.Flags != ctap2.FlagUP|ctap2.FlagAT || ad.SignCount != 0 || ad.Attested.AAGUID != [16]byte{} {
		t.Errorf("authData %+v", ad)
	}
	id, key, err := mc.CredentialKey()
	if err != nil || !bytes.Equal(id, r.KeyHandle) || key.Alg != ctap2.AlgES256 {
		t.Errorf("credential %x %+v %v", id, key, err)
	}
	if ecPub := key.Public.(*ecdsa.PublicKey); !bytes.Equal(mustBytes(ecPub.Bytes()), r.PublicKey) {
		t.Error("COSE key is not the U2F point")
	}
	if _, err := mc.VerifyAttestation(other.Challenge[:]); err == nil {
		t.Error("attestation verified for another challenge")
	}
}

func mustBytes(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestParseRegisterResponseRejects(t *testing.T) {
	raw := golden(t, "python-fido2/u2f_register.hex")
	khEnd := 67 + int(raw[66])
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"reserved byte", append([]byte{0x04}, raw[1:]...)},
		{"truncated point", raw[:40]},
		{"point off the curve", append(append(append([]byte{}, raw[:2]...), raw[2]^1), raw[3:]...)},
		{"zero key handle length", append(append(append([]byte{}, raw[:66]...), 0), raw[67:]...)},
		{"truncated certificate", raw[:khEnd+100]},
		{"no signature", raw[:len(raw)-71]},
		{"trailing byte", append(append([]byte{}, raw...), 0)},
		{"two signatures", append(append([]byte{}, raw...), 0x30, 0x00)},
	} {
		if _, err := ParseRegisterResponse(tc.b); err == nil {
			t.Errorf("%s: parsed", tc.name)
		}
	}
}

func TestRegisterRequest(t *testing.T) {
	r := RegisterRequest{Challenge: [32]byte{1}, Application: [32]byte{2}}
	b := r.Marshal()
	if len(b) != 64 || b[0] != 1 || b[32] != 2 {
		t.Fatalf("%x", b)
	}
	got, err := ParseRegisterRequest(b)
	if err != nil || *got != r {
		t.Errorf("round trip: %+v %v", got, err)
	}
	for _, n := range []int{0, 63, 65} {
		if _, err := ParseRegisterRequest(make([]byte, n)); !errors.Is(err, SWWrongLength) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
}

func TestAuthenticateRequest(t *testing.T) {
	r := AuthenticateRequest{Control: EnforcePresence, Challenge: [32]byte{1}, Application: [32]byte{2}, KeyHandle: []byte{7, 8, 9}}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 68 || b[64] != 3 {
		t.Fatalf("%x", b)
	}
	got, err := ParseAuthenticateRequest(byte(EnforcePresence), b)
	if err != nil || got.Control != r.Control || got.Challenge != r.Challenge || got.Application != r.Application || !bytes.Equal(got.KeyHandle, r.KeyHandle) {
		t.Errorf("round trip: %+v %v", got, err)
	}
	for _, bad := range [][]byte{b[:64], b[:67], append(append([]byte{}, b...), 0), nil} {
		if _, err := ParseAuthenticateRequest(3, bad); !errors.Is(err, SWWrongLength) {
			t.Errorf("%d bytes: %v", len(bad), err)
		}
	}
	// An empty key handle has a valid length; the key answers 0x6A80 for it.
	if got, err := ParseAuthenticateRequest(7, b[:65:65]); err == nil {
		t.Errorf("L=3 with no handle parsed: %+v", got)
	}
	empty := append(append([]byte{}, b[:64]...), 0)
	if got, err := ParseAuthenticateRequest(7, empty); err != nil || len(got.KeyHandle) != 0 {
		t.Errorf("empty key handle: %+v %v", got, err)
	}
	r.KeyHandle = make([]byte, 256)
	if _, err := r.Marshal(); err == nil {
		t.Error("256-byte key handle encoded")
	}
}

// signedAuthentication makes an AUTHENTICATE answer with key.
func signedAuthentication(t testing.TB, key *ecdsa.PrivateKey, app, challenge [32]byte, up byte, counter uint32) *AuthenticateResponse {
	t.Helper()
	sig, err := ctap2.Sign(ctap2.AlgES256, key, AuthenticateSignedData(app, up, counter, challenge), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &AuthenticateResponse{UserPresence: up, Counter: counter, Signature: sig}
}

func TestAuthenticateResponseAsAssertion(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	app, challenge := [32]byte{0xaa}, [32]byte{0xcc}
	for _, up := range []byte{0x01, 0x00} {
		r := signedAuthentication(t, key, app, challenge, up, 0x01020304)
		b := r.Marshal()
		if b[0] != up || !bytes.Equal(b[1:5], []byte{1, 2, 3, 4}) {
			t.Fatalf("%x", b)
		}
		got, err := ParseAuthenticateResponse(b)
		if err != nil {
			t.Fatal(err)
		}
		ga := got.GetAssertionResponse(app, []byte{5, 6})
		ad, err := ga.ParseAuthData()
		if err != nil {
			t.Fatal(err)
		}
		if ad.RPIDHash != app || ad.Flags != ctap2.AuthFlags(up) || ad.SignCount != 0x01020304 || ad.Attested != nil {
			t.Errorf("authData %+v", ad)
		}
		if !bytes.Equal(ga.Credential.ID, []byte{5, 6}) || ga.Credential.Type != ctap2.CredentialType {
			t.Errorf("credential %+v", ga.Credential)
		}
		if err := ga.Verify(&ctap2.COSEKey{Alg: ctap2.AlgES256, Public: &key.PublicKey}, challenge[:]); err != nil {
			t.Errorf("UP %d: assertion does not verify as CTAP2: %v", up, err)
		}
	}
	good := signedAuthentication(t, key, app, challenge, 1, 1).Marshal()
	for _, bad := range [][]byte{
		good[:4],
		good[:5],
		append([]byte{0x41}, good[1:]...), // reserved bits in the UP byte
		append(append([]byte{}, good...), 0),
		good[:len(good)-1],
	} {
		if r, err := ParseAuthenticateResponse(bad); err == nil {
			t.Errorf("%x parsed as %+v", bad, r)
		}
	}
}

// selfSignedU2F makes a P-256 attestation key and certificate for fake keys in tests.
func selfSignedU2F(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fake U2F"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Unix(1<<32, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}
