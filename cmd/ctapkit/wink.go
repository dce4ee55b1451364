package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

func (a *app) winkCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wink",
		Short: "Make a key blink, to tell it apart from others (CTAPHID WINK)",
		Long: `Ask the key to identify itself: USB keys blink or beep (CTAPHID WINK). Keys on a
PC/SC (NFC) reader, and USB keys that do not claim the WINK capability, cannot.
A soft: key logs the wink with -v.`,
		Example: "  ctapkit -d hid:/dev/hidraw3 wink",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			dev, err := a.openDevice(ctx)
			if err != nil {
				return err
			}
			defer dev.Close()
			uri := dev.Info().URI
			if err := wink(ctx, dev); err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"device": uri, "wink": true})
			}
			fmt.Fprintf(a.io.Out, "%s winked\n", uri)
			return nil
		},
	}
}

// winker is what CTAPHID transports (hid:, udp:, soft:) offer besides Transact.
type winker interface {
	Wink(ctx context.Context) error
}

// wink sends CTAPHID WINK when both the transport and the key support it.
// PC/SC has no WINK at all; a CTAPHID key without CapWink would answer
// ERR_INVALID_CMD, so it is not asked.
func wink(ctx context.Context, dev transport.Device) error {
	uri := dev.Info().URI
	inner := dev
	if g, ok := dev.(guardedDevice); ok {
		inner = g.Device
	}
	if _, ok := inner.(winker); !ok {
		return fmt.Errorf("%s cannot wink: its transport (%s) has no WINK command; only USB keys (hid:) and simulators (udp:, soft:) have one",
			uri, dev.Info().Transport)
	}
	if capabilities(dev)&ctaphid.CapWink == 0 {
		return fmt.Errorf("%s cannot wink: the key does not claim the WINK capability", uri)
	}
	// The same request as winker.Wink, but through dev's Transact, which keeps
	// the --timeout promise of guardedDevice.
	if _, err := dev.Transact(ctx, transport.CmdWink, nil); err != nil {
		if errors.Is(err, transport.ErrUnsupportedCommand) {
			return fmt.Errorf("%s cannot wink: the key refused WINK (%v)", uri, err)
		}
		return fmt.Errorf("wink: %w", err)
	}
	return nil
}
