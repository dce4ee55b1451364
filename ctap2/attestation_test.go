package ctap2

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

var (
	attAAGUID = [16]byte(unhex("c0ffee00c0ffee00c0ffee00c0ffee00"))
	attCDH    = sha256.Sum256([]byte(`{"type":"webauthn.create","challenge":"AAAA","origin":"https://example.com","crossOrigin":false}`))
)

// credential makes a credential key and the makeCredential authenticator data for it.
func credential(t testing.TB, alg COSEAlgorithm, aaguid [16]byte) (crypto.Signer, []byte) {
	t.Helper()
	priv := testKey(t, alg, 11)
	key := coseBytes(t, &COSEKey{Alg: alg, Public: priv.Public()})
	ad := AuthData{
		RPIDHash: RPIDHash("example.com"), Flags: FlagUP | FlagUV, SignCount: 0,
		Attested: &AttestedCredentialData{AAGUID: aaguid, CredentialID: []byte("credential-id"), PublicKey: key},
	}
	return priv, ad.Marshal()
}

func signAtt(t testing.TB, alg COSEAlgorithm, priv crypto.Signer, authData []byte, cdh []byte) []byte {
	t.Helper()
	sig, err := Sign(alg, priv, cat(authData, cdh), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var serial int64

func newCA(t testing.TB) *testCA {
	t.Helper()
	key := testKey(t, AlgES256, 100)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "ctapkit test attestation root", Organization: []string{"ctapkit"}, Country: []string{"US"}},
		NotBefore:             time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2054, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert, key}
}

func aaguidExtension(aaguid []byte) pkix.Extension {
	v, err := asn1.Marshal(aaguid)
	if err != nil {
		panic(err)
	}
	return pkix.Extension{Id: oidFIDOAAGUID, Value: v}
}

// leafTemplate is a packed attestation certificate as WebAuthn §8.2.1 wants it.
func leafTemplate(aaguid [16]byte) *x509.Certificate {
	serial++
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject: pkix.Name{
			Country: []string{"US"}, Organization: []string{"ctapkit"},
			OrganizationalUnit: []string{"Authenticator Attestation"}, CommonName: "ctapkit test batch",
		},
		NotBefore:             time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2054, 1, 1, 0, 0, 0, 0, time.UTC),
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{aaguidExtension(aaguid[:])},
	}
}

func (ca *testCA) issue(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestPackedSelfAttestation(t *testing.T) {
	for _, alg := range []COSEAlgorithm{AlgES256, AlgEdDSA, AlgES384, AlgRS256} {
		t.Run(alg.String(), func(t *testing.T) {
			priv, authData := credential(t, alg, attAAGUID)
			sig := signAtt(t, alg, priv, authData, attCDH[:])
			st := mustCBOR(t, AttStmt{Alg: alg, Sig: sig})
			if !bytes.HasPrefix(st, unhex("a2 63616c67")) {
				t.Errorf("self attStmt %x: want {alg, sig}", st)
			}
			res, err := VerifyAttestation(FormatPacked, st, authData, attCDH[:])
			if err != nil {
				t.Fatal(err)
			}
			if res.Format != FormatPacked || res.Type != AttestationSelf || res.Chain != nil {
				t.Errorf("result %+v", res)
			}

			// The other client data hash: the signature no longer covers it.
			other := sha256.Sum256([]byte("other"))
			_, err = VerifyAttestation(FormatPacked, st, authData, other[:])
			if !errors.Is(err, ErrBadSignature) {
				t.Errorf("wrong client data hash: %v, want ErrBadSignature", err)
			}
			// A statement whose alg is not the credential's.
			wrongAlg := AlgEdDSA
			if alg == AlgEdDSA {
				wrongAlg = AlgES256
			}
			for _, a := range []COSEAlgorithm{wrongAlg, 0} {
				if _, err := VerifyAttestation(FormatPacked, mustCBOR(t, AttStmt{Alg: a, Sig: sig}), authData, attCDH[:]); err == nil {
					t.Errorf("statement alg %v accepted for a %v credential", a, alg)
				}
			}
			// Signature by another key of the same type.
			sig2 := signAtt(t, alg, testKey(t, alg, 12), authData, attCDH[:])
			if alg != AlgRS256 {
				_, err = VerifyAttestation(FormatPacked, mustCBOR(t, AttStmt{Alg: alg, Sig: sig2}), authData, attCDH[:])
				if !errors.Is(err, ErrBadSignature) {
					t.Errorf("foreign signature: %v", err)
				}
			}
		})
	}
}

func TestPackedX5CAttestation(t *testing.T) {
	ca := newCA(t)
	attKey := testKey(t, AlgES256, 200)
	credPriv, authData := credential(t, AlgES256, attAAGUID)
	_ = credPriv

	type variant struct {
		name    string
		tmpl    func(*x509.Certificate)
		chain   func(leaf []byte) [][]byte
		alg     COSEAlgorithm
		cdh     []byte
		errText string // "" means it must verify
	}
	good := func(*x509.Certificate) {}
	for _, v := range []variant{
		{name: "leaf and root", tmpl: good},
		{name: "leaf only", tmpl: good, chain: func(l []byte) [][]byte { return [][]byte{l} }},
		{name: "no AAGUID extension", tmpl: func(c *x509.Certificate) { c.ExtraExtensions = nil }},
		{name: "no basicConstraints", tmpl: func(c *x509.Certificate) { c.BasicConstraintsValid = false }},
		{name: "wrong signature", tmpl: good, cdh: make([]byte, 32), errText: "signature"},
		{name: "AAGUID mismatch", tmpl: func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{aaguidExtension(make([]byte, 16))}
		}, errText: "AAGUID"},
		{name: "AAGUID extension critical", tmpl: func(c *x509.Certificate) {
			e := aaguidExtension(attAAGUID[:])
			e.Critical = true
			c.ExtraExtensions = []pkix.Extension{e}
		}, errText: "critical"},
		{name: "AAGUID extension not an OCTET STRING", tmpl: func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{{Id: oidFIDOAAGUID, Value: attAAGUID[:]}}
		}, errText: "OCTET STRING"},
		{name: "AAGUID of 15 bytes", tmpl: func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{aaguidExtension(attAAGUID[:15])}
		}, errText: "AAGUID"},
		{name: "missing OU", tmpl: func(c *x509.Certificate) { c.Subject.OrganizationalUnit = nil }, errText: "OU"},
		{name: "other OU", tmpl: func(c *x509.Certificate) { c.Subject.OrganizationalUnit = []string{"Engineering"} }, errText: "OU"},
		{name: "two OUs", tmpl: func(c *x509.Certificate) {
			c.Subject.OrganizationalUnit = []string{"Authenticator Attestation", "Extra"}
		}, errText: "OU"},
		{name: "missing CN", tmpl: func(c *x509.Certificate) { c.Subject.CommonName = "" }, errText: "CN"},
		{name: "missing C", tmpl: func(c *x509.Certificate) { c.Subject.Country = nil }, errText: "C, O"},
		{name: "missing O", tmpl: func(c *x509.Certificate) { c.Subject.Organization = nil }, errText: "C, O"},
		{name: "CA=true", tmpl: func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign }, errText: "CA"},
		{name: "alg ES384 for a P-256 key", tmpl: good, alg: AlgES384, errText: "es384"},
		{name: "alg EdDSA for a P-256 key", tmpl: good, alg: AlgEdDSA, errText: "eddsa"},
		{name: "alg RS256 for a P-256 key", tmpl: good, alg: AlgRS256, errText: "rs256"},
		{name: "alg missing", tmpl: good, alg: COSEAlgorithm(0), errText: "unsupported"},
		{name: "garbage certificate", tmpl: good, chain: func([]byte) [][]byte { return [][]byte{{0x30, 0x03, 0x02, 0x01, 0x01}} }, errText: "certificate 0"},
		{name: "garbage second certificate", tmpl: good, chain: func(l []byte) [][]byte { return [][]byte{l, {0x01}} }, errText: "certificate 1"},
	} {
		t.Run(v.name, func(t *testing.T) {
			tmpl := leafTemplate(attAAGUID)
			v.tmpl(tmpl)
			leaf := ca.issue(t, tmpl, attKey.Public())
			x5c := [][]byte{leaf, ca.cert.Raw}
			if v.chain != nil {
				x5c = v.chain(leaf)
			}
			alg := AlgES256
			if v.alg != 0 || v.errText == "unsupported" {
				alg = v.alg
			}
			signed := attCDH[:]
			if v.cdh != nil {
				signed = v.cdh
			}
			sig := signAtt(t, AlgES256, attKey, authData, signed)
			st := mustCBOR(t, AttStmt{Alg: alg, Sig: sig, X5C: x5c})
			res, err := VerifyAttestation(FormatPacked, st, authData, attCDH[:])
			if v.errText == "" {
				if err != nil {
					t.Fatal(err)
				}
				if res.Type != AttestationBasic || len(res.Chain) != len(x5c) || !bytes.Equal(res.Chain[0].Raw, leaf) {
					t.Errorf("result %+v", res)
				}
				return
			}
			if err == nil {
				t.Fatalf("verified, want an error about %q", v.errText)
			}
			if !strings.Contains(err.Error(), v.errText) {
				t.Errorf("error %q does not mention %q", err, v.errText)
			}
		})
	}
}

func TestPackedX5COtherKeyTypes(t *testing.T) {
	ca := newCA(t)
	_, authData := credential(t, AlgES256, attAAGUID)
	for _, alg := range []COSEAlgorithm{AlgEdDSA, AlgRS256, AlgES384} {
		attKey := testKey(t, alg, 201)
		leaf := ca.issue(t, leafTemplate(attAAGUID), attKey.Public())
		st := mustCBOR(t, AttStmt{Alg: alg, Sig: signAtt(t, alg, attKey, authData, attCDH[:]), X5C: [][]byte{leaf}})
		if res, err := VerifyAttestation(FormatPacked, st, authData, attCDH[:]); err != nil || res.Type != AttestationBasic {
			t.Errorf("%v attestation key: %+v, %v", alg, res, err)
		}
	}
}

func TestPackedRealYubiKey(t *testing.T) {
	var mc MakeCredentialResponse
	if err := Unmarshal(golden(t, "python-fido2/mc_resp_packed_yubikey.hex"), &mc); err != nil {
		t.Fatal(err)
	}
	cdh := unhex("985B6187D042FB1258892ED637CEC88617DDF5F6632351A545617AA2B75261BF")
	res, err := mc.VerifyAttestation(cdh)
	if err != nil {
		t.Fatal(err)
	}
	if res.Type != AttestationBasic || len(res.Chain) != 1 {
		t.Fatalf("result %+v", res)
	}
	leaf := res.Chain[0]
	if leaf.Subject.OrganizationalUnit[0] != "Authenticator Attestation" || leaf.Subject.Organization[0] != "Yubico AB" {
		t.Errorf("subject %v", leaf.Subject)
	}
	// The certificate expired in 2019: ctapkit checks the statement, not validity or trust.
	if !leaf.NotAfter.Before(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("NotAfter %v", leaf.NotAfter)
	}
	if err := CheckPackedCertificate(leaf, [16]byte{}); err == nil || !strings.Contains(err.Error(), "AAGUID") {
		t.Errorf("zero AAGUID against the YubiKey certificate: %v", err)
	}

	cdh[0] ^= 1
	if _, err := mc.VerifyAttestation(cdh); !errors.Is(err, ErrBadSignature) {
		t.Errorf("altered client data hash: %v", err)
	}
	cdh[0] ^= 1
	ad := bytes.Clone(mc.AuthData)
	ad[33] ^= 1 // flags
	if _, err := VerifyAttestation(mc.Fmt, mc.AttStmt, ad, cdh); err == nil {
		t.Error("altered authenticator data verified")
	}
	// Claimed as the wrong format.
	if _, err := VerifyAttestation(FormatFIDOU2F, mc.AttStmt, mc.AuthData, cdh); err == nil {
		t.Error("packed statement verified as fido-u2f")
	}
}

func TestPackedCertificateWithoutCN(t *testing.T) {
	// python-fido2's "Yubico Test" certificate has C, O and OU but no CN.
	var mc MakeCredentialResponse
	if err := Unmarshal(golden(t, "python-fido2/mc_resp.hex"), &mc); err != nil {
		t.Fatal(err)
	}
	var st AttStmt
	if err := Unmarshal(mc.AttStmt, &st); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(st.X5C[0])
	if err != nil {
		t.Fatal(err)
	}
	aaguid := [16]byte(unhex("f8a011f38c0a4d15800617111f9edc7d"))
	if err := CheckPackedCertificate(cert, aaguid); err == nil || !strings.Contains(err.Error(), "CN") {
		t.Errorf("CheckPackedCertificate = %v, want a missing-CN error", err)
	}
}

func TestNoneAttestation(t *testing.T) {
	_, authData := credential(t, AlgES256, [16]byte{})
	res, err := VerifyAttestation(FormatNone, unhex("a0"), authData, attCDH[:])
	if err != nil || res.Type != AttestationNone || res.Format != FormatNone {
		t.Fatalf("none: %+v, %v", res, err)
	}
	// AttStmt{} encodes to the empty map too.
	if got := mustCBOR(t, AttStmt{}); !bytes.Equal(got, unhex("a0")) {
		t.Errorf("AttStmt{} = %x", got)
	}
	for name, st := range map[string][]byte{
		"with sig":  mustCBOR(t, AttStmt{Sig: []byte{1}}),
		"with alg":  mustCBOR(t, AttStmt{Alg: AlgES256}),
		"unknown":   unhex("a1 6161 01"),
		"null":      unhex("f6"),
		"array":     unhex("80"),
		"empty":     nil,
		"truncated": unhex("a1"),
	} {
		if _, err := VerifyAttestation(FormatNone, st, authData, attCDH[:]); err == nil {
			t.Errorf("none with statement %s (%x) accepted", name, st)
		}
	}
}

func TestAttestationInputErrors(t *testing.T) {
	priv, authData := credential(t, AlgES256, attAAGUID)
	st := mustCBOR(t, AttStmt{Alg: AlgES256, Sig: signAtt(t, AlgES256, priv, authData, attCDH[:])})
	if _, err := VerifyAttestation(FormatPacked, st, authData, attCDH[:]); err != nil {
		t.Fatal(err)
	}

	assertion := (&AuthData{RPIDHash: RPIDHash("example.com"), Flags: FlagUP}).Marshal()
	badKey := (&AuthData{RPIDHash: RPIDHash("example.com"), Attested: &AttestedCredentialData{
		CredentialID: []byte{1}, PublicKey: unhex("a2 01 02 03 26")}}).Marshal()
	for name, tc := range map[string]struct {
		format       string
		st, authData []byte
	}{
		"unknown format":         {"tpm", st, authData},
		"empty format":           {"", st, authData},
		"format in upper case":   {"PACKED", st, authData},
		"no attested credential": {FormatPacked, st, assertion},
		"bad credential key":     {FormatPacked, st, badKey},
		"truncated authData":     {FormatPacked, st, authData[:40]},
		"statement not a map":    {FormatPacked, unhex("01"), authData},
		"statement wrong types":  {FormatPacked, unhex("a1 63616c67 6161"), authData},
		"statement trailing":     {FormatPacked, append(bytes.Clone(st), 0), authData},
		"statement with tag":     {FormatPacked, unhex("a1 63736967 d8 40 41 00"), authData},
		"x5c not an array":       {FormatPacked, unhex("a1 63783563 41 00"), authData},
	} {
		if res, err := VerifyAttestation(tc.format, tc.st, tc.authData, attCDH[:]); err == nil {
			t.Errorf("%s: verified as %+v", name, res)
		}
	}
}

// u2fRegistration splits a U2F REGISTER response (FIDO U2F Raw Message Formats §4.3).
func u2fRegistration(t testing.TB, b []byte) (pub, keyHandle, cert, sig []byte) {
	t.Helper()
	if len(b) < 67 || b[0] != 0x05 {
		t.Fatal("not a U2F registration response")
	}
	pub, n := b[1:66], int(b[66])
	keyHandle, rest := b[67:67+n], b[67+n:]
	var raw asn1.RawValue
	sig, err := asn1.Unmarshal(rest, &raw)
	if err != nil {
		t.Fatal(err)
	}
	return pub, keyHandle, raw.FullBytes, sig
}

// u2fAuthData builds authenticator data from U2F registration data the way a CTAP2 host
// does (CTAP 2.1 §10.2): flags UP|AT, counter 0, zero AAGUID, key handle as ID.
func u2fAuthData(t testing.TB, appParam, pub, keyHandle []byte) []byte {
	t.Helper()
	ecPub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
	if err != nil {
		t.Fatal(err)
	}
	ad := AuthData{RPIDHash: [32]byte(appParam), Flags: FlagUP, Attested: &AttestedCredentialData{
		CredentialID: keyHandle, PublicKey: coseBytes(t, &COSEKey{Alg: AlgES256, Public: ecPub}),
	}}
	return ad.Marshal()
}

func TestFIDOU2FAttestationRealYubiKey(t *testing.T) {
	appParam := unhex("1194228DA8FDBDEEFD261BD7B6595CFD70A50D70C6407BCF013DE96D4EFB17DE")
	challenge := unhex("687134968222EC17202E42505F8ED2B16AE22F16BB05B88C25DB9E602645F141")
	pub, kh, cert, sig := u2fRegistration(t, golden(t, "python-fido2/u2f_register.hex"))
	authData := u2fAuthData(t, appParam, pub, kh)
	if authData[32] != 0x41 {
		t.Fatalf("flags %02x", authData[32])
	}
	st := mustCBOR(t, AttStmt{Sig: sig, X5C: [][]byte{cert}})
	if !bytes.HasPrefix(st, unhex("a2 63736967")) {
		t.Errorf("fido-u2f attStmt %x: want {sig, x5c}", st)
	}
	res, err := VerifyAttestation(FormatFIDOU2F, st, authData, challenge)
	if err != nil {
		t.Fatal(err)
	}
	if res.Type != AttestationBasic || len(res.Chain) != 1 || res.Chain[0].Subject.CommonName != "Yubico U2F EE Serial 249182324770" {
		t.Errorf("result %+v, subject %v", res, res.Chain[0].Subject)
	}

	other := bytes.Clone(challenge)
	other[31] ^= 1
	if _, err := VerifyAttestation(FormatFIDOU2F, st, authData, other); !errors.Is(err, ErrBadSignature) {
		t.Errorf("altered challenge: %v", err)
	}
	otherApp := bytes.Clone(appParam)
	otherApp[0] ^= 1
	if _, err := VerifyAttestation(FormatFIDOU2F, st, u2fAuthData(t, otherApp, pub, kh), challenge); !errors.Is(err, ErrBadSignature) {
		t.Errorf("altered application parameter: %v", err)
	}
	otherKH := bytes.Clone(kh)
	otherKH[0] ^= 1
	if _, err := VerifyAttestation(FormatFIDOU2F, st, u2fAuthData(t, appParam, pub, otherKH), challenge); !errors.Is(err, ErrBadSignature) {
		t.Errorf("altered key handle: %v", err)
	}
	twoCerts := mustCBOR(t, AttStmt{Sig: sig, X5C: [][]byte{cert, cert}})
	if _, err := VerifyAttestation(FormatFIDOU2F, twoCerts, authData, challenge); err == nil {
		t.Error("fido-u2f with two certificates verified")
	}
	noCert := mustCBOR(t, AttStmt{Sig: sig})
	if _, err := VerifyAttestation(FormatFIDOU2F, noCert, authData, challenge); err == nil {
		t.Error("fido-u2f without x5c verified")
	}
	// The same bytes are not a valid packed statement (no alg).
	if _, err := VerifyAttestation(FormatPacked, st, authData, challenge); err == nil {
		t.Error("fido-u2f statement verified as packed")
	}
}

func TestFIDOU2FAttestationSynthetic(t *testing.T) {
	ca := newCA(t)
	attKey := testKey(t, AlgES256, 250)
	tmpl := leafTemplate([16]byte{})
	tmpl.Subject = pkix.Name{CommonName: "ctapkit U2F"} // fido-u2f has no subject rules
	tmpl.ExtraExtensions = nil
	cert := ca.issue(t, tmpl, attKey.Public())

	u2fSign := func(t *testing.T, credAlg COSEAlgorithm, signer crypto.Signer) ([]byte, []byte) {
		credPriv, authData := credential(t, credAlg, [16]byte{})
		ad, _ := ParseAuthData(authData)
		var point []byte
		if p, ok := credPriv.Public().(*ecdsa.PublicKey); ok {
			point, _ = p.Bytes()
		}
		msg := cat([]byte{0}, ad.RPIDHash[:], attCDH[:], ad.Attested.CredentialID, point)
		sig, err := Sign(AlgES256, signer, msg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return authData, sig
	}

	t.Run("ok", func(t *testing.T) {
		authData, sig := u2fSign(t, AlgES256, attKey)
		st := mustCBOR(t, AttStmt{Sig: sig, X5C: [][]byte{cert}})
		if res, err := VerifyAttestation(FormatFIDOU2F, st, authData, attCDH[:]); err != nil || res.Type != AttestationBasic {
			t.Fatalf("%+v, %v", res, err)
		}
	})
	t.Run("EdDSA credential", func(t *testing.T) {
		authData, sig := u2fSign(t, AlgEdDSA, attKey)
		st := mustCBOR(t, AttStmt{Sig: sig, X5C: [][]byte{cert}})
		if _, err := VerifyAttestation(FormatFIDOU2F, st, authData, attCDH[:]); err == nil || !strings.Contains(err.Error(), "ES256") {
			t.Errorf("err = %v, want credential-not-ES256", err)
		}
	})
	t.Run("P-384 certificate", func(t *testing.T) {
		key384 := testKey(t, AlgES384, 251)
		cert384 := ca.issue(t, tmpl, key384.Public())
		authData, sig := u2fSign(t, AlgES256, key384)
		st := mustCBOR(t, AttStmt{Sig: sig, X5C: [][]byte{cert384}})
		if _, err := VerifyAttestation(FormatFIDOU2F, st, authData, attCDH[:]); err == nil || !strings.Contains(err.Error(), "P-256") {
			t.Errorf("err = %v, want certificate-not-P-256", err)
		}
	})
	t.Run("Ed25519 certificate", func(t *testing.T) {
		edKey := testKey(t, AlgEdDSA, 252)
		edCert := ca.issue(t, tmpl, edKey.Public())
		authData, _ := u2fSign(t, AlgES256, attKey)
		st := mustCBOR(t, AttStmt{Sig: make([]byte, 64), X5C: [][]byte{edCert}})
		if _, err := VerifyAttestation(FormatFIDOU2F, st, authData, attCDH[:]); err == nil {
			t.Error("Ed25519 certificate accepted for fido-u2f")
		}
	})
	t.Run("signed by another key", func(t *testing.T) {
		authData, sig := u2fSign(t, AlgES256, testKey(t, AlgES256, 253))
		st := mustCBOR(t, AttStmt{Sig: sig, X5C: [][]byte{cert}})
		if _, err := VerifyAttestation(FormatFIDOU2F, st, authData, attCDH[:]); !errors.Is(err, ErrBadSignature) {
			t.Errorf("err = %v, want ErrBadSignature", err)
		}
	})
}

func TestCheckPackedCertificateVersion(t *testing.T) {
	ca := newCA(t)
	der := ca.issue(t, leafTemplate(attAAGUID), testKey(t, AlgES256, 254).Public())
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPackedCertificate(cert, attAAGUID); err != nil {
		t.Fatal(err)
	}
	cert.Version = 1 // Go cannot issue v1 certificates; fake the parsed field.
	if err := CheckPackedCertificate(cert, attAAGUID); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("v1 certificate: %v", err)
	}
}
