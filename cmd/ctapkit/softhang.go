package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ctapkit/ctapkit/transport"
)

// hangingDevice is the CTAPKIT_SOFTKEY_HANG_AFTER and CTAPKIT_SOFTKEY_UNPLUG_AFTER
// test knob: a device that answers its first n requests and then fails the way a
// broken key does. A hanging one gives no reply at all to later requests, and
// cancelling their context does not help: they return only when the device is
// closed (stuck firmware). An unplugged one fails every later request at once
// with ErrNoDevice (pulled out mid-suite). Commands and the conformance suite must
// still end, with failed and skipped results rather than a hang.
type hangingDevice struct {
	transport.Device
	unplug bool
	left   atomic.Int64
	closed chan struct{}
	once   sync.Once
}

func newHangingDevice(dev transport.Device, n int, unplug bool) *hangingDevice {
	d := &hangingDevice{Device: dev, unplug: unplug, closed: make(chan struct{})}
	d.left.Store(int64(n))
	return d
}

func (d *hangingDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	if d.left.Add(-1) < 0 {
		if d.unplug {
			return nil, fmt.Errorf("%v request: device disconnected: %w", cmd, transport.ErrNoDevice)
		}
		<-d.closed
		return nil, fmt.Errorf("%v request: %w", cmd, transport.ErrClosed)
	}
	return d.Device.Transact(ctx, cmd, data)
}

// Capabilities passes the CTAPHID INIT capabilities through, so that the client
// still sees a CBOR key (or a U2F-only one).
func (d *hangingDevice) Capabilities() byte { return capabilities(d.Device) }

func (d *hangingDevice) Close() error {
	d.once.Do(func() { close(d.closed) })
	return d.Device.Close()
}
