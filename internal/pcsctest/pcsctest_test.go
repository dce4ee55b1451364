package pcsctest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDaemonListsReaders: a private pcscd comes up with its vpcd readers, is
// visible to a PC/SC client through PCSCLITE_CSOCK_NAME, and goes away on Stop.
func TestMain(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

func TestDaemonListsReaders(t *testing.T) {
	d := Shared(t)
	if !listening(d.Port) || !listening(d.Port+1) {
		t.Fatalf("vpcd does not listen on %d and %d", d.Port, d.Port+1)
	}
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatal(err)
	}
	if scan, err := exec.LookPath("pcsc_scan"); err == nil {
		cmd := exec.Command(scan, "-r")
		cmd.Env = append(os.Environ(), d.Env())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), d.Reader) {
			t.Errorf("pcsc_scan -r: %v\n%s", err, out)
		}
	}
	// A second, independent daemon beside it (another test binary's).
	other, err := Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if other.Port == d.Port || other.Socket == d.Socket {
		t.Errorf("two daemons share port %d or socket %s", d.Port, d.Socket)
	}
	other.Stop()
	if listening(other.Port) {
		t.Errorf("vpcd still listens on %d after Stop", other.Port)
	}
}
