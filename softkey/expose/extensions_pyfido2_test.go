package expose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// TestPythonFido2Extensions: python-fido2's hmac-secret code (key agreement, salt
// encryption and output decryption by its own PIN protocols 1 and 2) and its CTAP2
// parser against the softkey's extensions: hmac-secret outputs differ with and
// without UV and are stable, credProtect 3 stays hidden without UV, credBlob and
// largeBlobKey round-trip (testdata/pyfido2_extensions.py).
func TestPythonFido2Extensions(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprintf("protocol%d", v), func(t *testing.T) {
			auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer auth.Close()
			py := pythonFido2(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, py, "testdata/pyfido2_extensions.py", fmt.Sprint(v))
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
				t.Fatalf("python-fido2 extensions: %v\n%s", waitErr, out)
			}
			t.Logf("python-fido2:\n%s", out)
		})
	}
}
