package ctaphid

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/transport"
)

func TestServerInit(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{Version: [3]byte{5, 4, 3}, Rand: &seqReader{}})
	nonce := []byte("\xa1\xb2\xc3\xd4\xe5\xf6\x07\x18")
	h.sendMsg(BroadcastCID, transport.CmdInit, nonce)
	want := append(append([]byte(nil), nonce...), 1, 2, 3, 4, 2, 5, 4, 3, CapWink|CapCBOR)
	h.expect(BroadcastCID, transport.CmdInit, want)

	// INIT on the allocated channel keeps it.
	h.sendMsg(0x01020304, transport.CmdInit, nonce)
	h.expect(0x01020304, transport.CmdInit, want)

	// CIDs are unique and never reserved: a reader that yields a reserved or used
	// value first must be skipped.
	s, h2 := startServer(t, &fakeHandler{}, ServerOptions{Rand: bytes.NewReader([]byte{
		0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 9, 0, 0, 0, 9, 0, 0, 0, 10})})
	if a, b := h2.allocate(), h2.allocate(); a != 9 || b != 10 {
		t.Fatalf("allocated %08x, %08x; want 9, 10", a, b)
	}
	// An exhausted source is ERR_OTHER, not a panic or a reserved CID.
	h2.sendMsg(BroadcastCID, transport.CmdInit, nonce)
	h2.expectError(BroadcastCID, ErrOther)
	_ = s
}

func TestServerInitBadLength(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	for _, n := range []int{0, 7, 9, 17, 100} {
		h.sendMsg(BroadcastCID, transport.CmdInit, pattern(n))
		h.expectError(BroadcastCID, ErrInvalidLen)
	}
	cid := h.allocate()
	h.sendMsg(cid, transport.CmdInit, pattern(4))
	h.expectError(cid, ErrInvalidLen)
}

func TestServerInvalidChannel(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	h.sendMsg(0, transport.CmdPing, []byte("x"))
	h.expectError(0, ErrInvalidChannel)
	h.sendMsg(0, transport.CmdInit, pattern(8))
	h.expectError(0, ErrInvalidChannel)
	h.sendMsg(0x12345678, transport.CmdPing, []byte("x")) // never allocated
	h.expectError(0x12345678, ErrInvalidChannel)
	h.sendMsg(0x12345678, transport.CmdInit, pattern(8)) // resync needs a channel too
	h.expectError(0x12345678, ErrInvalidChannel)
	h.sendMsg(BroadcastCID, transport.CmdPing, []byte("x")) // broadcast is for INIT only
	h.expectError(BroadcastCID, ErrInvalidChannel)
	h.sendMsg(BroadcastCID, transport.CmdCancel, nil) // CANCEL is never answered
	h.expectSilence(20 * time.Millisecond)
}

func TestServerAcceptUnallocated(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{AcceptUnallocated: true})
	h.sendMsg(0x12345678, transport.CmdPing, []byte("hi"))
	h.expect(0x12345678, transport.CmdPing, []byte("hi"))
	h.sendMsg(0, transport.CmdPing, []byte("x"))
	h.expectError(0, ErrInvalidChannel)
	h.sendMsg(BroadcastCID, transport.CmdPing, []byte("x"))
	h.expectError(BroadcastCID, ErrInvalidChannel)
}

func TestServerBadSequence(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	cid := h.allocate()
	pkts, _ := fragment(cid, transport.CmdPing, pattern(200)) // init + 3 continuations
	h.send(pkts[0], pkts[2])
	h.expectError(cid, ErrInvalidSeq)
	// The message is gone: the remaining continuations are strays.
	h.send(pkts[1], pkts[3])
	h.expectSilence(20 * time.Millisecond)
	h.sendMsg(cid, transport.CmdPing, pattern(200))
	h.expect(cid, transport.CmdPing, pattern(200))
}

func TestServerStrayContinuation(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	cid := h.allocate()
	pkts, _ := fragment(cid, transport.CmdPing, pattern(100))
	h.send(pkts[1], []byte{1, 2}) // no message in progress; a runt packet
	h.expectSilence(20 * time.Millisecond)
	h.send(pkts...)
	h.expect(cid, transport.CmdPing, pattern(100))
}

func TestServerInitPacketMidMessage(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	cid := h.allocate()
	first, _ := fragment(cid, transport.CmdPing, pattern(100))
	h.send(first[0])
	h.sendMsg(cid, transport.CmdPing, []byte("again"))
	h.expectError(cid, ErrInvalidSeq)
	h.send(first[1]) // the first message was dropped too
	h.expectSilence(20 * time.Millisecond)
}

func TestServerBusyMidMessage(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	a, b := h.allocate(), h.allocate()
	pkts, _ := fragment(a, transport.CmdPing, pattern(100))
	h.send(pkts[0])
	h.sendMsg(b, transport.CmdPing, []byte("b"))
	h.expectError(b, ErrChannelBusy)
	h.send(pkts[1])
	h.expect(a, transport.CmdPing, pattern(100))
	h.sendMsg(b, transport.CmdPing, []byte("b"))
	h.expect(b, transport.CmdPing, []byte("b"))
}

func TestServerBusyMidHandler(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	fh := &fakeHandler{cbor: blockingCBOR(0, started, release)}
	_, h := startServer(t, fh, ServerOptions{KeepaliveInterval: time.Hour})
	a, b := h.allocate(), h.allocate()
	h.sendMsg(a, transport.CmdCBOR, []byte{0x04})
	<-started
	h.sendMsg(b, transport.CmdPing, []byte("b"))
	h.expectError(b, ErrChannelBusy)
	h.sendMsg(a, transport.CmdPing, []byte("a")) // the owner cannot overlap either
	h.expectError(a, ErrChannelBusy)
	h.sendMsg(b, transport.CmdCancel, nil) // not b's request: ignored
	h.expectSilence(20 * time.Millisecond)
	// Allocation is never busy.
	c := h.allocate()
	close(release)
	h.expect(a, transport.CmdCBOR, []byte{0x00})
	h.sendMsg(c, transport.CmdPing, []byte("c"))
	h.expect(c, transport.CmdPing, []byte("c"))
}

func TestServerCancel(t *testing.T) {
	started := make(chan struct{})
	fh := &fakeHandler{cbor: blockingCBOR(0, started, nil)}
	_, h := startServer(t, fh, ServerOptions{KeepaliveInterval: time.Hour})
	cid := h.allocate()
	h.sendMsg(cid, transport.CmdCBOR, []byte{0x01, 0xa0})
	<-started
	h.sendMsg(cid, transport.CmdCancel, nil)
	h.expect(cid, transport.CmdCBOR, []byte{0x2D})
	h.sendMsg(cid, transport.CmdCancel, nil) // nothing running: ignored
	h.expectSilence(20 * time.Millisecond)
}

func TestServerInitResyncMidMessage(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	cid := h.allocate()
	pkts, _ := fragment(cid, transport.CmdPing, pattern(100))
	h.send(pkts[0])
	nonce := pattern(8)
	h.sendMsg(cid, transport.CmdInit, nonce)
	m := h.recv()
	if m.cid != cid || m.cmd != transport.CmdInit || binary.BigEndian.Uint32(m.data[8:12]) != cid {
		t.Fatalf("resync reply %08x %v % x", m.cid, m.cmd, m.data)
	}
	h.send(pkts[1]) // belongs to the aborted message
	h.expectSilence(20 * time.Millisecond)
	h.send(pkts...)
	h.expect(cid, transport.CmdPing, pattern(100))
}

func TestServerInitResyncMidHandler(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	fh := &fakeHandler{cbor: func(ctx context.Context, _ []byte, _ func(byte)) []byte {
		started <- struct{}{}
		<-ctx.Done()
		close(cancelled)
		return []byte{0x2D}
	}}
	_, h := startServer(t, fh, ServerOptions{KeepaliveInterval: time.Hour})
	cid := h.allocate()
	h.sendMsg(cid, transport.CmdCBOR, []byte{0x02})
	<-started
	h.sendMsg(cid, transport.CmdInit, pattern(8))
	if m := h.recv(); m.cmd != transport.CmdInit {
		t.Fatalf("got %v, want the INIT reply", m.cmd)
	}
	select {
	case <-cancelled:
	case <-time.After(waitLimit):
		t.Fatal("INIT did not cancel the running handler")
	}
	// The abandoned handler's reply is dropped, and the device is free again.
	h.sendMsg(cid, transport.CmdPing, []byte("p"))
	h.expect(cid, transport.CmdPing, []byte("p"))
}

func TestServerMsgTimeout(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{MsgTimeout: 50 * time.Millisecond})
	cid := h.allocate()
	pkts, _ := fragment(cid, transport.CmdPing, pattern(100))
	start := time.Now()
	h.send(pkts[0])
	// No further packet arrives: the timer alone must produce the error.
	h.expectError(cid, ErrMsgTimeout)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("timed out after %v, before MsgTimeout", d)
	}
	h.send(pkts[1]) // too late: a stray
	h.expectSilence(20 * time.Millisecond)
	// Another channel may start at once.
	other := h.allocate()
	h.sendMsg(other, transport.CmdPing, pattern(100))
	h.expect(other, transport.CmdPing, pattern(100))
}

func TestServerLock(t *testing.T) {
	s, h := startServer(t, &fakeHandler{}, ServerOptions{})
	var now atomicTime
	now.set(time.Unix(1000, 0))
	s.mu.Lock()
	s.now = now.get
	s.mu.Unlock()
	a, b := h.allocate(), h.allocate()

	h.sendMsg(a, transport.CmdLock, []byte{11})
	h.expectError(a, ErrInvalidPar)
	h.sendMsg(a, transport.CmdLock, nil)
	h.expectError(a, ErrInvalidLen)
	h.sendMsg(a, transport.CmdLock, []byte{2, 0})
	h.expectError(a, ErrInvalidLen)

	h.sendMsg(a, transport.CmdLock, []byte{2})
	h.expect(a, transport.CmdLock, nil)
	h.sendMsg(b, transport.CmdPing, []byte("b"))
	h.expectError(b, ErrChannelBusy)
	h.sendMsg(b, transport.CmdLock, []byte{1})
	h.expectError(b, ErrChannelBusy)
	h.sendMsg(a, transport.CmdPing, []byte("a"))
	h.expect(a, transport.CmdPing, []byte("a"))
	c := h.allocate() // INIT still works while locked

	now.set(time.Unix(1002, 0)) // the lock has expired
	h.sendMsg(b, transport.CmdPing, []byte("b"))
	h.expect(b, transport.CmdPing, []byte("b"))

	h.sendMsg(c, transport.CmdLock, []byte{10})
	h.expect(c, transport.CmdLock, nil)
	h.sendMsg(a, transport.CmdPing, []byte("a"))
	h.expectError(a, ErrChannelBusy)
	h.sendMsg(c, transport.CmdLock, []byte{0}) // early release
	h.expect(c, transport.CmdLock, nil)
	h.sendMsg(a, transport.CmdPing, []byte("a"))
	h.expect(a, transport.CmdPing, []byte("a"))
}

func TestServerInitFloodBounded(t *testing.T) {
	s, h := startServer(t, &fakeHandler{}, ServerOptions{MaxChannels: 4})
	var cids []uint32
	for range 20 {
		cids = append(cids, h.allocate())
	}
	s.mu.Lock()
	n, m := len(s.channels), len(s.order)
	s.mu.Unlock()
	if n != 4 || m != 4 {
		t.Fatalf("channel table holds %d (order %d), want 4", n, m)
	}
	h.sendMsg(cids[0], transport.CmdPing, []byte("x")) // the oldest was evicted
	h.expectError(cids[0], ErrInvalidChannel)
	for _, cid := range cids[16:] {
		h.sendMsg(cid, transport.CmdPing, []byte("x"))
		h.expect(cid, transport.CmdPing, []byte("x"))
	}
}

func TestServerCommands(t *testing.T) {
	fh := &fakeHandler{}
	_, h := startServer(t, fh, ServerOptions{})
	cid := h.allocate()

	h.sendMsg(cid, transport.CmdCBOR, nil)
	h.expectError(cid, ErrInvalidLen)
	h.sendMsg(cid, transport.CmdWink, nil)
	h.expect(cid, transport.CmdWink, nil)
	if fh.winks.Load() != 1 {
		t.Errorf("Wink called %d times, want 1", fh.winks.Load())
	}
	h.sendMsg(cid, transport.CmdMsg, []byte{0, 3, 0, 0})
	h.expect(cid, transport.CmdMsg, []byte{0, 3, 0, 0, 0x90, 0x00})
	for _, cmd := range []transport.Command{0x02, 0x40, 0x7F, transport.CmdKeepalive, transport.CmdError} {
		h.sendMsg(cid, cmd, []byte{1})
		h.expectError(cid, ErrInvalidCmd)
	}
	h.sendMsg(cid, 0x05, pattern(MaxMessageSize)) // unknown, but read to the end first
	h.expectError(cid, ErrInvalidCmd)

	fh.msg = func(context.Context, []byte, func(byte)) []byte { return nil }
	h.sendMsg(cid, transport.CmdMsg, []byte{0, 3, 0, 0})
	h.expectError(cid, ErrInvalidCmd)
	fh.cbor = func(context.Context, []byte, func(byte)) []byte { return nil }
	h.sendMsg(cid, transport.CmdCBOR, []byte{4})
	h.expectError(cid, ErrOther)
}

func TestServerCapabilities(t *testing.T) {
	fh := &fakeHandler{}
	_, h := startServer(t, fh, ServerOptions{Capabilities: CapNMSG})
	cid := h.allocate()
	for _, cmd := range []transport.Command{transport.CmdWink, transport.CmdMsg, transport.CmdCBOR} {
		h.sendMsg(cid, cmd, []byte{1})
		h.expectError(cid, ErrInvalidCmd)
	}
	if fh.winks.Load() != 0 {
		t.Error("Wink called without CapWink")
	}
}

func TestServerTooLong(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	cid := h.allocate()
	p := initPacket(cid, transport.CmdPing, pattern(initPayloadSize))
	binary.BigEndian.PutUint16(p[5:7], MaxMessageSize+1)
	h.send(p)
	h.expectError(cid, ErrInvalidLen)
	cont, _ := fragment(cid, transport.CmdPing, pattern(100))
	h.send(cont[1]) // nothing is being assembled
	h.expectSilence(20 * time.Millisecond)
}

func TestServerKeepalive(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	fh := &fakeHandler{cbor: blockingCBOR(transport.StatusUPNeeded, started, release)}
	_, h := startServer(t, fh, ServerOptions{KeepaliveInterval: 10 * time.Millisecond})
	cid := h.allocate()
	h.sendMsg(cid, transport.CmdCBOR, []byte{0x01})
	<-started
	for range 3 {
		h.expect(cid, transport.CmdKeepalive, []byte{transport.StatusUPNeeded})
	}
	close(release)
	for {
		m := h.recv()
		if m.cmd == transport.CmdKeepalive {
			continue
		}
		if m.cmd != transport.CmdCBOR || !bytes.Equal(m.data, []byte{0}) {
			t.Fatalf("got %v % x, want the CBOR reply", m.cmd, m.data)
		}
		break
	}
	h.expectSilence(30 * time.Millisecond) // keepalives stop with the handler
}

func TestServerKeepaliveDefaultStatus(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	fh := &fakeHandler{cbor: blockingCBOR(0, started, release)}
	_, h := startServer(t, fh, ServerOptions{KeepaliveInterval: 10 * time.Millisecond})
	cid := h.allocate()
	h.sendMsg(cid, transport.CmdCBOR, []byte{0x01})
	<-started
	h.expect(cid, transport.CmdKeepalive, []byte{transport.StatusProcessing})
	close(release)
}

func TestServerReset(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan struct{})
	fh := &fakeHandler{cbor: func(ctx context.Context, _ []byte, _ func(byte)) []byte {
		started <- struct{}{}
		<-ctx.Done()
		close(cancelled)
		return []byte{0x2D}
	}}
	s, h := startServer(t, fh, ServerOptions{KeepaliveInterval: time.Hour})
	cid := h.allocate()
	h.sendMsg(cid, transport.CmdCBOR, []byte{0x02})
	<-started
	s.Reset()
	<-cancelled
	h.sendMsg(cid, transport.CmdPing, []byte("x"))
	h.expectError(cid, ErrInvalidChannel)
}

func TestServeStops(t *testing.T) {
	host, dev := Pipe()
	defer host.Close()
	s := NewServer(&fakeHandler{}, ServerOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, dev) }()
	h := &rawHost{t: t, conn: host}
	h.allocate()
	if err := s.Serve(ctx, dev); err == nil {
		t.Fatal("second concurrent Serve accepted")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve = %v, want context.Canceled", err)
	}

	// A closed connection ends Serve with an error wrapping ErrClosed.
	go func() { done <- s.Serve(context.Background(), dev) }()
	host.Close()
	if err := <-done; !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Serve = %v, want transport.ErrClosed", err)
	}
}

type atomicTime struct{ v atomic.Int64 }

func (a *atomicTime) set(t time.Time) { a.v.Store(t.UnixNano()) }
func (a *atomicTime) get() time.Time  { return time.Unix(0, a.v.Load()) }
