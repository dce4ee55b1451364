package pcsctest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestDaemonListsReaders: a private pcscd comes up with its vpcd readers, is
// visible to a PC/SC client through PCSCLITE_CSOCK_NAME, and goes away on Stop.
func TestDaemonListsReaders(t *testing.T) {
	d := StartT(t)
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
	d.Stop()
	if listening(d.Port) {
		t.Errorf("vpcd still listens on %d after Stop", d.Port)
	}
}
