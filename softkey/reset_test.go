package softkey

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

// resetFixture is a softkey on a persistent store with one resident and one sealed
// credential; policy applies after they are made.
type resetFixture struct {
	st               *spyStore
	a                *Authenticator
	clock            *fakeClock
	sealed, resident *madeCredential
}

func newResetFixture(t *testing.T, cfg Config) *resetFixture {
	t.Helper()
	f := &resetFixture{st: persistentStore(), clock: newClock()}
	maker := newSoftkeyOn(t, f.st, Config{})
	f.sealed = makeCredential(t, maker, mcRequest("a.example", []byte("sealed")))
	f.resident = makeCredential(t, maker, residentRequest("a.example", []byte("resident")))
	cfg.Now = f.clock.Now
	f.a = newSoftkeyOn(t, f.st, cfg)
	return f
}

// check wants status from getAssertion with each credential and without an allowList.
func (f *resetFixture) check(t *testing.T, a *Authenticator, want ctap2.StatusError) {
	t.Helper()
	for _, req := range []*ctap2.GetAssertionRequest{
		gaRequest("a.example", f.sealed.id),
		gaRequest("a.example", f.resident.id),
		gaRequest("a.example"),
	} {
		req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
		got, _ := call(t, a, ctap2.CmdGetAssertion, req)
		wantStatus(t, "getAssertion", got, want)
	}
}

func TestReset(t *testing.T) {
	f := newResetFixture(t, Config{})
	f.check(t, f.a, ctap2.StatusOK)
	before := signCountOf(t, f.a, "a.example", f.sealed.id)
	f.clock.Advance(9 * time.Second)
	st, body := call(t, f.a, ctap2.CmdReset, nil)
	wantStatus(t, "reset within the window", st, ctap2.StatusOK)
	if len(body) != 0 {
		t.Errorf("reset reply has a body %x", body)
	}
	f.check(t, f.a, ctap2.ErrNoCredentials)
	if n, _ := f.st.CountCredentials(); n != 0 {
		t.Errorf("%d credentials left after reset", n)
	}
	if got := remaining(t, f.a); got != defaultMaxResident {
		t.Errorf("remainingDiscoverableCredentials %d after reset, want %d", got, defaultMaxResident)
	}

	// The old sealed IDs stay dead after a restart: the new master secret is persisted.
	b := newSoftkeyOn(t, f.st, Config{})
	f.check(t, b, ctap2.ErrNoCredentials)

	// The softkey works on, and its counter never went back.
	c := makeCredential(t, f.a, mcRequest("a.example", []byte("new")))
	if c.auth.SignCount <= before {
		t.Errorf("signCount %d after reset, not above %d", c.auth.SignCount, before)
	}
	signCountOf(t, f.a, "a.example", c.id)
	signCountOf(t, b, "a.example", c.id) // sealed under the persisted new secret
}

func TestResetWindow(t *testing.T) {
	f := newResetFixture(t, Config{})
	f.clock.Advance(defaultResetWindow + time.Second)
	st, _ := call(t, f.a, ctap2.CmdReset, nil)
	wantStatus(t, "reset after the window", st, ctap2.ErrNotAllowed)
	f.check(t, f.a, ctap2.StatusOK)

	g := newResetFixture(t, Config{ResetWindow: time.Minute})
	g.clock.Advance(50 * time.Second)
	st, _ = call(t, g.a, ctap2.CmdReset, nil)
	wantStatus(t, "reset within a configured window of 1 min", st, ctap2.StatusOK)
	g.clock.Advance(11 * time.Second)
	st, _ = call(t, g.a, ctap2.CmdReset, nil)
	wantStatus(t, "reset after a configured window of 1 min", st, ctap2.ErrNotAllowed)
}

func TestResetNeedsPresence(t *testing.T) {
	f := newResetFixture(t, Config{Presence: PresenceDeny})
	st, _ := call(t, f.a, ctap2.CmdReset, nil)
	wantStatus(t, "reset, touch declined", st, ctap2.ErrOperationDenied)
	f.check(t, f.a, ctap2.StatusOK)
	if n, _ := f.st.CountCredentials(); n != 1 {
		t.Errorf("%d credentials after a declined reset, want 1", n)
	}
	f.check(t, newSoftkeyOn(t, f.st, Config{}), ctap2.StatusOK) // the master secret is unchanged too

	var touches atomic.Int32
	g := newResetFixture(t, Config{PresenceFunc: func(ctx context.Context, rpID string) (bool, error) {
		touches.Add(1)
		return true, nil
	}})
	st, _ = call(t, g.a, ctap2.CmdReset, nil)
	wantStatus(t, "reset, touch given", st, ctap2.StatusOK)
	if touches.Load() != 1 {
		t.Errorf("reset asked for %d touches, want 1", touches.Load())
	}
}

func TestSelection(t *testing.T) {
	for _, tc := range []struct {
		presence PresencePolicy
		want     ctap2.StatusError
	}{
		{PresenceAuto, ctap2.StatusOK},
		{PresenceDeny, ctap2.ErrOperationDenied},
	} {
		a := newSoftkey(t, Config{Presence: tc.presence})
		reply := a.HandleCBOR(t.Context(), []byte{byte(ctap2.CmdSelection)}, nil)
		if len(reply) != 1 || ctap2.StatusError(reply[0]) != tc.want {
			t.Errorf("selection with presence %s: reply %x, want %02x", tc.presence, reply, byte(tc.want))
		}
	}
}
