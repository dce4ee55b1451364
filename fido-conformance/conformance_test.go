package conformance_test

import (
	"context"
	"testing"

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
