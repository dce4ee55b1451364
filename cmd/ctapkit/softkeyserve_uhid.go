package main

import (
	"context"
	"fmt"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
)

// uhidExposure serves the softkey as a USB FIDO HID device through Linux's
// /dev/uhid: every program on the machine sees it as /dev/hidrawN.
func (a *app) uhidExposure(state string) exposure {
	return exposure{transport: "usb", serve: func(ctx context.Context, auth *softkey.Authenticator) error {
		err := expose.ServeUHID(ctx, auth, expose.UHIDOptions{
			Log: a.frameLog(),
			// Printed once the node exists, so scripts may start hosts on it.
			OnNode: func(path string) {
				fmt.Fprintf(a.io.Out, "serving softkey %s as USB HID device %s\n", state, path)
			},
		})
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("softkey serve --uhid: %w", err)
	}}
}
