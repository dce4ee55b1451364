//go:build cgo && (darwin || windows)

package hid

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	khid "github.com/karalabe/hid"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// Open opens the FIDO key at path, a platform device path as Enumerate lists it,
// and allocates a CTAPHID channel on it. A path that names no FIDO key gives an
// error wrapping transport.ErrNoDevice.
func Open(ctx context.Context, path string, opts Options) (*Device, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hid: opening %s: %w", path, err)
	}
	conn, info, err := openConn(path)
	if err != nil {
		return nil, err
	}
	return newDevice(ctx, conn, info, opts)
}

// Enumerate lists the FIDO keys (HID usage page 0xF1D0, usage 1) that hidapi
// sees, with their ids, strings and serial number.
func Enumerate(context.Context) ([]transport.DeviceInfo, error) {
	devs, err := fidoDevices()
	if err != nil {
		return nil, err
	}
	infos := make([]transport.DeviceInfo, 0, len(devs))
	for _, d := range devs {
		infos = append(infos, toInfo(d))
	}
	return infos, nil
}

// OpenPacketConn opens the key at path as a raw CTAPHID link, without INIT: a
// second program's view of it, for the conformance suite's CTAPHID cases.
func OpenPacketConn(path string) (ctaphid.PacketConn, error) {
	conn, _, err := openConn(path)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

func fidoDevices() ([]khid.DeviceInfo, error) {
	all, err := khid.Enumerate(0, 0)
	if err != nil {
		return nil, fmt.Errorf("hid: listing devices: %w", err)
	}
	var devs []khid.DeviceInfo
	for _, d := range all {
		if d.UsagePage == UsagePageFIDO && d.Usage == UsageCTAPHID {
			devs = append(devs, d)
		}
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].Path < devs[j].Path })
	return devs, nil
}

func toInfo(d khid.DeviceInfo) transport.DeviceInfo {
	info := deviceInfo(d.Path)
	info.Product, info.Manufacturer, info.Serial = d.Product, d.Manufacturer, d.Serial
	info.VendorID, info.ProductID = d.VendorID, d.ProductID
	return info
}

// attached reports whether hidapi still lists a FIDO key at path.
func attached(path string) bool {
	devs, err := fidoDevices()
	if err != nil {
		return true // cannot tell; say nothing about removal
	}
	for _, d := range devs {
		if d.Path == path {
			return true
		}
	}
	return false
}

func openConn(path string) (*hidapiConn, transport.DeviceInfo, error) {
	devs, err := fidoDevices()
	if err != nil {
		return nil, transport.DeviceInfo{}, err
	}
	for _, d := range devs {
		if d.Path != path {
			continue
		}
		dev, err := d.Open()
		if err != nil {
			return nil, transport.DeviceInfo{}, openError(path, err)
		}
		return &hidapiConn{dev: dev, path: path}, toInfo(d), nil
	}
	return nil, transport.DeviceInfo{}, fmt.Errorf("hid: no FIDO key at %s: %w", path, transport.ErrNoDevice)
}

// readSlice is how long one hidapi read blocks, in ms: hidapi cannot be woken, so
// a read notices a cancelled ctx or Close this late at most.
const readSlice = 20

// hidapiConn is a ctaphid.PacketConn over hidapi. hid_close frees the handle
// under a read or write that is still running, so Close waits for them.
type hidapiConn struct {
	dev    khid.Device
	path   string
	rmu    sync.Mutex
	wmu    sync.Mutex
	closed atomic.Bool
	once   sync.Once
}

func (c *hidapiConn) ReadPacket(ctx context.Context) ([]byte, error) {
	buf := make([]byte, ctaphid.ReportSize+1)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := c.read(buf)
		if err != nil {
			return nil, c.ioErr("reading from", err)
		}
		if n > 0 {
			return buf[:n], nil
		}
	}
}

func (c *hidapiConn) read(buf []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return 0, khid.ErrDeviceClosed
	}
	return c.dev.ReadTimeout(buf, readSlice)
}

func (c *hidapiConn) WritePacket(p []byte) error {
	buf := make([]byte, reportPrefix+ctaphid.ReportSize)
	copy(buf[reportPrefix:], p)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return c.ioErr("writing to", khid.ErrDeviceClosed)
	}
	if _, err := c.dev.Write(buf); err != nil {
		return c.ioErr("writing to", err)
	}
	return nil
}

func (c *hidapiConn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		c.rmu.Lock()
		c.wmu.Lock()
		defer c.rmu.Unlock()
		defer c.wmu.Unlock()
		c.dev.Close()
	})
	return nil
}

// ioErr: hidapi's errors do not say why, so a failure on a key that is no longer
// listed is taken as its removal.
func (c *hidapiConn) ioErr(op string, err error) error {
	switch {
	case errors.Is(err, khid.ErrDeviceClosed) || c.closed.Load():
		return fmt.Errorf("hid: %s %s: %w", op, c.path, transport.ErrClosed)
	case !attached(c.path):
		return &goneError{path: c.path, cause: err}
	}
	return fmt.Errorf("hid: %s %s: %w", op, c.path, err)
}
