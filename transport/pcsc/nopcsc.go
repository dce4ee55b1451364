//go:build nopcsc || !(cgo || windows)

package pcsc

import (
	"context"
	"fmt"

	"github.com/ctapkit/ctapkit/transport"
)

// Open fails: this build has no PC/SC (see ErrNotBuilt).
func Open(_ context.Context, reader string, _ Options) (*Device, error) {
	return nil, fmt.Errorf("pcsc: opening %s: %w", reader, ErrNotBuilt)
}

// Enumerate finds nothing: this build has no PC/SC. The error wraps
// transport.ErrNoDevice, so listing every transport stays quiet about it.
func Enumerate(context.Context) ([]transport.DeviceInfo, error) {
	return nil, fmt.Errorf("pcsc: %w: %w", ErrNotBuilt, transport.ErrNoDevice)
}
