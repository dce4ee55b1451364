package ctaphid

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/transport"
)

// The device side must survive whatever a host (or several, or a hostile
// program with access to the hidraw node) writes: every bad packet gets the
// CTAPHID error the spec names, or is ignored where the spec says so, and
// afterwards the device still answers a PING. These tests walk through the
// classic attacks one by one; FuzzServerPackets throws random streams at it.

// usable checks that the device still works for cid and for a new channel.
func (r *rawHost) usable(cid uint32) {
	r.t.Helper()
	r.sendMsg(cid, transport.CmdPing, pattern(150))
	r.expect(cid, transport.CmdPing, pattern(150))
	fresh := r.allocate()
	r.sendMsg(fresh, transport.CmdPing, []byte("alive"))
	r.expect(fresh, transport.CmdPing, []byte("alive"))
}

func channelTable(s *Server) (n, order, capacity int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.channels), len(s.order), cap(s.order)
}

// TestHardeningInitFlood: thousands of INITs on the broadcast channel, as a
// misbehaving or hostile program may send, leave the channel table at
// MaxChannels (the oldest channels are evicted) and memory bounded, and the
// device answers the last channels and new ones.
func TestHardeningInitFlood(t *testing.T) {
	s, h := startServer(t, &fakeHandler{}, ServerOptions{})
	first := h.allocate()
	var last []uint32
	const flood = 5000
	for i := range flood {
		nonce := binary.BigEndian.AppendUint64(nil, uint64(i))
		h.sendMsg(BroadcastCID, transport.CmdInit, nonce)
		m := h.recv()
		if m.cid != BroadcastCID || m.cmd != transport.CmdInit || len(m.data) != initReplySize || !bytes.Equal(m.data[:8], nonce) {
			t.Fatalf("INIT %d: reply %08x %v % x", i, m.cid, m.cmd, m.data)
		}
		if i >= flood-3 {
			last = append(last, binary.BigEndian.Uint32(m.data[8:12]))
		}
	}
	n, order, capacity := channelTable(s)
	if n != defaultMaxChannels || order != defaultMaxChannels {
		t.Fatalf("after %d INITs the table holds %d channels (order %d), want %d", flood, n, order, defaultMaxChannels)
	}
	// The eviction list is resliced from the front; appending must reallocate
	// it at about its length rather than keep every ID ever allocated.
	if capacity > 4*defaultMaxChannels {
		t.Errorf("eviction list capacity %d after %d INITs, want O(MaxChannels)", capacity, flood)
	}
	h.sendMsg(first, transport.CmdPing, []byte("x"))
	h.expectError(first, ErrInvalidChannel)
	for _, cid := range last {
		h.usable(cid)
	}

	// Malformed INITs allocate nothing.
	before, _, _ := channelTable(s)
	for range 100 {
		h.sendMsg(BroadcastCID, transport.CmdInit, pattern(7))
		h.expectError(BroadcastCID, ErrInvalidLen)
		h.sendMsg(0, transport.CmdInit, pattern(8))
		h.expectError(0, ErrInvalidChannel)
	}
	// Resynchronising INITs on an existing channel allocate nothing either.
	for range 100 {
		h.sendMsg(last[2], transport.CmdInit, pattern(8))
		h.expect(last[2], transport.CmdInit, append(pattern(8), initReplyTail(last[2])...))
	}
	if after, _, _ := channelTable(s); after != before {
		t.Errorf("table went from %d to %d channels on malformed and resync INITs", before, after)
	}
}

// initReplyTail is the INIT reply after the nonce, for a default Server.
func initReplyTail(cid uint32) []byte {
	return append(binary.BigEndian.AppendUint32(nil, cid), protocolVersion, 0, 0, 0, CapWink|CapCBOR)
}

// TestHardeningInitFloodMidMessage: allocation is never busy, so a flood may
// arrive while a message is being assembled; the message still completes.
func TestHardeningInitFloodMidMessage(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{MsgTimeout: 5 * time.Second})
	a := h.allocate()
	pkts := mustFragment(t, a, transport.CmdPing, pattern(200))
	h.send(pkts[0], pkts[1])
	for range 100 { // fewer than MaxChannels: a stays allocated
		h.allocate()
	}
	h.send(pkts[2:]...)
	h.expect(a, transport.CmdPing, pattern(200))
	h.usable(a)
}

// TestHardeningFloodEvictsLockHolder: a channel that holds the LOCK and is
// evicted by an INIT flood takes its lock with it. Its host re-allocates (it
// gets ERR_INVALID_CHANNEL) and must not find the device locked against itself
// by its own former channel for the rest of the 10 s.
func TestHardeningFloodEvictsLockHolder(t *testing.T) {
	s, h := startServer(t, &fakeHandler{}, ServerOptions{MaxChannels: 8})
	var now atomicTime
	now.set(time.Unix(1000, 0)) // frozen: the lock cannot expire by itself
	s.mu.Lock()
	s.now = now.get
	s.mu.Unlock()
	holder := h.allocate()
	h.sendMsg(holder, transport.CmdLock, []byte{10})
	h.expect(holder, transport.CmdLock, nil)
	other := h.allocate()
	h.sendMsg(other, transport.CmdPing, []byte("x"))
	h.expectError(other, ErrChannelBusy)
	for range 8 {
		h.allocate()
	}
	h.sendMsg(holder, transport.CmdPing, []byte("x"))
	h.expectError(holder, ErrInvalidChannel)
	h.usable(h.allocate())
}

// TestHardeningInterleavedChannels: two hosts writing multi-packet messages at
// the same time. The device has one receive buffer: the second channel's init
// packet gets ERR_CHANNEL_BUSY, its continuations are ignored, the first
// message completes, and the second host's retry works.
func TestHardeningInterleavedChannels(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	a, b := h.allocate(), h.allocate()
	pa := mustFragment(t, a, transport.CmdPing, pattern(300))
	pb := mustFragment(t, b, transport.CmdCBOR, pattern(300))
	if len(pa) != len(pb) {
		t.Fatal("messages of one size should fragment alike")
	}
	for i := range pa {
		h.send(pa[i], pb[i])
		if i == 0 {
			h.expectError(b, ErrChannelBusy)
		}
	}
	h.expect(a, transport.CmdPing, pattern(300))
	h.expectSilence(20 * time.Millisecond) // b's continuations were strays

	// The other way round, with b's continuations carrying exactly the sequence
	// numbers a's message expects: they still belong to b and are ignored.
	for i := range pb {
		h.send(pb[i], pa[i])
		if i == 0 {
			h.expectError(a, ErrChannelBusy)
		}
	}
	h.expect(b, transport.CmdCBOR, pattern(300))
	h.usable(a)
	h.usable(b)

	// A single-packet request from b in the middle of a's message is busy too,
	// and does not disturb a's message.
	h.send(pa[0], pa[1])
	h.sendMsg(b, transport.CmdPing, []byte("b"))
	h.expectError(b, ErrChannelBusy)
	h.sendMsg(b, transport.CmdCancel, nil) // CANCEL from b: not answered, a unaffected
	h.send(pa[2:]...)
	h.expect(a, transport.CmdPing, pattern(300))
	h.expectSilence(20 * time.Millisecond)
	h.usable(b)
}

// TestHardeningSequence: every kind of bad sequence number ends the message
// with ERR_INVALID_SEQ on its channel, and the rest of it is ignored.
func TestHardeningSequence(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	cid := h.allocate()
	pkts := mustFragment(t, cid, transport.CmdPing, pattern(300)) // init + 5 continuations
	withSeq := func(p []byte, seq byte) []byte {
		q := append([]byte(nil), p...)
		q[4] = seq
		return q
	}
	for _, tc := range []struct {
		name string
		pkts [][]byte
		rest [][]byte // sent after the error: strays
	}{
		{"skipped", [][]byte{pkts[0], pkts[1], pkts[3]}, pkts[4:]},
		{"repeated", [][]byte{pkts[0], pkts[1], pkts[1]}, pkts[2:]},
		{"starts at 1", [][]byte{pkts[0], pkts[2]}, pkts[3:]},
		{"backwards", [][]byte{pkts[0], pkts[1], pkts[2], pkts[1]}, pkts[3:]},
		{"last seq", [][]byte{pkts[0], withSeq(pkts[1], maxSeq)}, pkts[2:]},
		{"wrapped", [][]byte{pkts[0], pkts[1], pkts[2], withSeq(pkts[3], 0)}, pkts[4:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			h.send(tc.pkts...)
			h.expectError(cid, ErrInvalidSeq)
			h.send(tc.rest...)
			h.expectSilence(20 * time.Millisecond)
			h.usable(cid)
		})
	}
	h.t = t
	// A continuation on a channel that is not assembling anything, even the
	// broadcast and reserved channels: ignored.
	for _, c := range []uint32{cid, 0, BroadcastCID, 0xdeadbeef} {
		p := append([]byte(nil), pkts[1]...)
		binary.BigEndian.PutUint32(p, c)
		h.send(p)
	}
	h.expectSilence(20 * time.Millisecond)
	h.usable(cid)
}

// TestHardeningOversizedLengths: a declared length beyond what 128
// continuations can carry is ERR_INVALID_LEN at once, whatever the command, and
// the continuations that follow are strays. Short declared lengths on commands
// with fixed sizes are ERR_INVALID_LEN too.
func TestHardeningOversizedLengths(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	cid := h.allocate()
	cont := mustFragment(t, cid, transport.CmdPing, pattern(200))[1:]
	for _, cmd := range []transport.Command{transport.CmdPing, transport.CmdCBOR, transport.CmdMsg, transport.CmdWink, transport.CmdLock, 0x55} {
		for _, n := range []int{MaxMessageSize + 1, 0x7FFF, 0xFFFF} {
			p := initPacket(cid, cmd, pattern(initPayloadSize))
			binary.BigEndian.PutUint16(p[5:7], uint16(n))
			h.send(p)
			h.expectError(cid, ErrInvalidLen)
			h.send(cont...)
			h.expectSilence(5 * time.Millisecond)
		}
	}
	// INIT: 8 bytes exactly, on the broadcast channel and on an allocated one.
	for _, n := range []int{0, 9, initPayloadSize + 1, 0xFFFF} {
		for _, c := range []uint32{BroadcastCID, cid} {
			p := initPacket(c, transport.CmdInit, pattern(8))
			binary.BigEndian.PutUint16(p[5:7], uint16(n))
			h.send(p)
			h.expectError(c, ErrInvalidLen)
		}
	}
	// The largest message is fine.
	h.sendMsg(cid, transport.CmdPing, pattern(MaxMessageSize))
	h.expect(cid, transport.CmdPing, pattern(MaxMessageSize))
	h.usable(cid)
}

// TestHardeningAfterTimeout: the rest of a message that arrives after
// ERR_MSG_TIMEOUT is ignored, whether the channel is idle, sends a new message
// or another channel has started one meanwhile; the timeout comes about
// MsgTimeout after the message started, as on real keys.
func TestHardeningAfterTimeout(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{}) // the default 500 ms
	a, b := h.allocate(), h.allocate()
	pkts := mustFragment(t, a, transport.CmdPing, pattern(300))

	start := time.Now()
	h.send(pkts[0], pkts[1])
	h.sendMsg(b, transport.CmdPing, []byte("b")) // the unfinished message holds the device
	h.expectError(b, ErrChannelBusy)
	h.expectError(a, ErrMsgTimeout)
	if d := time.Since(start); d < defaultMsgTimeout || d > defaultMsgTimeout+400*time.Millisecond {
		t.Errorf("ERR_MSG_TIMEOUT after %v, want about %v", d, defaultMsgTimeout)
	}
	h.send(pkts[2:]...) // too late: strays
	h.expectSilence(20 * time.Millisecond)
	h.usable(a)
	h.usable(b)

	// Late continuations while another channel assembles its own message do not
	// touch that message.
	short := ServerOptions{MsgTimeout: 30 * time.Millisecond}
	_, h = startServer(t, &fakeHandler{}, short)
	a, b = h.allocate(), h.allocate()
	pkts = mustFragment(t, a, transport.CmdPing, pattern(300))
	h.send(pkts[0])
	h.expectError(a, ErrMsgTimeout)
	pb := mustFragment(t, b, transport.CmdPing, pattern(200)) // init + 3 continuations
	h.send(pb[0], pkts[1], pb[1], pkts[2], pb[2], pkts[3], pb[3])
	h.expect(b, transport.CmdPing, pattern(200))
	h.send(pkts[4:]...)
	h.expectSilence(20 * time.Millisecond)
	h.usable(a)
	h.usable(b)

	// A message that keeps trickling in is timed from its start, not from its
	// last packet, so a slow host cannot hold the device for longer: sent over
	// 50 ms, a message ends in ERR_MSG_TIMEOUT and its last packet is a stray.
	h.send(pkts[0])
	for _, p := range pkts[1:] {
		time.Sleep(10 * time.Millisecond)
		h.send(p)
	}
	h.expectError(a, ErrMsgTimeout)
	h.expectSilence(20 * time.Millisecond)
	h.usable(a)
}

// TestHardeningRunts: reports shorter than a header are line noise, reports
// that carry a header but are short are zero-padded.
func TestHardeningRunts(t *testing.T) {
	_, h := startServer(t, &fakeHandler{}, ServerOptions{})
	cid := h.allocate()
	h.send(nil, []byte{}, []byte{0xff}, []byte{0xff, 0xff, 0xff, 0xff})
	h.expectSilence(20 * time.Millisecond)
	p := initPacket(cid, transport.CmdPing, []byte("ab"))
	h.send(p[:initHeaderSize+2]) // a trimmed report
	h.expect(cid, transport.CmdPing, []byte("ab"))
	long := append(initPacket(cid, transport.CmdPing, []byte("cd")), pattern(200)...)
	h.send(long) // an oversized report: the rest is not part of the message
	h.expect(cid, transport.CmdPing, []byte("cd"))
	h.usable(cid)
}

// frameChecker follows the server's output packet by packet and checks that it
// is a sequence of well-formed messages: an init packet with a reply command and
// a possible length, then its continuations in order on the same channel. The
// Server writes each message whole under its lock, so messages never interleave.
type frameChecker struct {
	cur     *message
	need    int
	nextSeq byte
}

func (c *frameChecker) feed(pkt []byte) (message, bool, error) {
	if len(pkt) != ReportSize {
		return message{}, false, fmt.Errorf("report of %d bytes", len(pkt))
	}
	cid := packetCID(pkt)
	if c.cur != nil {
		if isInit(pkt) || cid != c.cur.cid || pkt[4] != c.nextSeq {
			return message{}, false, fmt.Errorf("packet % x inside a %v message on %08x, want continuation %d", pkt[:5], c.cur.cmd, c.cur.cid, c.nextSeq)
		}
		c.nextSeq++
		c.cur.data = append(c.cur.data, pkt[contHeaderSize:contHeaderSize+min(c.need-len(c.cur.data), contPayloadSize)]...)
	} else {
		if !isInit(pkt) {
			return message{}, false, fmt.Errorf("continuation % x outside a message", pkt[:5])
		}
		cmd, n := initHeader(pkt)
		if n > MaxMessageSize {
			return message{}, false, fmt.Errorf("%v reply declares %d bytes", cmd, n)
		}
		c.cur, c.need, c.nextSeq = &message{cid: cid, cmd: cmd}, n, 0
		c.cur.data = append([]byte(nil), pkt[initHeaderSize:initHeaderSize+min(n, initPayloadSize)]...)
	}
	if len(c.cur.data) < c.need {
		return message{}, false, nil
	}
	m := *c.cur
	c.cur = nil
	return m, true, checkReply(m)
}

// checkReply checks what a device may send: its own replies with their fixed
// sizes, echoes of requests, and nothing on the broadcast channel but INIT
// replies and errors.
func checkReply(m message) error {
	switch m.cmd {
	case transport.CmdError:
		if len(m.data) != 1 {
			return fmt.Errorf("ERROR of %d bytes", len(m.data))
		}
		if _, known := errorNames[Error(m.data[0])]; !known {
			return fmt.Errorf("ERROR %v", Error(m.data[0]))
		}
	case transport.CmdKeepalive:
		if len(m.data) != 1 || (m.data[0] != transport.StatusProcessing && m.data[0] != transport.StatusUPNeeded) {
			return fmt.Errorf("KEEPALIVE % x", m.data)
		}
	case transport.CmdInit:
		if len(m.data) != initReplySize || m.data[12] != protocolVersion {
			return fmt.Errorf("INIT reply % x", m.data)
		}
		if c := binary.BigEndian.Uint32(m.data[8:12]); c == 0 || c == BroadcastCID {
			return fmt.Errorf("INIT allocated %08x", c)
		}
	case transport.CmdWink, transport.CmdLock:
		if len(m.data) != 0 {
			return fmt.Errorf("%v reply of %d bytes", m.cmd, len(m.data))
		}
	case transport.CmdPing, transport.CmdMsg, transport.CmdCBOR:
		if len(m.data) == 0 && m.cmd != transport.CmdPing {
			return fmt.Errorf("empty %v reply", m.cmd)
		}
	default:
		return fmt.Errorf("reply with command %v", m.cmd)
	}
	if m.cid == BroadcastCID && m.cmd != transport.CmdInit && m.cmd != transport.CmdError {
		return fmt.Errorf("%v reply on the broadcast channel", m.cmd)
	}
	return nil
}

// FuzzServerPackets drives a whole Server, not just its assembler: any packet
// stream on one or two allocated channels, with LOCK, CANCEL, INIT and a
// handler that waits for a "touch". Properties: no panic, Serve keeps running,
// every reply is a well-formed frame, and afterwards a new host can allocate a
// channel and PING.
func FuzzServerPackets(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(byte(0), s)
		f.Add(byte(3), s)
	}
	const cid = 0x01020304 // the first channel a seqReader-driven Server allocates
	lock := joinPackets(initPacket(cid, transport.CmdLock, []byte{10}), initPacket(cid, transport.CmdPing, []byte("x")))
	f.Add(byte(0), lock)
	slow := joinPackets(initPacket(cid, transport.CmdCBOR, []byte{0xFF, 1}), initPacket(cid, transport.CmdCancel, nil),
		initPacket(cid, transport.CmdCBOR, []byte{0xFF, 2}), initPacket(cid, transport.CmdInit, pattern(8)))
	f.Add(byte(2), slow)
	f.Add(byte(1), joinPackets(mustFragment(f, 0x77777777, transport.CmdMsg, pattern(100))...))

	f.Fuzz(func(t *testing.T, flags byte, in []byte) {
		h := &fakeHandler{cbor: func(ctx context.Context, req []byte, status func(byte)) []byte {
			if req[0] != 0xFF {
				return append([]byte(nil), req...)
			}
			// A request that waits for a touch that never comes, until cancelled.
			status(transport.StatusUPNeeded)
			select {
			case <-ctx.Done():
				return []byte{0x2D}
			case <-time.After(30 * time.Millisecond):
				return []byte{0x2F}
			}
		}}
		opts := ServerOptions{
			Rand:              &seqReader{},
			MsgTimeout:        20 * time.Millisecond,
			KeepaliveInterval: 5 * time.Millisecond,
			AcceptUnallocated: flags&1 != 0,
			MaxChannels:       1 + int(flags>>4),
		}
		host, dev := Pipe()
		defer host.Close()
		s := NewServer(h, opts)
		var now atomicTime
		now.set(time.Unix(1000, 0))
		s.now = now.get
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- s.Serve(ctx, dev) }()
		defer func() {
			cancel()
			if err := <-served; err != context.Canceled {
				t.Errorf("Serve = %v, want context.Canceled", err)
			}
		}()

		// Every reply goes through the frame checker; complete messages come out.
		msgs := make(chan message, 1<<16)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(msgs)
			var fc frameChecker
			for {
				p, err := host.ReadPacket(ctx)
				if err != nil {
					return
				}
				m, done, err := fc.feed(p)
				if err != nil {
					t.Errorf("malformed reply: %v", err)
					return
				}
				if done {
					msgs <- m
				}
			}
		}()
		defer wg.Wait()
		defer cancel()

		send := func(p []byte) {
			if err := host.WritePacket(p); err != nil {
				t.Fatalf("writing: %v", err)
			}
		}
		// await returns the first message for which match says true.
		await := func(what string, match func(message) bool) message {
			timeout := time.After(waitLimit)
			for {
				select {
				case m, ok := <-msgs:
					if !ok {
						t.Fatalf("waiting for %s: reader stopped", what)
					}
					if match(m) {
						return m
					}
				case <-timeout:
					t.Fatalf("no %s within %v", what, waitLimit)
				}
			}
		}
		allocate := func(nonce []byte) uint32 {
			send(initPacket(BroadcastCID, transport.CmdInit, nonce))
			m := await("INIT reply", func(m message) bool {
				return m.cid == BroadcastCID && m.cmd == transport.CmdInit && bytes.Equal(m.data[:8], nonce)
			})
			return binary.BigEndian.Uint32(m.data[8:12])
		}
		if got := allocate([]byte("fuzzhost")); got != cid {
			t.Fatalf("first channel %08x, want %08x", got, cid)
		}
		if flags&2 != 0 {
			allocate([]byte("fuzzhst2"))
		}

		pkts := splitPackets(in)
		if len(pkts) > 512 {
			pkts = pkts[:512]
		}
		for _, p := range pkts {
			send(p)
		}

		// A new host gets through once locks have expired and the device has
		// finished what the stream left it doing: pending messages time out,
		// handlers end; busy is retried as hosts do.
		// A nonce the stream cannot have guessed, so that its reply is ours.
		nonce := make([]byte, initNonceSize)
		if _, err := rand.Read(nonce); err != nil {
			t.Fatal(err)
		}
		final := allocate(nonce)
		// The Server has read the whole stream now: let any lock expire.
		now.set(time.Unix(1000+maxLockSeconds+1, 0))
		deadline := time.Now().Add(waitLimit)
		for {
			send(initPacket(final, transport.CmdPing, []byte("alive")))
			m := await("PING reply", func(m message) bool { return m.cid == final && m.cmd != transport.CmdKeepalive })
			if m.cmd == transport.CmdPing && bytes.Equal(m.data, []byte("alive")) {
				break
			}
			if m.cmd != transport.CmdError || Error(m.data[0]) != ErrChannelBusy || time.Now().After(deadline) {
				t.Fatalf("final PING: %v % x", m.cmd, m.data)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
}
