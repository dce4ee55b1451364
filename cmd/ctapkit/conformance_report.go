package main

// Output of `ctapkit conformance`: the case list, the progress lines, the summary
// table, JSON Lines and the JUnit XML report.

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/chzyer/readline"

	"github.com/ctapkit/ctapkit/ctap2"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/transport"
)

// caseJSON is one entry of `conformance --list --json`.
type caseJSON struct {
	ID          string `json:"id"`
	Area        string `json:"area"`
	Description string `json:"description"`
	Requirement string `json:"requirement"`
	Presence    bool   `json:"presence"`
	Destructive bool   `json:"destructive"`
}

func caseListJSON(cases []conformance.Case) []caseJSON {
	out := make([]caseJSON, 0, len(cases))
	for _, c := range cases {
		out = append(out, caseJSON{ID: c.ID, Area: c.Area, Description: c.Description,
			Requirement: c.Requirement, Presence: c.Presence, Destructive: c.Destructive})
	}
	return out
}

// caseNeeds is the NEEDS column of the list: "touch", "destructive" or both.
func caseNeeds(c conformance.Case) string {
	var needs []string
	if c.Presence {
		needs = append(needs, "touch")
	}
	if c.Destructive {
		needs = append(needs, "destructive")
	}
	if len(needs) == 0 {
		return "-"
	}
	return strings.Join(needs, ",")
}

func writeCaseList(w io.Writer, cases []conformance.Case) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAREA\tNEEDS\tDESCRIPTION\tREQUIREMENT")
	touch, destructive := 0, 0
	for _, c := range cases {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Area, caseNeeds(c), c.Description, c.Requirement)
		if c.Presence {
			touch++
		}
		if c.Destructive {
			destructive++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s (%d need a touch, %d destructive: run only with --destructive)\n",
		count(len(cases), "case"), touch, destructive)
	return err
}

// count is "1 case", "3 cases".
func count(n int, what string) string { return fmt.Sprintf("%d %s", n, plural(n, what)) }

// caseLineJSON is one JSON Lines object of a run: the result with its type.
type caseLineJSON struct {
	Type string `json:"type"` // "case"
	conformance.Result
}

type areaJSON struct {
	Area string `json:"area"`
	Pass int    `json:"pass"`
	Fail int    `json:"fail"`
	Skip int    `json:"skip"`
}

// summaryLineJSON is the last JSON Lines object of a run.
type summaryLineJSON struct {
	Type      string        `json:"type"` // "summary"
	Device    string        `json:"device"`
	Total     int           `json:"total"`
	Pass      int           `json:"pass"`
	Fail      int           `json:"fail"`
	Skip      int           `json:"skip"`
	Cancelled bool          `json:"cancelled"`
	Duration  time.Duration `json:"durationNs"`
	Areas     []areaJSON    `json:"areas"`
}

func summaryJSON(device string, results []conformance.Result, cancelled bool, d time.Duration) summaryLineJSON {
	s := summaryLineJSON{Type: "summary", Device: device, Total: len(results), Cancelled: cancelled,
		Duration: d, Areas: []areaJSON{}}
	for _, a := range conformance.Summarize(results) {
		s.Areas = append(s.Areas, areaJSON{Area: a.Area, Pass: a.Pass, Fail: a.Fail, Skip: a.Skip})
		s.Pass += a.Pass
		s.Fail += a.Fail
		s.Skip += a.Skip
	}
	return s
}

// writeJSONLine writes v as one line of JSON Lines.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// progress reports a run as it goes. Human mode: a line per finished case on
// stdout (the message, observed vs expected or the skip reason, indented below);
// JSON mode: a JSON line per case. On a terminal, stderr also shows the running
// case, and "touch your security key" when it waits for a person.
type progress struct {
	a       *app
	human   bool
	live    bool // stderr is a terminal
	color   bool // stdout may carry colour
	idWidth int
	width   int

	interactive bool // a touch may be awaited

	mu       sync.Mutex
	current  *conformance.Case
	timer    *time.Timer
	touching bool
	shown    bool // the live line is on screen
	lastSkip string
}

func newProgress(a *app, cases []conformance.Case, human bool) *progress {
	p := &progress{a: a, human: human, live: a.io.errTTY,
		color: a.io.outTTY && os.Getenv("NO_COLOR") == ""}
	for _, c := range cases {
		p.idWidth = max(p.idWidth, len(c.ID))
	}
	p.width = 80
	if p.live {
		if w := readline.GetScreenWidth(); w > 20 {
			p.width = w
		}
	}
	return p
}

func (p *progress) header(dev transport.DeviceInfo, info *ctap2.Info, n int) {
	if !p.human {
		return
	}
	name := dev.URI
	var about []string
	if dev.Product != "" {
		about = append(about, dev.Product)
	}
	if info != nil && len(info.Versions) > 0 {
		about = append(about, strings.Join(info.Versions, " "))
	}
	if len(about) > 0 {
		name += " (" + strings.Join(about, ", ") + ")"
	}
	fmt.Fprintf(p.a.io.Out, "Running %s against %s\n\n", count(n, "conformance case"), name)
}

func (p *progress) start(c conformance.Case) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = &c
	p.touching = false
	p.drawLocked()
}

// keepalive is the client's keepalive callback: after half a second of waiting
// for presence, the running case's line asks for a touch.
func (p *progress) keepalive(status byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current == nil || !p.interactive {
		return
	}
	if status != transport.StatusUPNeeded {
		p.stopTimerLocked()
		if p.touching {
			p.touching = false
			p.drawLocked()
		}
		return
	}
	if p.timer != nil || p.touching {
		return
	}
	c := p.current
	p.timer = time.AfterFunc(500*time.Millisecond, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.current != c || p.timer == nil {
			return
		}
		p.timer = nil
		p.touching = true
		if p.live {
			p.drawLocked()
		} else {
			fmt.Fprintf(p.a.io.ErrOut, "%s: touch your security key…\n", c.ID)
		}
	})
}

func (p *progress) stopTimerLocked() {
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// drawLocked shows the running case on stderr's last line.
func (p *progress) drawLocked() {
	if !p.live || p.current == nil {
		return
	}
	line := fmt.Sprintf("… %-*s  %s", p.idWidth, p.current.ID, p.current.Description)
	if p.touching {
		line = fmt.Sprintf("… %-*s  touch your security key…", p.idWidth, p.current.ID)
	}
	fmt.Fprint(p.a.io.ErrOut, "\r\033[K"+truncate(line, p.width-1))
	p.shown = true
}

func (p *progress) clearLocked() {
	if p.shown {
		fmt.Fprint(p.a.io.ErrOut, "\r\033[K")
		p.shown = false
	}
}

// note prints a line on stderr without breaking the live line.
func (p *progress) note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	p.a.notef("%s", msg)
}

func (p *progress) done(r conformance.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopTimerLocked()
	p.current, p.touching = nil, false
	p.clearLocked()
	if !p.human {
		if err := writeJSONLine(p.a.io.Out, caseLineJSON{Type: "case", Result: r}); err != nil {
			p.a.debugf("writing a result: %v", err)
		}
		return
	}
	w := p.a.io.Out
	dur := ""
	if r.Duration >= 100*time.Millisecond {
		dur = fmt.Sprintf("  (%s)", r.Duration.Round(10*time.Millisecond))
	}
	fmt.Fprintf(w, "%s  %-*s  %s%s\n", p.status(r.Status), p.idWidth, r.ID, r.Description, dur)
	indent := strings.Repeat(" ", 4+2+p.idWidth+2)
	// A skip reason repeated from the case before (14 cases "run with
	// --destructive") is said once; --json and --junit keep it on every case.
	if r.Message != "" && (r.Status != conformance.Skip || r.Message != p.lastSkip) {
		fmt.Fprintf(w, "%s%s\n", indent, r.Message)
	}
	p.lastSkip = ""
	if r.Status == conformance.Skip {
		p.lastSkip = r.Message
	}
	if r.Status == conformance.Fail || p.a.verbose > 0 {
		for _, l := range r.Log {
			fmt.Fprintf(w, "%s· %s\n", indent, l)
		}
	}
}

// status renders pass/fail/skip, four columns wide, in colour on a terminal.
func (p *progress) status(s conformance.Status) string {
	word := fmt.Sprintf("%-4s", s)
	if !p.color {
		return word
	}
	switch s {
	case conformance.Pass:
		return "\033[32m" + word + "\033[0m"
	case conformance.Fail:
		return "\033[1;31m" + word + "\033[0m"
	case conformance.Skip:
		return "\033[33m" + word + "\033[0m"
	}
	return word
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(n-1, 0)]) + "…"
}

// writeSummary prints the table of results by area and the totals.
func writeSummary(w io.Writer, results []conformance.Result, d time.Duration, color bool) {
	sums := conformance.Summarize(results)
	width := len("total")
	for _, s := range sums {
		width = max(width, len(s.Area))
	}
	fmt.Fprintf(w, "\n%-*s  %4s  %4s  %4s\n", width, "AREA", "PASS", "FAIL", "SKIP")
	var total conformance.Summary
	for _, s := range sums {
		fmt.Fprintf(w, "%-*s  %4d  %4d  %4d\n", width, s.Area, s.Pass, s.Fail, s.Skip)
		total.Pass += s.Pass
		total.Fail += s.Fail
		total.Skip += s.Skip
	}
	fmt.Fprintf(w, "%-*s  %4d  %4d  %4d\n", width, "total", total.Pass, total.Fail, total.Skip)
	verdict := "PASS"
	if total.Fail > 0 {
		verdict = "FAIL"
	}
	if color {
		verdict = map[bool]string{true: "\033[1;31m", false: "\033[32m"}[total.Fail > 0] + verdict + "\033[0m"
	}
	fmt.Fprintf(w, "\n%s: %d passed, %d failed, %d skipped in %s\n", verdict, total.Pass, total.Fail, total.Skip,
		d.Round(time.Millisecond))
}

// JUnit XML: testsuites → a testsuite per area → a testcase per case, with a
// failure element (the message; the log as text) or a skipped element (the
// reason). The requirement and the log go to system-out.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func junitReport(device string, results []conformance.Result, d time.Duration) junitSuites {
	report := junitSuites{Name: "ctapkit conformance", Time: seconds(d)}
	now := time.Now().UTC().Format("2006-01-02T15:04:05")
	index := map[string]int{}
	for _, s := range conformance.Summarize(results) {
		index[s.Area] = len(report.Suites)
		report.Suites = append(report.Suites, junitSuite{Name: s.Area, Tests: s.Pass + s.Fail + s.Skip,
			Failures: s.Fail, Skipped: s.Skip, Timestamp: now,
			Properties: []junitProperty{{Name: "device", Value: device}}})
	}
	suiteTime := make([]time.Duration, len(report.Suites))
	for _, r := range results {
		i := index[r.Area]
		suiteTime[i] += r.Duration
		c := junitCase{Name: r.ID + ": " + r.Description, Classname: "conformance." + r.Area, Time: seconds(r.Duration)}
		out := []string{"requirement: " + r.Requirement}
		out = append(out, r.Log...)
		c.SystemOut = strings.Join(out, "\n")
		switch r.Status {
		case conformance.Fail:
			c.Failure = &junitMessage{Message: r.Message, Type: "fail", Text: strings.Join(append([]string{r.Message}, r.Log...), "\n")}
		case conformance.Skip:
			c.Skipped = &junitMessage{Message: r.Message}
		}
		report.Suites[i].Cases = append(report.Suites[i].Cases, c)
		report.Tests++
		switch r.Status {
		case conformance.Fail:
			report.Failures++
		case conformance.Skip:
			report.Skipped++
		}
	}
	for i := range report.Suites {
		report.Suites[i].Time = seconds(suiteTime[i])
	}
	return report
}

func writeJUnit(w io.Writer, device string, results []conformance.Result, d time.Duration) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitReport(device, results, d)); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
