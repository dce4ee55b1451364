//go:build linux

package vmtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRun boots the VM once: the guest kernel runs the command with uhid and
// hidraw available, the host's files are visible, the environment and working
// directory arrive, stdout and stderr come back apart, the exit status passes
// through, and the shared folder carries a file out.
func TestRun(t *testing.T) {
	k := Shared(t)
	t.Logf("kit %s: kernel %s, %.0f MB", k.Dir, k.KernelVersion, float64(kitSize(k.Dir))/1e6)
	share := t.TempDir()
	script := `cat /proc/version; ls /dev/uhid; test -e /sys/class/hidraw || echo no-hidraw-class;
echo "env=$VMTEST_MARK pwd=$(pwd)"; echo to-stderr >&2;
echo out > "$SHARE/file"; modprobe -n vhci-hcd && echo modprobe-ok; exit 3`
	start := time.Now()
	stdout, stderr, code, err := k.Run(t.Context(), RunOptions{
		Args:    []string{"sh", "-c", script},
		Env:     append(os.Environ(), "VMTEST_MARK=it's here", "SHARE="+share),
		Dir:     "/usr",
		Share:   share,
		Timeout: time.Minute,
	})
	t.Logf("boot, run and power-off: %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("run: %v\nstdout: %s\nstderr: %s", err, stdout, stderr)
	}
	out := string(stdout)
	for _, want := range []string{"Linux version " + k.KernelVersion, "/dev/uhid\n", "env=it's here pwd=/usr\n", "modprobe-ok\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "no-hidraw-class") {
		t.Errorf("guest kernel has no hidraw class")
	}
	if string(stderr) != "to-stderr\n" {
		t.Errorf("stderr = %q, want %q", stderr, "to-stderr\n")
	}
	if code != 3 {
		t.Errorf("exit code = %d, want 3", code)
	}
	if b, err := os.ReadFile(filepath.Join(share, "file")); err != nil || string(b) != "out\n" {
		t.Errorf("shared file: %q, %v", b, err)
	}
}

// TestRunTimeout: the watchdog kills a VM that runs too long, and Run says so.
func TestRunTimeout(t *testing.T) {
	k := Shared(t)
	start := time.Now()
	_, _, code, err := k.Run(t.Context(), RunOptions{Args: []string{"sleep", "600"}, Timeout: 1500 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || code != -1 {
		t.Fatalf("Run = %d, %v; want -1, ErrTimeout", code, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("killing the VM took %v", d)
	}
}

func TestCommandScript(t *testing.T) {
	got := string(commandScript(RunOptions{
		Args: []string{"printf", "%s|", "a b", "it's"},
		Env:  []string{"A=1", "B=x y", "BASH_FUNC_f%%=() { :; }", "PWD=/nope", "EMPTY="},
		Dir:  "/tmp/d'r",
	}))
	for _, want := range []string{"export 'A=1'\n", "export 'B=x y'\n", "export 'EMPTY='\n", `cd '/tmp/d'\''r' || exit 125`,
		`exec 'printf' '%s|' 'a b' 'it'\''s'`} {
		if !strings.Contains(got, want) {
			t.Errorf("script lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "BASH_FUNC") || strings.Contains(got, "PWD") {
		t.Errorf("script exports names a shell cannot take:\n%s", got)
	}
}
