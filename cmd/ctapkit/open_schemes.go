package main

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/hid"
	"github.com/ctapkit/ctapkit/transport/pcsc"
)

// The schemes whose options depend on flags read them when a device opens,
// after the flags are parsed.

// pcscScheme is the pcsc: scheme with -vv's APDU log; the options are read when
// a device opens, after the flags are parsed.
func (a *app) pcscScheme() transport.Scheme {
	s := pcsc.Scheme(pcsc.Options{})
	s.Open = func(ctx context.Context, reader string) (transport.Device, error) {
		return pcsc.Scheme(pcsc.Options{Log: a.apduLog()}).Open(ctx, reader)
	}
	return s
}

// apduLog prints every command and response APDU on stderr with -vv.
func (a *app) apduLog() func(dir string, apdu []byte) {
	if a.verbose < 2 {
		return nil
	}
	return func(dir string, apdu []byte) {
		arrow := "->"
		if dir == "recv" {
			arrow = "<-"
		}
		fmt.Fprintf(a.io.ErrOut, "apdu %s %s\n", arrow, hex.EncodeToString(apdu))
	}
}

// hidScheme is the hid: scheme with -vv's CTAPHID frame log.
func (a *app) hidScheme() transport.Scheme {
	s := hid.Scheme(hid.Options{})
	s.Open = func(ctx context.Context, path string) (transport.Device, error) {
		return hid.Scheme(hid.Options{Log: a.frameLog()}).Open(ctx, path)
	}
	return s
}
