package expose

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// udpServer is ServeUDP on a free loopback port for the length of a test.
type udpServer struct {
	addr net.Addr
	conn net.PacketConn

	mu   sync.Mutex
	logs []string
}

func startUDP(t *testing.T, h ctaphid.Handler, opts UDPOptions) *udpServer {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &udpServer{addr: conn.LocalAddr(), conn: conn}
	opts.Logf = func(format string, args ...any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.logs = append(s.logs, fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeUDP(ctx, h, conn, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("ServeUDP: %v, want context.Canceled", err)
		}
		conn.Close()
	})
	return s
}

func (s *udpServer) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.logs, "\n")
}

// udpHost is a host program of the convention: its own socket, raw reports.
type udpHost struct {
	t    *testing.T
	conn net.PacketConn
	dev  net.Addr
}

func newUDPHost(t *testing.T, dev net.Addr) *udpHost {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &udpHost{t: t, conn: conn, dev: dev}
}

func (h *udpHost) send(p []byte) {
	h.t.Helper()
	if _, err := h.conn.WriteTo(p, h.dev); err != nil {
		h.t.Fatal(err)
	}
}

// recv returns the next datagram, or nil after d.
func (h *udpHost) recv(d time.Duration) []byte {
	h.t.Helper()
	h.conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1<<16)
	n, from, err := h.conn.ReadFrom(buf)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	if from.String() != h.dev.String() {
		h.t.Fatalf("datagram from %v, want the device %v", from, h.dev)
	}
	if n != ctaphid.ReportSize {
		h.t.Fatalf("a %d-byte datagram from the device", n)
	}
	return buf[:n]
}

// must returns the next datagram, failing the test after 2 s.
func (h *udpHost) must(what string) []byte {
	h.t.Helper()
	p := h.recv(2 * time.Second)
	if p == nil {
		h.t.Fatalf("no reply to %s", what)
	}
	return p
}

// report builds a single-packet message.
func report(cid uint32, cmd transport.Command, data []byte) []byte {
	p := make([]byte, ctaphid.ReportSize)
	binary.BigEndian.PutUint32(p, cid)
	p[4] = 0x80 | byte(cmd)
	binary.BigEndian.PutUint16(p[5:7], uint16(len(data)))
	copy(p[7:], data)
	return p
}

// reply splits a single-packet reply.
func reply(p []byte) (cid uint32, cmd transport.Command, data []byte) {
	n := int(binary.BigEndian.Uint16(p[5:7]))
	return binary.BigEndian.Uint32(p), transport.Command(p[4] &^ 0x80), p[7 : 7+min(n, 57)]
}

// message reads a whole message: its init packet and continuations.
func (h *udpHost) message(what string) (transport.Command, []byte) {
	h.t.Helper()
	p := h.must(what)
	cid, cmd, _ := reply(p)
	n := int(binary.BigEndian.Uint16(p[5:7]))
	data := append([]byte(nil), p[7:]...)
	for seq := byte(0); len(data) < n; seq++ {
		c := h.must(what)
		if binary.BigEndian.Uint32(c) != cid || c[4] != seq {
			h.t.Fatalf("%s: continuation %x, want channel %08x sequence %d", what, c[:5], cid, seq)
		}
		data = append(data, c[5:]...)
	}
	return cmd, data[:n]
}

// init allocates a channel and returns it.
func (h *udpHost) init() uint32 {
	h.t.Helper()
	nonce := make([]byte, 8)
	rand.Read(nonce)
	h.send(report(ctaphid.BroadcastCID, transport.CmdInit, nonce))
	cid, cmd, data := reply(h.must("INIT"))
	if cid != ctaphid.BroadcastCID || cmd != transport.CmdInit || len(data) != 17 || !bytes.Equal(data[:8], nonce) {
		h.t.Fatalf("INIT reply: channel %08x %v %x, want nonce %x", cid, cmd, data, nonce)
	}
	return binary.BigEndian.Uint32(data[8:12])
}

// ping sends a PING on cid and checks the echo.
func (h *udpHost) ping(cid uint32) {
	h.t.Helper()
	data := make([]byte, 20)
	rand.Read(data)
	h.send(report(cid, transport.CmdPing, data))
	got, cmd, echo := reply(h.must("PING"))
	if got != cid || cmd != transport.CmdPing || !bytes.Equal(echo, data) {
		h.t.Fatalf("PING on %08x: reply on %08x %v %x", cid, got, cmd, echo)
	}
}

func (h *udpHost) expectError(cid uint32, code ctaphid.Error, what string) {
	h.t.Helper()
	got, cmd, data := reply(h.must(what))
	if got != cid || cmd != transport.CmdError || len(data) != 1 || ctaphid.Error(data[0]) != code {
		h.t.Fatalf("%s: reply on %08x %v %x, want %v", what, got, cmd, data, code)
	}
}

func (h *udpHost) expectSilence(what string) {
	h.t.Helper()
	if p := h.recv(150 * time.Millisecond); p != nil {
		h.t.Fatalf("%s: unexpected reply %x", what, p[:8])
	}
}

func newUDPSoftkey(t *testing.T) *softkey.Authenticator {
	t.Helper()
	return newPythonSoftkey(t, softkey.Config{})
}

// TestServeUDPReportsAndDrops: INIT, PING and a CBOR request as raw datagrams;
// datagrams that are not one report are dropped, counted and logged.
func TestServeUDPReportsAndDrops(t *testing.T) {
	s := startUDP(t, newUDPSoftkey(t), UDPOptions{})
	h := newUDPHost(t, s.addr)
	cid := h.init()
	h.ping(cid)

	h.send(report(cid, transport.CmdCBOR, []byte{0x04})) // getInfo
	cmd, data := h.message("getInfo")
	for cmd == transport.CmdKeepalive {
		cmd, data = h.message("getInfo")
	}
	if cmd != transport.CmdCBOR || len(data) < 100 || data[0] != 0 {
		t.Fatalf("getInfo: %v %x", cmd, data)
	}

	h.send(report(cid, transport.CmdPing, nil)[:10])
	h.send(append(report(cid, transport.CmdPing, nil), 0)) // 65 bytes: a report ID in front, or padding
	h.send(nil)
	h.expectSilence("wrong-size datagrams")
	h.ping(cid)
	log := s.log()
	for _, want := range []string{"dropped a 10-byte datagram", "dropped a 65-byte datagram", "dropped a 0-byte datagram", "(3 dropped so far)"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestServeUDPHostsAtOnce: several hosts allocate channels with INITs sent at the
// same moment, each gets the reply to its own nonce, and their PINGs and requests
// are answered to each, not to the last sender.
func TestServeUDPHostsAtOnce(t *testing.T) {
	s := startUDP(t, newUDPSoftkey(t), UDPOptions{})
	const n = 4
	hosts := make([]*udpHost, n)
	nonces := make([][]byte, n)
	for i := range hosts {
		hosts[i] = newUDPHost(t, s.addr)
		nonces[i] = make([]byte, 8)
		rand.Read(nonces[i])
	}
	for round := range 10 {
		for i, h := range hosts {
			h.send(report(ctaphid.BroadcastCID, transport.CmdInit, nonces[i]))
		}
		cids := make([]uint32, n)
		for i, h := range hosts {
			_, _, data := reply(h.must("INIT"))
			if !bytes.Equal(data[:8], nonces[i]) {
				t.Fatalf("round %d: host %d got the INIT reply for nonce %x, sent %x", round, i, data[:8], nonces[i])
			}
			cids[i] = binary.BigEndian.Uint32(data[8:12])
		}
		for i, h := range hosts {
			h.ping(cids[i])
		}
	}
	for _, h := range hosts {
		h.expectSilence("after its replies") // nothing meant for another host
	}
}

// TestServeUDPChannels: like the simulators, a channel INIT never allocated is
// accepted (not 0 or broadcast), unless RequireInit; a reply goes to the host the
// channel was last heard from.
func TestServeUDPChannels(t *testing.T) {
	auth := newUDPSoftkey(t)
	t.Run("accepted", func(t *testing.T) {
		h := newUDPHost(t, startUDP(t, auth, UDPOptions{}).addr)
		h.ping(0x01020304)
		h.send(report(0, transport.CmdPing, []byte{1}))
		h.expectError(0, ctaphid.ErrInvalidChannel, "PING on channel 0")
		h.send(report(ctaphid.BroadcastCID, transport.CmdPing, []byte{1}))
		h.expectError(ctaphid.BroadcastCID, ctaphid.ErrInvalidChannel, "PING on the broadcast channel")
	})
	t.Run("RequireInit", func(t *testing.T) {
		h := newUDPHost(t, startUDP(t, auth, UDPOptions{RequireInit: true}).addr)
		h.send(report(0x01020304, transport.CmdPing, []byte{1}))
		h.expectError(0x01020304, ctaphid.ErrInvalidChannel, "PING on an unallocated channel")
		h.ping(h.init())
	})
	t.Run("follows the host", func(t *testing.T) {
		s := startUDP(t, auth, UDPOptions{})
		a, b := newUDPHost(t, s.addr), newUDPHost(t, s.addr)
		cid := a.init()
		a.ping(cid)
		b.ping(cid) // a host restarted on another port, with the channel it had
		a.expectSilence("the channel moved to another host")
		a.ping(cid)
	})
}

// TestServeUDPAgain: ServeUDP returns at once when its context ends, leaves conn
// open, and conn can be served again (a simulated power cycle keeps the port).
func TestServeUDPAgain(t *testing.T) {
	auth := newUDPSoftkey(t)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := newUDPHost(t, conn.LocalAddr())
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- ServeUDP(ctx, auth, conn, UDPOptions{}) }()
		h.ping(h.init())
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("serve %d: %v", i, err)
			}
		case <-time.After(time.Second):
			t.Fatalf("serve %d: ServeUDP did not return after cancel", i)
		}
	}
	// conn is still open: ServeUDP's caller closes it.
	if _, err := conn.WriteTo([]byte{0}, h.conn.LocalAddr()); err != nil {
		t.Fatalf("conn after ServeUDP: %v", err)
	}
}

// TestServeUDPConnClosed: closing conn ends ServeUDP with an error.
func TestServeUDPConnClosed(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeUDP(context.Background(), newUDPSoftkey(t), conn, UDPOptions{}) }()
	time.Sleep(20 * time.Millisecond)
	conn.Close()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ServeUDP after conn.Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("ServeUDP did not return after conn.Close")
	}
}

// TestServeUDPPeerTable: the channel → host table keeps the most recently heard
// MaxPeers channels; a channel forgotten meanwhile loses its reply (logged), and
// the device goes on serving the others.
func TestServeUDPPeerTable(t *testing.T) {
	tab := newAddrTable[uint32](8)
	addr := func(i int) net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: i} }
	for i := range 100 {
		tab.put(uint32(i), addr(i))
		if tab.len() > 8 {
			t.Fatalf("%d entries after %d puts", tab.len(), i+1)
		}
	}
	tab.put(93, addr(1)) // heard again: the most recent now
	for i := range 8 {
		tab.put(uint32(1000+i), addr(i))
	}
	if a, ok := tab.get(93); ok {
		t.Errorf("channel 93 kept (%v) after 8 newer ones", a)
	}
	tab.put(93, addr(2))
	tab.put(2000, addr(3))
	if a, ok := tab.get(93); !ok || a.String() != addr(2).String() {
		t.Errorf("channel 93: %v %v, want %v", a, ok, addr(2))
	}
	if a, ok := tab.take(93); !ok || a == nil {
		t.Error("take(93) found nothing")
	}
	if _, ok := tab.get(93); ok {
		t.Error("channel 93 still there after take")
	}

	// A CBOR request whose channel is flooded out of a 2-entry table while the
	// softkey waits for a touch: the reply is dropped, not fatal.
	release := make(chan struct{})
	auth := newPythonSoftkey(t, softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		select {
		case <-release:
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}})
	s := startUDP(t, auth, UDPOptions{MaxPeers: 2})
	a, b := newUDPHost(t, s.addr), newUDPHost(t, s.addr)
	cidA := a.init()
	a.send(report(cidA, transport.CmdCBOR, []byte{0x0B})) // selection: waits for a touch
	time.Sleep(50 * time.Millisecond)
	for c := uint32(1); c <= 3; c++ {
		b.send(report(c, transport.CmdPing, []byte{1}))
		b.expectError(c, ctaphid.ErrChannelBusy, "PING while another channel's request runs")
	}
	close(release)
	want := fmt.Sprintf("dropped a reply on channel %08x: no host known for it", cidA)
	for deadline := time.Now().Add(2 * time.Second); !strings.Contains(s.log(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", want, s.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ping(b.init())
}

// serveUDPForPython serves auth by the UDP convention for runPython until the
// test ends, and returns the address.
func serveUDPForPython(t *testing.T, auth *softkey.Authenticator) string {
	t.Helper()
	return startUDP(t, auth, UDPOptions{}).addr.String()
}

// TestPythonFido2OverUDP: python-fido2's CTAPHID and CTAP2 code, over a UDP
// connection of a few lines (testdata/udphid.py), drives the softkey served by
// ServeUDP through the same scenarios as over its other links, the 7609-byte
// PING of "basic" included.
func TestPythonFido2OverUDP(t *testing.T) {
	for _, scenario := range []string{"basic", "pin1", "pin2", "credman", "config", "blobs"} {
		t.Run(scenario, func(t *testing.T) {
			auth := newPythonSoftkey(t, softkey.Config{})
			if scenario == "config" {
				auth = newEnterpriseSoftkey(t)
			}
			runPython(t, auth, pythonOptions{UDP: true}, "pyfido2_host.py", scenario)
		})
	}
	t.Run("u2f", func(t *testing.T) {
		runPython(t, newPythonSoftkey(t, softkey.Config{}), pythonOptions{UDP: true}, "pyfido2_u2f.py")
	})
}
