package main

import (
	"context"
	"fmt"
	"net"
	"strconv"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
)

// udpExposure serves the softkey by the authenticator-simulator convention: one
// 64-byte CTAPHID report per UDP datagram at addr. Port 0 picks a free port; the
// line printed names the one bound, so that scripts can find it.
func (a *app) udpExposure(state, addr string) (exposure, error) {
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 0 || n > 65535 {
		return exposure{}, usageErrorf("--udp=%s: want HOST:PORT, e.g. %s", addr, expose.DefaultUDPAddr)
	}
	// CTAPHID is the USB transport's protocol, and the simulators pass for USB keys.
	return exposure{transport: "usb", serve: func(ctx context.Context, auth *softkey.Authenticator) error {
		return a.serveUDP(ctx, auth, state, addr)
	}}, nil
}

// serveUDP listens on addr and answers every host that writes to it until ctx ends.
func (a *app) serveUDP(ctx context.Context, auth *softkey.Authenticator, state, addr string) error {
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return withHint(fmt.Errorf("listening on UDP %s: %w", addr, err),
			"is another simulator serving there? pick another port with --udp=HOST:PORT (port 0: any free one)")
	}
	defer conn.Close()
	fmt.Fprintf(a.io.Out, "serving softkey %s on UDP %s\n", state, conn.LocalAddr())
	opts := expose.UDPOptions{Log: a.frameLog()}
	if a.verbose > 0 {
		opts.Logf = a.debugf
	}
	if err := expose.ServeUDP(ctx, auth, conn, opts); err != nil && ctx.Err() == nil {
		return fmt.Errorf("serving on UDP %s: %w", conn.LocalAddr(), err)
	}
	return nil
}
