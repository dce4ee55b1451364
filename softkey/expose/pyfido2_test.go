package expose

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// streamConn is a ctaphid.PacketConn over a byte stream of fixed 64-byte records:
// the HID link to a host program on the other end of a pipe.
type streamConn struct {
	w       io.WriteCloser
	packets chan []byte
	readErr chan error
}

func newStreamConn(r io.Reader, w io.WriteCloser) *streamConn {
	c := &streamConn{w: w, packets: make(chan []byte), readErr: make(chan error, 1)}
	go func() {
		for {
			p := make([]byte, ctaphid.ReportSize)
			if _, err := io.ReadFull(r, p); err != nil {
				c.readErr <- err
				return
			}
			c.packets <- p
		}
	}()
	return c
}

func (c *streamConn) ReadPacket(ctx context.Context) ([]byte, error) {
	select {
	case p := <-c.packets:
		return p, nil
	case err := <-c.readErr:
		c.readErr <- err
		return nil, transport.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *streamConn) WritePacket(p []byte) error {
	_, err := c.w.Write(p)
	return err
}

func (c *streamConn) Close() error { return c.w.Close() }

// pythonFido2 finds a python3 with python-fido2 (Debian python3-fido2, installed by
// `make test` as root); PATH's python3 may be another build without it. Missing, the
// test is skipped, except under CI, where it must run.
func pythonFido2(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(py, "-c", "import fido2.hid.base").Run() == nil {
			return py
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("python-fido2 is not installed (apt-get install python3-fido2); CI must run the interop tests")
	}
	t.Skip("python-fido2 not installed (apt-get install python3-fido2)")
	return ""
}

// runPythonHost serves auth over CTAPHID to testdata/pyfido2_host.py SCENARIO,
// python-fido2's own CTAPHID and CTAP2 implementation, and fails on its verdict.
func runPythonHost(t *testing.T, auth *softkey.Authenticator, scenario string) {
	py := pythonFido2(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/pyfido2_host.py", scenario)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	toHost, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	fromHost, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	srv := ctaphid.NewServer(auth, ctaphid.ServerOptions{Capabilities: softkeyCapabilities})
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, newStreamConn(fromHost, toHost)) }()
	waitErr := cmd.Wait()
	stop()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, transport.ErrClosed) {
		t.Logf("serve: %v", err)
	}
	out := strings.TrimSpace(stderr.String())
	if waitErr != nil {
		t.Fatalf("python-fido2 %s: %v\n%s", scenario, waitErr, out)
	}
	t.Logf("python-fido2 %s:\n%s", scenario, out)
}

// TestPythonFido2Host: python-fido2's CTAPHID and CTAP2 host code registers and
// asserts against the softkey served through the softkey's CTAPHID device side.
func TestPythonFido2Host(t *testing.T) {
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	runPythonHost(t, auth, "basic")
}

// TestPythonFido2PIN: python-fido2's ClientPin (both protocols) against the softkey.
func TestPythonFido2PIN(t *testing.T) {
	for _, scenario := range []string{"pin1", "pin2"} {
		t.Run(scenario, func(t *testing.T) {
			auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer auth.Close()
			info, err := auth.Info()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := info.Options["clientPin"]; !ok {
				t.Skip("the softkey does not offer clientPIN yet")
			}
			runPythonHost(t, auth, scenario)
		})
	}
}
