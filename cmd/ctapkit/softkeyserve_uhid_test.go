package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestServeUHIDWithoutUHID: where the kernel has no uhid, serve --uhid fails at
// once with one line that names the fix, and exit status 1.
func TestServeUHIDWithoutUHID(t *testing.T) {
	if _, err := os.Stat("/dev/uhid"); err == nil {
		t.Skip("this kernel has /dev/uhid: serve --uhid would serve (the VM test covers that)")
	}
	state := filepath.Join(t.TempDir(), "sk.db")
	var out, errOut bytes.Buffer
	streams := &IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	if code := run([]string{"softkey", "init", "--state", state, "--no-passphrase"}, streams); code != 0 {
		t.Fatalf("softkey init: exit %d: %s", code, errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code := run([]string{"softkey", "serve", "--state", state, "--uhid"}, streams)
	want := "ctapkit: softkey serve --uhid: uhid unavailable: /dev/uhid does not exist (load the kernel module: modprobe uhid)\n"
	if runtime.GOOS != "linux" {
		want = "ctapkit: softkey serve --uhid: uhid unavailable: uhid is Linux-only, this is " + runtime.GOOS + "\n"
	}
	if code != 1 || errOut.String() != want || out.Len() != 0 {
		t.Errorf("exit %d\nstdout: %q\nstderr: %q\nwant stderr %q", code, out.String(), errOut.String(), want)
	}
}
