// Package pcsctest runs a private pcscd for tests, so that the PC/SC transport and
// the softkey's vpcd card are exercised through the real stack (libpcsclite,
// pcscd, the vpcd reader driver, TCP) on a machine without a card reader.
//
// Debian's pcscd insists on /run/pcscd/pcscd.comm, so only one can run per mount
// namespace. Each Daemon therefore runs in its own: `unshare -m` with a tmpfs on
// /run/pcscd, and a reader configuration whose vpcd listens on ports of its own.
// Clients reach it through PCSCLITE_CSOCK_NAME (honoured by libpcsclite) pointing
// into the daemon's namespace via /proc/PID/root. Test binaries of several
// packages can thus run at once, beside any system pcscd, without seeing each
// other. It needs root (for the mount namespace), pcscd and vsmartcard-vpcd.
package pcsctest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrUnavailable reports why no private pcscd can run here.
var ErrUnavailable = errors.New("pcscd unavailable for tests")

// Paths of Debian's packages pcscd and vsmartcard-vpcd.
const (
	pcscdPath  = "/usr/sbin/pcscd"
	vpcdDriver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
)

// Daemon is a running private pcscd with a vpcd reader driver.
type Daemon struct {
	// Socket is pcscd's client socket; clients need PCSCLITE_CSOCK_NAME=Socket.
	Socket string
	// Port is the TCP port where the vpcd driver waits for the card of reader
	// Reader (slot 0); Port+1 is slot 1's.
	Port int
	// Reader is the PC/SC name of slot 0's reader.
	Reader string
	// Log is pcscd's output file.
	Log string

	cmd      *exec.Cmd
	done     chan error
	stopOnce sync.Once
}

// Start runs a private pcscd with its files under dir. Its vpcd readers listen on
// two free ports of all addresses (vpcd binds 0.0.0.0; fine in a sandbox).
func Start(dir string) (*Daemon, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: a private pcscd needs root (a mount namespace for /run/pcscd)", ErrUnavailable)
	}
	for _, p := range []string{pcscdPath, vpcdDriver} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w: %s missing (apt-get install pcscd vsmartcard-vpcd)", ErrUnavailable, p)
		}
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("%w: unshare not found (util-linux)", ErrUnavailable)
	}
	// The mount point must exist in the parent namespace too.
	if err := os.MkdirAll("/run/pcscd", 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var lastErr error
	for range 5 {
		port, err := freePortPair()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		d, err := start(unshare, dir, port)
		if err == nil {
			return d, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(unshare, dir string, port int) (*Daemon, error) {
	conf := filepath.Join(dir, fmt.Sprintf("reader.conf.d-%d", port))
	if err := os.MkdirAll(conf, 0o755); err != nil {
		return nil, err
	}
	readerConf := fmt.Sprintf("FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x%X\nLIBPATH      %s\nCHANNELID    0x%X\n",
		port, vpcdDriver, port)
	if err := os.WriteFile(filepath.Join(conf, "vpcd"), []byte(readerConf), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("pcscd-%d.log", port))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// unshare without --fork execs: the shell and then pcscd keep its PID, so
	// /proc/PID/root is pcscd's view of the file system.
	cmd := exec.Command(unshare, "-m", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs tmpfs /run/pcscd && exec "$0" --foreground -c "$1"`, pcscdPath, conf)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = daemonProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting pcscd: %v", ErrUnavailable, err)
	}
	d := &Daemon{
		Socket: fmt.Sprintf("/proc/%d/root/run/pcscd/pcscd.comm", cmd.Process.Pid),
		Port:   port, Reader: "Virtual PCD 00 00", Log: logPath,
		cmd: cmd, done: make(chan error, 1),
	}
	go func() { d.done <- cmd.Wait() }()
	// pcscd is ready within milliseconds; its vpcd ports then listen.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%w: pcscd exited (%v): %s", ErrUnavailable, err, strings.TrimSpace(lastLines(string(out), 3)))
		case <-time.After(20 * time.Millisecond):
		}
		if _, err := os.Stat(d.Socket); err == nil && listening(port) {
			return d, nil
		}
	}
	d.Stop()
	return nil, fmt.Errorf("%w: pcscd did not get ready in 10 s (log %s)", ErrUnavailable, logPath)
}

// Env is the environment entry that points libpcsclite clients at this daemon.
func (d *Daemon) Env() string { return "PCSCLITE_CSOCK_NAME=" + d.Socket }

// CardAddr is where a card process (softkey serve --pcsc) connects for Reader.
func (d *Daemon) CardAddr() string { return fmt.Sprintf("127.0.0.1:%d", d.Port) }

// Stop ends pcscd (SIGTERM, then SIGKILL after 5 s) and waits for it. It may
// be called more than once.
func (d *Daemon) Stop() error {
	d.stopOnce.Do(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	return nil
}

// Required reports whether tests must fail rather than skip when no pcscd can
// run: on CI (CI=true) and when CTAPKIT_REQUIRE_PCSC=1.
func Required() bool {
	return os.Getenv("CTAPKIT_REQUIRE_PCSC") == "1" || os.Getenv("CI") == "true"
}

var shared struct {
	once   sync.Once
	daemon *Daemon
	dir    string
	err    error
}

// Shared returns this process's private pcscd, starting it on first use and
// pointing the process's libpcsclite at it (PCSCLITE_CSOCK_NAME). libpcsclite
// reads that variable once, so one test binary can only ever talk to one
// pcscd: tests share it, one card (slot 0) at a time, or slots 0 and 1. Where
// pcscd cannot run, the test is skipped with the reason — or fails, when
// Required. Call StopShared from TestMain.
func Shared(t testing.TB) *Daemon {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "pcsctest-")
		if shared.err != nil {
			return
		}
		if shared.daemon, shared.err = Start(shared.dir); shared.err == nil {
			os.Setenv("PCSCLITE_CSOCK_NAME", shared.daemon.Socket)
		}
	})
	if shared.err != nil {
		if Required() {
			t.Fatalf("%v (required on CI: CI=true or CTAPKIT_REQUIRE_PCSC=1)", shared.err)
		}
		t.Skipf("skipping PC/SC tests: %v", shared.err)
	}
	return shared.daemon
}

// StopShared stops the shared pcscd, if one was started, and removes its files.
func StopShared() {
	if shared.daemon != nil {
		shared.daemon.Stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

func freePortPair() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port >= 65535 {
			continue
		}
		if l2, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port+1)); err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("no two consecutive free TCP ports")
}

// listening reports whether a TCP socket listens on port, from /proc/net/tcp:
// connecting would make vpcd take the connection for a card.
func listening(port int) bool {
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[1], want) && f[3] == "0A" { // 0A: LISTEN
			return true
		}
	}
	return false
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
