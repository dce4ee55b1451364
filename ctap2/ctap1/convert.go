package ctap1

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// MakeCredentialResponse turns a U2F registration into the attestation object a
// CTAP2 authenticator would return (CTAP 2.1 §10.2, WebAuthn §8.6): authenticator data
// with rpIdHash = the application parameter, flags UP|AT, counter 0, a zero AAGUID,
// the key handle as credential ID and the point as an ES256 COSE key; format
// "fido-u2f" with attStmt {sig, x5c: [certificate]}. ctap2.VerifyAttestation checks
// it with the challenge as clientDataHash.
func (r *RegisterResponse) MakeCredentialResponse(application [ApplicationSize]byte) (*ctap2.MakeCredentialResponse, error) {
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), r.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("u2f registration: public key: %w", err)
	}
	if len(r.KeyHandle) == 0 || len(r.KeyHandle) > MaxKeyHandleSize {
		return nil, fmt.Errorf("u2f registration: key handle of %d bytes", len(r.KeyHandle))
	}
	cose, err := (&ctap2.COSEKey{Alg: ctap2.AlgES256, Public: pub}).Marshal()
	if err != nil {
		return nil, err
	}
	authData := (&ctap2.AuthData{
		RPIDHash: application,
		Flags:    ctap2.FlagUP,
		Attested: &ctap2.AttestedCredentialData{
			CredentialID: append([]byte(nil), r.KeyHandle...),
			PublicKey:    cose,
		},
	}).Marshal()
	stmt, err := ctap2.Marshal(ctap2.AttStmt{Sig: r.Signature, X5C: [][]byte{r.Certificate}})
	if err != nil {
		return nil, err
	}
	return &ctap2.MakeCredentialResponse{Fmt: ctap2.FormatFIDOU2F, AuthData: authData, AttStmt: stmt}, nil
}

// GetAssertionResponse turns a U2F authentication into a CTAP2 assertion: authenticator
// data application || UP byte || counter (the flags byte is the UP byte, so the
// signature verifies as a CTAP2 one over authData || clientDataHash), the signature as
// it came, and keyHandle as the credential.
func (r *AuthenticateResponse) GetAssertionResponse(application [ApplicationSize]byte, keyHandle []byte) *ctap2.GetAssertionResponse {
	authData := (&ctap2.AuthData{
		RPIDHash:  application,
		Flags:     ctap2.AuthFlags(r.UserPresence),
		SignCount: r.Counter,
	}).Marshal()
	return &ctap2.GetAssertionResponse{
		Credential: &ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: append([]byte(nil), keyHandle...)},
		AuthData:   authData,
		Signature:  append([]byte(nil), r.Signature...),
	}
}
