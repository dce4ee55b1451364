package webauthntest_test

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/webauthn"
	"github.com/ctapkit/ctapkit/webauthn/webauthntest"
)

const createOptions = `{"publicKey":{"rp":{"name":"Example","id":"example.com"},
 "user":{"name":"alice","displayName":"Alice","id":"dXNlci0x"},
 "challenge":"v8M5dA3vg_FkPQZPL7vlQ81c3w-0LwH3y_kPS1VkBWs",
 "pubKeyCredParams":[{"type":"public-key","alg":-7}],"attestation":"direct"}}`

// TestBatchAttestation: with Options.Batch and the same AAGUID, the key
// attests with a certificate chain to Batch.CA whose AAGUID extension matches.
func TestBatchAttestation(t *testing.T) {
	aaguid := [16]byte{0xca, 0xfe, 1, 2, 3}
	batch, err := softkey.NewBatchAttestation(aaguid)
	if err != nil {
		t.Fatal(err)
	}
	key := webauthntest.New(t, webauthntest.Options{Origin: "https://example.com", Batch: batch, AAGUID: aaguid})
	var reg webauthn.RegistrationResponse
	if err := json.Unmarshal(key.MustCreate([]byte(createOptions)), &reg); err != nil {
		t.Fatal(err)
	}
	attObj, _ := base64.RawURLEncoding.DecodeString(reg.Response.AttestationObject)
	clientData, _ := base64.RawURLEncoding.DecodeString(reg.Response.ClientDataJSON)
	var obj struct {
		Fmt      string           `cbor:"fmt"`
		AttStmt  ctap2.RawMessage `cbor:"attStmt"`
		AuthData []byte           `cbor:"authData"`
	}
	if err := ctap2.Unmarshal(attObj, &obj); err != nil {
		t.Fatal(err)
	}
	cdh := sha256.Sum256(clientData)
	res, err := (&ctap2.MakeCredentialResponse{Fmt: obj.Fmt, AuthData: obj.AuthData, AttStmt: obj.AttStmt}).VerifyAttestation(cdh[:])
	if err != nil {
		t.Fatal(err)
	}
	if res.Type != ctap2.AttestationBasic || len(res.Chain) == 0 {
		t.Fatalf("attestation %+v, want basic with a chain", res)
	}
	roots := x509.NewCertPool()
	roots.AddCert(batch.CA)
	if _, err := res.Chain[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the batch certificate does not chain to Batch.CA: %v", err)
	}
}

// TestPresenceDenied: a refused touch is the browser's NotAllowedError.
func TestPresenceDenied(t *testing.T) {
	key := webauthntest.New(t, webauthntest.Options{Origin: "https://example.com", Presence: softkey.PresenceDeny})
	_, err := key.Create([]byte(createOptions))
	if !errors.Is(err, webauthn.ErrNotAllowed) || !errors.Is(err, ctap2.ErrOperationDenied) {
		t.Fatalf("create with presence denied: %v, want NotAllowedError (CTAP2_ERR_OPERATION_DENIED)", err)
	}
}
