package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/manifoldco/promptui"
	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

const destructiveWarning = "the destructive cases set a PIN, change settings, delete credentials and reset the key: " +
	"everything on it is erased and cannot be recovered"

// conformanceOptions are the flags of `ctapkit conformance`.
type conformanceOptions struct {
	only            string
	list            bool
	destructive     bool
	yes             bool
	autoPresence    bool
	autoPresenceSet bool // --auto-presence given explicitly (true or false)
	junit           string
	caseTimeout     time.Duration
	pin             pinFlag
}

func (a *app) conformanceCommand() *cobra.Command {
	var o conformanceOptions
	c := &cobra.Command{
		Use:   "conformance",
		Short: "Run the FIDO2/CTAP2 conformance suite against a key",
		Long: `Run ctapkit's conformance suite (CTAP2, CTAPHID, U2F and NFC protocol tests modelled on
the FIDO Alliance's conformance tools) against any device: a USB or NFC key, or the softkey
(soft:PATH, soft:mem). Each case passes, fails with what was observed against what was
expected, or is skipped with the reason.

Output: one line per case on stdout as it finishes (on a terminal, the running case is shown
on stderr meanwhile), then a table of pass/fail/skip counts by area. With --json, stdout is
JSON Lines: one object per case, {"type":"case","id","area","description","requirement",
"status":"pass|fail|skip","message","durationNs","log"}, then one final
{"type":"summary","device","total","pass","fail","skip","cancelled","durationNs","areas":[...]}.
--junit FILE also writes a JUnit XML report (one testsuite per area).

Touch: cases that need a person to touch the key wait for one when stderr is a terminal.
With --auto-presence nobody is there: those cases are skipped unless the key presses
itself (a soft: device always does: it grants or, with CTAPKIT_SOFTKEY_PRESENCE=deny,
declines by itself). Without a terminal the suite runs as with --auto-presence and says
so; --auto-presence=false makes it wait for touches anyway (a robot finger).

--destructive adds the cases that set a PIN, change settings and reset the key. It asks
for confirmation on a terminal; without one it needs --yes. soft:mem needs neither,
since nothing of it outlives the run. The key's PIN, if it has one, comes from
$CTAPKIT_PIN (or --pin, or a prompt); destructive cases may set that PIN on a key
without one.

Each case may take --case-timeout (default: --timeout); a key that hangs fails that case,
and when it then no longer answers at all the remaining cases are skipped.

Exit status: 0 when no case failed, 1 when any failed, 2 for usage errors, 3 when there
is no device, 5 when interrupted (Ctrl-C skips the remaining cases; the summary is still
printed and the reports written).`,
		Example: `  ctapkit -d soft:mem conformance --destructive
  ctapkit conformance --list
  ctapkit conformance --only '^GI-' --json
  ctapkit -d hid:/dev/hidraw3 conformance --junit report.xml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.autoPresenceSet = cmd.Flags().Changed("auto-presence")
			return a.runConformance(cmd.Context(), &o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.only, "only", "", "run only the cases whose ID or area matches this regular expression")
	f.BoolVar(&o.list, "list", false, "list the selected cases instead of running them")
	f.BoolVar(&o.destructive, "destructive", false, "also run the cases that change or reset the key (asks first)")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation of --destructive")
	f.BoolVar(&o.autoPresence, "auto-presence", false, "nobody is there to touch the key: skip cases that need a touch unless it presses itself")
	f.StringVar(&o.junit, "junit", "", "also write a JUnit XML report to `FILE`")
	f.DurationVar(&o.caseTimeout, "case-timeout", 0, "time limit of each case (default --timeout)")
	o.pin.register(f)
	return c
}

func (a *app) runConformance(ctx context.Context, o *conformanceOptions) error {
	opts := conformance.Options{Destructive: o.destructive, CaseTimeout: o.caseTimeout}
	if o.only != "" {
		re, err := regexp.Compile(o.only)
		if err != nil {
			return usageErrorf("--only %q: %v", o.only, err)
		}
		opts.Only = re
	}
	if opts.CaseTimeout == 0 {
		opts.CaseTimeout = a.timeout
	}
	if opts.CaseTimeout < 0 {
		return usageErrorf("--case-timeout must be positive, got %v", o.caseTimeout)
	}
	cases := conformance.Selected(opts)
	if len(cases) == 0 {
		return withHint(usageErrorf("no case matches --only %q", o.only), "list the cases with: ctapkit conformance --list")
	}
	if o.list {
		if a.json {
			return writeJSON(a.io.Out, caseListJSON(cases))
		}
		return writeCaseList(a.io.Out, cases)
	}

	openCtx, cancelOpen := a.withTimeout(ctx)
	defer cancelOpen()
	uri, err := a.resolveDeviceURI(openCtx)
	if err != nil {
		return err
	}
	if o.destructive && !o.yes && uri != "soft:mem" {
		if err := a.confirmDestructive(uri); err != nil {
			return err
		}
	}
	// The junit file is created before the run, so that a bad path fails now and
	// not after an hour of testing.
	var junit *os.File
	if o.junit != "" {
		if junit, err = os.Create(o.junit); err != nil {
			return fmt.Errorf("creating the JUnit report: %w", err)
		}
		defer junit.Close()
	}

	p := newProgress(a, cases, !a.json)
	target, closeTarget, err := a.openConformanceTarget(openCtx, uri, p.keepalive)
	if err != nil {
		return err
	}
	defer func() {
		if err := closeWithin(closeTarget, closeGrace); err != nil {
			a.debugf("closing %s: %v", uri, err)
		}
	}()
	dev := target.Device.Info()

	var info *ctap2.Info
	if err := within(openCtx, opts.CaseTimeout, func(ctx context.Context) (err error) {
		info, err = target.Client.Info(ctx)
		return err
	}); err != nil {
		a.warnf("getInfo failed (%v); running the suite anyway", oneLine(err))
	}
	if target.PIN, err = a.conformancePIN(o, info); err != nil {
		return err
	}
	opts.Interactive = a.conformanceInteractive(o, target, cases)
	p.interactive = opts.Interactive || target.AutoPresence

	// The run: Ctrl-C (ctx) skips the remaining cases; so does a device that no
	// longer answers after a failure (runCtx's cause).
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	rs := &runState{user: ctx, run: runCtx}
	p.header(dev, info, len(cases))
	start := time.Now()
	opts.Progress = func(c conformance.Case, r *conformance.Result) {
		if r == nil {
			p.start(c)
			return
		}
		res := rs.adjust(*r)
		p.done(res)
		rs.results = append(rs.results, res)
		if res.Status == conformance.Fail && ctx.Err() == nil && runCtx.Err() == nil {
			if err := probeDevice(target, min(opts.CaseTimeout, probeTimeout)); err != nil {
				rs.gone = fmt.Sprintf("the device stopped answering after %s (%s)", c.ID, oneLine(err))
				p.note(rs.gone + "; skipping the remaining cases")
				stopRun(errDeviceGone)
			}
		}
	}
	conformance.Run(runCtx, target, opts)
	elapsed := time.Since(start)

	cancelled := ctx.Err() != nil
	if a.json {
		if err := writeJSONLine(a.io.Out, summaryJSON(dev.URI, rs.results, cancelled, elapsed)); err != nil {
			return err
		}
	} else {
		writeSummary(a.io.Out, rs.results, elapsed, p.color)
	}
	if junit != nil {
		if err := writeJUnit(junit, dev.URI, rs.results, elapsed); err != nil {
			return fmt.Errorf("writing the JUnit report: %w", err)
		}
		if err := junit.Close(); err != nil {
			return fmt.Errorf("writing the JUnit report: %w", err)
		}
	}
	if cancelled {
		notRun := 0
		for _, r := range rs.results {
			if r.Status == conformance.Skip && strings.HasPrefix(r.Message, notRunInterrupted) {
				notRun++
			}
		}
		return &quietError{fmt.Sprintf("conformance: interrupted, %d of %d cases not run", notRun, len(rs.results)), errCancelled}
	}
	if failed := failedIDs(rs.results); len(failed) > 0 {
		ids := failed
		if len(ids) > 10 {
			ids = append(ids[:10:10], "…")
		}
		return fmt.Errorf("conformance: %d of %d cases failed: %s", len(failed), len(rs.results), strings.Join(ids, ", "))
	}
	return nil
}

// confirmDestructive asks before the suite may erase the key.
func (a *app) confirmDestructive(uri string) error {
	if !a.io.CanPrompt() {
		return usageErrorf("%s; pass --yes to confirm without a terminal", destructiveWarning)
	}
	p := promptui.Prompt{Label: "On " + uri + ", " + destructiveWarning + ". Run them", IsConfirm: true,
		Stdin: readCloser{a.io.In}, Stdout: writeCloser{a.io.ErrOut}}
	if _, err := p.Run(); err != nil {
		if errors.Is(err, promptui.ErrAbort) || errors.Is(err, promptui.ErrInterrupt) || errors.Is(err, promptui.ErrEOF) {
			return &quietError{"conformance: not confirmed, nothing ran", errCancelled}
		}
		return fmt.Errorf("conformance: %w", err)
	}
	return nil
}

// openConformanceTarget opens uri as a conformance target. soft: devices become
// full targets (raw CTAPHID link, power cycles); others a device and a client
// whose touch notice goes through keepalive.
func (a *app) openConformanceTarget(ctx context.Context, uri string, keepalive func(byte)) (*conformance.Target, func() error, error) {
	a.debugf("opening %s", uri)
	if u, err := transport.ParseURI(uri); err == nil && u.Scheme == "soft" {
		return a.openSoftTarget(ctx, u.Path, keepalive)
	}
	dev, err := a.registry.Open(ctx, uri)
	if err != nil {
		return nil, nil, err
	}
	target := &conformance.Target{Device: dev, Client: newClient(dev, keepalive)}
	closeAll := dev.Close
	// A second raw CTAPHID link to the key (another open of the HID node, another
	// socket to a UDP simulator): the CTAPHID cases run through it.
	if rl, ok := dev.(ctaphid.RawLinker); ok {
		if raw, err := rl.RawLink(); err == nil {
			target.HID = raw
			closeAll = func() error { return errors.Join(raw.Close(), dev.Close()) }
		} else {
			a.debugf("no raw CTAPHID link: %v", err)
		}
	}
	return target, closeAll, nil
}

// conformancePIN is the key's PIN for the suite: --pin or $CTAPKIT_PIN, else a
// prompt when the key has one and a terminal is attached. Without any, cases
// that need the PIN skip.
func (a *app) conformancePIN(o *conformanceOptions, info *ctap2.Info) (string, error) {
	if o.pin.value != "" || os.Getenv(envPIN) != "" {
		return a.currentPIN(&o.pin)
	}
	if info == nil {
		return "", nil
	}
	if set, _ := info.Option("clientPin"); !set {
		return "", nil
	}
	if a.io.CanPrompt() {
		return a.currentPIN(&o.pin)
	}
	a.notef("the key has a PIN and none was given ($%s or --pin): cases that need it will skip", envPIN)
	return "", nil
}

// conformanceInteractive decides whether a person will touch the key.
func (a *app) conformanceInteractive(o *conformanceOptions, target *conformance.Target, cases []conformance.Case) bool {
	if o.autoPresenceSet {
		return !o.autoPresence
	}
	if a.io.errTTY {
		return true
	}
	needTouch := false
	for _, c := range cases {
		needTouch = needTouch || c.Presence
	}
	if needTouch && !target.AutoPresence {
		a.notef("no terminal, so nobody can be asked to touch the key: running as with --auto-presence " +
			"(cases that need a touch skip; --auto-presence=false runs them anyway)")
	}
	return false
}

func (a *app) notef(format string, args ...any) {
	fmt.Fprintf(a.io.ErrOut, "note: "+format+"\n", args...)
}

func (a *app) warnf(format string, args ...any) {
	fmt.Fprintf(a.io.ErrOut, "warning: "+format+"\n", args...)
}

// runState turns the runner's results into what the command reports.
type runState struct {
	user    context.Context // cancelled by Ctrl-C
	run     context.Context // also cancelled when the device is gone
	gone    string          // why the device is considered gone, if it is
	results []conformance.Result
}

const notRunInterrupted = "not run: interrupted"

var errDeviceGone = errors.New("the device stopped answering")

// adjust rewords the results of an interrupted or abandoned run: the runner says
// "suite cancelled"; the command says why. A case that failed because Ctrl-C
// cancelled it in the middle did not fail: it was interrupted.
func (s *runState) adjust(r conformance.Result) conformance.Result {
	if s.run.Err() == nil {
		return r
	}
	switch {
	case r.Status == conformance.Skip && strings.HasPrefix(r.Message, "suite cancelled"):
		if s.user.Err() != nil {
			r.Message = notRunInterrupted
		} else if s.gone != "" {
			r.Message = "not run: " + s.gone
		}
	case r.Status == conformance.Fail && s.user.Err() != nil:
		r.Status, r.Message = conformance.Skip, notRunInterrupted+" while running ("+r.Message+")"
	}
	return r
}

func failedIDs(results []conformance.Result) []string {
	var ids []string
	for _, r := range results {
		if r.Status == conformance.Fail {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

const (
	// probeTimeout bounds the getInfo that checks, after a failed case, whether
	// the device still answers.
	probeTimeout = 5 * time.Second
	// closeGrace bounds closing the device at the end: a hung key must not keep
	// the command from exiting.
	closeGrace = 3 * time.Second
)

// probeDevice checks that the device still answers anything: it sends a raw
// getInfo and accepts any reply, even an error status. No reply in time, a
// closed or vanished device, is an error. The request runs in its own goroutine,
// so a transport that ignores cancellation cannot hold the suite.
func probeDevice(target *conformance.Target, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	dev := target.Device
	errc := make(chan error, 1)
	go func() {
		_, err := dev.Transact(ctx, transport.CmdCBOR, []byte{byte(ctap2.CmdGetInfo)})
		errc <- err
	}()
	select {
	case err := <-errc:
		switch {
		case err == nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, transport.ErrTimeout):
			return fmt.Errorf("no reply to getInfo within %v", d)
		case errors.Is(err, transport.ErrClosed), errors.Is(err, transport.ErrNoDevice),
			errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed):
			return err
		}
		return nil // it answered, if only with an error
	case <-time.After(d + time.Second):
		return fmt.Errorf("no reply to getInfo within %v", d)
	}
}

// within runs fn with a context bounded by d, and gives up on it shortly after
// the deadline even if fn ignores its context.
func within(parent context.Context, d time.Duration, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(parent, d)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- fn(ctx) }()
	select {
	case err := <-errc:
		return err
	case <-time.After(d + time.Second):
		return fmt.Errorf("no reply within %v: %w", d, transport.ErrTimeout)
	}
}

// closeWithin closes the target, but does not wait more than d for it.
func closeWithin(closeFn func() error, d time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- closeFn() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		return fmt.Errorf("did not close within %v", d)
	}
}
