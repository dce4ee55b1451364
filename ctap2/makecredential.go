package ctap2

// MakeCredentialRequest is authenticatorMakeCredential (CTAP 2.1 §6.1). Required
// parameters are pointers or slices so that "absent" can be told from "empty".
type MakeCredentialRequest struct {
	ClientDataHash               []byte                 `cbor:"1,keyasint,omitempty"`
	RP                           *RPEntity              `cbor:"2,keyasint,omitempty"`
	User                         *UserEntity            `cbor:"3,keyasint,omitempty"`
	PubKeyCredParams             []CredentialParam      `cbor:"4,keyasint,omitempty"`
	ExcludeList                  []CredentialDescriptor `cbor:"5,keyasint,omitempty"`
	Extensions                   map[string]RawMessage  `cbor:"6,keyasint,omitempty"`
	Options                      *Options               `cbor:"7,keyasint,omitempty"`
	PinUvAuthParam               []byte                 `cbor:"8,keyasint,omitzero"` // zero-length (not nil) is the 2.0 touch probe
	PinUvAuthProtocol            uint                   `cbor:"9,keyasint,omitempty"`
	EnterpriseAttestation        uint                   `cbor:"10,keyasint,omitempty"`
	AttestationFormatsPreference []string               `cbor:"11,keyasint,omitempty"`
}

// MakeCredentialResponse is the attestation object as CTAP returns it (CTAP 2.1 §6.1.2).
type MakeCredentialResponse struct {
	Fmt                      string     `cbor:"1,keyasint,omitempty"`
	AuthData                 []byte     `cbor:"2,keyasint,omitempty"`
	AttStmt                  RawMessage `cbor:"3,keyasint,omitempty"`
	EpAtt                    bool       `cbor:"4,keyasint,omitempty"`
	LargeBlobKey             []byte     `cbor:"5,keyasint,omitempty"`
	UnsignedExtensionOutputs RawMessage `cbor:"6,keyasint,omitempty"`
}
