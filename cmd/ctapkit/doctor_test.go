package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A YubiKey-like report descriptor: FIDO usage page, usage 1, 64-byte reports.
var fidoDescriptor = []byte{0x06, 0xd0, 0xf1, 0x09, 0x01, 0xa1, 0x01, 0x09, 0x20, 0x15, 0x00, 0x26, 0xff, 0x00,
	0x75, 0x08, 0x95, 0x40, 0x81, 0x02, 0x09, 0x21, 0x15, 0x00, 0x26, 0xff, 0x00, 0x75, 0x08, 0x95, 0x40, 0x91, 0x02, 0xc0}

// A keyboard's: generic desktop page.
var keyboardDescriptor = []byte{0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0xc0}

func fakeHidraw(t *testing.T, root, name string, desc []byte, product string) {
	t.Helper()
	dir := filepath.Join(root, "sys/class/hidraw", name, "device")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "report_descriptor"), desc, 0o644)
	os.WriteFile(filepath.Join(dir, "uevent"), []byte("DRIVER=hid-generic\nHID_NAME="+product+"\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	os.WriteFile(filepath.Join(root, "dev", name), nil, 0o600)
}

func TestDoctorHIDRaw(t *testing.T) {
	root := t.TempDir()
	fakeHidraw(t, root, "hidraw0", keyboardDescriptor, "Some Keyboard")
	fakeHidraw(t, root, "hidraw1", fidoDescriptor, "Yubico YubiKey OTP+FIDO+CCID")
	fakeHidraw(t, root, "hidraw2", fidoDescriptor, "Other FIDO Key")
	env := doctorEnv{root: root, access: func(p string) error {
		if strings.HasSuffix(p, "hidraw2") {
			return syscall.EACCES
		}
		return nil
	}}
	ds := env.checkHIDRaw()
	if len(ds) != 2 {
		t.Fatalf("got %d diagnoses, want one per FIDO device (the keyboard left out): %+v", len(ds), ds)
	}
	if ds[0].Status != statusOK || !strings.Contains(ds[0].Detail, "/dev/hidraw1 (Yubico YubiKey OTP+FIDO+CCID)") {
		t.Errorf("hidraw1: %+v", ds[0])
	}
	if ds[1].Status != statusFail || !strings.Contains(ds[1].Detail, "no permission") || !strings.Contains(ds[1].Fix, "--udev-rule") {
		t.Errorf("hidraw2 (not accessible): %+v, want a failure whose fix is the udev rule", ds[1])
	}

	// Every key accessible, but no rule: a warning for the next key plugged in.
	env.access = func(string) error { return nil }
	ds = env.checkHIDRaw()
	if last := ds[len(ds)-1]; last.Check != "udev rule" || last.Status != statusWarn {
		t.Errorf("without a FIDO udev rule: %+v, want a udev rule warning", last)
	}
	os.MkdirAll(filepath.Join(root, "usr/lib/udev/rules.d"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/udev/rules.d/60-fido-id.rules"), []byte(`SUBSYSTEM=="hidraw", IMPORT{program}="fido_id"`), 0o644)
	for _, d := range env.checkHIDRaw() {
		if d.Check == "udev rule" {
			t.Errorf("with systemd's 60-fido-id.rules: %+v", d)
		}
	}
}

func TestDoctorKernelAndPCSCD(t *testing.T) {
	root := t.TempDir()
	env := doctorEnv{root: root, pcscdPath: filepath.Join(root, "pcscd"), socket: filepath.Join(root, "pcscd.comm")}
	if ds := env.checkKernel(); ds[0].Status != statusFail || !strings.Contains(ds[0].Detail, "no hidraw support") {
		t.Errorf("no /sys/class/hidraw: %+v", ds)
	}
	if ds := env.checkPCSCD(); ds[0].Status != statusWarn || !strings.Contains(ds[0].Fix, "apt-get install pcscd") {
		t.Errorf("pcscd missing: %+v", ds)
	}
	os.WriteFile(env.pcscdPath, nil, 0o755)
	if ds := env.checkPCSCD(); ds[0].Status != statusWarn || !strings.Contains(ds[0].Detail, "not running") {
		t.Errorf("pcscd not running: %+v", ds)
	}
}

func TestIsFIDODescriptor(t *testing.T) {
	if !isFIDODescriptor(fidoDescriptor) || isFIDODescriptor(keyboardDescriptor) || isFIDODescriptor([]byte{0x06, 0xd0, 0xf1}) {
		t.Error("isFIDODescriptor misjudges")
	}
}
