// Package conformance is a suite of CTAP2 and CTAPHID protocol tests, modelled on
// what the FIDO Alliance's conformance tools check, that runs against any
// authenticator behind a transport.Device: a USB or NFC key, the softkey in-process,
// or a softkey served over uhid, PC/SC or UDP.
//
// Each Case has an ID, an area, a one-line description and the requirement it
// checks; running it gives a Result: pass, fail with what was observed against what
// was expected, or skip with the reason (for example a feature getInfo does not
// list). Run executes the suite with a deadline per case, so a device that hangs or
// disappears yields failed and skipped results, never a hung suite.
package conformance

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Status is the outcome of one case.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Areas, in the order the suite runs them: device basics first, destructive last.
const (
	AreaCTAPHID        = "ctaphid"
	AreaGetInfo        = "getInfo"
	AreaMakeCredential = "makeCredential"
	AreaGetAssertion   = "getAssertion"
	AreaAttestation    = "attestation"
	AreaCounters       = "counters"
	AreaClientPIN      = "clientPIN"
	AreaCredMgmt       = "credMgmt"
	AreaConfig         = "config"
	AreaLargeBlobs     = "largeBlobs"
	AreaExtensions     = "extensions"
	AreaU2F            = "u2f"
	AreaNFC            = "nfc"
	AreaReset          = "reset"
)

var areaOrder = []string{
	AreaCTAPHID, AreaNFC, AreaGetInfo, AreaMakeCredential, AreaGetAssertion, AreaAttestation,
	AreaCounters, AreaU2F, AreaClientPIN, AreaCredMgmt, AreaConfig, AreaLargeBlobs,
	AreaExtensions, AreaReset,
}

// Case is one conformance test.
type Case struct {
	// ID is unique and stable, e.g. "MC-4": scripts and --only refer to it.
	ID   string
	Area string
	// Description says in one line what is checked; Requirement names the spec
	// text it comes from (e.g. "CTAP 2.1 §6.1.2 step 4").
	Description string
	Requirement string
	// Presence: the case needs a person to touch the key (unless the target
	// presses itself, like the softkey with presence "auto").
	Presence bool
	// Destructive: the case changes the key's persistent state (PIN, settings,
	// credentials of other RPs, reset). It runs only with Options.Destructive.
	Destructive bool
	// Run performs the test. It reports through t and returns; t.Fatalf and
	// t.Skipf end it early.
	Run func(t *T)
}

// Result is the outcome of one Case.
type Result struct {
	ID          string        `json:"id"`
	Area        string        `json:"area"`
	Description string        `json:"description"`
	Requirement string        `json:"requirement"`
	Status      Status        `json:"status"`
	Message     string        `json:"message,omitempty"` // failure (observed vs expected) or skip reason
	Duration    time.Duration `json:"durationNs"`
	Log         []string      `json:"log,omitempty"`
}

var (
	registryMu sync.Mutex
	registry   = map[string]Case{}
)

// register adds cases to the suite; each area's file calls it from init. A
// duplicate ID is a programming error.
func register(cases ...Case) {
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, c := range cases {
		if _, dup := registry[c.ID]; dup {
			panic("conformance: duplicate case ID " + c.ID)
		}
		if !slices.Contains(areaOrder, c.Area) {
			panic("conformance: case " + c.ID + " has unknown area " + c.Area)
		}
		registry[c.ID] = c
	}
}

// Cases returns every case of the suite in run order: by area, then by the
// number in the ID.
func Cases() []Case {
	registryMu.Lock()
	defer registryMu.Unlock()
	out := make([]Case, 0, len(registry))
	for _, c := range registry {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Case) int {
		if d := cmp.Compare(slices.Index(areaOrder, a.Area), slices.Index(areaOrder, b.Area)); d != 0 {
			return d
		}
		pa, na := splitID(a.ID)
		pb, nb := splitID(b.ID)
		return cmp.Or(cmp.Compare(pa, pb), cmp.Compare(na, nb))
	})
	return out
}

// splitID splits "MC-12" into ("MC", 12) so that MC-2 sorts before MC-10.
func splitID(id string) (string, int) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return id, 0
	}
	n, err := strconv.Atoi(id[i+1:])
	if err != nil {
		return id, 0
	}
	return id[:i], n
}

// Summary counts results per area.
type Summary struct {
	Area             string
	Pass, Fail, Skip int
}

// Summarize groups results by area, in run order.
func Summarize(results []Result) []Summary {
	by := map[string]*Summary{}
	var out []Summary
	for _, r := range results {
		s := by[r.Area]
		if s == nil {
			s = &Summary{Area: r.Area}
			by[r.Area] = s
		}
		switch r.Status {
		case Pass:
			s.Pass++
		case Fail:
			s.Fail++
		case Skip:
			s.Skip++
		}
	}
	for _, a := range areaOrder {
		if s := by[a]; s != nil {
			out = append(out, *s)
		}
	}
	return out
}

// Failed reports whether any result failed.
func Failed(results []Result) bool {
	return slices.ContainsFunc(results, func(r Result) bool { return r.Status == Fail })
}

func (s Status) String() string { return string(s) }

func (r Result) String() string {
	s := fmt.Sprintf("%-6s %s %s", r.ID, r.Status, r.Description)
	if r.Message != "" {
		s += ": " + r.Message
	}
	return s
}
