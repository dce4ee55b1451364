package softkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

func TestAttestationNone(t *testing.T) {
	for _, cfg := range []struct {
		name string
		meta store.Meta
		cfg  Config
	}{
		{"config", store.Meta{}, Config{Attestation: AttestationNone}},
		{"store default", store.Meta{Attestation: "none"}, Config{}},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			st := store.NewMemory(cfg.meta)
			a := newSoftkeyOn(t, st, cfg.cfg)
			req := mcRequest("a.example", []byte("u"), ctap2.AlgEdDSA)
			c := makeCredential(t, a, req)
			if c.resp.Fmt != ctap2.FormatNone {
				t.Errorf("fmt %q, want none", c.resp.Fmt)
			}
			if !bytes.Equal(c.resp.AttStmt, []byte{0xa0}) {
				t.Errorf("attStmt %x, want the empty map a0", c.resp.AttStmt)
			}
			res, err := c.resp.VerifyAttestation(req.ClientDataHash)
			if err != nil || res.Type != ctap2.AttestationNone {
				t.Errorf("VerifyAttestation: %+v, %v; want type none", res, err)
			}
			// CTAP "none" keeps the AAGUID; only a WebAuthn L2 client zeroes it.
			if c.auth.Attested.AAGUID != st.Meta().AAGUID {
				t.Errorf("AAGUID %x, want %x", c.auth.Attested.AAGUID, st.Meta().AAGUID)
			}
			resp, _ := getAssertion(t, a, gaRequest("a.example", c.id))
			if err := resp.Verify(c.key, hashOf("ga a.example")); err != nil {
				t.Error(err)
			}
		})
	}
}

// batchCA is a test attestation CA with a batch certificate for aaguid.
type batchCA struct {
	caDER, leafDER []byte
	ca, leaf       *x509.Certificate
	key            crypto.Signer
}

func newBatchCA(t *testing.T, aaguid [16]byte, leafKey crypto.Signer) *batchCA {
	t.Helper()
	b, err := newBatchAttestation(aaguid, leafKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(b.Certs[0])
	if err != nil {
		t.Fatal(err)
	}
	return &batchCA{caDER: b.Certs[1], leafDER: b.Certs[0], ca: b.CA, leaf: leaf, key: leafKey}
}

func TestAttestationBatch(t *testing.T) {
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory(store.Meta{})
	ca := newBatchCA(t, st.Meta().AAGUID, leafKey)
	a := newSoftkeyOn(t, st, Config{Attestation: AttestationBatch, BatchKey: leafKey, BatchCerts: [][]byte{ca.leafDER, ca.caDER}})

	// The statement's alg is the batch key's, whatever the credential's.
	for _, alg := range []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA, ctap2.AlgES384} {
		req := mcRequest("a.example", []byte("u"), alg)
		c := makeCredential(t, a, req)
		if c.resp.Fmt != ctap2.FormatPacked {
			t.Errorf("fmt %q, want packed", c.resp.Fmt)
		}
		res, err := ctap2.VerifyAttestation(c.resp.Fmt, c.resp.AttStmt, c.resp.AuthData, req.ClientDataHash)
		if err != nil {
			t.Fatalf("%v: VerifyAttestation: %v", alg, err)
		}
		if res.Type != ctap2.AttestationBasic {
			t.Errorf("%v: attestation type %v, want basic", alg, res.Type)
		}
		if len(res.Chain) != 2 || !res.Chain[0].Equal(ca.leaf) || !res.Chain[1].Equal(ca.ca) {
			t.Errorf("%v: chain of %d certificates, want leaf and CA", alg, len(res.Chain))
		}
		var stmt ctap2.AttStmt
		if err := ctap2.Unmarshal(c.resp.AttStmt, &stmt); err != nil {
			t.Fatal(err)
		}
		if stmt.Alg != ctap2.AlgES256 {
			t.Errorf("%v: attStmt alg %v, want the batch key's es256", alg, stmt.Alg)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.ca)
		if _, err := res.Chain[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%v: batch certificate does not chain to the test CA: %v", alg, err)
		}
		if _, err := c.resp.VerifyAttestation(hashOf("other")); err == nil {
			t.Errorf("%v: batch attestation verifies over another clientDataHash", alg)
		}
		resp, _ := getAssertion(t, a, gaRequest("a.example", c.id))
		if err := resp.Verify(c.key, hashOf("ga a.example")); err != nil {
			t.Errorf("%v: assertion: %v", alg, err)
		}
	}

	// A batch certificate for another model does not verify against this AAGUID.
	var other [16]byte
	other[0] = 1
	wrong := newBatchCA(t, other, leafKey)
	b := newSoftkey(t, Config{Attestation: AttestationBatch, BatchKey: leafKey, BatchCerts: [][]byte{wrong.leafDER}})
	req := mcRequest("a.example", []byte("u"))
	st2, body := call(t, b, ctap2.CmdMakeCredential, req)
	wantStatus(t, "makeCredential", st2, ctap2.StatusOK)
	var resp ctap2.MakeCredentialResponse
	if err := ctap2.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if _, err := resp.VerifyAttestation(req.ClientDataHash); err == nil {
		t.Error("attestation with another model's AAGUID in the certificate verified")
	}
}
