//go:build unix

package softkey

// The crash harness (issue 8): a child process runs random operations through the
// engine on a bbolt state file and logs every acknowledged one; the parent kills it
// with SIGKILL at a random moment, opens the state itself and checks that nothing
// acknowledged was lost, nothing deleted came back, the signature counter only moved
// forwards and the PIN state is the acknowledged one.
//
// "Acknowledged" means the reply left the engine: the child logs after HandleCBOR
// returned. Each op is logged twice, "begin" before the request and "ack" after the
// reply, so the parent knows the one operation that may have been in flight when the
// kill landed; for it either outcome is allowed, but nothing in between.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// crashChildEnv names the directory of the child's state file and model; set only
// in the child process.
const crashChildEnv = "CTAPKIT_CRASH_CHILD"

// crashRPs are the RPs the child makes credentials for: few, so that accounts get
// replaced and discoverable assertions see several credentials.
var crashRPs = []string{"a.crash.example", "b.crash.example", "c.crash.example", "d.crash.example"}

// Caps on the model's size keep the parent's check of every credential short.
const (
	crashMaxResident    = 60
	crashMaxNonResident = 30
)

// crashCred is one live credential of the model.
type crashCred struct {
	ID       []byte `json:"id"`
	RP       string `json:"rp"`
	UserID   []byte `json:"user,omitempty"`
	Resident bool   `json:"rk,omitempty"`
	Pub      []byte `json:"pub"` // COSE key from makeCredential
}

// crashModel is what the parent knows to be on the authenticator; the child gets
// it as a file at the start of each cycle.
type crashModel struct {
	Seed       uint64      `json:"seed"`
	Passphrase string      `json:"passphrase,omitempty"` // of an encrypted state
	PIN        string      `json:"pin,omitempty"`        // "" = none set
	Retries    int         `json:"retries"`
	Creds      []crashCred `json:"creds"`
}

// crashEvent is one line of the child's log.
type crashEvent struct {
	Phase   string `json:"phase"` // begin, ack, error
	Op      string `json:"op"`    // mc, ga, delete, setpin, changepin, wrongpin
	RP      string `json:"rp,omitempty"`
	UserID  []byte `json:"user,omitempty"`
	RK      bool   `json:"rk,omitempty"`
	ID      []byte `json:"id,omitempty"`
	Pub     []byte `json:"pub,omitempty"`
	Counter uint32 `json:"counter,omitempty"`
	PIN     string `json:"pin,omitempty"`     // the new PIN of setpin / changepin
	PINUsed bool   `json:"pinUsed,omitempty"` // the op checks the PIN (retries move)
	Retries int    `json:"retries,omitempty"` // wrongpin: retries left after it
	Err     string `json:"err,omitempty"`
}

// crashDevice hands CBOR messages straight to a softkey, so the child and the
// parent drive it with the host's ctap2.Client (PIN protocol, credMgmt).
type crashDevice struct{ a *Authenticator }

func (d crashDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	if cmd != transport.CmdCBOR {
		return nil, errors.New("crashDevice: CBOR only")
	}
	return d.a.HandleCBOR(ctx, data, nil), nil
}

func (d crashDevice) Info() transport.DeviceInfo {
	return transport.DeviceInfo{URI: "soft:crash", Transport: "soft"}
}

func (d crashDevice) Close() error { return nil }

// crashCreateState and crashOpenState are the harness's only uses of the store's
// file API: an unencrypted state, or with a passphrase an encrypted one (with a
// cheap KDF: the harness opens the state twice per cycle).
func crashCreateState(path, passphrase string) (store.Store, error) {
	if passphrase == "" {
		return store.Create(path, store.CreateOptions{NoPassphrase: true})
	}
	return store.Create(path, store.CreateOptions{Passphrase: []byte(passphrase),
		KDF: &store.KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}})
}

func crashOpenState(path, passphrase string) (store.Store, error) {
	if passphrase == "" {
		return store.Open(path)
	}
	return store.OpenWith(path, store.OpenOptions{Passphrase: func() ([]byte, error) { return []byte(passphrase), nil }})
}

func crashPINHash(pin string) []byte {
	h := sha256.Sum256([]byte(pin))
	return h[:16]
}

// TestCrashKill is the parent: CTAPKIT_CRASH_CYCLES cycles (default 200) of start,
// random operations, SIGKILL at a random moment, and a full check of the state, on
// an unencrypted and on an encrypted state file.
// CTAPKIT_CRASH_SEED replays a run's choices (the kill timing stays random).
func TestCrashKill(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the child")
	}
	cycles := 200
	if v := os.Getenv("CTAPKIT_CRASH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("CTAPKIT_CRASH_CYCLES=%q", v)
		}
		cycles = n
	}
	seed := mrand.Uint64()
	if v := os.Getenv("CTAPKIT_CRASH_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("CTAPKIT_CRASH_SEED=%q", v)
		}
	}
	t.Logf("CTAPKIT_CRASH_SEED=%d", seed)
	// Both formats: sealed records and keyed index entries are written by other code.
	t.Run("plain", func(t *testing.T) { crashRun(t, cycles, seed, "") })
	t.Run("encrypted", func(t *testing.T) { crashRun(t, cycles, seed, "crash harness passphrase") })
}

// crashRun runs the cycles on a new state file.
func crashRun(t *testing.T, cycles int, seed uint64, passphrase string) {
	rnd := mrand.New(mrand.NewPCG(seed, 0x6372617368))
	dir := t.TempDir()
	st, err := crashCreateState(filepath.Join(dir, "softkey.db"), passphrase)
	if err != nil {
		t.Fatal(err)
	}
	if _, encrypted := st.(*store.DB).Encryption(); encrypted != (passphrase != "") {
		t.Fatalf("state encrypted: %v", encrypted)
	}
	st.Close()
	h := &crashHarness{t: t, dir: dir, rnd: rnd,
		model:    crashModel{Retries: store.DefaultPINRetries, Passphrase: passphrase},
		midOp:    map[string]int{},
		byKind:   map[string]int{},
		outcomes: map[string]int{}}
	start := time.Now()
	for i := range cycles {
		h.cycle = i
		h.model.Seed = rnd.Uint64()
		h.runCycle()
		if t.Failed() {
			t.Fatalf("cycle %d failed (CTAPKIT_CRASH_SEED=%d)", i, seed)
		}
	}
	el := time.Since(start)
	resident := 0
	for _, c := range h.model.Creds {
		if c.Resident {
			resident++
		}
	}
	t.Logf("%d kills in %v (%v per cycle): %d acknowledged ops, %d kills mid-operation %v, kill points %v, "+
		"unacknowledged but done %v; at the end %d live credentials (%d resident), %d deleted or replaced, counter %d, PIN retries %d",
		cycles, el.Round(time.Millisecond), (el / time.Duration(cycles)).Round(100*time.Microsecond),
		h.acks, h.inFlight, h.midOp, h.byKind, h.outcomes, len(h.model.Creds), resident, len(h.deleted), h.maxCounter, h.model.Retries)
}

type crashHarness struct {
	t          *testing.T
	dir        string
	rnd        *mrand.Rand
	cycle      int
	model      crashModel
	deleted    [][]byte // resident IDs deleted or replaced: must never come back
	maxCounter uint32   // highest signature counter any reply carried

	acks, inFlight int
	midOp          map[string]int // kills that landed inside an op, by op
	byKind         map[string]int // how each kill was timed
	// outcomes counts in-flight ops found done although unacknowledged (the
	// reply or its log line lost) or with a PIN retry spent and not restored.
	outcomes map[string]int
}

func (h *crashHarness) fatalf(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("cycle %d: "+format, append([]any{h.cycle}, args...)...)
}

// runCycle starts a child on the state, kills it and checks what it left.
func (h *crashHarness) runCycle() {
	t := h.t
	raw, err := json.Marshal(&h.model)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "model.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+h.dir)
	cmd.ExtraFiles = []*os.File{logW} // fd 3: the log
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logW.Close()
	events := make(chan crashEvent, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(logR)
		for sc.Scan() {
			var ev crashEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = crashEvent{Phase: "error", Err: fmt.Sprintf("bad log line %q", sc.Text())}
			}
			events <- ev
		}
		logR.Close()
	}()

	// When to kill: after the k-th acknowledgement, after the k-th request went in
	// (so, mostly, inside an operation: a write, a key generation, an fsync) or at
	// a random time from the start (possibly while it opens the state).
	kind := [...]string{"after-ack", "mid-op", "timed"}[h.pick(40, 45, 15)]
	h.byKind[kind]++
	k := 1 + h.rnd.IntN(12)
	delay := time.Duration(h.rnd.IntN(1500)) * time.Microsecond
	killed := false
	kill := func() {
		if !killed {
			killed = true
			cmd.Process.Kill() // SIGKILL: no deferred code, no Close
		}
	}
	if kind == "timed" {
		timer := time.AfterFunc(time.Duration(h.rnd.IntN(60_000))*time.Microsecond, kill)
		defer timer.Stop()
	}
	watchdog := time.AfterFunc(20*time.Second, kill)
	defer watchdog.Stop()

	var log []crashEvent
	begins, acks := 0, 0
	for ev := range events {
		log = append(log, ev)
		switch ev.Phase {
		case "begin":
			begins++
			if kind == "mid-op" && begins == k {
				time.Sleep(delay)
				kill()
			}
		case "ack":
			acks++
			if kind == "after-ack" && acks == k {
				time.Sleep(delay)
				kill()
			}
		}
	}
	// The log is read to its end: lines written before the kill count.
	werr := cmd.Wait()
	for _, ev := range log {
		if ev.Phase == "error" {
			h.fatalf("child: %s\n%s", ev.Err, stderr.String())
		}
	}
	if !killed {
		h.fatalf("child ended by itself (%v):\n%s", werr, stderr.String())
	}
	inflight := h.apply(log)
	h.check(inflight)
}

// pick returns an index chosen with the given weights.
func (h *crashHarness) pick(weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := h.rnd.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	panic("unreachable")
}

func (h *crashHarness) find(id []byte) int {
	return slices.IndexFunc(h.model.Creds, func(c crashCred) bool { return bytes.Equal(c.ID, id) })
}

func (h *crashHarness) isDeleted(id []byte) bool {
	return slices.ContainsFunc(h.deleted, func(d []byte) bool { return bytes.Equal(d, id) })
}

func (h *crashHarness) remove(id []byte) {
	if i := h.find(id); i >= 0 {
		h.model.Creds = slices.Delete(h.model.Creds, i, i+1)
		h.deleted = append(h.deleted, id)
	}
}

// account returns the live resident credential of rp's user, or -1.
func (h *crashHarness) account(rp string, user []byte) int {
	return slices.IndexFunc(h.model.Creds, func(c crashCred) bool {
		return c.Resident && c.RP == rp && bytes.Equal(c.UserID, user)
	})
}

// counter checks that a reply's signature counter moved forwards.
func (h *crashHarness) counter(what string, n uint32) {
	h.t.Helper()
	if n <= h.maxCounter {
		h.fatalf("%s: signature counter %d, but %d was returned before", what, n, h.maxCounter)
	}
	h.maxCounter = n
}

// apply replays the acknowledged operations onto the model and returns the one
// that was in flight at the kill, if any.
func (h *crashHarness) apply(log []crashEvent) *crashEvent {
	var inflight *crashEvent
	for i := range log {
		ev := &log[i]
		if ev.Phase == "begin" {
			inflight = ev
			continue
		}
		if inflight == nil || inflight.Op != ev.Op {
			h.fatalf("ack of %s without its begin", ev.Op)
		}
		inflight = nil
		h.acks++
		if ev.PINUsed {
			h.model.Retries = store.DefaultPINRetries // a correct PIN restores them
		}
		switch ev.Op {
		case "mc":
			h.counter("makeCredential", ev.Counter)
			if ev.RK {
				if j := h.account(ev.RP, ev.UserID); j >= 0 {
					h.remove(h.model.Creds[j].ID) // one credential per account
				}
			}
			h.model.Creds = append(h.model.Creds, crashCred{ID: ev.ID, RP: ev.RP, UserID: ev.UserID, Resident: ev.RK, Pub: ev.Pub})
		case "ga":
			if h.find(ev.ID) < 0 {
				h.fatalf("getAssertion answered with credential %x, which is not live (deleted: %v)", ev.ID, h.isDeleted(ev.ID))
			}
			h.counter("getAssertion", ev.Counter)
		case "delete":
			h.remove(ev.ID)
		case "setpin", "changepin":
			h.model.PIN = ev.PIN
			h.model.Retries = store.DefaultPINRetries
		case "wrongpin":
			if ev.Retries != h.model.Retries-1 {
				h.fatalf("a wrong PIN left %d retries, want %d", ev.Retries, h.model.Retries-1)
			}
			h.model.Retries = ev.Retries
		}
	}
	if inflight != nil {
		h.inFlight++
		h.midOp[inflight.Op]++
	}
	return inflight
}

// check opens the state the child was killed on and compares it with the model;
// where the in-flight operation may or may not have happened it learns which.
func (h *crashHarness) check(inflight *crashEvent) {
	t := h.t
	t.Helper()
	st, err := crashOpenState(filepath.Join(h.dir, "softkey.db"), h.model.Passphrase)
	if err != nil {
		h.fatalf("opening the state after the kill: %v", err)
	}
	closeStore := true
	defer func() {
		if closeStore {
			st.Close()
		}
	}()

	// Resident credentials: exactly the model's, up to the in-flight op.
	stored := map[string]*store.Credential{}
	rps, err := st.RelyingParties()
	if err != nil {
		h.fatalf("RelyingParties: %v", err)
	}
	for _, rp := range rps {
		cs, err := st.CredentialsByRP(rp.IDHash)
		if err != nil {
			h.fatalf("CredentialsByRP(%s): %v", rp.ID, err)
		}
		if len(cs) != rp.Credentials {
			h.fatalf("RP %s: %d credentials listed, %d counted", rp.ID, len(cs), rp.Credentials)
		}
		for _, c := range cs {
			stored[string(c.ID)] = c
		}
	}
	if n, err := st.CountCredentials(); err != nil || n != len(stored) {
		h.fatalf("CountCredentials = %d, %v; %d stored", n, err, len(stored))
	}
	for _, id := range h.deleted {
		if _, ok := stored[string(id)]; ok {
			h.fatalf("deleted credential %x is back", id)
		}
		if _, err := st.Credential(id); !errors.Is(err, store.ErrNotFound) {
			h.fatalf("deleted credential %x: Credential = %v", id, err)
		}
	}
	var missing [][]byte
	for _, c := range h.model.Creds {
		if !c.Resident {
			continue
		}
		if _, ok := stored[string(c.ID)]; ok {
			delete(stored, string(c.ID))
		} else {
			missing = append(missing, c.ID)
		}
	}
	extra := stored // now: stored but not in the model
	op := ""
	if inflight != nil {
		op = inflight.Op
	}
	switch {
	case op == "mc" && inflight.RK && len(extra) == 1:
		// Made and stored, the reply lost: adopt it, and the account's old
		// credential must be gone in the same transaction.
		var c *store.Credential
		for _, c = range extra {
		}
		if c.RPID != inflight.RP || !bytes.Equal(c.User.ID, inflight.UserID) {
			h.fatalf("unexpected credential %x of %s after a kill during makeCredential for %s", c.ID, c.RPID, inflight.RP)
		}
		old := h.account(inflight.RP, inflight.UserID)
		switch {
		case old < 0 && len(missing) == 0:
		case old >= 0 && len(missing) == 1 && bytes.Equal(missing[0], h.model.Creds[old].ID):
			h.remove(missing[0])
		default:
			h.fatalf("makeCredential killed half-way: new credential stored, missing %x, replaced account %d", missing, old)
		}
		pub, err := crashPublicKey(c)
		if err != nil {
			h.fatal(err)
		}
		h.model.Creds = append(h.model.Creds, crashCred{ID: c.ID, RP: c.RPID, UserID: c.User.ID, Resident: true, Pub: pub})
		h.outcomes["mc-rk"]++
	case len(extra) > 0:
		h.fatalf("%d credentials stored that were never acknowledged (in flight: %q)", len(extra), op)
	case op == "delete" && len(missing) == 1 && bytes.Equal(missing[0], inflight.ID):
		h.remove(missing[0]) // deleted, the reply lost
		h.outcomes["delete"]++
	case len(missing) > 0:
		h.fatalf("acknowledged credentials lost: %x (in flight: %q)", missing, op)
	}

	// PIN state: the acknowledged PIN, or the in-flight one; retries as
	// acknowledged, or one spent by an in-flight check and possibly restored.
	s, err := st.Settings()
	if err != nil {
		h.fatalf("Settings: %v", err)
	}
	oldHash := []byte(nil)
	if h.model.PIN != "" {
		oldHash = crashPINHash(h.model.PIN)
	}
	switch {
	case bytes.Equal(s.PINHash, oldHash):
	case (op == "setpin" || op == "changepin") && bytes.Equal(s.PINHash, crashPINHash(inflight.PIN)):
		h.model.PIN = inflight.PIN
		h.outcomes[op]++
		if s.PINRetries != store.DefaultPINRetries {
			h.fatalf("new PIN stored with %d retries", s.PINRetries)
		}
	default:
		h.fatalf("stored PIN hash %x is neither the acknowledged PIN %q nor an in-flight one", s.PINHash, h.model.PIN)
	}
	want := []int{h.model.Retries}
	if inflight != nil && inflight.PINUsed {
		want = append(want, h.model.Retries-1, store.DefaultPINRetries)
	}
	if !slices.Contains(want, s.PINRetries) {
		h.fatalf("PIN retries %d, want one of %v (in flight: %q)", s.PINRetries, want, op)
	}
	if s.PINRetries == h.model.Retries-1 {
		h.outcomes["retry-spent"]++
	}
	h.model.Retries = s.PINRetries

	// Every live credential signs, verifiably, with a counter above every counter
	// returned before; deleted ones are unknown; discoverable assertions find
	// exactly the RP's live residents.
	a, err := New(st, Config{})
	if err != nil {
		h.fatalf("New: %v", err)
	}
	closeStore = false
	defer a.Close()
	c := ctap2.NewClient(crashDevice{a})
	ctx := context.Background()
	cdh := make([]byte, 32)
	binary.BigEndian.PutUint64(cdh, uint64(h.cycle))
	for _, cr := range h.model.Creds {
		key, err := ctap2.ParseCOSEKey(cr.Pub)
		if err != nil {
			h.fatalf("credential %x: public key: %v", cr.ID, err)
		}
		resp, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: cr.RP, ClientDataHash: cdh,
			AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: cr.ID}}})
		if err != nil {
			h.fatalf("acknowledged credential %x (resident %v) not usable: %v", cr.ID, cr.Resident, err)
		}
		if err := resp.Verify(key, cdh); err != nil {
			h.fatalf("credential %x: assertion does not verify with its makeCredential key: %v", cr.ID, err)
		}
		ad, err := resp.ParseAuthData()
		if err != nil {
			h.fatal(err)
		}
		h.counter(fmt.Sprintf("credential %x after restart", cr.ID), ad.SignCount)
	}
	for _, id := range h.deleted[max(0, len(h.deleted)-20):] {
		_, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: crashRPs[0], ClientDataHash: cdh,
			AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: id}}})
		if !errors.Is(err, ctap2.ErrNoCredentials) {
			h.fatalf("deleted credential %x: getAssertion = %v, want NO_CREDENTIALS", id, err)
		}
	}
	for _, rp := range crashRPs {
		n := 0
		for _, cr := range h.model.Creds {
			if cr.Resident && cr.RP == rp {
				n++
			}
		}
		resp, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: rp, ClientDataHash: cdh})
		if n == 0 {
			if !errors.Is(err, ctap2.ErrNoCredentials) {
				h.fatalf("%s has no resident credentials; discoverable getAssertion = %v", rp, err)
			}
			continue
		}
		if err != nil {
			h.fatalf("discoverable getAssertion for %s: %v", rp, err)
		}
		if got := max(resp.NumberOfCredentials, 1); int(got) != n {
			h.fatalf("discoverable getAssertion for %s: %d credentials, want %d", rp, got, n)
		}
		ad, err := resp.ParseAuthData()
		if err != nil {
			h.fatal(err)
		}
		h.counter("discoverable assertion after restart", ad.SignCount)
	}
}

func (h *crashHarness) fatal(err error) {
	h.t.Helper()
	h.fatalf("%v", err)
}

// crashPublicKey is the COSE public key of a stored credential.
func crashPublicKey(c *store.Credential) ([]byte, error) {
	k, err := x509.ParsePKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("credential %x: key %T", c.ID, k)
	}
	return (&ctap2.COSEKey{Alg: c.Alg, Public: s.Public()}).Marshal()
}

// TestCrashChild is the child of TestCrashKill: it runs random operations on the
// state until it is killed, logging each to fd 3.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("child process of TestCrashKill")
	}
	logf := os.NewFile(3, "crash log")
	emit := func(ev crashEvent) {
		b, _ := json.Marshal(&ev)
		logf.Write(append(b, '\n')) // one write: a line is never torn
	}
	fail := func(format string, args ...any) {
		emit(crashEvent{Phase: "error", Err: fmt.Sprintf(format, args...)})
		os.Exit(2)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "model.json"))
	if err != nil {
		fail("%v", err)
	}
	var m crashModel
	if err := json.Unmarshal(raw, &m); err != nil {
		fail("model: %v", err)
	}
	st, err := crashOpenState(filepath.Join(dir, "softkey.db"), m.Passphrase)
	if err != nil {
		fail("opening the state: %v", err)
	}
	a, err := New(st, Config{})
	if err != nil {
		fail("New: %v", err)
	}
	ch := &crashChild{c: ctap2.NewClient(crashDevice{a}), m: m, rnd: mrand.New(mrand.NewPCG(m.Seed, 1)), emit: emit}
	for range 500 {
		if err := ch.step(); err != nil {
			fail("%v", err)
		}
	}
	// The parent kills every child; one that ran out of work waits for it.
	time.Sleep(time.Hour)
}

type crashChild struct {
	c    *ctap2.Client
	m    crashModel
	rnd  *mrand.Rand
	emit func(crashEvent)
}

func (ch *crashChild) residents() []crashCred {
	var out []crashCred
	for _, c := range ch.m.Creds {
		if c.Resident {
			out = append(out, c)
		}
	}
	return out
}

func (ch *crashChild) randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// step runs one random operation, logging its begin and its acknowledgement.
func (ch *crashChild) step() error {
	ctx := context.Background()
	res := ch.residents()
	nonRes := len(ch.m.Creds) - len(res)
	hasPIN := ch.m.PIN != ""
	w := func(ok bool, weight int) int {
		if ok {
			return weight
		}
		return 0
	}
	deleteWeight := 8
	if len(res) >= crashMaxResident {
		deleteWeight = 40
	}
	weights := []int{
		w(len(res) < crashMaxResident, 20),  // 0 mc rk, new account
		w(len(res) > 0, 4),                  // 1 mc rk, replacing an account
		w(nonRes < crashMaxNonResident, 10), // 2 mc non-rk
		w(len(ch.m.Creds) > 0, 30),          // 3 ga with allowList
		w(len(res) > 0, 8),                  // 4 ga discoverable
		w(hasPIN && len(res) > 0, deleteWeight),
		w(!hasPIN, 30), // 6 setPIN
		w(hasPIN, 6),   // 7 changePIN
		// 8 a wrong PIN, only after a correct one: never near PIN_AUTH_BLOCKED
		w(hasPIN && ch.m.Retries == store.DefaultPINRetries, 3),
	}
	total := 0
	for _, x := range weights {
		total += x
	}
	n := ch.rnd.IntN(total)
	op := 0
	for n >= weights[op] {
		n -= weights[op]
		op++
	}
	cdh := ch.randomBytes(32)
	switch op {
	case 0, 1, 2:
		rk := op != 2
		rp := crashRPs[ch.rnd.IntN(len(crashRPs))]
		user := ch.randomBytes(8)
		if op == 1 {
			old := res[ch.rnd.IntN(len(res))]
			rp, user = old.RP, old.UserID
		}
		alg := []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA}[ch.rnd.IntN(2)]
		req := &ctap2.MakeCredentialRequest{
			ClientDataHash:   cdh,
			RP:               &ctap2.RPEntity{ID: rp},
			User:             &ctap2.UserEntity{ID: user, Name: fmt.Sprintf("user-%x", user)},
			PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: alg}},
			Options:          &ctap2.Options{RK: ctap2.Bool(rk)},
		}
		pinUsed := rk && hasPIN // a protected key makes discoverable credentials only with UV
		ch.emit(crashEvent{Phase: "begin", Op: "mc", RP: rp, UserID: user, RK: rk, PINUsed: pinUsed})
		if pinUsed {
			tok, err := ch.c.PINToken(ctx, ch.m.PIN, ctap2.PermMakeCredential, rp)
			if err != nil {
				return err
			}
			tok.ProtectMakeCredential(req)
		}
		resp, err := ch.c.MakeCredential(ctx, req)
		if err != nil {
			return fmt.Errorf("makeCredential: %w", err)
		}
		ad, err := resp.ParseAuthData()
		if err != nil || ad.Attested == nil {
			return fmt.Errorf("makeCredential authData: %v", err)
		}
		id := ad.Attested.CredentialID
		ch.emit(crashEvent{Phase: "ack", Op: "mc", RP: rp, UserID: user, RK: rk, PINUsed: pinUsed,
			ID: id, Pub: ad.Attested.PublicKey, Counter: ad.SignCount})
		if rk {
			ch.m.Creds = slices.DeleteFunc(ch.m.Creds, func(c crashCred) bool {
				return c.Resident && c.RP == rp && bytes.Equal(c.UserID, user)
			})
		}
		ch.m.Creds = append(ch.m.Creds, crashCred{ID: id, RP: rp, UserID: user, Resident: rk})
		if pinUsed {
			ch.m.Retries = store.DefaultPINRetries
		}
	case 3, 4:
		req := &ctap2.GetAssertionRequest{ClientDataHash: cdh}
		if op == 3 {
			cr := ch.m.Creds[ch.rnd.IntN(len(ch.m.Creds))]
			req.RPID = cr.RP
			req.AllowList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: cr.ID}}
		} else {
			req.RPID = res[ch.rnd.IntN(len(res))].RP
		}
		ch.emit(crashEvent{Phase: "begin", Op: "ga", RP: req.RPID})
		resp, err := ch.c.GetAssertion(ctx, req)
		if err != nil {
			return fmt.Errorf("getAssertion: %w", err)
		}
		ad, err := resp.ParseAuthData()
		if err != nil {
			return err
		}
		ch.emit(crashEvent{Phase: "ack", Op: "ga", RP: req.RPID, ID: resp.Credential.ID, Counter: ad.SignCount})
	case 5:
		cr := res[ch.rnd.IntN(len(res))]
		ch.emit(crashEvent{Phase: "begin", Op: "delete", ID: cr.ID, PINUsed: true})
		tok, err := ch.c.PINToken(ctx, ch.m.PIN, ctap2.PermCredentialManagement, "")
		if err != nil {
			return err
		}
		if err := ch.c.DeleteCredential(ctx, tok, cr.ID); err != nil {
			return fmt.Errorf("deleteCredential: %w", err)
		}
		ch.emit(crashEvent{Phase: "ack", Op: "delete", ID: cr.ID, PINUsed: true})
		ch.m.Creds = slices.DeleteFunc(ch.m.Creds, func(c crashCred) bool { return bytes.Equal(c.ID, cr.ID) })
		ch.m.Retries = store.DefaultPINRetries
	case 6, 7:
		pin := strconv.Itoa(100000 + ch.rnd.IntN(900000))
		name := map[int]string{6: "setpin", 7: "changepin"}[op]
		ch.emit(crashEvent{Phase: "begin", Op: name, PIN: pin, PINUsed: op == 7})
		var err error
		if op == 6 {
			err = ch.c.SetPIN(ctx, pin)
		} else {
			err = ch.c.ChangePIN(ctx, ch.m.PIN, pin)
		}
		if err != nil {
			return err
		}
		ch.emit(crashEvent{Phase: "ack", Op: name, PIN: pin, PINUsed: op == 7})
		ch.m.PIN, ch.m.Retries = pin, store.DefaultPINRetries
	case 8:
		ch.emit(crashEvent{Phase: "begin", Op: "wrongpin", PINUsed: true})
		_, err := ch.c.PINToken(ctx, "wrong-"+ch.m.PIN, ctap2.PermGetAssertion, crashRPs[0])
		var pe *ctap2.PINError
		if !errors.As(err, &pe) || !errors.Is(err, ctap2.ErrPINInvalid) {
			return fmt.Errorf("wrong PIN: %v, want PIN_INVALID", err)
		}
		// Not PINUsed in the ack: the retries are not restored.
		ch.emit(crashEvent{Phase: "ack", Op: "wrongpin", Retries: pe.Retries})
		ch.m.Retries = pe.Retries
	}
	return nil
}
