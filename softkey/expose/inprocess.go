// Package expose serves a softkey as a device: in-process through CTAPHID framing over
// a memory pipe, and (in later work) as a Linux uhid device, a vpcd virtual card or UDP.
package expose

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// Device capabilities the softkey announces in CTAPHID_INIT: WINK, CBOR, and (no
// NMSG) U2F over CTAPHID_MSG.
const softkeyCapabilities = ctaphid.CapWink | ctaphid.CapCBOR

// u2fOnlyCapabilities are those of a U2F-only key: WINK and MSG, no CBOR.
const u2fOnlyCapabilities = ctaphid.CapWink

// InProcessOptions configures InProcess.
type InProcessOptions struct {
	Info transport.DeviceInfo         // what Device.Info reports
	Log  func(dir string, pkt []byte) // host-side CTAPHID frame log (-vv), or nil
	// U2FOnly serves the softkey as a U2F-only key, for testing hosts' CTAP1
	// fallback: INIT reports no CBOR capability and CBOR requests get
	// CTAPHID_ERR_INVALID_CMD; U2F over MSG works as always.
	U2FOnly bool
}

// InProcess serves auth on the device end of a ctaphid.Pipe and returns the host end as
// a transport.Device. Every message crosses real CTAPHID framing (INIT, fragmentation,
// keepalive, cancel), so tests through it exercise the code path of a USB key. Closing
// the device stops the server and closes auth, which persists its state.
func InProcess(ctx context.Context, auth *softkey.Authenticator, opts InProcessOptions) (transport.Device, error) {
	hostEnd, devEnd := ctaphid.Pipe()
	caps := softkeyCapabilities
	if opts.U2FOnly {
		caps = u2fOnlyCapabilities
	}
	srv := ctaphid.NewServer(auth, ctaphid.ServerOptions{Capabilities: caps})
	serveCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, devEnd) }()

	dev, err := ctaphid.Open(ctx, hostEnd, ctaphid.Options{Info: opts.Info, Log: opts.Log})
	if err != nil {
		stop()
		hostEnd.Close()
		<-served
		return nil, fmt.Errorf("connecting to the in-process softkey: %w", err)
	}
	return &inProcessDevice{Device: dev, stop: stop, served: served, auth: auth, devEnd: devEnd}, nil
}

type inProcessDevice struct {
	*ctaphid.Device
	stop   context.CancelFunc
	served chan error
	auth   *softkey.Authenticator
	devEnd ctaphid.PacketConn

	closeOnce sync.Once
	closeErr  error
}

// Close shuts down the host side, the server and the authenticator, in that order, so
// no request is in flight when the softkey state is written back.
func (d *inProcessDevice) Close() error {
	d.closeOnce.Do(func() {
		hostErr := d.Device.Close()
		d.stop()
		d.devEnd.Close()
		<-d.served
		d.closeErr = errors.Join(hostErr, d.auth.Close())
	})
	return d.closeErr
}
