package ctap2

import (
	"errors"
	"fmt"
)

// StatusError is a CTAP status code returned by an authenticator (CTAP 2.1 §8.2). It
// is the first byte of every CTAP2 response; U2F status words are mapped onto it too.
type StatusError byte

// CTAP status codes. The CTAP1_ERR_* values 0x01..0x0B equal the CTAPHID error codes.
const (
	StatusOK                  StatusError = 0x00
	ErrInvalidCommand         StatusError = 0x01
	ErrInvalidParameter       StatusError = 0x02
	ErrInvalidLength          StatusError = 0x03
	ErrInvalidSeq             StatusError = 0x04
	ErrTimeout                StatusError = 0x05
	ErrChannelBusy            StatusError = 0x06
	ErrLockRequired           StatusError = 0x0A
	ErrInvalidChannel         StatusError = 0x0B
	ErrCBORUnexpectedType     StatusError = 0x11
	ErrInvalidCBOR            StatusError = 0x12
	ErrMissingParameter       StatusError = 0x14
	ErrLimitExceeded          StatusError = 0x15
	ErrUnsupportedExtension   StatusError = 0x16
	ErrFPDatabaseFull         StatusError = 0x17
	ErrLargeBlobStorageFull   StatusError = 0x18
	ErrCredentialExcluded     StatusError = 0x19
	ErrProcessing             StatusError = 0x21
	ErrInvalidCredential      StatusError = 0x22
	ErrUserActionPending      StatusError = 0x23
	ErrOperationPending       StatusError = 0x24
	ErrNoOperations           StatusError = 0x25
	ErrUnsupportedAlgorithm   StatusError = 0x26
	ErrOperationDenied        StatusError = 0x27
	ErrKeyStoreFull           StatusError = 0x28
	ErrNotBusy                StatusError = 0x29
	ErrNoOperationPending     StatusError = 0x2A
	ErrUnsupportedOption      StatusError = 0x2B
	ErrInvalidOption          StatusError = 0x2C
	ErrKeepaliveCancel        StatusError = 0x2D
	ErrNoCredentials          StatusError = 0x2E
	ErrUserActionTimeout      StatusError = 0x2F
	ErrNotAllowed             StatusError = 0x30
	ErrPINInvalid             StatusError = 0x31
	ErrPINBlocked             StatusError = 0x32
	ErrPINAuthInvalid         StatusError = 0x33
	ErrPINAuthBlocked         StatusError = 0x34
	ErrPINNotSet              StatusError = 0x35
	ErrPUATRequired           StatusError = 0x36
	ErrPINPolicyViolation     StatusError = 0x37
	ErrPINTokenExpired        StatusError = 0x38
	ErrRequestTooLarge        StatusError = 0x39
	ErrActionTimeout          StatusError = 0x3A
	ErrUPRequired             StatusError = 0x3B
	ErrUVBlocked              StatusError = 0x3C
	ErrIntegrityFailure       StatusError = 0x3D
	ErrInvalidSubcommand      StatusError = 0x3E
	ErrUVInvalid              StatusError = 0x3F
	ErrUnauthorizedPermission StatusError = 0x40
	ErrOther                  StatusError = 0x7F
	ErrSpecLast               StatusError = 0xDF
	ErrExtensionFirst         StatusError = 0xE0
	ErrExtensionLast          StatusError = 0xEF
	ErrVendorFirst            StatusError = 0xF0
	ErrVendorLast             StatusError = 0xFF
)

type statusInfo struct{ name, desc string }

var statusTable = map[StatusError]statusInfo{
	StatusOK:                  {"CTAP2_OK", "success"},
	ErrInvalidCommand:         {"CTAP1_ERR_INVALID_COMMAND", "the command is not supported"},
	ErrInvalidParameter:       {"CTAP1_ERR_INVALID_PARAMETER", "a parameter is invalid"},
	ErrInvalidLength:          {"CTAP1_ERR_INVALID_LENGTH", "the message length is invalid"},
	ErrInvalidSeq:             {"CTAP1_ERR_INVALID_SEQ", "invalid message sequencing"},
	ErrTimeout:                {"CTAP1_ERR_TIMEOUT", "the message timed out"},
	ErrChannelBusy:            {"CTAP1_ERR_CHANNEL_BUSY", "the channel is busy"},
	ErrLockRequired:           {"CTAP1_ERR_LOCK_REQUIRED", "the command requires a channel lock"},
	ErrInvalidChannel:         {"CTAP1_ERR_INVALID_CHANNEL", "the channel is not valid"},
	ErrCBORUnexpectedType:     {"CTAP2_ERR_CBOR_UNEXPECTED_TYPE", "a CBOR value has the wrong type"},
	ErrInvalidCBOR:            {"CTAP2_ERR_INVALID_CBOR", "the CBOR is invalid"},
	ErrMissingParameter:       {"CTAP2_ERR_MISSING_PARAMETER", "a required parameter is missing"},
	ErrLimitExceeded:          {"CTAP2_ERR_LIMIT_EXCEEDED", "a limit was exceeded"},
	ErrUnsupportedExtension:   {"CTAP2_ERR_UNSUPPORTED_EXTENSION", "an extension is not supported"},
	ErrFPDatabaseFull:         {"CTAP2_ERR_FP_DATABASE_FULL", "the fingerprint database is full"},
	ErrLargeBlobStorageFull:   {"CTAP2_ERR_LARGE_BLOB_STORAGE_FULL", "the large-blob storage is full"},
	ErrCredentialExcluded:     {"CTAP2_ERR_CREDENTIAL_EXCLUDED", "a credential in the exclude list is already on this key"},
	ErrProcessing:             {"CTAP2_ERR_PROCESSING", "processing (lengthy operation in progress)"},
	ErrInvalidCredential:      {"CTAP2_ERR_INVALID_CREDENTIAL", "the credential is not valid for this authenticator"},
	ErrUserActionPending:      {"CTAP2_ERR_USER_ACTION_PENDING", "authentication is waiting for user interaction"},
	ErrOperationPending:       {"CTAP2_ERR_OPERATION_PENDING", "processing, lengthy operation in progress"},
	ErrNoOperations:           {"CTAP2_ERR_NO_OPERATIONS", "no request is pending"},
	ErrUnsupportedAlgorithm:   {"CTAP2_ERR_UNSUPPORTED_ALGORITHM", "none of the requested algorithms is supported"},
	ErrOperationDenied:        {"CTAP2_ERR_OPERATION_DENIED", "the user or the authenticator denied the operation"},
	ErrKeyStoreFull:           {"CTAP2_ERR_KEY_STORE_FULL", "the credential storage is full"},
	ErrNotBusy:                {"CTAP2_ERR_NOT_BUSY", "no operation is pending"},
	ErrNoOperationPending:     {"CTAP2_ERR_NO_OPERATION_PENDING", "no operation is pending"},
	ErrUnsupportedOption:      {"CTAP2_ERR_UNSUPPORTED_OPTION", "an option is not supported"},
	ErrInvalidOption:          {"CTAP2_ERR_INVALID_OPTION", "an option is not valid for this command"},
	ErrKeepaliveCancel:        {"CTAP2_ERR_KEEPALIVE_CANCEL", "the request was cancelled"},
	ErrNoCredentials:          {"CTAP2_ERR_NO_CREDENTIALS", "no matching credential on this key"},
	ErrUserActionTimeout:      {"CTAP2_ERR_USER_ACTION_TIMEOUT", "timed out waiting for the user"},
	ErrNotAllowed:             {"CTAP2_ERR_NOT_ALLOWED", "the operation is not allowed now"},
	ErrPINInvalid:             {"CTAP2_ERR_PIN_INVALID", "wrong PIN"},
	ErrPINBlocked:             {"CTAP2_ERR_PIN_BLOCKED", "the PIN is blocked; only a reset recovers the key"},
	ErrPINAuthInvalid:         {"CTAP2_ERR_PIN_AUTH_INVALID", "the PIN/UV auth parameter is not valid"},
	ErrPINAuthBlocked:         {"CTAP2_ERR_PIN_AUTH_BLOCKED", "too many wrong PINs in a row; remove and re-insert the key"},
	ErrPINNotSet:              {"CTAP2_ERR_PIN_NOT_SET", "no PIN has been set"},
	ErrPUATRequired:           {"CTAP2_ERR_PUAT_REQUIRED", "a PIN or user verification is required"},
	ErrPINPolicyViolation:     {"CTAP2_ERR_PIN_POLICY_VIOLATION", "the PIN does not meet the key's policy"},
	ErrPINTokenExpired:        {"CTAP2_ERR_PIN_TOKEN_EXPIRED", "the PIN token expired"},
	ErrRequestTooLarge:        {"CTAP2_ERR_REQUEST_TOO_LARGE", "the request is larger than the key accepts"},
	ErrActionTimeout:          {"CTAP2_ERR_ACTION_TIMEOUT", "the action timed out"},
	ErrUPRequired:             {"CTAP2_ERR_UP_REQUIRED", "user presence is required"},
	ErrUVBlocked:              {"CTAP2_ERR_UV_BLOCKED", "built-in user verification is blocked"},
	ErrIntegrityFailure:       {"CTAP2_ERR_INTEGRITY_FAILURE", "an integrity check failed"},
	ErrInvalidSubcommand:      {"CTAP2_ERR_INVALID_SUBCOMMAND", "the subcommand is not valid"},
	ErrUVInvalid:              {"CTAP2_ERR_UV_INVALID", "user verification failed"},
	ErrUnauthorizedPermission: {"CTAP2_ERR_UNAUTHORIZED_PERMISSION", "the token lacks the permission for this command"},
	ErrOther:                  {"CTAP1_ERR_OTHER", "unspecified error"},
	ErrSpecLast:               {"CTAP2_ERR_SPEC_LAST", "reserved status code"},
}

// Name returns the spec name of the code, e.g. "CTAP2_ERR_NO_CREDENTIALS"; unknown codes
// get a range-based name with their hex value.
func (e StatusError) Name() string {
	if s, ok := statusTable[e]; ok {
		return s.name
	}
	switch {
	case e >= ErrExtensionFirst && e <= ErrExtensionLast:
		return fmt.Sprintf("CTAP2_ERR_EXTENSION_0x%02X", byte(e))
	case e >= ErrVendorFirst:
		return fmt.Sprintf("CTAP2_ERR_VENDOR_0x%02X", byte(e))
	}
	return fmt.Sprintf("CTAP_STATUS_0x%02X", byte(e))
}

// Description is a short human explanation of the code.
func (e StatusError) Description() string {
	if s, ok := statusTable[e]; ok {
		return s.desc
	}
	switch {
	case e >= ErrExtensionFirst && e <= ErrExtensionLast:
		return "extension-specific error"
	case e >= ErrVendorFirst:
		return "vendor-specific error"
	}
	return "unknown status code"
}

func (e StatusError) Error() string { return e.Name() }

// StatusOf returns the CTAP status carried by err, if any.
func StatusOf(err error) (StatusError, bool) {
	var s StatusError
	if errors.As(err, &s) {
		return s, true
	}
	return 0, false
}

// PINError is a PIN failure that knows how many tries are left (-1 when unknown).
type PINError struct {
	Status  StatusError
	Retries int
}

func (e *PINError) Error() string {
	switch {
	case e.Retries < 0:
		return e.Status.Name()
	case e.Retries == 1:
		return fmt.Sprintf("%s (1 retry left)", e.Status.Name())
	default:
		return fmt.Sprintf("%s (%d retries left)", e.Status.Name(), e.Retries)
	}
}

func (e *PINError) Unwrap() error { return e.Status }
