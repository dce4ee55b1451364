// Package ctap2 is the CTAP 2.x protocol: command and response structures, the canonical
// CBOR codec, status errors, authenticator data, COSE keys, attestation verification
// and the host Client that drives any transport.Device.
//
// Structures follow the FIDO Client to Authenticator Protocol 2.1 (and 2.2 where noted);
// doc comments name the section. Byte strings are []byte; text keys keep their spec
// spelling in the cbor tags.
package ctap2

// Command is a CTAP2 authenticator command byte (CTAP 2.1 §6).
type Command byte

// CTAP2 commands.
const (
	CmdMakeCredential       Command = 0x01
	CmdGetAssertion         Command = 0x02
	CmdGetInfo              Command = 0x04
	CmdClientPIN            Command = 0x06
	CmdReset                Command = 0x07
	CmdGetNextAssertion     Command = 0x08
	CmdBioEnrollment        Command = 0x09
	CmdCredentialManagement Command = 0x0A
	CmdSelection            Command = 0x0B
	CmdLargeBlobs           Command = 0x0C
	CmdConfig               Command = 0x0D
	CmdBioEnrollmentPre     Command = 0x40
	CmdCredentialMgmtPre    Command = 0x41
)

var commandNames = map[Command]string{
	CmdMakeCredential: "makeCredential", CmdGetAssertion: "getAssertion", CmdGetInfo: "getInfo",
	CmdClientPIN: "clientPIN", CmdReset: "reset", CmdGetNextAssertion: "getNextAssertion",
	CmdBioEnrollment: "bioEnrollment", CmdCredentialManagement: "credentialManagement",
	CmdSelection: "selection", CmdLargeBlobs: "largeBlobs", CmdConfig: "config",
	CmdBioEnrollmentPre: "bioEnrollment(pre)", CmdCredentialMgmtPre: "credentialManagement(pre)",
}

func (c Command) String() string {
	if n, ok := commandNames[c]; ok {
		return n
	}
	return "command(0x" + hexByte(byte(c)) + ")"
}

func hexByte(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&15]})
}

// CredentialType is the only credential type WebAuthn defines.
const CredentialType = "public-key"

// RPEntity is PublicKeyCredentialRpEntity (WebAuthn §5.4.2).
type RPEntity struct {
	ID   string `cbor:"id" json:"id"`
	Name string `cbor:"name,omitempty" json:"name,omitempty"`
}

// UserEntity is PublicKeyCredentialUserEntity (WebAuthn §5.4.3); ID is 1..64 bytes.
type UserEntity struct {
	ID          []byte `cbor:"id" json:"id"`
	Name        string `cbor:"name,omitempty" json:"name,omitempty"`
	DisplayName string `cbor:"displayName,omitempty" json:"displayName,omitempty"`
}

// MaxUserIDLength is the WebAuthn bound on user handles.
const MaxUserIDLength = 64

// CredentialDescriptor is PublicKeyCredentialDescriptor (WebAuthn §5.8.3).
type CredentialDescriptor struct {
	Type       string   `cbor:"type"`
	ID         []byte   `cbor:"id"`
	Transports []string `cbor:"transports,omitempty"`
}

// CredentialParam is one PublicKeyCredentialParameters entry (WebAuthn §5.3).
type CredentialParam struct {
	Type string        `cbor:"type"`
	Alg  COSEAlgorithm `cbor:"alg"`
}

// Options is the options map of makeCredential and getAssertion; nil means "absent",
// which differs from false (CTAP 2.1 §6.1.2 step 4). Unknown keys are ignored.
type Options struct {
	RK *bool `cbor:"rk,omitempty"`
	UP *bool `cbor:"up,omitempty"`
	UV *bool `cbor:"uv,omitempty"`
}

// Bool returns a pointer to b, for Options fields.
func Bool(b bool) *bool { return &b }
