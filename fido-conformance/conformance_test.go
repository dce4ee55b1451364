package conformance_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/fido-conformance/softtarget"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// newSoftkey starts an in-process softkey target for cfg.
func newSoftkey(t *testing.T, cfg softkey.Config) *softtarget.Softkey {
	t.Helper()
	s, err := softtarget.New(context.Background(), store.NewMemory(store.Meta{}), cfg, transport.DeviceInfo{URI: "soft:mem"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSoftkeyPassesSuite: the softkey passes every applicable case, destructive
// ones included; skips must name a reason.
func TestSoftkeyPassesSuite(t *testing.T) {
	s := newSoftkey(t, softkey.Config{})
	results := conformance.Run(context.Background(), s.Target, conformance.Options{Destructive: true})
	if len(results) == 0 {
		t.Fatal("no cases ran")
	}
	for _, r := range results {
		switch r.Status {
		case conformance.Fail:
			t.Errorf("%s", r)
			for _, l := range r.Log {
				t.Logf("    %s", l)
			}
		case conformance.Skip:
			if r.Message == "" {
				t.Errorf("%s skipped without a reason", r.ID)
			}
			t.Logf("%s", r)
		}
	}
}

// TestResetWindow: RS-2 passes on a softkey that refuses a late reset and fails
// on one whose window never closes (and which it then wipes).
func TestResetWindow(t *testing.T) {
	only := conformance.Options{Destructive: true, Only: regexp.MustCompile(`^RS-2$`)}
	for _, tc := range []struct {
		window time.Duration
		want   conformance.Status
	}{{0, conformance.Pass}, {time.Hour, conformance.Fail}} {
		s := newSoftkey(t, softkey.Config{ResetWindow: tc.window})
		r := conformance.Run(context.Background(), s.Target, only)
		if len(r) != 1 || r[0].Status != tc.want {
			t.Errorf("reset window %v: %v, want RS-2 %s", tc.window, r, tc.want)
		} else {
			t.Logf("reset window %v: %s", tc.window, r[0])
		}
	}
}
