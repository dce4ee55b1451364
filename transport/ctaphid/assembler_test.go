package ctaphid

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/transport"
)

// The Server-level behaviour of these rules (bad sequence, stray continuation,
// busy mid-message, declared length too long, message timeout) is covered in
// server_test.go; these tests pin the pure assembler itself, packet by packet.

type feedStep struct {
	pkt  []byte
	done bool
	code Error
}

func runAssembler(t *testing.T, a *assembler, steps []feedStep) message {
	t.Helper()
	var last message
	for i, s := range steps {
		m, done, code := a.feed(s.pkt)
		if done != s.done || code != s.code {
			t.Fatalf("step %d: done=%v code=%v, want done=%v code=%v", i, done, code, s.done, s.code)
		}
		if done {
			last = m
		}
	}
	return last
}

func TestAssemblerSequenceRules(t *testing.T) {
	const a, b = 0x0a0a0a0a, 0x0b0b0b0b
	msgA, _ := fragment(a, transport.CmdPing, pattern(200)) // init + 3 continuations
	msgB, _ := fragment(b, transport.CmdCBOR, pattern(100)) // init + 1 continuation
	tooLong := initPacket(b, transport.CmdPing, nil)
	binary.BigEndian.PutUint16(tooLong[5:7], MaxMessageSize+1)

	t.Run("bad sequence", func(t *testing.T) {
		var asm assembler
		runAssembler(t, &asm, []feedStep{{pkt: msgA[0]}, {pkt: msgA[1]}, {pkt: msgA[3], code: ErrInvalidSeq},
			{pkt: msgA[2]}, {pkt: msgA[3]}}) // the rest are strays now
		if _, ok := asm.pending(); ok {
			t.Fatal("still assembling after ERR_INVALID_SEQ")
		}
	})
	t.Run("continuation without init", func(t *testing.T) {
		var asm assembler
		m := runAssembler(t, &asm, []feedStep{{pkt: msgA[1]}, {pkt: msgB[1]},
			{pkt: msgB[0]}, {pkt: msgA[1]}, {pkt: msgB[1], done: true}}) // A's continuation mid-B: ignored
		if m.cid != b || m.cmd != transport.CmdCBOR || !bytes.Equal(m.data, pattern(100)) {
			t.Fatalf("got %08x %v % x", m.cid, m.cmd, trunc(m.data))
		}
	})
	t.Run("other channel busy", func(t *testing.T) {
		var asm assembler
		m := runAssembler(t, &asm, []feedStep{{pkt: msgA[0]}, {pkt: msgB[0], code: ErrChannelBusy},
			{pkt: tooLong, code: ErrChannelBusy}, // busy comes before the length check
			{pkt: msgA[1]}, {pkt: msgA[2]}, {pkt: msgA[3], done: true}})
		if m.cid != a || !bytes.Equal(m.data, pattern(200)) {
			t.Fatalf("A's message damaged by B: %08x % x", m.cid, trunc(m.data))
		}
	})
	t.Run("restart on own channel", func(t *testing.T) {
		var asm assembler
		runAssembler(t, &asm, []feedStep{{pkt: msgA[0]}, {pkt: msgA[0], code: ErrInvalidSeq}, {pkt: msgA[1]}})
	})
	t.Run("declared length", func(t *testing.T) {
		var asm assembler
		runAssembler(t, &asm, []feedStep{{pkt: tooLong, code: ErrInvalidLen}, {pkt: msgB[1]}})
		if _, ok := asm.pending(); ok {
			t.Fatal("assembling after ERR_INVALID_LEN")
		}
		largest, _ := fragment(a, transport.CmdPing, pattern(MaxMessageSize))
		if len(largest) != maxSeq+2 {
			t.Fatalf("%d packets for the largest message", len(largest))
		}
		steps := make([]feedStep, len(largest))
		for i, p := range largest {
			steps[i] = feedStep{pkt: p, done: i == len(largest)-1}
		}
		if m := runAssembler(t, &asm, steps); !bytes.Equal(m.data, pattern(MaxMessageSize)) {
			t.Fatal("largest message damaged")
		}
	})
	t.Run("short reports", func(t *testing.T) {
		var asm assembler
		// A transport that trims zero padding: missing bytes count as zeros.
		short := initPacket(a, transport.CmdPing, []byte{1, 2})[:9]
		short[6] = 4
		m := runAssembler(t, &asm, []feedStep{{pkt: []byte{0xff, 0xff, 0xff}}, {pkt: short, done: true}})
		if !bytes.Equal(m.data, []byte{1, 2, 0, 0}) {
			t.Fatalf("data % x", m.data)
		}
	})
}

// TestServerMsgTimeoutWholeMessage checks that MsgTimeout bounds the whole
// message, from its init packet, and not only the gaps between packets.
func TestServerMsgTimeoutWholeMessage(t *testing.T) {
	const timeout = 80 * time.Millisecond
	_, h := startServer(t, &fakeHandler{}, ServerOptions{MsgTimeout: timeout})
	cid := h.allocate()
	pkts, _ := fragment(cid, transport.CmdPing, pattern(300)) // 6 packets
	start := time.Now()
	h.send(pkts[0])
	for _, p := range pkts[1:] {
		time.Sleep(timeout / 3)
		if time.Since(start) >= timeout {
			break
		}
		h.send(p)
	}
	h.expectError(cid, ErrMsgTimeout)
	// A message sent in one go right after works.
	h.sendMsg(cid, transport.CmdPing, pattern(300))
	h.expect(cid, transport.CmdPing, pattern(300))
}
