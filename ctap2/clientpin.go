package ctap2

// PINSubcommand is a clientPIN subCommand (CTAP 2.1 §6.5.5).
type PINSubcommand uint

const (
	PINGetRetries                         PINSubcommand = 0x01
	PINGetKeyAgreement                    PINSubcommand = 0x02
	PINSetPIN                             PINSubcommand = 0x03
	PINChangePIN                          PINSubcommand = 0x04
	PINGetPINToken                        PINSubcommand = 0x05
	PINGetPINUvAuthTokenUsingUvWithPerms  PINSubcommand = 0x06
	PINGetUVRetries                       PINSubcommand = 0x07
	PINGetPINUvAuthTokenUsingPinWithPerms PINSubcommand = 0x09
)

// Permission is a pinUvAuthToken permission bit (CTAP 2.1 §6.5.5.7).
type Permission uint

const (
	PermMakeCredential       Permission = 0x01 // mc
	PermGetAssertion         Permission = 0x02 // ga
	PermCredentialManagement Permission = 0x04 // cm
	PermBioEnrollment        Permission = 0x08 // be
	PermLargeBlobWrite       Permission = 0x10 // lbw
	PermAuthenticatorConfig  Permission = 0x20 // acfg
	PermPersistentCredMgmtRO Permission = 0x40 // pcmr [2.2]
	knownPermissions         Permission = 0x7F
)

// ClientPINRequest is authenticatorClientPIN (CTAP 2.1 §6.5.5).
type ClientPINRequest struct {
	PinUvAuthProtocol uint          `cbor:"1,keyasint,omitempty"`
	SubCommand        PINSubcommand `cbor:"2,keyasint,omitempty"`
	KeyAgreement      RawMessage    `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    []byte        `cbor:"4,keyasint,omitempty"`
	NewPinEnc         []byte        `cbor:"5,keyasint,omitempty"`
	PinHashEnc        []byte        `cbor:"6,keyasint,omitempty"`
	Permissions       Permission    `cbor:"9,keyasint,omitempty"`
	RPID              string        `cbor:"10,keyasint,omitempty"`
}

// ClientPINResponse is the clientPIN reply; which fields are set depends on the
// subcommand.
type ClientPINResponse struct {
	KeyAgreement    RawMessage `cbor:"1,keyasint,omitempty"`
	PinUvAuthToken  []byte     `cbor:"2,keyasint,omitempty"`
	PinRetries      *uint      `cbor:"3,keyasint,omitempty"`
	PowerCycleState *bool      `cbor:"4,keyasint,omitempty"`
	UVRetries       *uint      `cbor:"5,keyasint,omitempty"`
}

// PIN limits (CTAP 2.1 §6.5.1): at least 4 code points, at most 63 bytes of UTF-8,
// padded with zeros to 64 bytes on the wire; 8 retries.
const (
	MaxPINLength    = 63
	PaddedPINLength = 64
	MaxPINRetries   = 8
)

// PINToken is a pinUvAuthToken together with the protocol that obtained it. It
// authenticates the requests that need one (CTAP 2.1 §6.5.5.7, table in §7.5 of
// ctap-reference): makeCredential, getAssertion, credentialManagement,
// authenticatorConfig and largeBlobs writes.
type PINToken struct {
	Protocol PINProtocol
	Token    []byte
}

// Param returns the pinUvAuthParam of msg under the token.
func (t *PINToken) Param(msg []byte) []byte { return t.Protocol.Authenticate(t.Token, msg) }
