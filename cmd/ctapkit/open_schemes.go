package main

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/ctapkit/ctapkit/transport"
)

// lateScheme is a scheme whose options depend on flags (the -vv logs): build
// makes it with the options as they are when a device opens, once the flags are
// parsed.
func lateScheme(build func() transport.Scheme) transport.Scheme {
	s := build()
	s.Open = func(ctx context.Context, path string) (transport.Device, error) {
		return build().Open(ctx, path)
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
