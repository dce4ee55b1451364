package expose

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// Linux uhid (include/uapi/linux/uhid.h): every read and write is one struct
// uhid_event, a packed u32 type followed by a union whose largest member is
// uhid_create2_req. Multi-byte fields are in host byte order.
const (
	uhidDestroy        = 1
	uhidStart          = 2
	uhidStop           = 3
	uhidOpen           = 4
	uhidClose          = 5
	uhidOutput         = 6
	uhidGetReport      = 9
	uhidGetReportReply = 10
	uhidCreate2        = 11
	uhidInput2         = 12
	uhidSetReport      = 13
	uhidSetReportReply = 14

	uhidOutputReport = 1 // uhid_output_req.rtype of an output report
	busUSB           = 0x03
	uhidEventSize    = 4 + 128 + 64 + 64 + 2 + 2 + 4*4 + 4096 // type + uhid_create2_req
	uhidDataOffset   = 4                                      // data of uhid_output_req
	uhidOutputSize   = 4 + 4096                               // size of uhid_output_req
	uhidOutputRType  = 4 + 4096 + 2                           // rtype of uhid_output_req

	// nodeTimeout bounds the wait for the kernel to make the hidraw node (it
	// takes milliseconds; seconds under an emulator).
	nodeTimeout = 10 * time.Second
)

// ServeUHID creates a USB FIDO HID device through Linux uhid and serves auth on
// it until ctx is done (it then returns ctx.Err()) or the device fails. Every
// program on the machine then sees a security key at /dev/hidrawN: libfido2,
// browsers, python-fido2, ctapkit -d hid:. The device side of CTAPHID
// (ctaphid.Server) answers them, many channels at once. The device is destroyed
// when ServeUHID returns. Errors wrap ErrNoUHID when the kernel has no uhid.
//
// The kernel drops output reports when the device falls 32 events behind, which
// a message of more than 31 reports does whenever the reading thread is not
// scheduled in time; ServeUHID therefore reads on a SCHED_FIFO thread where it may
// (root or CAP_SYS_NICE; see readLoop).
func ServeUHID(ctx context.Context, auth ctaphid.Handler, opts UHIDOptions) error {
	if opts.Name == "" {
		opts.Name = DefaultUHIDName
	}
	if opts.VendorID == 0 && opts.ProductID == 0 {
		opts.VendorID, opts.ProductID = DefaultUHIDVendorID, DefaultUHIDProductID
	}
	if opts.Serial == "" {
		var b [8]byte
		rand.Read(b[:])
		opts.Serial = hex.EncodeToString(b[:])
	}
	if opts.Device == "" {
		opts.Device = "/dev/uhid"
	}
	if len(opts.Name) > 127 || len(opts.Serial) > 63 {
		return errors.New("uhid: name or serial too long (127 and 63 bytes at most)")
	}
	// A plain blocking descriptor: the read loop has a thread of its own.
	fd, err := unix.Open(opts.Device, unix.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s does not exist (load the kernel module: modprobe uhid)", ErrNoUHID, opts.Device)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("opening %s: permission denied (creating HID devices needs root, or write access to %s)", opts.Device, opts.Device)
	case err != nil:
		return fmt.Errorf("opening %s: %w", opts.Device, err)
	}
	c := &uhidConn{fd: fd, name: opts.Device, pkts: make(chan []byte, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	if err := c.write(create2Event(opts)); err != nil {
		unix.Close(fd)
		return fmt.Errorf("uhid: creating the device: %w", err)
	}
	defer c.destroy()
	go c.readLoop()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		path, err := waitHidraw(ctx, opts.Name, opts.Serial)
		switch {
		case err != nil:
			cancel(err)
		case opts.OnNode != nil:
			opts.OnNode(path)
		}
	}()

	caps := softkeyCapabilities
	if opts.U2FOnly {
		caps = u2fOnlyCapabilities
	}
	srv := ctaphid.NewServer(auth, ctaphid.ServerOptions{Capabilities: caps, Log: opts.Log})
	err = srv.Serve(ctx, c)
	failed, cause := ctx.Err() == nil, context.Cause(ctx) // before cancel below
	cancel(nil)
	<-watched
	switch {
	case failed:
		return fmt.Errorf("uhid: %w", err)
	case errors.Is(cause, errNoHidraw):
		return cause
	}
	return err // the caller's ctx.Err()
}

// create2Event is UHID_CREATE2 for a USB FIDO device.
func create2Event(opts UHIDOptions) []byte {
	ev := make([]byte, uhidEventSize)
	ne := binary.NativeEndian
	ne.PutUint32(ev, uhidCreate2)
	copy(ev[4:4+127], opts.Name)
	copy(ev[132:132+63], "ctapkit") // phys
	copy(ev[196:196+63], opts.Serial)
	ne.PutUint16(ev[260:], uint16(len(fidoReportDescriptor)))
	ne.PutUint16(ev[262:], busUSB) // libfido2 lists only USB devices
	ne.PutUint32(ev[264:], uint32(opts.VendorID))
	ne.PutUint32(ev[268:], uint32(opts.ProductID))
	ne.PutUint32(ev[272:], 0x0100) // device version 1.00
	copy(ev[280:], fidoReportDescriptor)
	return ev
}

// uhidConn is the ctaphid.PacketConn of a uhid device: output reports the hosts
// write come in as UHID_OUTPUT events, input reports go out as UHID_INPUT2.
type uhidConn struct {
	fd      int
	name    string
	wmu     sync.Mutex // one event per write; the read loop answers reports too
	pkts    chan []byte
	stop    chan struct{} // closed by destroy: the read loop ends
	done    chan struct{} // closed when the read loop has ended
	readErr error         // why it ended; set before done is closed
	once    sync.Once

	// Input pacing; WritePacket is only called by the server, one at a time.
	lastInput time.Time
	burst     int
}

func (c *uhidConn) write(ev []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := unix.Write(c.fd, ev)
	return err
}

// readLoop turns UHID events into packets and answers the kernel's requests.
//
// The kernel keeps only 32 events for the device and drops output reports
// beyond that ("Output queue is full"), and hosts write a message's packets
// back to back: a 2 KiB message is 35 of them. So the loop runs on a thread of
// its own, raised to SCHED_FIFO where permitted (root, CAP_SYS_NICE), so that
// each write wakes it at once instead of when the host's thread yields; on one
// emulated CPU a normal thread lost packets of every such message.
func (c *uhidConn) readLoop() {
	runtime.LockOSThread() // never unlocked: the thread and its priority end with the loop
	defer close(c.done)
	raiseThreadPriority()
	buf := make([]byte, uhidEventSize)
	ne := binary.NativeEndian
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		// Poll with a timeout rather than block in read, so that stop is seen.
		if n, err := unix.Poll(fds, 100); err != nil && err != unix.EINTR {
			c.readErr = err
			return
		} else if n <= 0 {
			continue
		}
		n, err := unix.Read(c.fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			c.readErr = err
			return
		}
		if n < 4 {
			continue
		}
		switch ne.Uint32(buf) {
		case uhidOutput:
			if n < uhidOutputRType+1 || buf[uhidOutputRType] != uhidOutputReport {
				continue
			}
			size := int(ne.Uint16(buf[uhidOutputSize:]))
			data := buf[uhidDataOffset : uhidDataOffset+min(size, 4096)]
			// hidraw passes the report ID byte (0: the descriptor has no IDs)
			// in front of the 64-byte report.
			if len(data) > ctaphid.ReportSize {
				data = data[1:]
			}
			p := bytes.Clone(data[:min(len(data), ctaphid.ReportSize)])
			select {
			case c.pkts <- p:
			case <-c.stop:
				return
			}
		case uhidGetReport, uhidSetReport:
			// FIDO devices have no feature reports; answering at once spares the
			// asking program the kernel's 5 s timeout.
			reply := make([]byte, 12)
			typ := uint32(uhidGetReportReply)
			if ne.Uint32(buf) == uhidSetReport {
				typ = uhidSetReportReply
			}
			ne.PutUint32(reply, typ)
			copy(reply[4:8], buf[4:8]) // request id
			ne.PutUint16(reply[8:], uint16(unix.EIO))
			c.write(reply)
		case uhidStart, uhidStop, uhidOpen, uhidClose:
			// Channels outlive hosts opening and closing the node, as on a USB
			// key that stays plugged in; nothing to do.
		}
	}
}

// raiseThreadPriority puts the calling thread in SCHED_FIFO at the lowest
// real-time priority, if this process may; otherwise it stays as it is.
func raiseThreadPriority() {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: 1 /* SCHED_FIFO */, Priority: 1}
	unix.SchedSetAttr(0, &attr, 0)
}

// ReadPacket returns the next 64-byte report a host wrote.
func (c *uhidConn) ReadPacket(ctx context.Context) ([]byte, error) {
	select {
	case p := <-c.pkts:
		return p, nil
	case <-c.done:
		return nil, fmt.Errorf("reading %s: %w", c.name, c.readErr)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// WritePacket sends a 64-byte report to every host that has the node open.
//
// hidraw queues at most 64 reports for each reader and drops the rest, and a
// reply may be 129 reports long. A USB key is paced by the host's polling (one
// report a millisecond at full speed); here the first inputBurst reports of a
// burst (half a reader's queue, about 1.9 KB) go out at once, and then a
// millisecond passes after every inputPaced reports, so that a reader slowed
// down by a loaded machine keeps up: a 7609-byte reply takes about 25 ms, a
// fifth of what it takes a full-speed USB key.
func (c *uhidConn) WritePacket(p []byte) error {
	if now := time.Now(); now.Sub(c.lastInput) < burstGap {
		c.burst++
		if c.burst >= inputBurst && c.burst%inputPaced == 0 {
			time.Sleep(time.Millisecond)
		}
	} else {
		c.burst = 0
	}
	ev := make([]byte, 6+ctaphid.ReportSize)
	binary.NativeEndian.PutUint32(ev, uhidInput2)
	binary.NativeEndian.PutUint16(ev[4:], ctaphid.ReportSize)
	copy(ev[6:], p) // shorter packets are zero-padded
	err := c.write(ev)
	c.lastInput = time.Now()
	if err != nil {
		return fmt.Errorf("writing %s: %w", c.name, err)
	}
	return nil
}

// Input pacing (see WritePacket).
const (
	inputBurst = 32
	inputPaced = 4
	burstGap   = 2 * time.Millisecond // reports closer than this belong to one burst
)

// Close does nothing: ServeUHID destroys the device when it returns.
func (c *uhidConn) Close() error { return nil }

// destroy removes the device (UHID_DESTROY; closing the file would too) and
// ends the read loop.
func (c *uhidConn) destroy() {
	c.once.Do(func() {
		ev := make([]byte, 4)
		binary.NativeEndian.PutUint32(ev, uhidDestroy)
		c.write(ev)
		close(c.stop)
		<-c.done // within one poll timeout
		unix.Close(c.fd)
	})
}

var errNoHidraw = errors.New("uhid: the kernel made no hidraw node for the device")

// waitHidraw polls sysfs until the hidraw node of the device with this name and
// uniq exists, and returns its /dev path.
func waitHidraw(ctx context.Context, name, uniq string) (string, error) {
	deadline := time.Now().Add(nodeTimeout)
	for {
		if path := findHidraw(name, uniq); path != "" {
			return path, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%w in %v (is CONFIG_HIDRAW off, or hid-generic missing?)", errNoHidraw, nodeTimeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// findHidraw looks for the node in /sys/class/hidraw by the HID device's uevent.
func findHidraw(name, uniq string) string {
	entries, _ := os.ReadDir("/sys/class/hidraw")
	for _, e := range entries {
		ev, err := os.ReadFile(filepath.Join("/sys/class/hidraw", e.Name(), "device", "uevent"))
		if err != nil {
			continue
		}
		lines := bytes.Split(ev, []byte("\n"))
		hasLine := func(l string) bool {
			for _, x := range lines {
				if string(x) == l {
					return true
				}
			}
			return false
		}
		if hasLine("HID_NAME="+name) && hasLine("HID_UNIQ="+uniq) {
			path := "/dev/" + e.Name()
			if _, err := os.Stat(path); err == nil {
				return path
			}
		}
	}
	return ""
}
