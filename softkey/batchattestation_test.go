package softkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

func TestNewBatchAttestation(t *testing.T) {
	aaguid := [16]byte{0xc7, 0xa9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	b, err := NewBatchAttestation(aaguid)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := b.Key.Public().(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("batch key %T, want P-256 ECDSA", b.Key.Public())
	}
	if len(b.Certs) != 2 {
		t.Fatalf("%d certificates, want the batch certificate and the CA", len(b.Certs))
	}
	if !bytes.Equal(b.Certs[1], b.CA.Raw) {
		t.Error("Certs[1] is not the CA")
	}
	if blk, _ := pem.Decode(b.CAPEM); blk == nil || blk.Type != "CERTIFICATE" || !bytes.Equal(blk.Bytes, b.CA.Raw) {
		t.Error("CAPEM is not the CA certificate")
	}
	if !b.CA.IsCA || !b.CA.BasicConstraintsValid {
		t.Error("the CA is not marked as a CA")
	}

	leaf, err := x509.ParseCertificate(b.Certs[0])
	if err != nil {
		t.Fatal(err)
	}
	// WebAuthn §8.2.1, one requirement at a time.
	if leaf.Version != 3 {
		t.Errorf("version %d, want 3", leaf.Version)
	}
	s := leaf.Subject
	if len(s.Country) != 1 || len(s.Organization) != 1 || s.CommonName == "" ||
		len(s.OrganizationalUnit) != 1 || s.OrganizationalUnit[0] != "Authenticator Attestation" {
		t.Errorf("subject %v, want C, O, OU=Authenticator Attestation, CN", s)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Errorf("basicConstraints valid %v CA %v, want present with CA false", leaf.BasicConstraintsValid, leaf.IsCA)
	}
	found := false
	for _, e := range leaf.Extensions {
		if !e.Id.Equal(oidFIDOGenCEAAGUID) {
			continue
		}
		found = true
		if e.Critical {
			t.Error("id-fido-gen-ce-aaguid is critical")
		}
		var got []byte
		if rest, err := asn1.Unmarshal(e.Value, &got); err != nil || len(rest) != 0 || !bytes.Equal(got, aaguid[:]) {
			t.Errorf("id-fido-gen-ce-aaguid %x (%v), want the OCTET STRING %x", e.Value, err, aaguid)
		}
	}
	if !found {
		t.Error("no id-fido-gen-ce-aaguid extension")
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(b.Key.Public()) {
		t.Error("the batch certificate is not for Key")
	}
	roots := x509.NewCertPool()
	roots.AddCert(b.CA)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("batch certificate does not chain to the CA: %v", err)
	}

	// Two calls are two CAs: nothing is shared between tests.
	other, err := NewBatchAttestation(aaguid)
	if err != nil {
		t.Fatal(err)
	}
	if other.CA.Equal(b.CA) || other.CA.SerialNumber.Cmp(b.CA.SerialNumber) == 0 {
		t.Error("a second call gave the same CA")
	}
	other2 := x509.NewCertPool()
	other2.AddCert(other.CA)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: other2, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Error("batch certificate chains to another call's CA")
	}
}

// The statement a softkey makes with it passes ctap2's packed verifier, which
// checks §8.2.1 and the AAGUID against the authenticator data.
func TestNewBatchAttestationSoftkey(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	b, err := NewBatchAttestation(st.Meta().AAGUID)
	if err != nil {
		t.Fatal(err)
	}
	a := newSoftkeyOn(t, st, Config{Attestation: AttestationBatch, BatchKey: b.Key, BatchCerts: b.Certs})
	req := mcRequest("a.example", []byte("u"))
	c := makeCredential(t, a, req)
	res, err := c.resp.VerifyAttestation(req.ClientDataHash)
	if err != nil {
		t.Fatal(err)
	}
	if res.Type != ctap2.AttestationBasic || len(res.Chain) != 2 || !res.Chain[1].Equal(b.CA) {
		t.Errorf("attestation %v with %d certificates, want basic with the batch certificate and CA", res.Type, len(res.Chain))
	}
}
