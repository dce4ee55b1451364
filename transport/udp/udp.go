// Package udp reaches authenticator simulators by the convention that FIDO test
// suites speak (the FIDO Alliance's conformance tools, SoloKeys' and OpenSK's
// simulators, ctapkit softkey serve --udp): one raw 64-byte CTAPHID report per UDP
// datagram, without a report-ID byte, the device on 127.0.0.1:8111 answering to
// the address it was sent from.
//
// A Device is the CTAPHID host (package ctaphid) over a Conn, a UDP socket
// connected to the simulator, so INIT, fragmentation, keepalives and CANCEL work
// as over USB. There is nothing to enumerate: a simulator is named by its address,
// udp:HOST:PORT.
package udp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// SchemeName is the device URI scheme: udp:HOST:PORT.
const SchemeName = "udp"

// DefaultPort is where simulators listen; "udp:HOST" means HOST:8111.
const DefaultPort = "8111"

// ConventionalLocalAddr is the address hosts of the convention send from. Some
// simulators answer there whatever the sender's address; Options.LocalAddr binds it.
const ConventionalLocalAddr = "127.0.0.1:7112"

// Options configures Open and Dial. The zero value selects the defaults.
type Options struct {
	// LocalAddr is the address to send from. Default: a free port on the
	// interface that reaches the simulator (127.0.0.1 for a local one). Suites
	// whose simulators insist use ConventionalLocalAddr.
	LocalAddr string
	// Timeout is the longest silence tolerated while waiting for a reply
	// (ctaphid.Options.Timeout). 0 = 3 s.
	Timeout time.Duration
	// Log, if set, sees every report sent ("send") and received ("recv"), as
	// ctaphid.Options.Log does.
	Log func(dir string, pkt []byte)
}

// Conn is a ctaphid.PacketConn over a UDP socket connected to one simulator:
// each report is one datagram. Datagrams that are not exactly one report are
// dropped (and counted). Reads are meant for one goroutine at a time, as
// ctaphid.Device and the conformance suite's raw link use them.
type Conn struct {
	conn *net.UDPConn
	addr string
	buf  [1 << 16]byte

	dropped atomic.Uint64
	mu      sync.Mutex // serialises reads, and with them the read deadline
}

var _ ctaphid.PacketConn = (*Conn)(nil)

// Dial opens a UDP socket to the simulator at addr (HOST:PORT, or HOST for port
// 8111). UDP has no handshake: whether anything listens shows with the first
// reply, or the first read's ErrNoDevice when the system learns that nothing does.
func Dial(addr string, opts Options) (*Conn, error) {
	addr, err := normalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udp: %s: %w", addr, err)
	}
	var laddr *net.UDPAddr
	if opts.LocalAddr != "" {
		if laddr, err = net.ResolveUDPAddr("udp", opts.LocalAddr); err != nil {
			return nil, fmt.Errorf("udp: local address %s: %w", opts.LocalAddr, err)
		}
	}
	c, err := net.DialUDP("udp", laddr, raddr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("udp: %s is taken (another host of the simulator running?): %w", opts.LocalAddr, transport.ErrInUse)
		}
		return nil, fmt.Errorf("udp: %s: %w", addr, err)
	}
	return &Conn{conn: c, addr: addr}, nil
}

// normalizeAddr checks HOST:PORT and supplies the default port.
func normalizeAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// No port (a bracketed IPv6 address without one, too).
		host, port = addr, DefaultPort
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
	}
	n, perr := strconv.Atoi(port)
	if host == "" || strings.ContainsAny(host, "[]") || perr != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%w %q: want udp:HOST:PORT, e.g. udp:127.0.0.1:%s", transport.ErrBadURI, SchemeName+":"+addr, DefaultPort)
	}
	return net.JoinHostPort(host, port), nil
}

// ReadPacket returns the next datagram that is one report. It returns ctx.Err()
// when ctx is done, and an error wrapping transport.ErrNoDevice when the system
// reports that nothing listens at the address (an ICMP port unreachable).
func (c *Conn) ReadPacket(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// ctx ends the read through a deadline in the past, which the next read
	// clears. ctx's own deadline is left to ctx, so that the caller sees
	// ctx.Err() and not a socket timeout a moment before ctx notices.
	c.conn.SetReadDeadline(time.Time{})
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.conn.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()
	for {
		n, err := c.conn.Read(c.buf[:])
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("udp: nothing listens at %s (connection refused): %w", c.addr, transport.ErrNoDevice)
		case errors.Is(err, net.ErrClosed):
			return nil, fmt.Errorf("udp: %s: %w", c.addr, transport.ErrClosed)
		case err != nil:
			return nil, fmt.Errorf("udp: reading from %s: %w", c.addr, err)
		case n != ctaphid.ReportSize:
			c.dropped.Add(1)
			continue
		}
		p := make([]byte, ctaphid.ReportSize)
		copy(p, c.buf[:n])
		return p, nil
	}
}

// WritePacket sends p, which must be one report, as one datagram.
func (c *Conn) WritePacket(p []byte) error {
	if len(p) != ctaphid.ReportSize {
		return fmt.Errorf("udp: a %d-byte report; the convention carries %d-byte ones", len(p), ctaphid.ReportSize)
	}
	_, err := c.conn.Write(p)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ECONNREFUSED):
		// An ICMP error for an earlier datagram, reported on this write.
		return fmt.Errorf("udp: nothing listens at %s (connection refused): %w", c.addr, transport.ErrNoDevice)
	case errors.Is(err, net.ErrClosed):
		return fmt.Errorf("udp: %s: %w", c.addr, transport.ErrClosed)
	}
	return fmt.Errorf("udp: writing to %s: %w", c.addr, err)
}

// Close closes the socket; a read in progress returns.
func (c *Conn) Close() error { return c.conn.Close() }

// Simulator reports that the other end follows the authenticator-simulator
// convention, which lets it answer channels INIT did not allocate (the
// conformance suite's SimulatorLink).
func (c *Conn) Simulator() bool { return true }

// LocalAddr is the address the simulator sees datagrams come from.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr is the simulator's address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// Dropped counts the datagrams dropped because they were not one report.
func (c *Conn) Dropped() uint64 { return c.dropped.Load() }

// Device is a simulator reached over UDP: a ctaphid.Device (so Ping, Wink, Lock,
// CID and Capabilities work as over USB) that describes itself as udp:HOST:PORT.
type Device struct {
	*ctaphid.Device
	conn *Conn
	info transport.DeviceInfo
}

var _ transport.Device = (*Device)(nil)

// RawLink opens a second socket to the simulator (ctaphid.RawLinker).
func (d *Device) RawLink() (ctaphid.PacketConn, error) { return Dial(d.info.Path, Options{}) }

// Open connects to the simulator at addr (HOST:PORT, or HOST for port 8111) and
// allocates a CTAPHID channel on it with INIT. Nothing listening there is an
// error wrapping transport.ErrNoDevice (when the system reports it, as it does
// on the loopback interface) or transport.ErrTimeout (silence).
func Open(ctx context.Context, addr string, opts Options) (*Device, error) {
	conn, err := Dial(addr, opts)
	if err != nil {
		return nil, err
	}
	info := deviceInfo(conn.addr)
	dev, err := ctaphid.Open(ctx, conn, ctaphid.Options{Info: info, Timeout: opts.Timeout, Log: opts.Log})
	if err != nil {
		conn.Close()
		if errors.Is(err, transport.ErrNoDevice) {
			return nil, fmt.Errorf("%w at %s: nothing listens there (start one with: ctapkit softkey serve --udp=%s)",
				transport.ErrNoDevice, info.URI, conn.addr)
		}
		return nil, fmt.Errorf("opening %s: %w", info.URI, err)
	}
	return &Device{Device: dev, conn: conn, info: info}, nil
}

// Info describes the simulator: transport "udp", URI "udp:HOST:PORT".
func (d *Device) Info() transport.DeviceInfo { return d.info }

// Conn is the socket under the device, e.g. for its Dropped count.
func (d *Device) Conn() *Conn { return d.conn }

func deviceInfo(addr string) transport.DeviceInfo {
	return transport.DeviceInfo{
		URI:       SchemeName + ":" + addr,
		Transport: SchemeName,
		Path:      addr,
		Product:   "CTAPHID over UDP " + addr,
	}
}

// Scheme returns the udp: URI scheme for a transport.Registry. It cannot
// enumerate: simulators are named by address.
func Scheme(opts Options) transport.Scheme {
	return transport.Scheme{
		Name: SchemeName,
		Open: func(ctx context.Context, path string) (transport.Device, error) {
			d, err := Open(ctx, path, opts)
			if err != nil {
				return nil, err
			}
			return d, nil
		},
	}
}
