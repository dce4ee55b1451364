package webauthn

// The response JSON forms of WebAuthn Level 3 (§5.1, PublicKeyCredential.toJSON):
// what a browser's page posts to the relying party's server. Binary members are
// unpadded base64url.

// RegistrationResponse is RegistrationResponseJSON.
type RegistrationResponse struct {
	ID                      string              `json:"id"`
	RawID                   string              `json:"rawId"`
	Type                    string              `json:"type"`
	Response                AttestationResponse `json:"response"`
	AuthenticatorAttachment string              `json:"authenticatorAttachment,omitempty"`
	ClientExtensionResults  ExtensionResults    `json:"clientExtensionResults"`
}

// AttestationResponse is AuthenticatorAttestationResponseJSON, with the values of
// getAuthenticatorData(), getPublicKey() and getPublicKeyAlgorithm().
type AttestationResponse struct {
	ClientDataJSON     string   `json:"clientDataJSON"`
	AuthenticatorData  string   `json:"authenticatorData"`
	Transports         []string `json:"transports"`
	PublicKey          string   `json:"publicKey,omitempty"` // SubjectPublicKeyInfo DER
	PublicKeyAlgorithm int64    `json:"publicKeyAlgorithm"`
	AttestationObject  string   `json:"attestationObject"`
}

// AuthenticationResponse is AuthenticationResponseJSON.
type AuthenticationResponse struct {
	ID                      string            `json:"id"`
	RawID                   string            `json:"rawId"`
	Type                    string            `json:"type"`
	Response                AssertionResponse `json:"response"`
	AuthenticatorAttachment string            `json:"authenticatorAttachment,omitempty"`
	ClientExtensionResults  ExtensionResults  `json:"clientExtensionResults"`
}

// AssertionResponse is AuthenticatorAssertionResponseJSON.
type AssertionResponse struct {
	ClientDataJSON    string `json:"clientDataJSON"`
	AuthenticatorData string `json:"authenticatorData"`
	Signature         string `json:"signature"`
	UserHandle        string `json:"userHandle,omitempty"`
}

// ExtensionResults is AuthenticationExtensionsClientOutputsJSON for the
// extensions ctapkit maps; absent ones are left out ({} when none).
type ExtensionResults struct {
	CredProps        *CredPropsOutput  `json:"credProps,omitempty"`
	PRF              *PRFOutput        `json:"prf,omitempty"`
	LargeBlob        *LargeBlobOutput  `json:"largeBlob,omitempty"`
	CredBlob         *bool             `json:"credBlob,omitempty"`    // create(): stored
	GetCredBlob      *string           `json:"getCredBlob,omitempty"` // get(): the blob, base64url
	HMACCreateSecret *bool             `json:"hmacCreateSecret,omitempty"`
	HMACGetSecret    *HMACSecretOutput `json:"hmacGetSecret,omitempty"`
}

// CredPropsOutput is CredentialPropertiesOutput.
type CredPropsOutput struct {
	RK bool `json:"rk"`
}

// PRFOutput is AuthenticationExtensionsPRFOutputs.
type PRFOutput struct {
	Enabled *bool       `json:"enabled,omitempty"` // create() only
	Results *PRFResults `json:"results,omitempty"`
}

// PRFResults are the PRF outputs, base64url.
type PRFResults struct {
	First  string `json:"first"`
	Second string `json:"second,omitempty"`
}

// LargeBlobOutput is AuthenticationExtensionsLargeBlobOutputs.
type LargeBlobOutput struct {
	Supported *bool   `json:"supported,omitempty"` // create()
	Blob      *string `json:"blob,omitempty"`      // get() with read, when there is one
	Written   *bool   `json:"written,omitempty"`   // get() with write
}

// HMACSecretOutput is the CTAP 2.1 hmacGetSecret output, base64url.
type HMACSecretOutput struct {
	Output1 string `json:"output1"`
	Output2 string `json:"output2,omitempty"`
}
