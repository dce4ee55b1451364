package ctap2

import "fmt"

// ParseAuthData parses the response's authenticator data.
func (r *MakeCredentialResponse) ParseAuthData() (*AuthData, error) { return ParseAuthData(r.AuthData) }

// CredentialKey returns the new credential's ID and public key from the authenticator data.
func (r *MakeCredentialResponse) CredentialKey() ([]byte, *COSEKey, error) {
	ad, err := ParseAuthData(r.AuthData)
	if err != nil {
		return nil, nil, err
	}
	if ad.Attested == nil {
		return nil, nil, fmt.Errorf("makeCredential: authenticator data has no attested credential: %w", ErrMalformedResponse)
	}
	key, err := ParseCOSEKey(ad.Attested.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return ad.Attested.CredentialID, key, nil
}

// VerifyAttestation checks the attestation statement over clientDataHash.
func (r *MakeCredentialResponse) VerifyAttestation(clientDataHash []byte) (*AttestationResult, error) {
	return VerifyAttestation(r.Fmt, r.AttStmt, r.AuthData, clientDataHash)
}

// ParseAuthData parses the assertion's authenticator data.
func (r *GetAssertionResponse) ParseAuthData() (*AuthData, error) { return ParseAuthData(r.AuthData) }

// Verify checks the assertion signature over authData || clientDataHash with key.
func (r *GetAssertionResponse) Verify(key *COSEKey, clientDataHash []byte) error {
	msg := make([]byte, 0, len(r.AuthData)+len(clientDataHash))
	msg = append(append(msg, r.AuthData...), clientDataHash...)
	return key.Verify(msg, r.Signature)
}
