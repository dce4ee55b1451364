package ctaphid

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ctapkit/ctapkit/transport"
)

// splitPackets cuts b into ReportSize packets; the last one may be short, as a
// transport that trims zero padding delivers it.
func splitPackets(b []byte) [][]byte {
	var pkts [][]byte
	for len(b) > 0 {
		n := min(len(b), ReportSize)
		pkts = append(pkts, b[:n:n])
		b = b[n:]
	}
	return pkts
}

func joinPackets(pkts ...[]byte) []byte { return bytes.Join(pkts, nil) }

func mustFragment(tb testing.TB, cid uint32, cmd transport.Command, data []byte) [][]byte {
	pkts, err := fragment(cid, cmd, data)
	if err != nil {
		tb.Fatal(err)
	}
	return pkts
}

// fuzzSeeds are packet streams a device or a host may see: well-formed
// single- and multi-packet messages, keepalives, errors and the usual breakage.
func fuzzSeeds(tb testing.TB) [][]byte {
	const cid, other = 0x01020304, 0x0a0b0c0d
	multi := mustFragment(tb, cid, transport.CmdCBOR, pattern(200))
	largest := mustFragment(tb, cid, transport.CmdPing, pattern(MaxMessageSize))
	tooLong := initPacket(cid, transport.CmdPing, pattern(initPayloadSize))
	binary.BigEndian.PutUint16(tooLong[5:7], MaxMessageSize+1)
	return [][]byte{
		nil,
		joinPackets(mustFragment(tb, cid, transport.CmdPing, []byte("hello"))...),
		joinPackets(mustFragment(tb, cid, transport.CmdPing, pattern(initPayloadSize))...),
		joinPackets(multi...),
		joinPackets(largest...),
		joinPackets(initPacket(cid, transport.CmdKeepalive, []byte{transport.StatusUPNeeded}), multi[0], multi[1], multi[2], multi[3]),
		initPacket(cid, transport.CmdError, []byte{byte(ErrChannelBusy)}),
		joinPackets(multi[0], initPacket(cid, transport.CmdError, []byte{byte(ErrInvalidSeq)})),
		joinPackets(initPacket(BroadcastCID, transport.CmdInit, pattern(initReplySize)), initPacket(BroadcastCID, transport.CmdInit, pattern(8))),
		joinPackets(multi[0], multi[2], multi[1]),                                                                       // bad sequence
		joinPackets(multi[1], multi[0], multi[0]),                                                                       // stray continuation, restart
		joinPackets(multi[0], mustFragment(tb, other, transport.CmdPing, pattern(70))[0], multi[1], multi[2], multi[3]), // another channel mid-message
		tooLong,
		joinPackets(multi[0], multi[1], multi[2], multi[3][:20]), // trimmed last report
		{0xff, 0xff, 0xff},
	}
}

// roundTripInput turns a fuzz input into a message: CID, command, data.
func roundTripInput(in []byte) (uint32, transport.Command, []byte) {
	var hdr [5]byte
	copy(hdr[:], in)
	data := in[min(len(in), 5):]
	return binary.BigEndian.Uint32(hdr[:4]), transport.Command(hdr[4] &^ initFlag), data[:min(len(data), MaxMessageSize)]
}

func FuzzDeviceAssembler(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		// 1. Arbitrary packets: no panic, and what completes is consistent with
		// the packets that built it.
		var a assembler
		var shadow []byte // payload accepted for the pending message
		var need int
		var cmd transport.Command
		for i, pkt := range splitPackets(in) {
			pendingCID, wasPending := a.pending()
			m, done, code := a.feed(pkt)
			p := normalize(pkt)
			nowCID, nowPending := a.pending()
			if p == nil {
				if done || code != 0 || nowPending != wasPending || nowCID != pendingCID {
					t.Fatalf("packet %d: a runt changed the state", i)
				}
				continue
			}
			cid, init := packetCID(p), isInit(p)
			switch code {
			case 0:
			case ErrInvalidSeq:
				if !wasPending || cid != pendingCID || nowPending {
					t.Fatalf("packet %d: ERR_INVALID_SEQ with pending=%v on %08x, packet on %08x", i, wasPending, pendingCID, cid)
				}
			case ErrChannelBusy:
				if !init || !wasPending || cid == pendingCID || !nowPending || nowCID != pendingCID {
					t.Fatalf("packet %d: ERR_CHANNEL_BUSY in the wrong state", i)
				}
			case ErrInvalidLen:
				if _, n := initHeader(p); !init || wasPending || n <= MaxMessageSize || nowPending {
					t.Fatalf("packet %d: ERR_INVALID_LEN for declared length %d", i, n)
				}
			default:
				t.Fatalf("packet %d: unexpected code %v", i, code)
			}
			if code != 0 && done {
				t.Fatalf("packet %d: both an error and a message", i)
			}
			if a.active && (a.need > MaxMessageSize || len(a.buf) > a.need) {
				t.Fatalf("packet %d: holding %d of %d bytes", i, len(a.buf), a.need)
			}
			if code != 0 {
				continue
			}
			switch {
			case init && !wasPending:
				c, n := initHeader(p)
				payload := p[initHeaderSize : initHeaderSize+min(n, initPayloadSize)]
				if done {
					if m.cid != cid || m.cmd != c || !bytes.Equal(m.data, payload) || len(m.data) != n {
						t.Fatalf("packet %d: single-packet message %08x %v of %d bytes, want %08x %v %d", i, m.cid, m.cmd, len(m.data), cid, c, n)
					}
				} else if !nowPending || nowCID != cid {
					t.Fatalf("packet %d: init packet of %d bytes did not start a message", i, n)
				}
				shadow, need, cmd = append([]byte(nil), payload...), n, c
			case !init && wasPending && cid == pendingCID:
				shadow = append(shadow, p[contHeaderSize:contHeaderSize+min(need-len(shadow), contPayloadSize)]...)
				if done {
					if m.cid != cid || m.cmd != cmd || len(m.data) != need || !bytes.Equal(m.data, shadow) {
						t.Fatalf("packet %d: message %08x %v of %d bytes, declared %08x %v %d", i, m.cid, m.cmd, len(m.data), cid, cmd, need)
					}
					if nowPending {
						t.Fatalf("packet %d: still assembling after completion", i)
					}
				}
			default:
				// A stray continuation: ignored.
				if done || nowPending != wasPending || nowCID != pendingCID {
					t.Fatalf("packet %d: a stray continuation changed the state", i)
				}
			}
		}

		// 2. Round trip: fragment reassembles to the same message.
		cid, c, data := roundTripInput(in)
		pkts := mustFragment(t, cid, c, data)
		a = assembler{}
		for i, p := range pkts {
			m, done, code := a.feed(p)
			if code != 0 || done != (i == len(pkts)-1) {
				t.Fatalf("round trip packet %d of %d: done=%v code=%v", i, len(pkts), done, code)
			}
			if done && (m.cid != cid || m.cmd != c || !bytes.Equal(m.data, data)) {
				t.Fatalf("round trip: got %08x %v %d bytes, sent %08x %v %d bytes", m.cid, m.cmd, len(m.data), cid, c, len(data))
			}
		}
	})
}

func FuzzHostReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		// The header picks the reader's channel and command; the seeds' own
		// channel and the broadcast channel are the interesting ones.
		f.Add(append([]byte{0x01, 0x02, 0x03, 0x04, byte(transport.CmdCBOR), 0}, s...))
		f.Add(append([]byte{0x01, 0x02, 0x03, 0x04, byte(transport.CmdPing), 0}, s...))
		f.Add(append([]byte{0xff, 0xff, 0xff, 0xff, byte(transport.CmdInit), 1}, s...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var hdr [6]byte
		copy(hdr[:], in)
		body := in[min(len(in), len(hdr)):]
		rcid, rcmd := binary.BigEndian.Uint32(hdr[:4]), transport.Command(hdr[4]&^initFlag)

		// 1. Arbitrary packets.
		r := newReplyReader(rcid, rcmd)
		r.skipOther = hdr[5]&1 != 0
		var shadow []byte
		for i, pkt := range splitPackets(body) {
			before := *r
			ev, err := r.feed(pkt)
			p := normalize(pkt)
			if p == nil || packetCID(p) != rcid {
				if ev != replyIgnored || err != nil || r.started != before.started || r.need != before.need ||
					r.seq != before.seq || len(r.buf) != len(before.buf) || r.status != before.status {
					t.Fatalf("packet %d: another channel's packet changed the state (ev %v, err %v)", i, ev, err)
				}
				continue
			}
			init := isInit(p)
			c, n := initHeader(p)
			if err != nil {
				var e Error
				switch {
				case errors.As(err, &e):
					if !init || c != transport.CmdError || byte(e) != p[initHeaderSize] {
						t.Fatalf("packet %d: Error %v from a packet that is not ERROR", i, e)
					}
				case errors.Is(err, errMalformed):
				default:
					t.Fatalf("packet %d: error %v is neither an Error nor malformed", i, err)
				}
				continue
			}
			if r.need > MaxMessageSize || len(r.buf) > r.need {
				t.Fatalf("packet %d: holding %d of %d bytes", i, len(r.buf), r.need)
			}
			switch ev {
			case replyIgnored:
				if init && c != transport.CmdKeepalive && c == rcmd {
					t.Fatalf("packet %d: our own reply's init packet ignored", i)
				}
				if r.started != before.started || len(r.buf) != len(before.buf) {
					t.Fatalf("packet %d: an ignored packet changed the state", i)
				}
			case replyKeepalive:
				if !init || c != transport.CmdKeepalive || r.status != p[initHeaderSize] {
					t.Fatalf("packet %d: keepalive event for % x", i, p[:8])
				}
			case replyProgress, replyDone:
				if init {
					if c != rcmd || before.started {
						t.Fatalf("packet %d: %v packet accepted as a %v reply", i, c, rcmd)
					}
					shadow = append([]byte(nil), p[initHeaderSize:initHeaderSize+min(n, initPayloadSize)]...)
				} else {
					if !before.started || p[4] != before.seq {
						t.Fatalf("packet %d: continuation seq %d accepted (started %v, want seq %d)", i, p[4], before.started, before.seq)
					}
					shadow = append(shadow, p[contHeaderSize:contHeaderSize+min(r.need-len(shadow), contPayloadSize)]...)
				}
				if ev == replyDone {
					if len(r.data()) != r.need || !bytes.Equal(r.data(), shadow) {
						t.Fatalf("packet %d: reply of %d bytes, declared %d", i, len(r.data()), r.need)
					}
					if r.started {
						t.Fatalf("packet %d: still started after completion", i)
					}
				}
			default:
				t.Fatalf("packet %d: unknown event %v", i, ev)
			}
		}

		// 2. Round trip, with a keepalive first and another channel's reply
		// interleaved.
		cid, c, data := roundTripInput(body)
		if c == transport.CmdKeepalive || c == transport.CmdError {
			c = transport.CmdPing
		}
		otherCID := cid ^ 0x80000001
		pkts := mustFragment(t, cid, c, data)
		noise := mustFragment(t, otherCID, c, data)
		r = newReplyReader(cid, c)
		if ev, err := r.feed(initPacket(cid, transport.CmdKeepalive, []byte{transport.StatusUPNeeded})); ev != replyKeepalive || err != nil || r.status != transport.StatusUPNeeded {
			t.Fatalf("round trip keepalive: %v, %v", ev, err)
		}
		for i, p := range pkts {
			if ev, err := r.feed(noise[i]); ev != replyIgnored || err != nil {
				t.Fatalf("round trip: another channel's packet %d: %v, %v", i, ev, err)
			}
			ev, err := r.feed(p)
			want := replyProgress
			if i == len(pkts)-1 {
				want = replyDone
			}
			if ev != want || err != nil {
				t.Fatalf("round trip packet %d of %d: %v, %v", i, len(pkts), ev, err)
			}
		}
		if !bytes.Equal(r.data(), data) {
			t.Fatalf("round trip: got %d bytes % x, sent %d bytes % x", len(r.data()), trunc(r.data()), len(data), trunc(data))
		}
	})
}
