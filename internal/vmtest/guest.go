package vmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Environment of a test binary re-run inside the VM by RunGuestTest.
const (
	EnvGuest   = "CTAPKIT_VM_GUEST"   // "1" inside the VM
	EnvCtapkit = "CTAPKIT_VM_CTAPKIT" // the ctapkit binary built for the guest
)

// InGuest reports whether this process runs inside the VM.
func InGuest() bool { return os.Getenv(EnvGuest) == "1" }

// RunGuestTest builds ctapkit, boots the VM and runs the current test binary
// inside it with only the test named guest selected (EnvGuest=1, EnvCtapkit set,
// plus env); the guest's test log becomes t's, and t fails unless guest passed.
// The guest test must skip outside the VM (InGuest).
func RunGuestTest(t *testing.T, guest string, timeout time.Duration, env ...string) {
	t.Helper()
	if InGuest() {
		t.Skip("inside the VM already")
	}
	k := Shared(t)
	bin := BuildCtapkit(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	env = append(append(os.Environ(), EnvGuest+"=1", EnvCtapkit+"="+bin,
		"CI=", "CTAPKIT_DEVICE=", "CTAPKIT_PIN="), env...)
	stdout, stderr, code, err := k.Run(t.Context(), RunOptions{
		Args:    []string{self, "-test.run=^" + guest + "$", "-test.v", "-test.count=1", "-test.timeout=" + timeout.String()},
		Env:     env,
		Timeout: timeout + 30*time.Second,
	})
	t.Logf("VM run (boot included): %v", time.Since(start).Round(time.Millisecond))
	t.Logf("guest output:\n%s", stdout)
	if len(stderr) > 0 {
		t.Logf("guest stderr:\n%s", stderr)
	}
	if err != nil {
		t.Fatalf("VM: %v", err)
	}
	if code != 0 || !bytes.Contains(stdout, []byte("--- PASS: "+guest)) {
		t.Fatalf("the guest tests failed (exit %d)", code)
	}
}

// BuildCtapkit builds the CLI for the guest, without PC/SC when libpcsclite is
// missing (the build needs its headers).
func BuildCtapkit(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ctapkit")
	var out []byte
	var err error
	for _, tags := range []string{"", "nopcsc"} {
		out, err = exec.Command("go", "build", "-tags", tags, "-o", bin, "github.com/ctapkit/ctapkit/cmd/ctapkit").CombinedOutput()
		if err == nil {
			return bin
		}
	}
	t.Fatalf("building ctapkit: %v\n%s", err, out)
	return ""
}
