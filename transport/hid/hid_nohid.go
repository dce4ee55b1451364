//go:build !linux && !(cgo && (darwin || windows))

package hid

import (
	"context"
	"fmt"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// Open fails: this build has no USB HID (see ErrNotBuilt).
func Open(_ context.Context, path string, _ Options) (*Device, error) {
	return nil, fmt.Errorf("hid: opening %s: %w", path, ErrNotBuilt)
}

// Enumerate finds nothing: this build has no USB HID. The error wraps
// transport.ErrNoDevice, so listing every transport stays quiet about it.
func Enumerate(context.Context) ([]transport.DeviceInfo, error) {
	return nil, fmt.Errorf("hid: %w: %w", ErrNotBuilt, transport.ErrNoDevice)
}

// OpenPacketConn fails: this build has no USB HID.
func OpenPacketConn(path string) (ctaphid.PacketConn, error) {
	return nil, fmt.Errorf("hid: opening %s: %w", path, ErrNotBuilt)
}
