// Package transport defines what every carrier of CTAP messages provides: the Device
// interface, the command set shared by USB HID and NFC, device URIs and the scheme
// registry that opens and enumerates devices by URI.
//
// Concrete transports live in sub-packages (ctaphid, hid, pcsc, udp); this package
// imports none of them, and none of them import ctap2 or softkey.
package transport

import (
	"context"
	"errors"
	"fmt"
)

// Command is a CTAPHID command code. NFC and other transports map the same codes onto
// their own framing, so the layers above never know which transport they use.
type Command byte

// CTAPHID command codes (FIDO CTAP 2.1 §11.2.9), without the init-packet bit 0x80.
const (
	CmdPing      Command = 0x01
	CmdMsg       Command = 0x03 // CTAP1/U2F APDU
	CmdLock      Command = 0x04
	CmdInit      Command = 0x06
	CmdWink      Command = 0x08
	CmdCBOR      Command = 0x10 // CTAP2 command byte + CBOR
	CmdCancel    Command = 0x11
	CmdKeepalive Command = 0x3B
	CmdError     Command = 0x3F
)

var commandNames = map[Command]string{
	CmdPing: "PING", CmdMsg: "MSG", CmdLock: "LOCK", CmdInit: "INIT", CmdWink: "WINK",
	CmdCBOR: "CBOR", CmdCancel: "CANCEL", CmdKeepalive: "KEEPALIVE", CmdError: "ERROR",
}

func (c Command) String() string {
	if n, ok := commandNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CMD(0x%02x)", byte(c))
}

// Keepalive status values (CTAPHID_KEEPALIVE payload, NFC 0x9100 status byte).
const (
	StatusProcessing byte = 0x01
	StatusUPNeeded   byte = 0x02
)

// DeviceInfo describes a device as found by enumeration or after opening it.
type DeviceInfo struct {
	URI          string `json:"uri"`       // the URI that opens this device, e.g. "hid:/dev/hidraw3"
	Transport    string `json:"transport"` // "hid", "pcsc", "soft", "udp"
	Path         string `json:"path"`      // the scheme-specific part of URI
	Product      string `json:"product,omitempty"`
	Manufacturer string `json:"manufacturer,omitempty"`
	VendorID     uint16 `json:"vendorId,omitempty"`
	ProductID    uint16 `json:"productId,omitempty"`
	Serial       string `json:"serial,omitempty"`
}

// Device is a connected authenticator, whatever carries the bytes.
type Device interface {
	// Transact sends one CTAP message (CBOR command or U2F APDU) and returns the reply.
	// Cancelling ctx sends CTAPHID_CANCEL (HID) or stops polling (NFC). Keepalives
	// received while waiting are reported to the function set with WithKeepalive.
	Transact(ctx context.Context, cmd Command, data []byte) ([]byte, error)
	Info() DeviceInfo
	Close() error
}

// Sentinel errors shared by every transport; callers match them with errors.Is.
var (
	ErrNoDevice      = errors.New("no device found")
	ErrAmbiguous     = errors.New("several devices found")
	ErrBadURI        = errors.New("invalid device URI")
	ErrUnknownScheme = errors.New("unknown device scheme")
	ErrTimeout       = errors.New("timed out waiting for the device")
	ErrClosed        = errors.New("device closed")
	ErrInUse         = errors.New("device in use")
	// ErrUnsupportedCommand: the device does not implement the command at all (CTAPHID
	// ERR_INVALID_CMD), e.g. CBOR on a U2F-only key.
	ErrUnsupportedCommand = errors.New("command not supported by the device")
)

type keepaliveKey struct{}

// WithKeepalive returns a context whose transactions report each keepalive status
// (StatusProcessing, StatusUPNeeded) to fn. Transports call fn only when the status
// changes, so fn can print "touch your key" once.
func WithKeepalive(ctx context.Context, fn func(status byte)) context.Context {
	return context.WithValue(ctx, keepaliveKey{}, fn)
}

// KeepaliveFunc returns the function set by WithKeepalive, or a no-op.
func KeepaliveFunc(ctx context.Context) func(status byte) {
	if fn, ok := ctx.Value(keepaliveKey{}).(func(byte)); ok && fn != nil {
		return fn
	}
	return func(byte) {}
}

// StatusNotifier wraps fn so that it is called only when the status changes.
// Transports use it to implement the "report once per change" rule.
func StatusNotifier(fn func(byte)) func(byte) {
	var last byte
	return func(s byte) {
		if s != last {
			last = s
			fn(s)
		}
	}
}
