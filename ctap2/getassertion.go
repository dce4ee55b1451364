package ctap2

// GetAssertionRequest is authenticatorGetAssertion (CTAP 2.1 §6.2).
type GetAssertionRequest struct {
	RPID              string                 `cbor:"1,keyasint,omitempty"`
	ClientDataHash    []byte                 `cbor:"2,keyasint,omitempty"`
	AllowList         []CredentialDescriptor `cbor:"3,keyasint,omitempty"`
	Extensions        map[string]RawMessage  `cbor:"4,keyasint,omitempty"`
	Options           *Options               `cbor:"5,keyasint,omitempty"`
	PinUvAuthParam    []byte                 `cbor:"6,keyasint,omitzero"`
	PinUvAuthProtocol uint                   `cbor:"7,keyasint,omitempty"`
}

// GetAssertionResponse is the reply to getAssertion and getNextAssertion (CTAP 2.1 §6.2.2).
type GetAssertionResponse struct {
	Credential               *CredentialDescriptor `cbor:"1,keyasint,omitempty"`
	AuthData                 []byte                `cbor:"2,keyasint,omitempty"`
	Signature                []byte                `cbor:"3,keyasint,omitempty"`
	User                     *UserEntity           `cbor:"4,keyasint,omitempty"`
	NumberOfCredentials      uint                  `cbor:"5,keyasint,omitempty"`
	UserSelected             bool                  `cbor:"6,keyasint,omitempty"`
	LargeBlobKey             []byte                `cbor:"7,keyasint,omitempty"`
	UnsignedExtensionOutputs RawMessage            `cbor:"8,keyasint,omitempty"`
}
