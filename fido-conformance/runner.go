package conformance

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"sync"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
)

// Target is the authenticator under test.
type Target struct {
	Device transport.Device
	Client *ctap2.Client
	// AutoPresence: the authenticator grants user presence by itself (the
	// softkey with presence "auto"), so Presence cases need no person.
	AutoPresence bool
	// PIN is the key's PIN if it has one. Destructive cases may set this PIN on a
	// key without one (and reset the key at the end).
	PIN string
	// HID, when set, is a second connection to the device's CTAPHID link, like
	// another program's: CTAPHID cases speak raw packets through it. Nil skips them.
	HID HIDLink
	// PowerCycle, when set, simulates unplugging and replugging the key (the
	// softkey: a restart on the same state). Cases about power-cycle rules skip
	// without it. After it returns, Device and Client must work again.
	PowerCycle func(ctx context.Context) error
	// AdvanceClock, when set, moves the key's clock forward by d, as that much
	// time passing would (a simulator's clock). Timing rules such as the reset
	// window are then checked without waiting; their cases skip without it.
	AdvanceClock func(d time.Duration)
}

// HIDLink is raw access to 64-byte CTAPHID reports (ctaphid.PacketConn).
type HIDLink interface {
	ReadPacket(ctx context.Context) ([]byte, error)
	WritePacket(p []byte) error
}

// SimulatorLink is implemented by HID links to an authenticator simulator (the
// UDP convention of FIDO test suites), which may accept messages on channels
// INIT did not allocate, since their hosts skip INIT. HID-9 then does not apply
// to a device that does so.
type SimulatorLink interface {
	HIDLink
	Simulator() bool
}

// Options configure a run.
type Options struct {
	// Only, if set, selects the cases whose ID or area matches.
	Only *regexp.Regexp
	// Destructive allows cases that change the key's persistent state or reset it.
	Destructive bool
	// Interactive: a person is there to touch the key, so Presence cases run even
	// when the target does not press itself.
	Interactive bool
	// CaseTimeout bounds each case (default 30 s). A case that does not finish in
	// time fails, and the suite goes on.
	CaseTimeout time.Duration
	// Progress, if set, is called before each case (r == nil) and after it.
	Progress func(c Case, r *Result)
}

const defaultCaseTimeout = 30 * time.Second

// Selected returns the cases opts selects, in run order, without running them.
func Selected(opts Options) []Case {
	var out []Case
	for _, c := range Cases() {
		if opts.Only == nil || opts.Only.MatchString(c.ID) || opts.Only.MatchString(c.Area) {
			out = append(out, c)
		}
	}
	return out
}

// Run executes the selected cases against target, one at a time, and returns
// their results in run order. It stops early only when ctx is done; the cases not
// run then are skipped with that reason.
func Run(ctx context.Context, target *Target, opts Options) []Result {
	if opts.CaseTimeout <= 0 {
		opts.CaseTimeout = defaultCaseTimeout
	}
	var results []Result
	for _, c := range Selected(opts) {
		if opts.Progress != nil {
			opts.Progress(c, nil)
		}
		r := runCase(ctx, target, opts, c)
		if opts.Progress != nil {
			opts.Progress(c, &r)
		}
		results = append(results, r)
	}
	return results
}

func runCase(ctx context.Context, target *Target, opts Options, c Case) Result {
	r := Result{ID: c.ID, Area: c.Area, Description: c.Description, Requirement: c.Requirement}
	switch {
	case ctx.Err() != nil:
		r.Status, r.Message = Skip, "suite cancelled: "+ctx.Err().Error()
		return r
	case c.Destructive && !opts.Destructive:
		r.Status, r.Message = Skip, "changes the key's state: run with --destructive"
		return r
	case c.Presence && !target.AutoPresence && !opts.Interactive:
		r.Status, r.Message = Skip, "needs a person to touch the key (run without --auto-presence)"
		return r
	}
	caseCtx, cancel := context.WithTimeout(ctx, opts.CaseTimeout)
	defer cancel()
	t := &T{ctx: caseCtx, target: target, status: Pass}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		defer t.runCleanups()
		defer func() {
			if p := recover(); p != nil {
				t.fail(fmt.Sprintf("the test panicked: %v", p))
			}
		}()
		c.Run(t)
	}()
	select {
	case <-done:
	case <-time.After(opts.CaseTimeout + time.Second):
		// The case ignores its context (a transport stuck in a read): give up on
		// it. Its goroutine is abandoned; later cases will see the device's state.
		t.fail(fmt.Sprintf("did not finish within %v: the device hung or disappeared", opts.CaseTimeout))
	}
	r.Duration = time.Since(start)
	r.Status, r.Message, r.Log = t.result()
	if r.Status == Fail && errors.Is(caseCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil && r.Message == "" {
		r.Message = "timed out"
	}
	return r
}

// T is a running case's handle: the target, its context, and the reporting
// functions. Fatalf and Skipf stop the case (like testing.T, through
// runtime.Goexit), so they must be called from the case's own goroutine.
type T struct {
	ctx    context.Context
	target *Target

	mu       sync.Mutex
	status   Status
	msg      string
	log      []string
	cleanups []func()
}

// Context is cancelled when the case's time is up.
func (t *T) Context() context.Context { return t.ctx }

// Target returns the authenticator under test.
func (t *T) Target() *Target { return t.target }

// Client is the target's CTAP2 client.
func (t *T) Client() *ctap2.Client { return t.target.Client }

// Info returns the target's getInfo (cached by the client); a failure ends the case.
func (t *T) Info() *ctap2.Info {
	info, err := t.target.Client.Info(t.ctx)
	if err != nil {
		t.Fatalf("getInfo: %v", err)
	}
	return info
}

// Logf adds a line to the result's log.
func (t *T) Logf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, fmt.Sprintf(format, args...))
}

// Errorf marks the case failed and goes on; the first failure is the message.
func (t *T) Errorf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }

// Fatalf marks the case failed and stops it.
func (t *T) Fatalf(format string, args ...any) {
	t.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}

// Skipf marks the case skipped (unless it already failed) and stops it.
func (t *T) Skipf(format string, args ...any) {
	t.mu.Lock()
	if t.status != Fail {
		t.status, t.msg = Skip, fmt.Sprintf(format, args...)
	}
	t.mu.Unlock()
	runtime.Goexit()
}

// Cleanup registers fn to run when the case ends, last registered first.
func (t *T) Cleanup(fn func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, fn)
}

func (t *T) fail(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.status != Fail {
		t.status, t.msg = Fail, msg
	} else {
		t.log = append(t.log, "also: "+msg)
	}
}

func (t *T) runCleanups() {
	t.mu.Lock()
	fns := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

func (t *T) result() (Status, string, []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status, t.msg, t.log
}
