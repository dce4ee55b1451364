package hid

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctapkit/ctapkit/transport"
)

// fakeSys builds a sysfs tree under root as the kernel lays it out: the class
// link, the HID device with report_descriptor and uevent, and for USB keys the
// USB interface and device above it with their string descriptors.
type fakeSys struct {
	t    *testing.T
	root string
}

func newFakeSys(t *testing.T) fakeSys {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/sys/class/hidraw", 0o755); err != nil {
		t.Fatal(err)
	}
	return fakeSys{t, root}
}

func (f fakeSys) write(path, data string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// add creates /dev/NAME's sysfs entries; usb holds the USB device's attribute
// files (nil: a uhid device, which has no USB parent).
func (f fakeSys) add(name, hidDir string, desc []byte, uevent string, usb map[string]string) {
	f.t.Helper()
	parent := f.root + "/sys/devices/virtual/misc/uhid"
	if usb != nil {
		dev := f.root + "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-" + name
		for k, v := range usb {
			f.write(dev+"/"+k, v+"\n")
		}
		parent = dev + "/1-" + name + ":1.0"
		f.write(parent+"/bInterfaceNumber", "00\n")
	}
	hid := parent + "/" + hidDir
	if desc != nil {
		f.write(hid+"/report_descriptor", string(desc))
	} else if err := os.MkdirAll(hid+"/report_descriptor", 0o755); err != nil { // unreadable as a file
		f.t.Fatal(err)
	}
	f.write(hid+"/uevent", uevent)
	node := hid + "/hidraw/" + name
	if err := os.MkdirAll(node, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(hid, node+"/device"); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Symlink(node, f.root+"/sys/class/hidraw/"+name); err != nil {
		f.t.Fatal(err)
	}
	f.write(f.root+"/dev/"+name, "")
}

// TestEnumerate: FIDO keys are told from keyboards by the report descriptor;
// USB keys get their strings from the USB device, uhid ones from uevent; an
// entry without a readable descriptor is skipped; hidraw10 sorts after hidraw2.
func TestEnumerate(t *testing.T) {
	f := newFakeSys(t)
	f.add("hidraw0", "0003:046D:C31C.0001", bootKeyboard,
		"DRIVER=hid-generic\nHID_ID=0003:0000046D:0000C31C\nHID_NAME=Logitech USB Keyboard\n",
		map[string]string{"idVendor": "046d", "product": "USB Keyboard", "manufacturer": "Logitech"})
	f.add("hidraw1", "0003:1050:0407.0002", yubikeyFIDO,
		"DRIVER=hid-generic\nHID_ID=0003:00001050:00000407\nHID_NAME=Yubico YubiKey OTP+FIDO+CCID\nHID_PHYS=usb-0000:00:14.0-1/input1\nHID_UNIQ=\n",
		map[string]string{"idVendor": "1050", "product": "YubiKey OTP+FIDO+CCID", "manufacturer": "Yubico", "serial": "0012345678"})
	f.add("hidraw2", "0003:15D9:F1D0.0003", yubikeyFIDO,
		"DRIVER=hid-generic\nHID_ID=0003:000015D9:0000F1D0\nHID_NAME=ctapkit softkey\nHID_UNIQ=sk-1\n", nil)
	f.add("hidraw3", "0003:20A0:42B1.0004", nil, "HID_ID=0003:000020A0:000042B1\nHID_NAME=unreadable\n", nil)
	f.add("hidraw10", "0003:1209:0001.0005", composite,
		"HID_ID=0003:00001209:00000001\nHID_NAME=Composite Key\n",
		map[string]string{"idVendor": "1209", "product": "Composite Key"})

	got, err := system{root: f.root}.enumerate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []transport.DeviceInfo{
		{URI: "hid:/dev/hidraw1", Transport: "hid", Path: "/dev/hidraw1", Product: "YubiKey OTP+FIDO+CCID",
			Manufacturer: "Yubico", VendorID: 0x1050, ProductID: 0x0407, Serial: "0012345678"},
		{URI: "hid:/dev/hidraw2", Transport: "hid", Path: "/dev/hidraw2", Product: "ctapkit softkey",
			VendorID: 0x15D9, ProductID: 0xF1D0, Serial: "sk-1"},
		{URI: "hid:/dev/hidraw10", Transport: "hid", Path: "/dev/hidraw10", Product: "Composite Key",
			VendorID: 0x1209, ProductID: 0x0001},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Enumerate:\n got %+v\nwant %+v", got, want)
	}

	// Open describes a key the way Enumerate does.
	s := system{root: f.root}
	if info := s.info("/dev/hidraw1", -1); !reflect.DeepEqual(info, want[0]) {
		t.Errorf("info(/dev/hidraw1) = %+v, want %+v", info, want[0])
	}
}

func TestEnumerateNoHidraw(t *testing.T) {
	_, err := system{root: t.TempDir()}.enumerate(context.Background())
	if !errors.Is(err, transport.ErrNoDevice) {
		t.Errorf("no /sys/class/hidraw: %v, want ErrNoDevice", err)
	}
	got, err := system{root: newFakeSys(t).root}.enumerate(context.Background())
	if err != nil || len(got) != 0 {
		t.Errorf("empty /sys/class/hidraw: %v, %v; want nothing and no error", got, err)
	}
}

// TestOpenPermission: a node this user may not open gives the error that names
// the udev rule, never a bare EACCES, and still matches os.ErrPermission.
func TestOpenPermission(t *testing.T) {
	for _, errno := range []unix.Errno{unix.EACCES, unix.EPERM} {
		s := system{openNode: func(string) (int, error) { return -1, errno }}
		_, err := s.open(context.Background(), "/dev/hidraw3", Options{})
		const want = "permission denied opening /dev/hidraw3: install the udev rule (ctapkit doctor --udev-rule) and re-plug the key"
		if err == nil || err.Error() != want {
			t.Errorf("%v: error %q, want %q", errno, err, want)
		}
		if !errors.Is(err, os.ErrPermission) {
			t.Errorf("%v: error does not match os.ErrPermission", errno)
		}
	}
	if os.Geteuid() == 0 {
		return // root opens anything; the hook above stood in for the kernel
	}
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/dev", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/dev/hidraw5", nil, 0); err != nil {
		t.Fatal(err)
	}
	_, err := system{root: dir}.open(context.Background(), "/dev/hidraw5", Options{})
	if _, ok := errors.AsType[*permissionError](err); !ok {
		t.Errorf("unreadable node: %v, want the udev rule hint", err)
	}
}

// TestOpenErrors: no node is ErrNoDevice; a node that is no hidraw device says so.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s := system{root: dir}
	_, err := s.open(context.Background(), "/dev/hidraw9", Options{})
	if !errors.Is(err, transport.ErrNoDevice) || !strings.Contains(err.Error(), "/dev/hidraw9") {
		t.Errorf("missing node: %v, want ErrNoDevice naming it", err)
	}
	if err := os.MkdirAll(dir+"/dev", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/dev/hidraw4", []byte("not a device"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.open(context.Background(), "/dev/hidraw4", Options{})
	if err == nil || !strings.Contains(err.Error(), "/dev/hidraw4 is not a hidraw device") {
		t.Errorf("regular file: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.open(ctx, "/dev/hidraw4", Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled open: %v", err)
	}
}

// TestRawConnSizes: CTAPHID needs 64-byte input and output reports of one ID.
func TestRawConnSizes(t *testing.T) {
	for _, tt := range []struct{ in, out Report }{
		{Report{0, 256}, Report{0, 512}},
		{Report{0, 512}, Report{0, 1024}},
		{Report{1, 512}, Report{2, 512}},
	} {
		fds := socketpair(t)
		unix.Close(fds[1])
		if _, err := newRawConn(fds[0], "/dev/hidraw7", tt.in, tt.out); err == nil || !strings.Contains(err.Error(), "CTAPHID needs 64-byte reports") {
			t.Errorf("%+v/%+v: %v", tt.in, tt.out, err)
		}
	}
}

// TestRawConnReadDeadline: a read ends with ctx (deadline or cancel) through the
// poller, promptly, and the next read is not affected by the expired deadline.
func TestRawConnReadDeadline(t *testing.T) {
	fds := socketpair(t)
	conn, err := newRawConn(fds[0], "/dev/hidraw7", Report{0, 512}, Report{0, 512})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	start := time.Now()
	_, err = conn.ReadPacket(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 500*time.Millisecond {
		t.Errorf("read with a 30 ms deadline: %v after %v", err, time.Since(start))
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := conn.ReadPacket(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled read: %v", err)
	}
	report := make([]byte, 64)
	report[0], report[63] = 0xAB, 0xCD
	go func() {
		time.Sleep(50 * time.Millisecond)
		peer.Write(report)
	}()
	got, err := conn.ReadPacket(context.Background())
	if err != nil || len(got) != 64 || got[0] != 0xAB || got[63] != 0xCD {
		t.Errorf("read after expired deadlines: % X, %v", got, err)
	}
}

// TestRawConnReportID: numbered reports go out with their ID and come in with it,
// and reports of another ID (another function of a composite device) are skipped.
func TestRawConnReportID(t *testing.T) {
	fds := socketpair(t)
	conn, err := newRawConn(fds[0], "/dev/hidraw7", Report{3, 512}, Report{3, 512})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := os.NewFile(uintptr(fds[1]), "peer")
	defer peer.Close()
	if err := conn.WritePacket([]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := peer.Read(buf)
	if err != nil || n != 65 || buf[0] != 3 || buf[1] != 1 || buf[3] != 3 || buf[4] != 0 {
		t.Fatalf("written report % X (%d bytes), %v", buf[:n], n, err)
	}
	other := append([]byte{5}, make([]byte, 64)...)
	ours := append([]byte{3, 0xEE}, make([]byte, 63)...)
	peer.Write(other)
	peer.Write(ours)
	got, err := conn.ReadPacket(context.Background())
	if err != nil || len(got) != 64 || got[0] != 0xEE {
		t.Errorf("read % X, %v; want report 3 without its ID", got, err)
	}
}

func socketpair(t testing.TB) [2]int {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fds
}
