package main

import (
	"context"
	"fmt"
	"time"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// cancelGrace is how long a request may run on after its context ends: long
// enough for a transport to send CTAPHID_CANCEL and read the key's answer.
const cancelGrace = time.Second

// guardedDevice keeps a command's promise to end by --timeout (or Ctrl-C) even
// when a device, or its driver, ignores cancellation: a request still running
// cancelGrace after its context ended is abandoned with the context's error, and
// Close gives up after closeGrace. The abandoned goroutine dies with the process.
type guardedDevice struct {
	transport.Device
}

func (d guardedDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	type reply struct {
		data []byte
		err  error
	}
	done := make(chan reply, 1)
	go func() {
		b, err := d.Device.Transact(ctx, cmd, data)
		done <- reply{b, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-ctx.Done():
	}
	grace := time.NewTimer(cancelGrace)
	defer grace.Stop()
	select {
	case r := <-done:
		return r.data, r.err
	case <-grace.C:
		return nil, fmt.Errorf("%v request: the device did not stop within %v of the cancel: %w", cmd, cancelGrace, context.Cause(ctx))
	}
}

// Capabilities passes the CTAPHID INIT capabilities through, so that the client
// still tells CBOR keys from U2F-only ones.
func (d guardedDevice) Capabilities() byte { return capabilities(d.Device) }

func (d guardedDevice) Close() error { return closeWithin(d.Device.Close, closeGrace) }

// capabilities are dev's CTAPHID INIT capability flags; a device that does not
// say (not CTAPHID) is taken to speak CBOR.
func capabilities(dev transport.Device) byte {
	if c, ok := dev.(interface{ Capabilities() byte }); ok {
		return c.Capabilities()
	}
	return ctaphid.CapCBOR
}
