package ctap2

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// Attestation statement formats (WebAuthn §8).
const (
	FormatPacked  = "packed"
	FormatNone    = "none"
	FormatFIDOU2F = "fido-u2f"
)

// AttestationType says what an attestation proves (WebAuthn §6.5.4).
type AttestationType string

// Attestation types.
const (
	AttestationNone  AttestationType = "none"  // nothing beyond the credential itself
	AttestationSelf  AttestationType = "self"  // signed by the credential key
	AttestationBasic AttestationType = "basic" // signed by an attestation key with a certificate (batch, AttCA)
)

// AttStmt is the attestation statement of the packed and fido-u2f formats. "none" is an
// empty map, which this struct encodes to as well.
type AttStmt struct {
	Alg COSEAlgorithm `cbor:"alg,omitempty"`
	Sig []byte        `cbor:"sig,omitempty"`
	X5C [][]byte      `cbor:"x5c,omitempty"`
}

// AttestationResult is what VerifyAttestation established.
type AttestationResult struct {
	Format string
	Type   AttestationType
	// Chain is the x5c chain (leaf first) for basic attestation. Its trust is up to the
	// caller: ctapkit checks the statement and certificate fields, not a root of trust.
	Chain []*x509.Certificate
}

// oidFIDOAAGUID is id-fido-gen-ce-aaguid, carrying the AAGUID in attestation certificates.
var oidFIDOAAGUID = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 45724, 1, 1, 4}

// VerifyAttestation checks a makeCredential response's attestation statement against its
// authenticator data and the client data hash it signed (WebAuthn §8.2, §8.6, §8.7).
func VerifyAttestation(format string, attStmt []byte, authData []byte, clientDataHash []byte) (*AttestationResult, error) {
	ad, err := ParseAuthData(authData)
	if err != nil {
		return nil, err
	}
	if ad.Attested == nil {
		return nil, errors.New("attestation: authenticator data has no attested credential")
	}
	credKey, err := ParseCOSEKey(ad.Attested.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("attestation: %w", err)
	}
	var st AttStmt
	if err := Unmarshal(attStmt, &st); err != nil {
		return nil, fmt.Errorf("attestation statement: %w", err)
	}
	signed := append(append([]byte(nil), authData...), clientDataHash...)
	switch format {
	case FormatNone:
		var m map[string]RawMessage
		if err := Unmarshal(attStmt, &m); err != nil || m == nil || len(m) != 0 {
			return nil, errors.New("attestation: format none needs an empty statement")
		}
		return &AttestationResult{Format: format, Type: AttestationNone}, nil
	case FormatPacked:
		if len(st.X5C) == 0 {
			// Self attestation: the credential signs its own creation.
			if st.Alg != credKey.Alg {
				return nil, fmt.Errorf("attestation: packed self alg %d differs from credential alg %d", st.Alg, credKey.Alg)
			}
			if err := credKey.Verify(signed, st.Sig); err != nil {
				return nil, fmt.Errorf("attestation: packed self signature: %w", err)
			}
			return &AttestationResult{Format: format, Type: AttestationSelf}, nil
		}
		chain, err := parseChain(st.X5C)
		if err != nil {
			return nil, err
		}
		if err := verifySignature(st.Alg, chain[0].PublicKey, signed, st.Sig); err != nil {
			return nil, fmt.Errorf("attestation: packed x5c signature: %w", err)
		}
		if err := CheckPackedCertificate(chain[0], ad.Attested.AAGUID); err != nil {
			return nil, err
		}
		return &AttestationResult{Format: format, Type: AttestationBasic, Chain: chain}, nil
	case FormatFIDOU2F:
		chain, err := parseChain(st.X5C)
		if err != nil {
			return nil, err
		}
		if len(chain) != 1 {
			return nil, fmt.Errorf("attestation: fido-u2f needs exactly one certificate, have %d", len(chain))
		}
		if p, ok := chain[0].PublicKey.(*ecdsa.PublicKey); !ok || p.Curve != elliptic.P256() {
			return nil, errors.New("attestation: fido-u2f certificate key is not P-256")
		}
		pub, ok := credKey.Public.(*ecdsa.PublicKey)
		if !ok || credKey.Alg != AlgES256 {
			return nil, errors.New("attestation: fido-u2f credential key is not ES256")
		}
		point, _ := pub.Bytes()
		msg := []byte{0}
		msg = append(msg, ad.RPIDHash[:]...)
		msg = append(msg, clientDataHash...)
		msg = append(msg, ad.Attested.CredentialID...)
		msg = append(msg, point...)
		if err := verifySignature(AlgES256, chain[0].PublicKey, msg, st.Sig); err != nil {
			return nil, fmt.Errorf("attestation: fido-u2f signature: %w", err)
		}
		return &AttestationResult{Format: format, Type: AttestationBasic, Chain: chain}, nil
	}
	return nil, fmt.Errorf("attestation: unsupported format %q", format)
}

func parseChain(x5c [][]byte) ([]*x509.Certificate, error) {
	if len(x5c) == 0 {
		return nil, errors.New("attestation: x5c is empty")
	}
	chain := make([]*x509.Certificate, len(x5c))
	for i, der := range x5c {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("attestation: certificate %d: %w", i, err)
		}
		chain[i] = c
	}
	return chain, nil
}

// CheckPackedCertificate checks the packed attestation certificate requirements
// (WebAuthn §8.2.1): X.509 v3; subject C, O, CN and OU "Authenticator Attestation";
// not a CA; an id-fido-gen-ce-aaguid extension, when present, non-critical and equal
// to the AAGUID in the authenticator data.
func CheckPackedCertificate(c *x509.Certificate, aaguid [16]byte) error {
	if c.Version != 3 {
		return fmt.Errorf("attestation certificate: version %d, want 3", c.Version)
	}
	s := c.Subject
	if len(s.Country) != 1 || len(s.Organization) != 1 || s.CommonName == "" {
		return errors.New("attestation certificate: subject needs C, O and CN")
	}
	if len(s.OrganizationalUnit) != 1 || s.OrganizationalUnit[0] != "Authenticator Attestation" {
		return fmt.Errorf("attestation certificate: subject OU is %q, want \"Authenticator Attestation\"", s.OrganizationalUnit)
	}
	if c.BasicConstraintsValid && c.IsCA {
		return errors.New("attestation certificate: is a CA certificate")
	}
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidFIDOAAGUID) {
			continue
		}
		if ext.Critical {
			return errors.New("attestation certificate: AAGUID extension is marked critical")
		}
		var got []byte
		if rest, err := asn1.Unmarshal(ext.Value, &got); err != nil || len(rest) != 0 {
			return errors.New("attestation certificate: AAGUID extension is not an OCTET STRING")
		}
		if !bytes.Equal(got, aaguid[:]) {
			return fmt.Errorf("attestation certificate: AAGUID %x differs from authenticator data %x", got, aaguid)
		}
	}
	return nil
}
