package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// app holds what every command needs: the streams, the global flags and the device
// registry. Commands copy what they need from it and do their work in a run function.
type app struct {
	io       *IOStreams
	registry *transport.Registry

	deviceURI string
	json      bool
	timeout   time.Duration
	verbose   int

	started bool // a command's RunE began: errors after this are not usage errors
}

func run(args []string, ios *IOStreams) int {
	a := &app{io: ios, registry: new(transport.Registry)}
	registerSchemes(a)
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(ios.In)
	root.SetOut(ios.Out)
	root.SetErr(ios.ErrOut)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err != nil && !a.started {
		err = &usageError{err} // cobra's own errors: unknown command or flag, bad arguments
	}
	if err != nil {
		line, hint := errorMessage(err)
		fmt.Fprintf(ios.ErrOut, "ctapkit: %s\n", line)
		if hint == "" && exitCode(err) == exitUsage {
			hint = "run '" + commandPath(root, args) + " --help' for usage"
		}
		if hint != "" {
			fmt.Fprintf(ios.ErrOut, "hint: %s\n", hint)
		}
	}
	return exitCode(err)
}

// commandPath is the name of the (sub)command args select, for the usage hint.
func commandPath(root *cobra.Command, args []string) string {
	if c, _, err := root.Find(args); err == nil {
		return c.CommandPath()
	}
	return root.Name()
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "ctapkit",
		Short: "Talk to FIDO2 security keys and ctapkit's software authenticator",
		Long: `ctapkit speaks CTAP2 to FIDO2 security keys (USB HID, NFC) and to its own software
authenticator, the softkey. Register and assert against any relying party, inspect keys,
and use the softkey in CI in place of hardware.

Devices are named by URI: soft:PATH (a softkey state file, opened in-process),
soft:mem (an ephemeral softkey), hid:/dev/hidrawN, pcsc:READER, udp:HOST:PORT.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			// cobra checks required flags only after this hook; check them here so a
			// missing --rp is a usage error (exit 2), not a failed command.
			if missing := missingRequiredFlags(c); len(missing) > 0 {
				return usageErrorf("missing %s", strings.Join(missing, ", "))
			}
			if err := c.ValidateFlagGroups(); err != nil {
				return err
			}
			if a.timeout <= 0 {
				return usageErrorf("--timeout must be positive, got %v", a.timeout)
			}
			a.started = true
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	f := root.PersistentFlags()
	f.StringVarP(&a.deviceURI, "device", "d", "", "device URI (default $CTAPKIT_DEVICE, else the only attached key)")
	f.BoolVar(&a.json, "json", false, "print machine-readable JSON")
	f.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for the user to touch the key")
	f.CountVarP(&a.verbose, "verbose", "v", "debug output on stderr (-vv: hex frames)")
	root.CompletionOptions.HiddenDefaultCmd = true

	root.AddCommand(
		a.versionCommand(),
		a.devicesCommand(),
		a.infoCommand(),
		a.winkCommand(),
		a.selectCommand(),
		a.makeCredentialCommand(),
		a.getAssertionCommand(),
		a.resetCommand(),
		a.pinCommand(),
		a.credCommand(),
		a.configCommand(),
		a.blobCommand(),
		a.softkeyCommand(),
		a.conformanceCommand(),
		a.webauthnCommand(),
		a.doctorCommand(),
	)
	return root
}

// debugf prints a debug line with -v.
func (a *app) debugf(format string, args ...any) {
	if a.verbose > 0 {
		fmt.Fprintf(a.io.ErrOut, "debug: "+format+"\n", args...)
	}
}

// frameLog returns the -vv frame logger, or nil. Its annotated hex dump is the
// transcript format ctaphid.ParseTranscript reads back, so a log of a misbehaving
// key can become a replay test.
func (a *app) frameLog() func(dir string, pkt []byte) {
	if a.verbose < 2 {
		return nil
	}
	return ctaphid.NewFrameLogger(a.io.ErrOut)
}

// beginSession starts one device command: the --timeout context and an open
// session, released together by done.
func (a *app) beginSession(parent context.Context) (ctx context.Context, s *session, done func(), err error) {
	ctx, cancel := a.withTimeout(parent)
	s, err = a.openSession(ctx)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, s, func() { s.Close(); cancel() }, nil
}

// beginSessionInfo is beginSession for commands that start from the key's getInfo.
func (a *app) beginSessionInfo(parent context.Context) (context.Context, *session, *ctap2.Info, func(), error) {
	ctx, s, done, err := a.beginSession(parent)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	info, err := s.client.Info(ctx)
	if err != nil {
		done()
		return nil, nil, nil, nil, err
	}
	return ctx, s, info, done, nil
}

// session is an open device with a CTAP2 client and the user-facing touch notice.
type session struct {
	dev    transport.Device
	client *ctap2.Client
	notice *touchNotice
}

func (s *session) Close() error {
	s.notice.stop()
	return s.dev.Close()
}

// openSession opens the selected device and wraps it in a client that tells the user
// to touch the key when it has been waiting for presence for half a second.
func (a *app) openSession(ctx context.Context) (*session, error) {
	dev, err := a.openDevice(ctx)
	if err != nil {
		return nil, err
	}
	n := &touchNotice{out: a.io.ErrOut, enabled: a.io.errTTY}
	return &session{dev: dev, notice: n, client: newClient(dev, n.status)}, nil
}

// withTimeout bounds an operation that may wait for the user.
func (a *app) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, a.timeout)
}

// touchNotice shows "Touch your security key…" after the key has asked for presence
// for half a second, on a terminal only, and clears it when the wait ends.
type touchNotice struct {
	out     io.Writer
	enabled bool

	mu    sync.Mutex
	timer *time.Timer
	shown bool
}

func (t *touchNotice) status(s byte) {
	if !t.enabled {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s != transport.StatusUPNeeded {
		t.clearLocked()
		return
	}
	if t.timer == nil {
		t.timer = time.AfterFunc(500*time.Millisecond, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.timer != nil && !t.shown {
				fmt.Fprint(t.out, "Touch your security key…")
				t.shown = true
			}
		})
	}
}

func (t *touchNotice) clearLocked() {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	if t.shown {
		fmt.Fprint(t.out, "\r\033[K")
		t.shown = false
	}
}

func (t *touchNotice) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clearLocked()
}

// missingRequiredFlags lists the required flags not given, as "--rp", for an error
// message that reads like the command line.
func missingRequiredFlags(c *cobra.Command) []string {
	var missing []string
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if req := f.Annotations[cobra.BashCompOneRequiredFlag]; len(req) > 0 && req[0] == "true" && !f.Changed {
			missing = append(missing, "--"+f.Name)
		}
	})
	return missing
}
