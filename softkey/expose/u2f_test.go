package expose

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// TestPythonFido2U2F: python-fido2's CTAP1 code (its APDU framing, registration and
// signature verification, fido-u2f attestation) drives the softkey's U2F side over
// CTAPHID_MSG, and moves credentials between U2F and CTAP2 in both directions
// (testdata/pyfido2_u2f.py).
func TestPythonFido2U2F(t *testing.T) {
	py := pythonFido2(t)
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "testdata/pyfido2_u2f.py")
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
	<-served
	out := strings.TrimSpace(stderr.String())
	if waitErr != nil {
		t.Fatalf("python-fido2 U2F: %v\n%s", waitErr, out)
	}
	t.Logf("python-fido2 U2F:\n%s", out)
}
