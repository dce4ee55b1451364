package ctap2

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// specStatus is the CTAP 2.1 status table (§8.2), kept independent of status.go.
var specStatus = map[byte]string{
	0x00: "CTAP2_OK", 0x01: "CTAP1_ERR_INVALID_COMMAND", 0x02: "CTAP1_ERR_INVALID_PARAMETER",
	0x03: "CTAP1_ERR_INVALID_LENGTH", 0x04: "CTAP1_ERR_INVALID_SEQ", 0x05: "CTAP1_ERR_TIMEOUT",
	0x06: "CTAP1_ERR_CHANNEL_BUSY", 0x0A: "CTAP1_ERR_LOCK_REQUIRED", 0x0B: "CTAP1_ERR_INVALID_CHANNEL",
	0x11: "CTAP2_ERR_CBOR_UNEXPECTED_TYPE", 0x12: "CTAP2_ERR_INVALID_CBOR",
	0x14: "CTAP2_ERR_MISSING_PARAMETER", 0x15: "CTAP2_ERR_LIMIT_EXCEEDED",
	0x16: "CTAP2_ERR_UNSUPPORTED_EXTENSION", 0x17: "CTAP2_ERR_FP_DATABASE_FULL",
	0x18: "CTAP2_ERR_LARGE_BLOB_STORAGE_FULL", 0x19: "CTAP2_ERR_CREDENTIAL_EXCLUDED",
	0x21: "CTAP2_ERR_PROCESSING", 0x22: "CTAP2_ERR_INVALID_CREDENTIAL",
	0x23: "CTAP2_ERR_USER_ACTION_PENDING", 0x24: "CTAP2_ERR_OPERATION_PENDING",
	0x25: "CTAP2_ERR_NO_OPERATIONS", 0x26: "CTAP2_ERR_UNSUPPORTED_ALGORITHM",
	0x27: "CTAP2_ERR_OPERATION_DENIED", 0x28: "CTAP2_ERR_KEY_STORE_FULL", 0x29: "CTAP2_ERR_NOT_BUSY",
	0x2A: "CTAP2_ERR_NO_OPERATION_PENDING", 0x2B: "CTAP2_ERR_UNSUPPORTED_OPTION",
	0x2C: "CTAP2_ERR_INVALID_OPTION", 0x2D: "CTAP2_ERR_KEEPALIVE_CANCEL",
	0x2E: "CTAP2_ERR_NO_CREDENTIALS", 0x2F: "CTAP2_ERR_USER_ACTION_TIMEOUT",
	0x30: "CTAP2_ERR_NOT_ALLOWED", 0x31: "CTAP2_ERR_PIN_INVALID", 0x32: "CTAP2_ERR_PIN_BLOCKED",
	0x33: "CTAP2_ERR_PIN_AUTH_INVALID", 0x34: "CTAP2_ERR_PIN_AUTH_BLOCKED",
	0x35: "CTAP2_ERR_PIN_NOT_SET", 0x36: "CTAP2_ERR_PUAT_REQUIRED",
	0x37: "CTAP2_ERR_PIN_POLICY_VIOLATION", 0x38: "CTAP2_ERR_PIN_TOKEN_EXPIRED",
	0x39: "CTAP2_ERR_REQUEST_TOO_LARGE", 0x3A: "CTAP2_ERR_ACTION_TIMEOUT", 0x3B: "CTAP2_ERR_UP_REQUIRED",
	0x3C: "CTAP2_ERR_UV_BLOCKED", 0x3D: "CTAP2_ERR_INTEGRITY_FAILURE",
	0x3E: "CTAP2_ERR_INVALID_SUBCOMMAND", 0x3F: "CTAP2_ERR_UV_INVALID",
	0x40: "CTAP2_ERR_UNAUTHORIZED_PERMISSION", 0x7F: "CTAP1_ERR_OTHER", 0xDF: "CTAP2_ERR_SPEC_LAST",
}

func TestStatusNames(t *testing.T) {
	for code, want := range specStatus {
		if got := StatusError(code).Name(); got != want {
			t.Errorf("0x%02X: Name = %q, want %q", code, got, want)
		}
	}
	seen := map[string]byte{}
	for i := 0; i < 256; i++ {
		s := StatusError(i)
		name, desc := s.Name(), s.Description()
		if name == "" || desc == "" {
			t.Errorf("0x%02X: empty name %q or description %q", i, name, desc)
		}
		if !strings.HasPrefix(name, "CTAP") || strings.ContainsAny(name, " \n") {
			t.Errorf("0x%02X: name %q does not look like a spec name", i, name)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("0x%02X and 0x%02X share the name %q", prev, i, name)
		}
		seen[name] = byte(i)
		if s.Error() != name {
			t.Errorf("0x%02X: Error() = %q, want the name %q", i, s.Error(), name)
		}
		if desc != strings.TrimSpace(desc) || strings.HasSuffix(desc, ".") {
			t.Errorf("0x%02X: description %q should be a bare phrase", i, desc)
		}
		if _, known := specStatus[byte(i)]; !known && s >= 0x01 && s < ErrExtensionFirst {
			if desc != "unknown status code" {
				t.Errorf("0x%02X: unassigned code described as %q", i, desc)
			}
		}
	}
}

func TestStatusRanges(t *testing.T) {
	for _, tc := range []struct {
		s          StatusError
		name, desc string
	}{
		{0x10, "CTAP_STATUS_0x10", "unknown status code"},
		{0x13, "CTAP_STATUS_0x13", "unknown status code"},
		{0x80, "CTAP_STATUS_0x80", "unknown status code"},
		{ErrExtensionFirst, "CTAP2_ERR_EXTENSION_0xE0", "extension-specific error"},
		{0xE7, "CTAP2_ERR_EXTENSION_0xE7", "extension-specific error"},
		{ErrExtensionLast, "CTAP2_ERR_EXTENSION_0xEF", "extension-specific error"},
		{ErrVendorFirst, "CTAP2_ERR_VENDOR_0xF0", "vendor-specific error"},
		{0xF2, "CTAP2_ERR_VENDOR_0xF2", "vendor-specific error"}, // OpenSK internal error
		{ErrVendorLast, "CTAP2_ERR_VENDOR_0xFF", "vendor-specific error"},
	} {
		if n, d := tc.s.Name(), tc.s.Description(); n != tc.name || d != tc.desc {
			t.Errorf("0x%02X: %q / %q, want %q / %q", byte(tc.s), n, d, tc.name, tc.desc)
		}
	}
}

func TestStatusOf(t *testing.T) {
	pinErr := &PINError{Status: ErrPINInvalid, Retries: 3}
	for _, tc := range []struct {
		name string
		err  error
		want StatusError
		ok   bool
	}{
		{"bare", ErrNoCredentials, ErrNoCredentials, true},
		{"wrapped", fmt.Errorf("getAssertion: %w", ErrNoCredentials), ErrNoCredentials, true},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", ErrOperationDenied)), ErrOperationDenied, true},
		{"joined", errors.Join(errors.New("other"), ErrKeepaliveCancel), ErrKeepaliveCancel, true},
		{"PIN error", pinErr, ErrPINInvalid, true},
		{"wrapped PIN error", fmt.Errorf("getting PIN token: %w", pinErr), ErrPINInvalid, true},
		{"vendor code", fmt.Errorf("x: %w", StatusError(0xF3)), 0xF3, true},
		{"plain error", errors.New("boom"), 0, false},
		{"nil", nil, 0, false},
		{"formatted with %v", fmt.Errorf("x: %v", ErrNoCredentials), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := StatusOf(tc.err)
			if got != tc.want || ok != tc.ok {
				t.Errorf("StatusOf = 0x%02X, %v; want 0x%02X, %v", byte(got), ok, byte(tc.want), tc.ok)
			}
			if tc.ok && !errors.Is(tc.err, tc.want) {
				t.Errorf("errors.Is(err, %v) = false", tc.want)
			}
		})
	}
}

func TestPINError(t *testing.T) {
	for _, tc := range []struct {
		err  PINError
		want string
	}{
		{PINError{ErrPINInvalid, 3}, "CTAP2_ERR_PIN_INVALID (3 retries left)"},
		{PINError{ErrPINInvalid, 7}, "CTAP2_ERR_PIN_INVALID (7 retries left)"},
		{PINError{ErrPINInvalid, 1}, "CTAP2_ERR_PIN_INVALID (1 retry left)"},
		{PINError{ErrPINInvalid, 0}, "CTAP2_ERR_PIN_INVALID (0 retries left)"},
		{PINError{ErrPINInvalid, -1}, "CTAP2_ERR_PIN_INVALID"},
		{PINError{ErrPINAuthBlocked, -1}, "CTAP2_ERR_PIN_AUTH_BLOCKED"},
		{PINError{ErrPINBlocked, 0}, "CTAP2_ERR_PIN_BLOCKED (0 retries left)"},
		{PINError{ErrUVInvalid, 2}, "CTAP2_ERR_UV_INVALID (2 retries left)"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.err, got, tc.want)
		}
	}

	err := fmt.Errorf("changing PIN: %w", &PINError{Status: ErrPINInvalid, Retries: 2})
	var pe *PINError
	if !errors.As(err, &pe) || pe.Retries != 2 {
		t.Fatalf("errors.As(*PINError) failed on %v", err)
	}
	if !errors.Is(err, ErrPINInvalid) || errors.Is(err, ErrPINBlocked) {
		t.Error("errors.Is does not see through PINError to its status")
	}
	if got := err.Error(); got != "changing PIN: CTAP2_ERR_PIN_INVALID (2 retries left)" {
		t.Errorf("wrapped message %q", got)
	}
}

func TestCommandString(t *testing.T) {
	for c, want := range map[Command]string{
		CmdMakeCredential: "makeCredential", CmdGetAssertion: "getAssertion", CmdGetInfo: "getInfo",
		CmdGetNextAssertion: "getNextAssertion", CmdSelection: "selection",
		CmdCredentialMgmtPre: "credentialManagement(pre)", 0x05: "command(0x05)", 0xff: "command(0xff)",
	} {
		if got := c.String(); got != want {
			t.Errorf("Command(0x%02x).String() = %q, want %q", byte(c), got, want)
		}
	}
}
