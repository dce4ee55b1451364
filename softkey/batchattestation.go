package softkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// BatchAttestation is a batch attestation key with its certificate and the CA
// that issued it: what Config.BatchKey and Config.BatchCerts take, and the trust
// anchor a relying party (or its metadata statement) needs to verify it.
type BatchAttestation struct {
	Key   crypto.Signer // P-256
	Certs [][]byte      // the batch certificate (DER), then the CA's
	CA    *x509.Certificate
	CAPEM []byte
}

// oidFIDOGenCEAAGUID is id-fido-gen-ce-aaguid: the AAGUID of the model a batch
// certificate attests.
var oidFIDOGenCEAAGUID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}

// batchValidity is how long the certificates last: long enough for a CA saved
// next to a softkey's store, not forever.
const batchValidity = 10 * 365 * 24 * time.Hour

// NewBatchAttestation makes a fresh self-signed CA and a P-256 batch key with a
// certificate that meets packed attestation's requirements (WebAuthn §8.2.1):
// version 3; subject C, O, OU "Authenticator Attestation" and CN; not a CA; and
// the AAGUID in a non-critical id-fido-gen-ce-aaguid extension, so that a
// verifier can tie the certificate to the model the authenticator data names.
func NewBatchAttestation(aaguid [16]byte) (*BatchAttestation, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newBatchAttestation(aaguid, key)
}

// newBatchAttestation is NewBatchAttestation for a given batch key.
func newBatchAttestation(aaguid [16]byte, key crypto.Signer) (*BatchAttestation, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// Backdated an hour: verifiers with a clock slightly behind still accept.
	now := time.Now().Add(-time.Hour)
	caSerial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{Country: []string{"ZZ"}, Organization: []string{"ctapkit"}, CommonName: "ctapkit softkey attestation CA"},
		NotBefore:             now,
		NotAfter:              now.Add(batchValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // it certifies batch keys, not other CAs
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("attestation CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	// The extension's value is an OCTET STRING holding the 16 bytes.
	ext, err := asn1.Marshal(aaguid[:])
	if err != nil {
		return nil, err
	}
	leafSerial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: leafSerial,
		Subject: pkix.Name{
			Country:            []string{"ZZ"}, // user-assigned ISO 3166 code: no real country
			Organization:       []string{"ctapkit"},
			OrganizationalUnit: []string{"Authenticator Attestation"},
			CommonName:         "ctapkit softkey batch attestation",
		},
		NotBefore:             now,
		NotAfter:              now.Add(batchValidity),
		BasicConstraintsValid: true,
		IsCA:                  false,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{{Id: oidFIDOGenCEAAGUID, Critical: false, Value: ext}},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("batch attestation certificate: %w", err)
	}
	return &BatchAttestation{
		Key:   key,
		Certs: [][]byte{leafDER, caDER},
		CA:    ca,
		CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}, nil
}

// serialNumber is a random positive 128-bit serial, as RFC 5280 §4.1.2.2 allows
// (at most 20 octets) and CAs use to keep serials unguessable.
func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil // never 0
}
