package conformance_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/softkey"
)

// faultCase is one defect of a broken authenticator and the conformance cases
// that must notice it.
type faultCase struct {
	name   string
	faults softkey.Faults
	// config adds what the defect needs to show (e.g. a presence that waits, so
	// that there is something to cancel); it applies with and without the fault.
	config func(*softkey.Config)
	// only selects the areas or cases to run (the whole suite when empty).
	only string
	// wantFailing are the IDs of cases that must fail with the fault and pass
	// without it; wantMessage, when set, must appear in the first one's message,
	// so that the failure names the defect rather than something incidental.
	wantFailing []string
	wantMessage string
}

var faultCases = []faultCase{
	{
		name:        "NonCanonicalCBOR",
		faults:      softkey.Faults{NonCanonicalCBOR: true},
		only:        `^GI-1$`,
		wantFailing: []string{"GI-1"},
		wantMessage: "non-canonical CBOR",
	},
	{
		name:        "ForceStatus/getInfo",
		faults:      softkey.Faults{ForceStatus: map[ctap2.Command]ctap2.StatusError{ctap2.CmdGetInfo: ctap2.ErrOther}},
		only:        `^GI-1$`,
		wantFailing: []string{"GI-1"},
		wantMessage: "CTAP1_ERR_OTHER",
	},
}

// TestFaultsAreCaught: the suite is not a mirror of the softkey. For each defect
// injected into the softkey, a specific case fails, with a message that names the
// defect, and the same case passes on a healthy softkey with the same settings.
func TestFaultsAreCaught(t *testing.T) {
	for _, fc := range faultCases {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			opts := conformance.Options{Destructive: true, CaseTimeout: 10 * time.Second}
			if fc.only != "" {
				opts.Only = regexp.MustCompile(fc.only)
			}
			healthy := runFaultSuite(t, fc, nil, opts)
			faults := fc.faults
			broken := runFaultSuite(t, fc, &faults, opts)
			for i, id := range fc.wantFailing {
				h, ok := healthy[id]
				if !ok {
					t.Errorf("case %s did not run: not registered, or not selected by %q", id, fc.only)
					continue
				}
				if h.Status != conformance.Pass {
					t.Errorf("healthy softkey: %s (want pass, so that the fault is what fails it)", h)
				}
				b := broken[id]
				switch {
				case b.Status != conformance.Fail:
					t.Errorf("with fault %s: %s; want fail: the suite does not notice the defect", fc.name, b)
				case b.Message == "":
					t.Errorf("with fault %s: %s failed without a message", fc.name, id)
				case i == 0 && fc.wantMessage != "" && !strings.Contains(b.Message, fc.wantMessage):
					t.Errorf("with fault %s: %s failed with %q, want a message about %q", fc.name, id, b.Message, fc.wantMessage)
				default:
					t.Logf("caught: %s", b)
				}
			}
			for id, b := range broken {
				if b.Status == conformance.Fail && !contains(fc.wantFailing, id) {
					t.Logf("also failed: %s", b)
				}
			}
		})
	}
}

// runFaultSuite runs the selected cases against a fresh softkey with faults (nil:
// none) and returns the results by ID.
func runFaultSuite(t *testing.T, fc faultCase, faults *softkey.Faults, opts conformance.Options) map[string]conformance.Result {
	t.Helper()
	cfg := softkey.Config{Faults: faults}
	if fc.config != nil {
		fc.config(&cfg)
	}
	s := newSoftkey(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := map[string]conformance.Result{}
	for _, r := range conformance.Run(ctx, s.Target, opts) {
		out[r.ID] = r
	}
	return out
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
