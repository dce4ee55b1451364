package conformance_test

import (
	"context"
	"regexp"
	"slices"
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
	// wantPassing are cases that must still pass with the fault (the suite
	// goes on after a defect).
	wantPassing []string
	// withPIN sets a PIN on the softkey first, for cases that need one.
	withPIN bool
	// caseTimeout is the time limit of each case (default 10 s); no case may
	// take much longer, whatever the fault.
	caseTimeout time.Duration
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
	{
		name:        "CorruptSignature",
		faults:      softkey.Faults{CorruptSignature: true},
		only:        `^(GA-1|U2F-5)$`,
		wantFailing: []string{"GA-1", "U2F-5"},
		wantMessage: "signature",
	},
	{
		name:        "CorruptAttestation",
		faults:      softkey.Faults{CorruptAttestation: true},
		only:        `^(MC-1|AT-2|AT-4|U2F-2)$`,
		wantFailing: []string{"MC-1", "AT-2", "AT-4", "U2F-2"},
		wantMessage: "signature",
	},
	{
		name:        "FrozenCounter",
		faults:      softkey.Faults{FrozenCounter: true},
		only:        `^CN-`,
		wantFailing: []string{"CN-1", "CN-2", "CN-4"},
		wantMessage: "signCount",
	},
	{
		name:        "NonCanonicalCBOR/responses",
		faults:      softkey.Faults{NonCanonicalCBOR: true},
		only:        `^(AT-5|GA-15)$`,
		wantFailing: []string{"AT-5", "GA-15"},
		wantMessage: "canonical",
	},
	{
		name: "WrongStatus/parameters",
		faults: softkey.Faults{WrongStatus: map[ctap2.StatusError]ctap2.StatusError{
			ctap2.ErrMissingParameter:   ctap2.ErrInvalidParameter,
			ctap2.ErrCBORUnexpectedType: ctap2.ErrInvalidCBOR,
			ctap2.ErrNoCredentials:      ctap2.ErrNotAllowed,
		}},
		only:        `^(MC-3|MC-4|MC-5|GA-7|GA-10|GA-17)$`,
		wantFailing: []string{"MC-3", "MC-4", "MC-5", "GA-7", "GA-10", "GA-17"},
		wantMessage: "INVALID_PARAMETER",
	},
	{
		name: "WrongStatus/state",
		faults: softkey.Faults{WrongStatus: map[ctap2.StatusError]ctap2.StatusError{
			ctap2.ErrNotAllowed: ctap2.ErrInvalidParameter,
		}},
		withPIN:     true,
		only:        `^(GA-4|CM-3)$`,
		wantFailing: []string{"GA-4", "CM-3"},
		wantMessage: "INVALID_PARAMETER",
	},
	{
		name: "WrongStatus/PIN",
		faults: softkey.Faults{WrongStatus: map[ctap2.StatusError]ctap2.StatusError{
			ctap2.ErrPINInvalid: ctap2.ErrPINAuthInvalid,
		}},
		only:        `^CP-4$`,
		wantFailing: []string{"CP-4"},
		wantMessage: "CTAP2_ERR_PIN_AUTH_INVALID",
	},
	{
		name:        "IgnoreCredProtect",
		faults:      softkey.Faults{IgnoreCredProtect: true},
		only:        `^(EX-1|EX-2)$`,
		wantFailing: []string{"EX-1", "EX-2"},
	},
	{
		name:        "IgnorePermissions",
		faults:      softkey.Faults{IgnorePermissions: true},
		withPIN:     true,
		only:        `^(CP-13|CP-14|CM-6|CM-8)$`,
		wantFailing: []string{"CP-13", "CP-14", "CM-6", "CM-8"},
	},
	{
		name:        "SlowCancel",
		faults:      softkey.Faults{SlowCancel: 300 * time.Millisecond},
		config:      func(c *softkey.Config) { c.PresenceFunc = presenceNever },
		only:        `^HID-14$`,
		wantFailing: []string{"HID-14"},
		wantMessage: "ms",
	},
	{
		// A key that hangs: the case fails within its time limit, and the suite
		// goes on to the next case.
		name:        "DropResponse/getAssertion",
		faults:      softkey.Faults{DropResponse: map[ctap2.Command]bool{ctap2.CmdGetAssertion: true}},
		only:        `^(GA-1|CP-1)$`,
		caseTimeout: 2 * time.Second,
		wantFailing: []string{"GA-1"},
		wantPassing: []string{"CP-1"},
		wantMessage: "deadline exceeded",
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
			if fc.caseTimeout > 0 {
				opts.CaseTimeout = fc.caseTimeout
			}
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
			for _, id := range fc.wantPassing {
				if b := broken[id]; b.Status != conformance.Pass {
					t.Errorf("with fault %s: %s; want pass", fc.name, b)
				}
			}
			for id, b := range broken {
				if b.Status == conformance.Fail && !slices.Contains(fc.wantFailing, id) {
					t.Logf("also failed: %s", b)
				}
				if limit := opts.CaseTimeout + time.Second; b.Duration > limit {
					t.Errorf("with fault %s: %s took %v, more than its time limit %v", fc.name, id, b.Duration, opts.CaseTimeout)
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
	if fc.withPIN {
		if err := s.Target.Client.SetPIN(ctx, conformance.DefaultPIN); err != nil {
			t.Fatal(err)
		}
		s.Target.PIN = conformance.DefaultPIN
	}
	out := map[string]conformance.Result{}
	for _, r := range conformance.Run(ctx, s.Target, opts) {
		out[r.ID] = r
	}
	return out
}
