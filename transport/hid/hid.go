// Package hid reaches FIDO security keys over USB HID: CTAPHID (CTAP 2.1 §11.2)
// in 64-byte reports, with transport/ctaphid's host side doing the framing (INIT
// with a nonce check, one channel per Device, keepalives, CANCEL when ctx ends,
// retries while another program holds the key).
//
// On Linux the package is pure Go: it finds keys among /sys/class/hidraw by their
// report descriptor (usage page 0xF1D0, usage 1), reads report sizes from the
// descriptor and talks to /dev/hidrawN through non-blocking reads that the
// runtime's poller wakes, so deadlines and cancellation cost no goroutine. On
// macOS and Windows it uses github.com/karalabe/hid (hidapi, cgo); a build
// without cgo there keeps the API and fails with ErrNotBuilt.
package hid

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// SchemeName is the device URI scheme: hid:/dev/hidraw3 on Linux, hid:PATH with
// the platform's device path elsewhere.
const SchemeName = "hid"

// Options configures a Device. The zero value selects the defaults.
type Options struct {
	// Timeout is the longest silence tolerated while waiting for a reply; a key
	// waiting for a touch sends keepalives, so this does not limit the touch.
	// 0 = 3 s.
	Timeout time.Duration
	// Log, if set, sees every CTAPHID packet sent ("send") and received ("recv"),
	// as ctaphid.NewFrameLogger prints them. It must not keep or modify pkt.
	Log func(dir string, pkt []byte)
}

// ErrNotBuilt is what every function that needs USB HID returns in a build
// without it (macOS or Windows without cgo, or another OS).
var ErrNotBuilt = errors.New("built without USB HID support (macOS and Windows need cgo)")

// Device is a FIDO key on a USB HID interface. It implements transport.Device;
// its methods are safe for concurrent use and transactions are serialised.
type Device struct {
	hid  *ctaphid.Device
	info transport.DeviceInfo
}

var _ transport.Device = (*Device)(nil)

// RawLink opens the node a second time, without INIT (ctaphid.RawLinker).
func (d *Device) RawLink() (ctaphid.PacketConn, error) { return OpenPacketConn(d.info.Path) }

// Transact sends one request and returns the reply (see ctaphid.Device.Transact):
// keepalives go to transport.KeepaliveFunc(ctx), cancelling ctx sends CANCEL, a
// busy key is retried until ctx ends. A key that was unplugged gives a one-line
// error wrapping transport.ErrNoDevice.
func (d *Device) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	resp, err := d.hid.Transact(ctx, cmd, data)
	if g, ok := errors.AsType[*goneError](err); ok {
		return nil, g // "the key was removed" says it all; the CTAPHID step does not help
	}
	return resp, err
}

// Info describes the key: transport "hid", URI "hid:PATH", product and ids.
func (d *Device) Info() transport.DeviceInfo { return d.info }

// Close closes the device node, which also ends a transaction in progress.
func (d *Device) Close() error { return d.hid.Close() }

// Capabilities returns the CTAPHID INIT capability flags (ctaphid.CapWink,
// CapCBOR, CapNMSG), which ctap2.Client reads to fall back to U2F.
func (d *Device) Capabilities() byte { return d.hid.Capabilities() }

// Wink asks the key to identify itself (blink); keys without ctaphid.CapWink
// answer ERR_INVALID_CMD.
func (d *Device) Wink(ctx context.Context) error { return d.hid.Wink(ctx) }

// Scheme returns the hid: URI scheme for a transport.Registry: Open with opts,
// and Enumerate.
func Scheme(opts Options) transport.Scheme {
	return transport.Scheme{
		Name: SchemeName,
		Open: func(ctx context.Context, path string) (transport.Device, error) {
			d, err := Open(ctx, path, opts)
			if err != nil {
				return nil, err
			}
			return d, nil
		},
		Enumerate: Enumerate,
	}
}

// goneError says in one line that the key went away. It matches
// transport.ErrNoDevice and the system's own error.
type goneError struct {
	path  string
	cause error
}

func (e *goneError) Error() string   { return fmt.Sprintf("the key at %s was removed", e.path) }
func (e *goneError) Unwrap() []error { return []error{transport.ErrNoDevice, e.cause} }
