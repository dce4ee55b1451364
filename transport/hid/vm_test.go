//go:build linux

package hid

// This machine's kernel has no uhid and no hidraw, so TestHIDInVM boots a small
// VM (internal/vmtest) and runs this test binary inside it with
// CTAPKIT_VM_GUEST=1, where TestHIDGuest talks to real /dev/hidrawN nodes: the
// softkey served by `ctapkit softkey serve --uhid`, and an in-process
// expose.ServeUHID one whose touch wait the test controls.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/internal/vmtest"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// envDenied names the node an unprivileged child must fail to open.
const envDenied = "CTAPKIT_VM_DENIED"

// TestHIDInVM boots the VM and runs TestHIDGuest inside; the guest's test log becomes
// this test's.
func TestHIDInVM(t *testing.T) {
	vmtest.RunGuestTest(t, "TestHIDGuest", 60*time.Second)
}

// TestHIDGuest runs inside the VM only.
func TestHIDGuest(t *testing.T) {
	if !vmtest.InGuest() {
		t.Skip("runs inside the VM that TestHIDInVM boots")
	}
	t.Run("ServedByCLI", guestServedByCLI)
	t.Run("Cancel", guestCancel)
	t.Run("Removal", guestRemoval)
	t.Run("Permission", guestPermission)
}

var servingLine = regexp.MustCompile(`^serving softkey .+ as USB HID device (/dev/hidraw[0-9]+)$`)

// guestServedByCLI: `ctapkit softkey serve --uhid` makes a key that Enumerate
// lists and Open uses, by its node and through a symlink (as udev makes them):
// getInfo, a credential whose attestation verifies, an assertion whose signature
// verifies, and WINK.
func guestServedByCLI(t *testing.T) {
	bin := os.Getenv(vmtest.EnvCtapkit)
	if bin == "" {
		t.Fatalf("%s not set", vmtest.EnvCtapkit)
	}
	node := startServe(t, bin, initState(t, bin)).node

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	infos, err := Enumerate(ctx)
	if err != nil {
		t.Fatalf("Enumerate: %v", err)
	}
	if len(infos) != 1 || infos[0].Path != node {
		t.Fatalf("Enumerate = %+v, want the one key at %s", infos, node)
	}
	listed := infos[0]
	if listed.URI != "hid:"+node || listed.VendorID != expose.DefaultUHIDVendorID || listed.ProductID != expose.DefaultUHIDProductID ||
		listed.Product != expose.DefaultUHIDName || listed.Serial == "" {
		t.Errorf("Enumerate: %+v", listed)
	}

	dev, err := Open(ctx, node, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", node, err)
	}
	defer dev.Close()
	if got := dev.Info(); got != listed {
		t.Errorf("Info() = %+v, want what Enumerate said: %+v", got, listed)
	}
	if caps := dev.Capabilities(); caps&0x04 == 0 {
		t.Errorf("Capabilities() = %#x, no CBOR", caps)
	}
	c := ctap2.NewClient(dev)
	info, err := c.GetInfo(ctx)
	if err != nil {
		t.Fatalf("getInfo: %v", err)
	}
	if !info.HasVersion("FIDO_2_1") || len(info.AAGUID) != 16 {
		t.Errorf("getInfo: versions %v, AAGUID %x", info.Versions, info.AAGUID)
	}
	mc, err := c.MakeCredential(ctx, mcRequest("vm-alice"))
	if err != nil {
		t.Fatalf("makeCredential: %v", err)
	}
	if _, err := mc.VerifyAttestation(bytes.Repeat([]byte{1}, 32)); err != nil {
		t.Errorf("attestation: %v", err)
	}
	_, key, err := mc.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	cdh := bytes.Repeat([]byte{2}, 32)
	as, err := c.GetAssertions(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh})
	if err != nil {
		t.Fatalf("getAssertion: %v", err)
	}
	if len(as) != 1 || string(as[0].User.ID) != "vm-alice" {
		t.Fatalf("assertions %+v", as)
	}
	if err := as[0].Verify(key, cdh); err != nil {
		t.Errorf("assertion signature: %v", err)
	}
	if err := dev.Wink(ctx); err != nil {
		t.Errorf("wink: %v", err)
	}

	// Through a udev-style symlink: the descriptor comes from the node's ioctl,
	// the description from sysfs as for the node itself.
	link := filepath.Join(t.TempDir(), "fido-key")
	if err := os.Symlink(node, link); err != nil {
		t.Fatal(err)
	}
	byLink, err := Open(ctx, link, Options{})
	if err != nil {
		t.Fatalf("Open(%s -> %s): %v", link, node, err)
	}
	defer byLink.Close()
	if got := byLink.Info(); got.Path != link || got.Product != listed.Product || got.Serial != listed.Serial {
		t.Errorf("Info() through a symlink = %+v", got)
	}
	if _, err := ctap2.NewClient(byLink).GetInfo(ctx); err != nil {
		t.Errorf("getInfo through a symlink: %v", err)
	}
}

// servedKey is a running `ctapkit softkey serve --uhid`.
type servedKey struct {
	node string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// startServe starts ctapkit softkey serve --uhid with env added and waits for the
// line that names the node. Its stdin is a pipe nobody writes to, so a touch
// prompt (presence policy prompt) waits forever. Cleanup stops it with SIGTERM.
func startServe(t *testing.T, bin, state string, env ...string) *servedKey {
	t.Helper()
	cmd := exec.Command(bin, "softkey", "serve", "--uhid", "--state", state)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &servedKey{cmd: cmd, done: make(chan struct{})}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Errorf("serve did not exit within 10 s of SIGTERM")
		}
		stdin.Close()
	})
	lines := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		cmd.Wait()
	}()
	select {
	case line := <-lines:
		m := servingLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("serve printed %q", line)
		}
		s.node = m[1]
		return s
	case <-s.done:
		t.Fatalf("serve exited: %s", stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve printed no node in 20 s")
	}
	return nil
}

// initState makes a softkey state file for serve.
func initState(t *testing.T, bin string) string {
	t.Helper()
	state := filepath.Join(t.TempDir(), "sk.db")
	if out, err := exec.Command(bin, "softkey", "init", "--state", state, "--no-passphrase").CombinedOutput(); err != nil {
		t.Fatalf("softkey init: %v\n%s", err, out)
	}
	return state
}

// guestCancel: over a real hidraw node, a touch wait is reported as UP needed,
// and cancelling ctx makes the key stop waiting within 100 ms.
func guestCancel(t *testing.T) {
	var mu sync.Mutex
	var w *waitingPresence
	presence := func(ctx context.Context, rpID string) (bool, error) {
		mu.Lock()
		cur := w
		mu.Unlock()
		return cur.fn(ctx, rpID)
	}
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{PresenceFunc: presence})
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	sctx, stop := context.WithCancel(context.Background())
	defer stop()
	nodes := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- expose.ServeUHID(sctx, auth, expose.UHIDOptions{OnNode: func(p string) { nodes <- p }})
	}()
	var node string
	select {
	case node = <-nodes:
	case err := <-served:
		t.Fatalf("ServeUHID: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no hidraw node after 20 s")
	}
	dev, err := Open(context.Background(), node, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", node, err)
	}
	defer dev.Close()
	c := ctap2.NewClient(dev)

	mu.Lock()
	w = newWaitingPresence()
	mu.Unlock()
	checkCancel(t, c, w, "vm-bob", 5*time.Second)
}

// guestRemoval: a key that goes away during a request (the serving process
// killed, so the kernel destroys the device as if it were pulled out) ends the
// request with the one-line "was removed" error wrapping ErrNoDevice, and so does
// opening its node afterwards.
func guestRemoval(t *testing.T) {
	bin := os.Getenv(vmtest.EnvCtapkit)
	if bin == "" {
		t.Fatalf("%s not set", vmtest.EnvCtapkit)
	}
	s := startServe(t, bin, initState(t, bin), "CTAPKIT_SOFTKEY_PRESENCE=prompt")
	dev, err := Open(context.Background(), s.node, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", s.node, err)
	}
	defer dev.Close()
	asked := make(chan struct{})
	var once sync.Once
	ctx := transport.WithKeepalive(context.Background(), func(b byte) {
		if b == transport.StatusUPNeeded {
			once.Do(func() { close(asked) })
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := ctap2.NewClient(dev).MakeCredential(ctx, mcRequest("vm-carol"))
		done <- err
	}()
	select {
	case <-asked:
	case err := <-done:
		t.Fatalf("makeCredential returned before the touch prompt: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no UP-needed keepalive from the prompting key")
	}
	s.cmd.Process.Kill()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("makeCredential did not notice the key was removed")
	}
	want := "the key at " + s.node + " was removed"
	if !errors.Is(err, transport.ErrNoDevice) || !strings.HasSuffix(err.Error(), ": "+want) {
		t.Errorf("key removed: %q, want makeCredential: %q wrapping ErrNoDevice", err, want)
	}
	<-s.done
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := Open(context.Background(), s.node, Options{})
		if errors.Is(err, transport.ErrNoDevice) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Open after removal: %v, want ErrNoDevice", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// guestPermission: a user who may not open the node (devtmpfs makes it root's,
// 0600) gets the error that names the udev rule. The check runs in a child
// process as nobody.
func guestPermission(t *testing.T) {
	if node := os.Getenv(envDenied); node != "" {
		_, err := Open(context.Background(), node, Options{})
		want := "permission denied opening " + node + ": install the udev rule (ctapkit doctor --udev-rule) and re-plug the key"
		if err == nil || err.Error() != want {
			t.Fatalf("as uid %d: %v, want %q", os.Getuid(), err, want)
		}
		return
	}
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	ctx, stop := context.WithCancel(context.Background())
	nodes := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- expose.ServeUHID(ctx, auth, expose.UHIDOptions{OnNode: func(p string) { nodes <- p }})
	}()
	defer func() { stop(); <-served }()
	var node string
	select {
	case node = <-nodes:
	case err := <-served:
		t.Fatalf("ServeUHID: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no hidraw node after 20 s")
	}
	// The test binary must be reachable by nobody.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hidperm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	copyBin := filepath.Join(dir, "hid.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyBin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyBin, "-test.run=^TestHIDGuest$/^Permission$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), envDenied+"="+node, "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestHIDGuest/Permission") {
		t.Errorf("as nobody: %v\n%s", err, out)
	}
}
