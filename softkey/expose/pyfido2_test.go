package expose

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
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

// pythonOptions says how runPython serves the softkey.
type pythonOptions struct {
	// U2FOnly serves it as a U2F-only key, as InProcessOptions.U2FOnly does: INIT
	// reports u2fOnlyCapabilities (no CBOR).
	U2FOnly bool
	// PCSC serves it as a PC/SC card instead: its Card behind a private pcscd's
	// vpcd reader, which python-fido2 opens with fido2.pcsc.CtapPcscDevice
	// (pyscard, libpcsclite), the way it opens an NFC key.
	PCSC bool
	// UDP serves it by the UDP simulator convention instead (ServeUDP on a
	// loopback port), which python-fido2 reaches with testdata/udphid.py's
	// connection, named in $CTAPKIT_PY_UDP_ADDR.
	UDP bool
}

// runPython serves auth to testdata/SCRIPT ARGS..., python-fido2's own CTAPHID (or
// PC/SC), CTAP1 and CTAP2 code, and fails on its verdict, the exit status, with its
// stderr; it logs that stderr either way. Over CTAPHID the script talks 64-byte
// reports on its stdin/stdout (the scripts share testdata/pipehid.py for that;
// python puts the script's directory first on sys.path, so they import it as is);
// over PC/SC, pipehid.py opens the reader named in $CTAPKIT_PY_PCSC_READER.
func runPython(t *testing.T, auth *softkey.Authenticator, opts pythonOptions, script string, args ...string) {
	t.Helper()
	py := pythonFido2(t)
	name := strings.Join(append([]string{script}, args...), " ")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{filepath.Join("testdata", script)}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var serve func(ctx context.Context) error
	if opts.UDP {
		addr := serveUDPForPython(t, auth)
		cmd.Env = append(os.Environ(), "CTAPKIT_PY_UDP_ADDR="+addr)
	} else if opts.PCSC {
		reader, env, stop := servePCSCCard(t, auth)
		defer stop()
		cmd.Env = append(os.Environ(), env, "CTAPKIT_PY_PCSC_READER="+reader)
	} else {
		caps := softkeyCapabilities
		if opts.U2FOnly {
			caps = u2fOnlyCapabilities
		}
		toHost, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		fromHost, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		srv := ctaphid.NewServer(auth, ctaphid.ServerOptions{Capabilities: caps})
		serve = func(ctx context.Context) error { return srv.Serve(ctx, newStreamConn(fromHost, toHost)) }
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	if serve != nil {
		go func() { served <- serve(serveCtx) }()
	} else {
		served <- nil
	}
	waitErr := cmd.Wait()
	stop()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, transport.ErrClosed) {
		t.Logf("serve: %v", err)
	}
	out := strings.TrimSpace(stderr.String())
	if waitErr != nil {
		t.Fatalf("python-fido2 %s: %v\n%s", name, waitErr, out)
	}
	t.Logf("python-fido2 %s:\n%s", name, out)
}

// TestPythonFido2Host: python-fido2's CTAPHID and CTAP2 host code registers and
// asserts against the softkey served through the softkey's CTAPHID device side.
func TestPythonFido2Host(t *testing.T) {
	auth := newPythonSoftkey(t, softkey.Config{})
	runPython(t, auth, pythonOptions{}, "pyfido2_host.py", "basic")
}

// TestPythonFido2PIN: python-fido2's ClientPin (both protocols) against the softkey.
func TestPythonFido2PIN(t *testing.T) {
	for _, scenario := range []string{"pin1", "pin2"} {
		t.Run(scenario, func(t *testing.T) {
			auth := newPythonSoftkey(t, softkey.Config{})
			info, err := auth.Info()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := info.Options["clientPin"]; !ok {
				t.Skip("the softkey does not offer clientPIN yet")
			}
			runPython(t, auth, pythonOptions{}, "pyfido2_host.py", scenario)
		})
	}
}

// newEnterpriseSoftkey is a softkey with a batch attestation key, which
// enterprise attestation needs (the config scenario enables it).
func newEnterpriseSoftkey(t *testing.T) *softkey.Authenticator {
	t.Helper()
	st := store.NewMemory(store.Meta{})
	batch, err := softkey.NewBatchAttestation(st.Meta().AAGUID)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := softkey.New(st, softkey.Config{BatchKey: batch.Key, BatchCerts: batch.Certs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	return auth
}

// newPythonSoftkey is a softkey for one python-fido2 scenario, closed at the end.
func newPythonSoftkey(t *testing.T, cfg softkey.Config) *softkey.Authenticator {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	return auth
}

// goHost connects ctap2's host Client to auth in-process (closing the device at
// the end of the test closes auth too) and gets a credential management token with
// the PIN the python-fido2 scenarios set, 1234.
func goHost(t *testing.T, auth *softkey.Authenticator) (*ctap2.Client, *ctap2.PINToken) {
	t.Helper()
	dev, err := InProcess(context.Background(), auth, InProcessOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	c := ctap2.NewClient(dev)
	tok, err := c.PINToken(context.Background(), "1234", ctap2.PermCredentialManagement, "")
	if err != nil {
		t.Fatal(err)
	}
	return c, tok
}

// TestPythonFido2CredMgmt: python-fido2's CredentialManagement against the softkey
// (testdata/pyfido2_host.py credman); then ctap2's host sees what it left.
func TestPythonFido2CredMgmt(t *testing.T) {
	auth := newPythonSoftkey(t, softkey.Config{})
	runPython(t, auth, pythonOptions{}, "pyfido2_host.py", "credman")
	ctx := context.Background()
	c, tok := goHost(t, auth)
	rps, err := c.EnumerateRPs(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, rp := range rps {
		creds, err := c.EnumerateCredentials(ctx, tok, rp.RPIDHash)
		if err != nil {
			t.Fatal(err)
		}
		for _, cred := range creds {
			ids = append(ids, rp.ID+"/"+string(cred.User.ID))
		}
	}
	if want := []string{"example.com/bob", "other.example/carol"}; !slices.Equal(ids, want) {
		t.Fatalf("credentials after python-fido2's scenario %q, want %q", ids, want)
	}
}

// TestPythonFido2Config: python-fido2's Config against a softkey with a batch
// attestation key (testdata/pyfido2_host.py config); its changes show in getInfo.
func TestPythonFido2Config(t *testing.T) {
	auth := newEnterpriseSoftkey(t)
	runPython(t, auth, pythonOptions{}, "pyfido2_host.py", "config")
	info, err := auth.Info()
	if err != nil {
		t.Fatal(err)
	}
	if !info.Options["ep"] || info.Options["alwaysUv"] || info.MinPINLength != 8 || info.ForcePINChange {
		t.Fatalf("getInfo after python-fido2's config: options %v, minPINLength %d, forcePINChange %v", info.Options, info.MinPINLength, info.ForcePINChange)
	}
}

// TestPythonFido2LargeBlobs: python-fido2's LargeBlobs against the softkey
// (testdata/pyfido2_host.py blobs); then ctap2's host reads the blob python-fido2
// stored, with the largeBlobKey credential management reports.
func TestPythonFido2LargeBlobs(t *testing.T) {
	auth := newPythonSoftkey(t, softkey.Config{})
	runPython(t, auth, pythonOptions{}, "pyfido2_host.py", "blobs")
	ctx := context.Background()
	c, tok := goHost(t, auth)
	h := ctap2.RPIDHash("example.com")
	creds, err := c.EnumerateCredentials(ctx, tok, h[:])
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 1 || len(creds[0].LargeBlobKey) != 32 {
		t.Fatalf("credentials %+v, want one with a largeBlobKey", creds)
	}
	data, err := c.GetLargeBlob(ctx, creds[0].LargeBlobKey)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Repeat("python-fido2 wrote this. ", 20); string(data) != want {
		t.Fatalf("blob %q, want %q", data, want)
	}
}
