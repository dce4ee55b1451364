package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/hid"
)

// udevRule lets the logged-in user (uaccess) and group plugdev open FIDO keys.
// systemd's fido_id builtin recognises them by the FIDO usage page (0xF1D0) of
// the report descriptor, whatever the vendor.
const udevRule = `# FIDO security keys (HID usage page 0xF1D0): ctapkit, libfido2, browsers.
# Install: ctapkit doctor --udev-rule | sudo tee /etc/udev/rules.d/70-fido-ctapkit.rules
#          sudo udevadm control --reload && sudo udevadm trigger
ACTION=="remove", GOTO="fido_ctapkit_end"
SUBSYSTEM=="hidraw", IMPORT{builtin}="hwdb --subsystem=hidraw", IMPORT{program}="fido_id"
SUBSYSTEM=="hidraw", ENV{ID_FIDO_TOKEN}=="1", TAG+="uaccess", GROUP="plugdev", MODE="0660"
LABEL="fido_ctapkit_end"
`

// diagnosis is one check of `ctapkit doctor`.
type diagnosis struct {
	Check  string `json:"check"`
	Status string `json:"status"` // ok, warn, fail, skip
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "fail"
	statusSkip = "skip"
)

// doctorEnv is where doctor looks; tests point root at a fake file system.
type doctorEnv struct {
	root      string // "/" on a real system
	pcscdPath string // the daemon binary
	socket    string // pcscd's client socket
	// access checks that this user may read and write path (access(2); tests
	// replace it, since root may open anything).
	access func(path string) error
}

func defaultDoctorEnv() doctorEnv {
	socket := os.Getenv("PCSCLITE_CSOCK_NAME")
	if socket == "" {
		socket = "/run/pcscd/pcscd.comm"
	}
	return doctorEnv{root: "/", pcscdPath: "/usr/sbin/pcscd", socket: socket,
		access: canReadWrite}
}

func (e doctorEnv) path(p string) string { return filepath.Join(e.root, p) }

func (a *app) doctorCommand() *cobra.Command {
	var printRule bool
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine's setup for security keys, and say how to fix what is wrong",
		Long: `Check what stands between ctapkit and your keys: pcscd (for NFC and smart-card
readers) installed and running, readers present, USB FIDO devices and the permission to
open them (a missing udev rule is the usual cause), kernel support, and each key's state
(a blocked PIN, a forced PIN change). Each problem comes with its fix.

Exit status 0 when nothing failed (warnings allowed), 1 otherwise.`,
		Example: "  ctapkit doctor\n  ctapkit doctor --udev-rule | sudo tee /etc/udev/rules.d/70-fido-ctapkit.rules",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if printRule {
				_, err := io.WriteString(a.io.Out, udevRule)
				return err
			}
			return a.runDoctor(cmd.Context(), defaultDoctorEnv())
		},
	}
	c.Flags().BoolVar(&printRule, "udev-rule", false, "print a udev rule file that gives users access to FIDO USB keys")
	return c
}

func (a *app) runDoctor(ctx context.Context, env doctorEnv) error {
	var ds []diagnosis
	ds = append(ds, env.checkPCSCD()...)
	ds = append(ds, env.checkKernel()...)
	ds = append(ds, env.checkHIDRaw()...)
	ds = append(ds, a.checkKeys(ctx)...)
	if a.json {
		if err := writeJSON(a.io.Out, ds); err != nil {
			return err
		}
	} else if err := writeDiagnoses(a.io.Out, ds); err != nil {
		return err
	}
	failed := 0
	for _, d := range ds {
		if d.Status == statusFail {
			failed++
		}
	}
	if failed > 0 {
		return &quietError{fmt.Sprintf("doctor: %d of %d checks failed", failed, len(ds)), errDoctor}
	}
	return nil
}

var errDoctor = errors.New("checks failed")

func writeDiagnoses(w io.Writer, ds []diagnosis) error {
	width := 0
	for _, d := range ds {
		width = max(width, len(d.Check))
	}
	for _, d := range ds {
		fmt.Fprintf(w, "%-4s  %-*s  %s\n", d.Status, width, d.Check, d.Detail)
		if d.Fix != "" {
			indent := strings.Repeat(" ", 4+2+width+2)
			fmt.Fprintf(w, "%sfix: %s\n", indent, strings.ReplaceAll(d.Fix, "\n", "\n"+indent+"     "))
		}
	}
	return nil
}

// checkPCSCD: the daemon that NFC and smart-card readers need.
func (e doctorEnv) checkPCSCD() []diagnosis {
	if runtime.GOOS != "linux" {
		return []diagnosis{{Check: "pcscd", Status: statusSkip, Detail: "only checked on Linux"}}
	}
	if _, err := os.Stat(e.pcscdPath); err != nil {
		return []diagnosis{{Check: "pcscd", Status: statusWarn,
			Detail: "pcscd is not installed: NFC and smart-card readers cannot be used",
			Fix:    "sudo apt-get install pcscd (Debian, Ubuntu) or your distribution's pcsc-lite package"}}
	}
	c, err := net.DialTimeout("unix", e.socket, time.Second)
	if err != nil {
		return []diagnosis{{Check: "pcscd", Status: statusWarn,
			Detail: fmt.Sprintf("pcscd is installed but not running (%s: %s)", e.socket, unwrapSyscall(err)),
			Fix:    "sudo systemctl enable --now pcscd.socket (without systemd, as root: pcscd --foreground &)"}}
	}
	c.Close()
	return []diagnosis{{Check: "pcscd", Status: statusOK, Detail: "running (" + e.socket + ")"}}
}

// checkKernel: hidraw for USB keys (and uhid, which only `softkey serve --uhid`
// needs).
func (e doctorEnv) checkKernel() []diagnosis {
	if runtime.GOOS != "linux" {
		return nil
	}
	release := kernelRelease()
	var ds []diagnosis
	if _, err := os.Stat(e.path("/sys/class/hidraw")); err != nil {
		ds = append(ds, diagnosis{Check: "kernel", Status: statusFail,
			Detail: "Linux " + release + " has no hidraw support: USB security keys cannot be reached",
			Fix:    "use a kernel built with CONFIG_HIDRAW=y (every distribution kernel is), or load the module: sudo modprobe hidraw"})
	} else {
		ds = append(ds, diagnosis{Check: "kernel", Status: statusOK, Detail: "Linux " + release + " with hidraw"})
	}
	if _, err := os.Stat(e.path("/dev/uhid")); err != nil {
		ds = append(ds, diagnosis{Check: "uhid", Status: statusSkip,
			Detail: "no /dev/uhid: 'softkey serve --uhid' cannot make a virtual USB key here (keys work without it)",
			Fix:    "sudo modprobe uhid (CONFIG_UHID)"})
	}
	return ds
}

// checkHIDRaw lists FIDO devices among /dev/hidraw*, by their report
// descriptor's usage page, and whether this user may open them.
func (e doctorEnv) checkHIDRaw() []diagnosis {
	if runtime.GOOS != "linux" {
		return nil
	}
	entries, err := os.ReadDir(e.path("/sys/class/hidraw"))
	if err != nil {
		return nil // said by checkKernel
	}
	names := make([]string, 0, len(entries))
	for _, ent := range entries {
		names = append(names, ent.Name())
	}
	sort.Strings(names)
	var ds []diagnosis
	denied := 0
	for _, name := range names {
		desc, err := os.ReadFile(e.path("/sys/class/hidraw/" + name + "/device/report_descriptor"))
		if err != nil || !isFIDODescriptor(desc) {
			continue
		}
		dev := "/dev/" + name
		product := hidName(e.path("/sys/class/hidraw/" + name + "/device/uevent"))
		if err := e.access(e.path(dev)); err != nil {
			denied++
			ds = append(ds, diagnosis{Check: "usb key", Status: statusFail,
				Detail: fmt.Sprintf("%s (%s): no permission to open it (%s)", dev, product, unwrapSyscall(err)),
				Fix:    "install a udev rule: ctapkit doctor --udev-rule | sudo tee /etc/udev/rules.d/70-fido-ctapkit.rules\nthen: sudo udevadm control --reload && sudo udevadm trigger (and re-plug the key)"})
			continue
		}
		ds = append(ds, diagnosis{Check: "usb key", Status: statusOK, Detail: fmt.Sprintf("%s (%s): FIDO device, readable and writable", dev, product)})
	}
	if len(ds) == 0 {
		ds = append(ds, diagnosis{Check: "usb key", Status: statusOK, Detail: "no FIDO USB device attached"})
	}
	if denied == 0 && !e.hasFIDOUdevRule() {
		ds = append(ds, diagnosis{Check: "udev rule", Status: statusWarn,
			Detail: "no udev rule for FIDO devices found: keys may be root-only when plugged in",
			Fix:    "ctapkit doctor --udev-rule | sudo tee /etc/udev/rules.d/70-fido-ctapkit.rules && sudo udevadm control --reload"})
	}
	return ds
}

// isFIDODescriptor: an application collection of the FIDO usage page (0xF1D0),
// usage 1 (CTAPHID authenticator).
func isFIDODescriptor(desc []byte) bool {
	d, err := hid.ParseDescriptor(desc)
	if err != nil {
		return false
	}
	_, ok := d.FIDO()
	return ok
}

// hidName is HID_NAME from a hidraw device's uevent file.
func hidName(uevent string) string {
	data, err := os.ReadFile(uevent)
	if err != nil {
		return "unknown product"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "HID_NAME="); ok {
			return v
		}
	}
	return "unknown product"
}

// hasFIDOUdevRule: systemd's 60-fido-id.rules (systemd ≥ 244), libfido2's
// 70-u2f.rules, or any rule file that mentions FIDO devices.
func (e doctorEnv) hasFIDOUdevRule() bool {
	for _, dir := range []string{"/etc/udev/rules.d", "/lib/udev/rules.d", "/usr/lib/udev/rules.d", "/run/udev/rules.d"} {
		files, _ := filepath.Glob(e.path(dir + "/*.rules"))
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err == nil && (bytes.Contains(data, []byte("fido_id")) || bytes.Contains(bytes.ToLower(data), []byte("u2f")) ||
				bytes.Contains(bytes.ToUpper(data), []byte("F1D0"))) {
				return true
			}
		}
	}
	return false
}

// checkKeys asks every key found (and the one named with -d) about its state.
func (a *app) checkKeys(ctx context.Context) []diagnosis {
	infos, err := a.registry.Enumerate(ctx)
	var ds []diagnosis
	if err != nil && len(infos) == 0 && !errors.Is(err, transport.ErrNoDevice) {
		ds = append(ds, diagnosis{Check: "keys", Status: statusWarn, Detail: "listing keys: " + oneLine(err)})
	}
	uris := make([]string, 0, len(infos)+1)
	for _, i := range infos {
		uris = append(uris, i.URI)
	}
	if named := a.deviceURI; named != "" {
		if !slices.Contains(uris, named) {
			uris = append(uris, named)
		}
	}
	if len(uris) == 0 {
		return append(ds, diagnosis{Check: "keys", Status: statusSkip, Detail: "no key found to check (name one with -d)"})
	}
	for _, uri := range uris {
		ds = append(ds, a.checkKey(ctx, uri))
	}
	return ds
}

// checkKey reports a key whose PIN is blocked or must be changed first.
func (a *app) checkKey(ctx context.Context, uri string) diagnosis {
	d := diagnosis{Check: "key " + uri}
	ctx, cancel := context.WithTimeout(ctx, devicesProbeTimeout)
	defer cancel()
	dev, err := a.registry.Open(ctx, uri)
	if err != nil {
		d.Status, d.Detail = statusFail, "cannot open it: "+oneLine(err)
		return d
	}
	defer closeWithin(dev.Close, closeGrace)
	client := newClient(guardedDevice{dev}, nil)
	info, err := client.Info(ctx)
	if err != nil {
		d.Status, d.Detail = statusFail, "getInfo failed: "+oneLine(err)
		return d
	}
	d.Status, d.Detail = statusOK, strings.Join(info.Versions, " ")
	pinSet, _ := info.Option("clientPin")
	if !pinSet {
		d.Detail += ", no PIN set"
		return d
	}
	retries, powerCycle, err := client.PINRetries(ctx)
	switch {
	case err != nil:
		d.Status, d.Detail = statusWarn, d.Detail+", PIN retries unknown: "+oneLine(err)
	case retries == 0:
		d.Status, d.Detail = statusFail, "the PIN is blocked: no retries left; only a reset (erasing every credential) makes the key usable again"
		d.Fix = "ctapkit -d '" + uri + "' reset"
	case powerCycle:
		d.Status, d.Detail = statusWarn, fmt.Sprintf("PIN entry is blocked until the key is removed and re-inserted (3 wrong PINs in a row; %d retries left)", retries)
		d.Fix = "remove the key and insert it again"
	case info.ForcePINChange:
		d.Status, d.Detail = statusWarn, "the key wants a new PIN before it can be used with its PIN"
		d.Fix = "ctapkit -d '" + uri + "' pin change"
	default:
		d.Detail += fmt.Sprintf(", PIN set (%d retries left)", retries)
	}
	if uv, _ := info.Option("uv"); uv && d.Status == statusOK {
		if n, err := client.UVRetries(ctx); err == nil && n == 0 {
			d.Status, d.Detail = statusWarn, d.Detail+", built-in user verification blocked (the PIN still works)"
		}
	}
	return d
}

// unwrapSyscall shortens "dial unix /run/…: connect: no such file or directory"
// to its last part.
func unwrapSyscall(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}
