package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
)

// exposure is one way of serving the softkey to other programs. Adding one (uhid,
// UDP) takes a flag in softkeyServeCommand and a function that returns its exposure.
type exposure struct {
	// transport is what getInfo lists for it: "nfc", "usb".
	transport string
	// serve runs until ctx ends (then it returns nil) or the exposure fails for
	// good. Outages it can wait out (the other side restarting) it waits out.
	serve func(ctx context.Context, auth *softkey.Authenticator) error
}

func (a *app) softkeyServeCommand() *cobra.Command {
	var state, pcscAddr, udpAddr string
	c := &cobra.Command{
		Use:   "serve --uhid | --pcsc[=HOST:PORT] | --udp[=HOST:PORT]",
		Short: "Serve the softkey as a device to other programs",
		Long: `Serve a softkey state file as a security key that other programs find on their own.
Several exposures may run at once; the state file is held by this process meanwhile.

--uhid makes a USB HID device through Linux uhid (needs /dev/uhid and root): it appears
as /dev/hidrawN to libfido2, browsers and ctapkit -d hid:, as a USB key would.

--pcsc connects to vsmartcard's vpcd driver inside pcscd (Debian vsmartcard-vpcd), which
then shows a card in the reader "Virtual PCD 00 00" (port 35963; 35964 is "… 00 01").
Every PC/SC client sees it as an NFC security key: python-fido2's CtapPcscDevice,
libfido2 built with PC/SC, ctapkit -d pcsc:. vpcd accepts cards from any host that can
reach its port, without authentication. When pcscd is not running or restarts, the
softkey waits and reconnects.

--udp answers CTAPHID reports in UDP datagrams, the convention of the FIDO authenticator
simulators that test suites drive (default 127.0.0.1:8111; port 0 picks a free one and
the line printed names it): ctapkit -d udp:HOST:PORT.

The softkey keeps serving until Ctrl-C or SIGTERM. Touches follow
CTAPKIT_SOFTKEY_PRESENCE (auto, deny, or prompt: ask on this terminal), built-in UV
CTAPKIT_SOFTKEY_UV. -v logs every APDU or report.`,
		Example: "  ctapkit softkey serve --state ./sk.db --uhid\n  ctapkit softkey serve --state ./sk.db --pcsc\n" +
			"  ctapkit softkey serve --state ./sk.db --pcsc=localhost:35964 --udp=127.0.0.1:0",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unexpected argument %q (an address goes with an equals sign: --pcsc=%s or --udp=%s)", args[0], args[0], args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			var exps []exposure
			if cmd.Flags().Changed("pcsc") {
				e, err := a.pcscExposure(state, pcscAddr)
				if err != nil {
					return err
				}
				exps = append(exps, e)
			}
			if cmd.Flags().Changed("udp") {
				e, err := a.udpExposure(state, udpAddr)
				if err != nil {
					return err
				}
				exps = append(exps, e)
			}
			if on, _ := cmd.Flags().GetBool("uhid"); on {
				exps = append(exps, a.uhidExposure(state))
			}
			if len(exps) == 0 {
				return usageErrorf("softkey serve: say how to serve the softkey: --uhid, --pcsc[=HOST:PORT] or --udp[=HOST:PORT]")
			}
			return a.serveSoftkey(cmd.Context(), state, exps)
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	c.Flags().StringVar(&pcscAddr, "pcsc", "", "serve as a PC/SC card through vpcd at `HOST:PORT`")
	c.Flags().Lookup("pcsc").NoOptDefVal = expose.DefaultVPCDAddr
	c.Flags().Bool("uhid", false, "serve as a USB HID device (/dev/hidrawN) through Linux uhid")
	c.Flags().StringVar(&udpAddr, "udp", "", "serve CTAPHID reports over UDP, the simulator convention, at `HOST:PORT` (port 0: any free port)")
	c.Flags().Lookup("udp").NoOptDefVal = expose.DefaultUDPAddr
	return c
}

// serveSoftkey opens the state, serves it through every exposure until Ctrl-C or
// SIGTERM, and writes the state back.
func (a *app) serveSoftkey(parent context.Context, state string, exps []exposure) error {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	knobs, err := softkeyKnobs()
	if err != nil {
		return err
	}
	cfg := knobs.cfg
	for _, e := range exps {
		if !slices.Contains(cfg.Transports, e.transport) {
			cfg.Transports = append(cfg.Transports, e.transport)
		}
	}
	st, err := openSoftStore(state)
	if err != nil {
		return err
	}
	if err := useStoredAttestation(st, &cfg); err != nil {
		st.Close()
		return err
	}
	auth, err := softkey.New(st, cfg)
	if err != nil {
		st.Close()
		return fmt.Errorf("starting softkey: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(exps))
	for _, e := range exps {
		go func() { errs <- e.serve(ctx, auth) }()
	}
	var serveErr error
	for range exps {
		if err := <-errs; err != nil && serveErr == nil {
			serveErr = err
			cancel() // one exposure failing ends them all
		}
	}
	if err := auth.Close(); err != nil {
		return errors.Join(serveErr, fmt.Errorf("saving softkey state %s: %w", state, err))
	}
	return serveErr
}

// pcscExposure serves the softkey as a contactless card through vpcd at addr.
func (a *app) pcscExposure(state, addr string) (exposure, error) {
	host, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return exposure{}, usageErrorf("--pcsc=%s: want HOST:PORT, e.g. %s", addr, expose.DefaultVPCDAddr)
	}
	return exposure{transport: "nfc", serve: func(ctx context.Context, auth *softkey.Authenticator) error {
		return a.servePCSC(ctx, auth, state, addr)
	}}, nil
}

// vpcd reconnect backoff: quick at first, since pcscd restarts in about a second.
const (
	vpcdMinBackoff = 100 * time.Millisecond
	vpcdMaxBackoff = time.Second
)

// servePCSC keeps a card connected to vpcd: it reconnects whenever vpcd is not
// there or drops the card, and says so once per outage.
func (a *app) servePCSC(ctx context.Context, auth *softkey.Authenticator, state, addr string) error {
	var log func(string, []byte)
	if a.verbose > 0 {
		log = func(dir string, apdu []byte) { a.debugf("apdu %s %X", dir, apdu) }
	}
	card := expose.NewCard(auth, expose.CardOptions{Log: log})
	backoff := vpcdMinBackoff
	told := false
	for {
		conn, err := expose.DialVPCD(ctx, addr)
		if err == nil {
			told, backoff = false, vpcdMinBackoff
			fmt.Fprintf(a.io.Out, "serving softkey %s as a PC/SC card on vpcd %s\n", state, addr)
			err = expose.ServeVPCD(ctx, conn, card)
			conn.Close()
			if ctx.Err() != nil {
				return nil
			}
			a.debugf("vpcd connection ended: %v", err)
			if !told {
				fmt.Fprintf(a.io.ErrOut, "ctapkit: vpcd at %s dropped the card (pcscd stopped?); reconnecting\n", addr)
				told = true
			}
		} else {
			if ctx.Err() != nil {
				return nil
			}
			a.debugf("%v", err)
			if !told {
				fmt.Fprintf(a.io.ErrOut, "ctapkit: no vpcd listening at %s; retrying until there is\n"+
					"hint: start pcscd with the vsmartcard-vpcd driver installed (apt-get install pcscd vsmartcard-vpcd; pcscd --foreground)\n", addr)
				told = true
			}
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, vpcdMaxBackoff)
	}
}
