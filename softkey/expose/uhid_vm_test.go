//go:build linux

package expose

// The uhid exposure needs a kernel with uhid and hidraw, which the machines this
// project is built on lack. TestUHIDInVM therefore boots one small VM
// (internal/vmtest) and runs this very test binary inside it, with
// CTAPKIT_VM_GUEST=1, where TestUHIDGuest does the work in one boot: ServeUHID
// with ctapkit's hid transport as host, the getAssertion round trip over
// hidraw against in-process, then `ctapkit softkey serve --uhid` driven by
// libfido2's tools and by ctapkit itself (info, conformance) through
// /dev/hidrawN.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/internal/vmtest"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
	"github.com/ctapkit/ctapkit/transport/hid"
)

// TestUHIDInVM boots the VM and runs TestUHIDGuest inside; the guest's test log becomes
// this test's.
func TestUHIDInVM(t *testing.T) {
	vmtest.RunGuestTest(t, "TestUHIDGuest", 100*time.Second)
}

// TestUHIDGuest runs inside the VM only.
func TestUHIDGuest(t *testing.T) {
	if !vmtest.InGuest() {
		t.Skip("runs inside the VM that TestUHIDInVM boots")
	}
	t.Run("ServeUHID", guestServeUHID)
	t.Run("GetAssertionRatio", guestGetAssertionRatio)
	t.Run("conformance", guestConformance)
	bin := os.Getenv(vmtest.EnvCtapkit)
	if bin == "" {
		t.Fatalf("%s not set", vmtest.EnvCtapkit)
	}
	state := filepath.Join(t.TempDir(), "sk.db")
	run(t, nil, bin, "softkey", "init", "--state", state, "--no-passphrase")
	var info struct{ AAGUID string }
	if err := json.Unmarshal(run(t, nil, bin, "-d", "soft:"+state, "info", "--json"), &info); err != nil {
		t.Fatal(err)
	}
	t.Run("libfido2", func(t *testing.T) { guestLibfido2(t, bin, state, strings.ReplaceAll(info.AAGUID, "-", "")) })
	t.Run("ctapkit", func(t *testing.T) { guestCtapkit(t, bin, state) })
}

// startUHID runs ServeUHID for auth and returns the node once it exists, and a
// function that ends ServeUHID and returns its error.
func startUHID(auth *softkey.Authenticator, opts UHIDOptions) (node string, stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	nodes := make(chan string, 1)
	served := make(chan error, 1)
	opts.OnNode = func(p string) { nodes <- p }
	go func() { served <- ServeUHID(ctx, auth, opts) }()
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-served
		})
		return stopErr
	}
	select {
	case node = <-nodes:
		return node, stop, nil
	case err := <-served:
		cancel()
		return "", nil, fmt.Errorf("ServeUHID: %w", err)
	case <-time.After(20 * time.Second):
		stop()
		return "", nil, errors.New("no hidraw node after 20 s")
	}
}

// serveUHID is startUHID for the rest of the test.
func serveUHID(t *testing.T, auth *softkey.Authenticator, opts UHIDOptions) (node string, stop func() error) {
	t.Helper()
	node, stop, err := startUHID(auth, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	return node, stop
}

func newMemSoftkey(t *testing.T) *softkey.Authenticator {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	return auth
}

// guestServeUHID: the device the kernel makes (ids, name, serial, report
// descriptor), ctapkit's enumeration and several hosts on their own channels at
// once, and the node going away when ServeUHID returns.
func guestServeUHID(t *testing.T) {
	auth := newMemSoftkey(t)
	node, stop := serveUHID(t, auth, UHIDOptions{Serial: "vmtest-serial"})
	t.Logf("hidraw node %s", node)
	sys := filepath.Join("/sys/class/hidraw", filepath.Base(node), "device")
	uevent, err := os.ReadFile(filepath.Join(sys, "uevent"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"HID_ID=0003:00001209:00000001", "HID_NAME=ctapkit softkey", "HID_UNIQ=vmtest-serial"} {
		if !bytes.Contains(uevent, []byte(want+"\n")) {
			t.Errorf("uevent lacks %s:\n%s", want, uevent)
		}
	}
	if rd, err := os.ReadFile(filepath.Join(sys, "report_descriptor")); err != nil || !bytes.Equal(rd, fidoReportDescriptor) {
		t.Errorf("report descriptor %x, %v; want %x", rd, err, fidoReportDescriptor)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	infos, err := hid.Enumerate(ctx)
	if err != nil {
		t.Fatalf("hid.Enumerate: %v", err)
	}
	i := slices.IndexFunc(infos, func(d transport.DeviceInfo) bool { return d.Path == node })
	if i < 0 {
		t.Fatalf("hid.Enumerate does not list %s: %+v", node, infos)
	}
	if d := infos[i]; d.VendorID != DefaultUHIDVendorID || d.ProductID != DefaultUHIDProductID || d.Serial != "vmtest-serial" {
		t.Errorf("hid.Enumerate: %+v", d)
	}

	// Several programs at once, each with its own channel; hidraw gives each a
	// copy of every reply and the server keeps the channels apart.
	aaguid := auth.AAGUID()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for h := range 4 {
		wg.Go(func() {
			dev, err := hid.Open(ctx, node, hid.Options{})
			if err != nil {
				errs <- fmt.Errorf("host %d: %w", h, err)
				return
			}
			defer dev.Close()
			c := ctap2.NewClient(dev)
			for range 4 {
				info, err := c.GetInfo(ctx)
				if err != nil {
					errs <- fmt.Errorf("host %d: getInfo: %w", h, err)
					return
				}
				if !bytes.Equal(info.AAGUID, aaguid[:]) {
					errs <- fmt.Errorf("host %d: AAGUID %x", h, info.AAGUID)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The longest message there is (129 reports, written back to back) arrives
	// whole although the kernel keeps only 32 output events for the device.
	big := make([]byte, ctaphid.MaxMessageSize)
	for i := range big {
		big[i] = byte(i * 7)
	}
	pinger, err := hid.Open(ctx, node, hid.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if echo, err := pinger.Transact(ctx, transport.CmdPing, big); err != nil || !bytes.Equal(echo, big) {
			dmesg, _, _ := runCmd(nil, "dmesg")
			t.Fatalf("PING of %d bytes: %d bytes back, %v\n%s", len(big), len(echo), err, dmesg)
		}
	}
	pinger.Close()
	if dmesg, _, _ := runCmd(nil, "dmesg"); bytes.Contains(dmesg, []byte("Output queue is full")) {
		t.Errorf("the kernel dropped output reports:\n%s", dmesg)
	}

	// A host holding the node open sees the device go.
	dev, err := hid.Open(ctx, node, hid.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("ServeUHID returned %v, want context.Canceled", err)
	}
	if _, err := ctap2.NewClient(dev).GetInfo(ctx); err == nil {
		t.Error("getInfo succeeded after the device was destroyed")
	} else {
		t.Logf("after destroy: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, err := os.Stat(node); err == nil; _, err = os.Stat(node) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still exists 5 s after ServeUHID returned", node)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// guestGetAssertionRatio measures a getAssertion round trip through the kernel
// (ctapkit's hid transport → hidraw → uhid → ServeUHID) against the same request
// through the in-memory pipe, in the same VM, alternating, as a ratio of medians.
func guestGetAssertionRatio(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inproc, _, _ := open(t, store.NewMemory(store.Meta{}), softkey.Config{})
	node, _ := serveUHID(t, newMemSoftkey(t), UHIDOptions{})
	dev, err := hid.Open(ctx, node, hid.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	overHID := ctap2.NewClient(dev)
	req := &ctap2.GetAssertionRequest{RPID: "bench.example", ClientDataHash: make([]byte, 32)}
	clients := []*ctap2.Client{inproc, overHID}
	for _, c := range clients {
		makeCredential(t, c, "bench.example", "bench", true)
		c.GetAssertion(ctx, req) // warm up
	}
	var times [2][]time.Duration
	for range 8 {
		for i, c := range clients {
			for range 4 {
				start := time.Now()
				if _, err := c.GetAssertion(ctx, req); err != nil {
					t.Fatalf("getAssertion: %v", err)
				}
				times[i] = append(times[i], time.Since(start))
			}
		}
	}
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	in, hr := med(times[0]), med(times[1])
	t.Logf("getAssertion round trip in the VM: hidraw+uhid %v, in-process %v: ratio %.2f (x-inprocess)",
		hr.Round(time.Microsecond), in.Round(time.Microsecond), float64(hr)/float64(in))
}

// run runs a command inside the guest and returns its stdout; it fails the test
// on a non-zero exit.
func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, errOut, err := runCmd(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(name), strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func runCmd(stdin []byte, name string, args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.Command(name, args...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(stdin), &o, &e
	err = cmd.Run()
	return o.Bytes(), e.Bytes(), err
}

// servedKey is a running `ctapkit softkey serve --uhid`.
type servedKey struct {
	node   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *prompter
	done   chan error
}

// prompter is the serve process's stderr: it answers each "touch? [y/N]" prompt
// on the process's stdin, "y" unless answers holds another reply.
type prompter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	stdin   io.Writer
	asked   int
	answers []string
}

func (p *prompter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf.Write(b)
	for n := strings.Count(p.buf.String(), "touch? [y/N]"); p.asked < n; p.asked++ {
		answer := "y"
		if len(p.answers) > 0 {
			answer, p.answers = p.answers[0], p.answers[1:]
		}
		io.WriteString(p.stdin, answer+"\n")
	}
	return len(b), nil
}

func (p *prompter) answerNext(a string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answers = append(p.answers, a)
}

func (p *prompter) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

var servingLine = regexp.MustCompile(`^serving softkey (.+) as USB HID device (/dev/hidraw[0-9]+)$`)

// startServe starts ctapkit softkey serve --uhid on state and waits for the line
// that names the node.
func startServe(t *testing.T, bin, state string, env ...string) *servedKey {
	t.Helper()
	cmd := exec.Command(bin, "softkey", "serve", "--uhid", "--state", state)
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &servedKey{cmd: cmd, stdin: stdin, stderr: &prompter{stdin: stdin}, done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() {
		for range lines { // later lines are not expected; keep the pipe drained
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() { s.stop(t) })
	select {
	case line, ok := <-lines:
		m := servingLine.FindStringSubmatch(line)
		if !ok || m == nil || m[1] != state {
			t.Fatalf("serve printed %q; stderr: %s", line, s.stderr)
		}
		s.node = m[2]
		t.Logf("%s (%v after start)", line, time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatalf("serve printed no node in 20 s; stderr: %s", s.stderr)
	}
	return s
}

// stop ends the server with SIGTERM, as a service manager would; it must exit 0.
func (s *servedKey) stop(t *testing.T) {
	if s.cmd.ProcessState != nil || s.node == "" {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v; stderr: %s", err, s.stderr)
		}
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		t.Errorf("serve did not exit within 10 s of SIGTERM")
	}
	s.node = ""
}

// guestLibfido2 drives the served softkey with libfido2's command-line tools:
// listing, getInfo, a credential and an assertion that verify, a touch the user
// declines (presence policy prompt), a PIN, and an assertion with it.
func guestLibfido2(t *testing.T, bin, state, aaguid string) {
	for _, tool := range []string{"fido2-token", "fido2-cred", "fido2-assert"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (Debian fido2-tools)", tool)
		}
	}
	s := startServe(t, bin, state, "CTAPKIT_SOFTKEY_PRESENCE=prompt")
	dir := t.TempDir()
	file := func(name string, lines ...string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b64 := base64.StdEncoding.EncodeToString

	list := string(run(t, nil, "fido2-token", "-L"))
	t.Logf("fido2-token -L:\n%s", list)
	if !strings.Contains(list, s.node+": vendor=0x1209, product=0x0001") {
		t.Errorf("fido2-token -L does not list %s as 1209:0001", s.node)
	}
	tokenInfo := string(run(t, nil, "fido2-token", "-I", s.node))
	t.Logf("fido2-token -I:\n%s", tokenInfo)
	for _, want := range []string{"FIDO_2_0", "FIDO_2_1", "aaguid: " + aaguid, "noclientPin", "rk", "maxmsgsiz: 2048"} {
		if !strings.Contains(tokenInfo, want) {
			t.Errorf("fido2-token -I lacks %q", want)
		}
	}

	// makeCredential → verified attestation → the credential's public key.
	cdh := bytes.Repeat([]byte{7}, 32)
	made := run(t, nil, "fido2-cred", "-M", "-i", file("cred.in", b64(cdh), "vm.example", "alice", b64([]byte("alice-id"))), s.node, "es256")
	t.Logf("fido2-cred -M:\n%s", made)
	verified := run(t, nil, "fido2-cred", "-V", "-i", file("cred.out", strings.TrimSpace(string(made))), "es256")
	credID, pemKey, ok := strings.Cut(string(verified), "\n")
	if !ok || !strings.HasPrefix(pemKey, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("fido2-cred -V output:\n%s", verified)
	}
	t.Logf("fido2-cred -V: credential %s verified", credID)
	pub := file("cred.pem", strings.TrimSpace(pemKey))

	// getAssertion with user presence → signature verified with that key.
	assertIn := file("assert.in", b64(cdh), "vm.example", credID)
	got := run(t, nil, "fido2-assert", "-G", "-p", "-i", assertIn, s.node)
	run(t, nil, "fido2-assert", "-V", "-p", "-i", file("assert.out", strings.TrimSpace(string(got))), pub, "es256")
	t.Logf("fido2-assert -G -p / -V -p: assertion verified")

	// The person at the serving terminal says no.
	s.stderr.answerNext("n")
	if out, errOut, err := runCmd(nil, "fido2-assert", "-G", "-p", "-i", assertIn, s.node); err == nil {
		t.Errorf("fido2-assert succeeded although the touch was declined:\n%s", out)
	} else if !strings.Contains(string(errOut), "FIDO_ERR_OPERATION_DENIED") {
		t.Errorf("declined touch: fido2-assert said %s", errOut)
	}
	if !strings.Contains(s.stderr.String(), "vm.example asks for a touch. touch? [y/N]") {
		t.Errorf("serve's prompts:\n%s", s.stderr)
	}

	// A PIN, set through fido2-token (without a tty it reads the PIN twice from
	// stdin), and an assertion with user verification by that PIN.
	run(t, []byte("4321\n4321\n"), "fido2-token", "-S", s.node)
	tokenInfo = string(run(t, nil, "fido2-token", "-I", s.node))
	if strings.Contains(tokenInfo, "noclientPin") || !strings.Contains(tokenInfo, "clientPin") || !strings.Contains(tokenInfo, "pin retries: 8") {
		t.Errorf("after fido2-token -S, fido2-token -I says:\n%s", tokenInfo)
	}
	got = run(t, []byte("4321\n"), "fido2-assert", "-G", "-p", "-v", "-i", assertIn, s.node)
	run(t, nil, "fido2-assert", "-V", "-p", "-v", "-i", file("assert-uv.out", strings.TrimSpace(string(got))), pub, "es256")
	t.Logf("fido2-token -S, then fido2-assert -G -v with the PIN: UV assertion verified")
	s.stop(t)
}

// guestCtapkit: ctapkit as the host through /dev/hidrawN (transport/hid), against
// the same state served again: info, and the conformance suite.
func guestCtapkit(t *testing.T, bin, state string) {
	s := startServe(t, bin, state)
	uri := "hid:" + s.node
	out, errOut, err := runCmd(nil, bin, "-d", uri, "info")
	if err != nil {
		t.Fatalf("ctapkit -d %s info: %v\n%s%s", uri, err, out, errOut)
	}
	t.Logf("ctapkit -d %s info:\n%s", uri, out)
	start := time.Now()
	cmd := exec.Command(bin, "-d", uri, "conformance", "--destructive", "--yes", "--auto-presence=false")
	cmd.Env = append(os.Environ(), "CTAPKIT_PIN=4321") // the PIN libfido2 set
	report, err := cmd.CombinedOutput()
	t.Logf("ctapkit -d %s conformance (%v):\n%s", uri, time.Since(start).Round(time.Millisecond), report)
	if err != nil {
		t.Errorf("conformance over hidraw: %v", err)
		dmesg, _, _ := runCmd(nil, "dmesg")
		t.Logf("dmesg:\n%s", dmesg)
	}
	// The CTAPHID cases run through a second open of the node.
	if !regexp.MustCompile(`(?m)^ctaphid +1[5-9] +0 `).Match(report) {
		t.Errorf("ctapkit conformance over hidraw did not run the CTAPHID cases")
	}
	s.stop(t)
}

// uhidTarget is a conformance target reached as a USB key is: the client through
// ctapkit's hid transport, the CTAPHID cases through a second open of the same
// hidraw node, and a power cycle that destroys the uhid device and creates it
// again around a softkey restarted on the same state (a new /dev/hidrawN).
type uhidTarget struct {
	*conformance.Target
	st   store.Store
	auth *softkey.Authenticator
	stop func() error
	raw  ctaphid.PacketConn
}

// keptStore outlives the softkey's Close, so that a power cycle keeps state.
type keptStore struct{ store.Store }

func (keptStore) Close() error { return nil }

func (u *uhidTarget) start(ctx context.Context) error {
	auth, err := softkey.New(u.st, softkey.Config{})
	if err != nil {
		return err
	}
	node, stop, err := startUHID(auth, UHIDOptions{})
	if err != nil {
		auth.Close()
		return err
	}
	dev, err := hid.Open(ctx, node, hid.Options{})
	if err != nil {
		stop()
		auth.Close()
		return err
	}
	raw, err := hid.OpenPacketConn(node)
	if err != nil {
		dev.Close()
		stop()
		auth.Close()
		return err
	}
	u.auth, u.stop, u.raw = auth, stop, raw
	u.Device, u.Client, u.HID = dev, ctap2.NewClient(dev), raw
	return nil
}

func (u *uhidTarget) close() error {
	if u.auth == nil {
		return nil
	}
	u.Device.Close()
	u.raw.Close()
	u.stop()
	err := u.auth.Close()
	u.auth = nil
	return err
}

func (u *uhidTarget) powerCycle(ctx context.Context) error {
	if err := u.close(); err != nil {
		return err
	}
	return u.start(ctx)
}

// guestConformance runs the whole suite, CTAPHID and power-cycle cases included,
// against ServeUHID through the kernel.
func guestConformance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	u := &uhidTarget{Target: &conformance.Target{AutoPresence: true}, st: keptStore{store.NewMemory(store.Meta{})}}
	u.PowerCycle = u.powerCycle
	if err := u.start(ctx); err != nil {
		t.Fatal(err)
	}
	defer u.close()
	start := time.Now()
	results := conformance.Run(ctx, u.Target, conformance.Options{Destructive: true})
	count := map[conformance.Status]int{}
	var skipped []string
	for _, r := range results {
		count[r.Status]++
		switch r.Status {
		case conformance.Fail:
			t.Errorf("%s %s: %s", r.ID, r.Description, r.Message)
		case conformance.Skip:
			skipped = append(skipped, r.ID)
			t.Logf("skip %s: %s", r.ID, r.Message)
		}
	}
	t.Logf("conformance over uhid/hidraw with power cycles: %d passed, %d failed, %d skipped (%s) in %v",
		count[conformance.Pass], count[conformance.Fail], count[conformance.Skip], strings.Join(skipped, " "),
		time.Since(start).Round(time.Millisecond))
}
