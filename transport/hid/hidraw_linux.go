package hid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// system is where the hidraw code looks: the real /sys and /dev, or a fake tree
// under root in tests.
type system struct {
	root string
	// openNode opens a device node; nil = open(2) with O_RDWR|O_NONBLOCK.
	openNode func(path string) (int, error)
}

// Open opens the FIDO key at path (/dev/hidrawN, or a udev symlink to one),
// checks its report descriptor and allocates a CTAPHID channel on it. A node
// this user may not open gives an error naming the udev rule; a path without a
// device, or a HID device that is not a FIDO key, one wrapping
// transport.ErrNoDevice.
func Open(ctx context.Context, path string, opts Options) (*Device, error) {
	return system{}.open(ctx, path, opts)
}

// Enumerate lists the FIDO keys among /sys/class/hidraw by their report
// descriptors, with the USB vendor and product ids, product and manufacturer
// strings and serial number where the kernel has them. It opens no device, so it
// lists keys this user may not open too. A kernel without hidraw gives an error
// wrapping transport.ErrNoDevice.
func Enumerate(ctx context.Context) ([]transport.DeviceInfo, error) {
	return system{}.enumerate(ctx)
}

// OpenPacketConn opens the hidraw node at path as a raw CTAPHID link, without
// INIT: a second program's view of the key, for the conformance suite's
// CTAPHID cases. hidraw gives every open file a copy of each input report.
func OpenPacketConn(path string) (ctaphid.PacketConn, error) {
	return system{}.openConn(path)
}

func (s system) path(p string) string { return s.root + p }

func (s system) open(ctx context.Context, path string, opts Options) (*Device, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hid: opening %s: %w", path, err)
	}
	conn, err := s.openConn(path)
	if err != nil {
		return nil, err
	}
	return newDevice(ctx, conn, s.info(path, conn.fd), opts)
}

// openConn opens path and sizes its reports from the report descriptor.
func (s system) openConn(path string) (*rawConn, error) {
	openNode := s.openNode
	if openNode == nil {
		openNode = func(p string) (int, error) {
			return unix.Open(p, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		}
	}
	fd, err := openNode(s.path(path))
	switch {
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return nil, &permissionError{path: path, cause: err}
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO):
		return nil, fmt.Errorf("hid: no key at %s: %w", path, transport.ErrNoDevice)
	case err != nil:
		return nil, fmt.Errorf("hid: opening %s: %w", path, err)
	}
	desc, err := reportDescriptor(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hid: %s is not a hidraw device (reading its report descriptor: %w)", path, err)
	}
	in, out, err := fidoReports(desc)
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, errNotFIDO) {
			return nil, fmt.Errorf("hid: %s is %w: %w", path, err, transport.ErrNoDevice)
		}
		return nil, fmt.Errorf("hid: %s: %w", path, err)
	}
	return newRawConn(fd, path, in, out)
}

// reportDescriptor asks the hidraw driver for the descriptor, which works for any
// path to the node, udev symlinks included.
func reportDescriptor(fd int) ([]byte, error) {
	n, err := unix.IoctlGetInt(fd, unix.HIDIOCGRDESCSIZE)
	if err != nil {
		return nil, err
	}
	var d unix.HIDRawReportDescriptor
	d.Size = uint32(min(max(n, 0), len(d.Value)))
	if err := unix.IoctlHIDGetDesc(fd, &d); err != nil {
		return nil, err
	}
	return append([]byte(nil), d.Value[:d.Size]...), nil
}

// info describes the node at path: from sysfs as Enumerate does, so that a key
// looks the same in both, else from the hidraw ioctls.
func (s system) info(path string, fd int) transport.DeviceInfo {
	real, err := filepath.EvalSymlinks(s.path(path))
	if err == nil {
		if info, ok := s.sysfsInfo(filepath.Base(real)); ok {
			info.URI, info.Path = SchemeName+":"+path, path
			return info
		}
	}
	info := deviceInfo(path)
	if raw, err := unix.IoctlHIDGetRawInfo(fd); err == nil {
		info.VendorID, info.ProductID = uint16(raw.Vendor), uint16(raw.Product)
	}
	info.Product, _ = unix.IoctlHIDGetRawName(fd)
	info.Serial, _ = unix.IoctlHIDGetRawUniq(fd)
	return info
}

func (s system) enumerate(ctx context.Context) ([]transport.DeviceInfo, error) {
	entries, err := os.ReadDir(s.path("/sys/class/hidraw"))
	if err != nil {
		return nil, fmt.Errorf("hid: no hidraw devices (%w): %w", err, transport.ErrNoDevice)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "hidraw") {
			names = append(names, e.Name())
		}
	}
	// hidraw2 before hidraw10.
	sort.Slice(names, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.TrimPrefix(names[i], "hidraw"))
		b, _ := strconv.Atoi(strings.TrimPrefix(names[j], "hidraw"))
		return a < b || a == b && names[i] < names[j]
	})
	var infos []transport.DeviceInfo
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return infos, fmt.Errorf("hid: listing devices: %w", err)
		}
		desc, err := os.ReadFile(s.path("/sys/class/hidraw/" + name + "/device/report_descriptor"))
		if err != nil {
			continue // gone meanwhile, or not a device we can describe
		}
		if _, _, err := fidoReports(desc); err != nil {
			continue
		}
		if info, ok := s.sysfsInfo(name); ok {
			infos = append(infos, info)
		}
	}
	return infos, nil
}

// sysfsInfo describes /dev/NAME from its HID device's uevent (ids, name, uniq)
// and, for a real USB key, the USB device's string descriptors above it.
func (s system) sysfsInfo(name string) (transport.DeviceInfo, bool) {
	dev := s.path("/sys/class/hidraw/" + name + "/device")
	uevent, err := os.ReadFile(dev + "/uevent")
	if err != nil {
		return transport.DeviceInfo{}, false
	}
	info := deviceInfo("/dev/" + name)
	for _, line := range strings.Split(string(uevent), "\n") {
		key, v, _ := strings.Cut(line, "=")
		switch key {
		case "HID_ID": // bus:vendor:product in hex, e.g. 0003:00001050:00000407
			if f := strings.Split(v, ":"); len(f) == 3 {
				vid, _ := strconv.ParseUint(f[1], 16, 32)
				pid, _ := strconv.ParseUint(f[2], 16, 32)
				info.VendorID, info.ProductID = uint16(vid), uint16(pid)
			}
		case "HID_NAME":
			info.Product = v
		case "HID_UNIQ":
			info.Serial = v
		}
	}
	if usb, ok := s.usbParent(dev); ok {
		if v := readString(usb + "/product"); v != "" {
			info.Product = v
		}
		info.Manufacturer = readString(usb + "/manufacturer")
		if v := readString(usb + "/serial"); v != "" {
			info.Serial = v
		}
	}
	return info, true
}

// usbParent finds the USB device above a HID device: HID device, USB interface,
// USB device (the one with idVendor). uhid and Bluetooth devices have none.
func (s system) usbParent(dev string) (string, bool) {
	dir, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return "", false
	}
	for range 3 {
		dir = filepath.Dir(dir)
		if len(dir) <= len(s.path("/sys")) {
			break
		}
		if _, err := os.Stat(dir + "/idVendor"); err == nil {
			return dir, true
		}
	}
	return "", false
}

func readString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// rawConn is a ctaphid.PacketConn over a hidraw node. Reports go out as report ID
// (0 when unnumbered) || 64 bytes; they come in without the ID unless numbered.
type rawConn struct {
	f    *os.File
	fd   int // for ioctls before the first transaction; the File owns it
	path string
	id   byte
	in   int // input report length, without ID
	out  int

	wmu       sync.Mutex
	closeOnce sync.Once
	closeErr  error
}

// newRawConn wraps fd, which it puts in non-blocking mode so that os.File reads
// go through the runtime's poller and honour read deadlines.
func newRawConn(fd int, path string, in, out Report) (*rawConn, error) {
	if in.Len() != ctaphid.ReportSize || out.Len() != ctaphid.ReportSize || in.ID != out.ID {
		unix.Close(fd)
		return nil, fmt.Errorf("hid: %s has %d-byte input and %d-byte output reports (IDs %d, %d): CTAPHID needs 64-byte reports with one ID",
			path, in.Len(), out.Len(), in.ID, out.ID)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("hid: %s: %w", path, err)
	}
	return &rawConn{f: os.NewFile(uintptr(fd), path), fd: fd, path: path, id: in.ID, in: in.Len(), out: out.Len()}, nil
}

// expired is a read deadline in the past: it wakes a blocked read at once.
var expired = time.Unix(1, 0)

func (c *rawConn) ReadPacket(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A previous call may have left an expired deadline behind.
	if err := c.f.SetReadDeadline(time.Time{}); err != nil {
		return nil, c.ioErr("reading from", err)
	}
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.f.SetReadDeadline(expired)
		close(woken)
	})
	defer func() {
		if !stop() {
			<-woken // it must not expire the next call's read
		}
	}()
	for {
		buf := make([]byte, c.in+1)
		n, err := c.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, c.ioErr("reading from", err)
		}
		p := buf[:n]
		if c.id != 0 {
			if n == 0 || p[0] != c.id {
				continue // another function's report on a composite device
			}
			p = p[1:]
		}
		return p, nil
	}
}

// Drain discards the reports queued on this open file (ctaphid.Drainer); the fd
// is non-blocking, so a read of an empty queue fails with EAGAIN at once.
func (c *rawConn) Drain() {
	buf := make([]byte, c.in+1)
	for range 256 { // hidraw queues at most 64
		if n, err := unix.Read(c.fd, buf); err != nil || n <= 0 {
			return
		}
	}
}

func (c *rawConn) WritePacket(p []byte) error {
	buf := make([]byte, 1+c.out)
	buf[0] = c.id
	copy(buf[1:], p)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.f.Write(buf); err != nil {
		return c.ioErr("writing to", err)
	}
	return nil
}

func (c *rawConn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.f.Close() })
	return c.closeErr
}

// ioErr turns the errors of a read or write into the ones users see: a key pulled
// out (ENODEV on write, EIO on read, EOF) is one line wrapping ErrNoDevice.
func (c *rawConn) ioErr(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrClosed):
		return fmt.Errorf("hid: %s %s: %w", op, c.path, transport.ErrClosed)
	case errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EIO) || errors.Is(err, io.EOF) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.ESHUTDOWN):
		return &goneError{path: c.path, cause: err}
	}
	return fmt.Errorf("hid: %s %s: %w", op, c.path, err)
}

// permissionError is a device node this user may not open. The message names the
// fix, since "permission denied" alone sends people to chmod.
type permissionError struct {
	path  string
	cause error
}

func (e *permissionError) Error() string {
	return fmt.Sprintf("permission denied opening %s: install the udev rule (ctapkit doctor --udev-rule) and re-plug the key", e.path)
}
func (e *permissionError) Unwrap() error { return e.cause }
