package expose

import (
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// The authenticator-simulator convention over UDP, which the FIDO Alliance's
// conformance tools, SoloKeys' and OpenSK's simulators and python-fido2-based test
// suites speak: one raw 64-byte CTAPHID report per datagram, without a report-ID
// byte; the device listens on 127.0.0.1:8111 and answers to whoever sent the
// request (hosts conventionally bind 127.0.0.1:7112). There are no connections, so
// the device learns each channel's host from the datagrams that channel arrives in.

// DefaultUDPAddr is where simulators listen, and hosts of the convention look.
const DefaultUDPAddr = "127.0.0.1:8111"

// UDPOptions configures ServeUDP. The zero value selects the defaults.
type UDPOptions struct {
	// RequireInit refuses messages on channels that INIT did not allocate with
	// ERR_INVALID_CHANNEL, as a USB key does. By default any channel but 0 and
	// broadcast is accepted, as the simulators do for hosts that skip INIT.
	RequireInit bool
	// MaxPeers bounds the table of where each channel's replies go (default 1024).
	// The channel heard from least recently is forgotten first; a reply on a
	// forgotten channel is dropped, as a lost datagram would be.
	MaxPeers int
	// Log, if set, sees every CTAPHID report received ("recv") and sent ("send").
	Log func(dir string, pkt []byte)
	// Logf, if set, is told about each datagram dropped (not one 64-byte report)
	// and each reply that could not be delivered: the -v log.
	Logf func(format string, args ...any)
}

const (
	defaultMaxPeers = 1024
	// maxPendingInits bounds the INIT nonces awaiting their reply.
	maxPendingInits = 64
	// maxReadErrors is how many read errors in a row ServeUDP tolerates (ICMP
	// errors that some systems report on unconnected sockets) before it gives up.
	maxReadErrors = 100
)

// ServeUDP serves auth on conn by the simulator convention until ctx is done (it
// returns ctx.Err()) or conn fails. Several hosts may use it at once: each reply
// goes to the address that the last datagram of its channel came from, and INIT
// replies on the broadcast channel to the host that sent that nonce. Datagrams
// that are not exactly one 64-byte report are dropped (and counted in Logf's
// lines). ServeUDP does not close conn, so a caller may serve it again, e.g. a
// new authenticator after a simulated power cycle, on the same port.
func ServeUDP(ctx context.Context, auth ctaphid.Handler, conn net.PacketConn, opts UDPOptions) error {
	if opts.MaxPeers <= 0 {
		opts.MaxPeers = defaultMaxPeers
	}
	srv := ctaphid.NewServer(auth, ctaphid.ServerOptions{
		Capabilities:      softkeyCapabilities,
		AcceptUnallocated: !opts.RequireInit,
		Log:               opts.Log,
	})
	u := &udpPackets{conn: conn, opts: opts,
		peers: newAddrTable[uint32](opts.MaxPeers), inits: newAddrTable[[8]byte](maxPendingInits)}
	err := srv.Serve(ctx, u)
	u.stop()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// udpPackets is the ctaphid.PacketConn of ServeUDP: datagrams in, and out to the
// address each channel was last heard from.
type udpPackets struct {
	conn net.PacketConn
	opts UDPOptions
	buf  [1 << 16]byte // reads are sequential (the Server's one reader)

	mu      sync.Mutex
	peers   *addrTable[uint32]  // channel → host
	inits   *addrTable[[8]byte] // nonce of a broadcast INIT → host
	stopped bool
	reading sync.WaitGroup

	dropped atomic.Uint64
}

// ReadPacket returns the next datagram that is one report, and notes where it
// came from.
func (u *udpPackets) ReadPacket(ctx context.Context) ([]byte, error) {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return nil, transport.ErrClosed
	}
	u.reading.Add(1)
	u.mu.Unlock()
	defer u.reading.Done()

	// Cancellation unblocks the read through the deadline, which an earlier
	// cancelled read may have left in the past: clear it first.
	u.conn.SetReadDeadline(time.Time{})
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		u.conn.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired // so that it cannot move the next read's deadline
		}
	}()
	errs := 0
	for {
		n, from, err := u.conn.ReadFrom(u.buf[:])
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) || errs >= maxReadErrors {
				return nil, err
			}
			errs++
			u.logf("udp: read error ignored: %v", err)
			continue
		}
		errs = 0
		if n != ctaphid.ReportSize {
			u.logf("udp: dropped a %d-byte datagram from %v: CTAPHID over UDP is one %d-byte report per datagram (%d dropped so far)",
				n, from, ctaphid.ReportSize, u.dropped.Add(1))
			continue
		}
		p := make([]byte, ctaphid.ReportSize)
		copy(p, u.buf[:n])
		u.note(p, from)
		return p, nil
	}
}

// note remembers from as the host of p's channel, and of p's nonce when p is an
// INIT on the broadcast channel, whose reply comes back on that shared channel.
func (u *udpPackets) note(p []byte, from net.Addr) {
	cid := binary.BigEndian.Uint32(p)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.peers.put(cid, from)
	if cid == ctaphid.BroadcastCID && p[4] == 0x80|byte(transport.CmdInit) {
		u.inits.put([8]byte(p[7:15]), from)
	}
}

// WritePacket sends p to its channel's host. A reply with nowhere to go, or that
// the network refuses, is dropped like a lost datagram: one host gone must not
// stop the device for the others.
func (u *udpPackets) WritePacket(p []byte) error {
	to, ok := u.destination(p)
	if !ok {
		u.logf("udp: dropped a reply on channel %08x: no host known for it", binary.BigEndian.Uint32(p))
		return nil
	}
	if _, err := u.conn.WriteTo(p, to); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		u.logf("udp: dropped a reply to %v: %v", to, err)
	}
	return nil
}

func (u *udpPackets) destination(p []byte) (net.Addr, bool) {
	cid := binary.BigEndian.Uint32(p)
	u.mu.Lock()
	defer u.mu.Unlock()
	// An INIT reply on the broadcast channel: nonce(8) || new CID(4) || ...
	if cid == ctaphid.BroadcastCID && p[4] == 0x80|byte(transport.CmdInit) {
		if to, ok := u.inits.take([8]byte(p[7:15])); ok {
			u.peers.put(binary.BigEndian.Uint32(p[15:19]), to) // the new channel is that host's
			return to, true
		}
	}
	return u.peers.get(cid)
}

// stop ends reads for good once the Server has returned, and clears the deadline
// a cancelled read left, so that conn can be served again.
func (u *udpPackets) stop() {
	u.mu.Lock()
	u.stopped = true
	u.mu.Unlock()
	u.reading.Wait()
	u.conn.SetReadDeadline(time.Time{})
}

// Close does nothing: ServeUDP's caller owns conn.
func (u *udpPackets) Close() error { return nil }

func (u *udpPackets) logf(format string, args ...any) {
	if u.opts.Logf != nil {
		u.opts.Logf(format, args...)
	}
}

// addrTable maps keys to addresses, forgetting the least recently used key
// beyond max entries.
type addrTable[K comparable] struct {
	max   int
	m     map[K]*list.Element
	order list.List // of *addrEntry[K], most recent first
}

type addrEntry[K comparable] struct {
	key  K
	addr net.Addr
}

func newAddrTable[K comparable](max int) *addrTable[K] {
	return &addrTable[K]{max: max, m: make(map[K]*list.Element)}
}

func (t *addrTable[K]) put(k K, a net.Addr) {
	if e, ok := t.m[k]; ok {
		e.Value.(*addrEntry[K]).addr = a
		t.order.MoveToFront(e)
		return
	}
	t.m[k] = t.order.PushFront(&addrEntry[K]{k, a})
	for t.order.Len() > t.max {
		oldest := t.order.Back()
		delete(t.m, oldest.Value.(*addrEntry[K]).key)
		t.order.Remove(oldest)
	}
}

func (t *addrTable[K]) get(k K) (net.Addr, bool) {
	e, ok := t.m[k]
	if !ok {
		return nil, false
	}
	return e.Value.(*addrEntry[K]).addr, true
}

func (t *addrTable[K]) take(k K) (net.Addr, bool) {
	e, ok := t.m[k]
	if !ok {
		return nil, false
	}
	delete(t.m, k)
	t.order.Remove(e)
	return e.Value.(*addrEntry[K]).addr, true
}

func (t *addrTable[K]) len() int { return t.order.Len() }
