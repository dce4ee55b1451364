package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// CTAPHID cases (CTAP 2.1 §11.2) speak raw 64-byte reports through Target.HID, as
// a second program on the same key would: they allocate their own channels, so
// traffic of other channels (the suite's own client, other programs) is skipped,
// and every wait is bounded.

// Sizes of the framing, as the cases build packets themselves.
const (
	hidReport       = ctaphid.ReportSize
	hidInitHeader   = 7
	hidContHeader   = 5
	hidInitPayload  = hidReport - hidInitHeader
	hidContPayload  = hidReport - hidContHeader
	hidMaxMessage   = ctaphid.MaxMessageSize
	hidInitReplyLen = 17
)

// Bounds of the waits. A device answers framing errors and PINGs at once; these
// only keep a broken device from hanging a case until the case deadline.
const (
	hidReplyWait = 2 * time.Second
	// hidQuietWait is how long a case listens for a reply that must not come.
	hidQuietWait = 150 * time.Millisecond
	// hidMsgTimeoutMax is the longest a device may take to give up on a message
	// whose continuation never comes (U2F HID's U2FHID_TRANS_TIMEOUT, 3000 ms);
	// CTAP gives no number.
	hidMsgTimeoutMax = 3 * time.Second
	// hidCancelMax is the CANCEL-to-KEEPALIVE_CANCEL bound the suite enforces.
	hidCancelMax = 50 * time.Millisecond
	// hidKeepaliveMax is the longest gap between KEEPALIVEs while a request waits.
	hidKeepaliveMax = 500 * time.Millisecond
	// hidPresenceWait is how long a case waits for a request to show that it waits
	// for a touch (KEEPALIVE UPNEEDED), and hidKeepaliveWatch how long the
	// keepalive case watches the wait before it cancels.
	hidPresenceWait   = 2 * time.Second
	hidKeepaliveWatch = 1500 * time.Millisecond
)

// hidUnknownCmd is a command byte that no CTAPHID version defines and that lies
// below the vendor range 0x40..0x7F.
const hidUnknownCmd transport.Command = 0x21

// hidMsg is one message read from the device.
type hidMsg struct {
	cid  uint32
	cmd  transport.Command
	data []byte
	at   time.Time // when its init packet arrived
}

func (m hidMsg) String() string {
	switch m.cmd {
	case transport.CmdError:
		if len(m.data) == 1 {
			return "ERROR " + ctaphid.Error(m.data[0]).Error()
		}
		return fmt.Sprintf("ERROR with %d payload bytes", len(m.data))
	case transport.CmdKeepalive:
		if len(m.data) == 1 {
			return fmt.Sprintf("KEEPALIVE 0x%02x", m.data[0])
		}
	case transport.CmdCBOR:
		if len(m.data) > 0 {
			return fmt.Sprintf("CBOR reply with status %s", ctap2.StatusError(m.data[0]).Name())
		}
	}
	return fmt.Sprintf("%v reply of %d bytes", m.cmd, len(m.data))
}

// hidInitPacket builds an init packet declaring length n and carrying the start
// of payload, zero-padded.
func hidInitPacket(cid uint32, cmd transport.Command, n int, payload []byte) []byte {
	p := make([]byte, hidReport)
	binary.BigEndian.PutUint32(p, cid)
	p[4] = byte(cmd) | 0x80
	binary.BigEndian.PutUint16(p[5:7], uint16(n))
	copy(p[hidInitHeader:], payload)
	return p
}

// hidContPacket builds a continuation packet.
func hidContPacket(cid uint32, seq byte, payload []byte) []byte {
	p := make([]byte, hidReport)
	binary.BigEndian.PutUint32(p, cid)
	p[4] = seq
	copy(p[hidContHeader:], payload)
	return p
}

// hidFragment splits a message into its packets.
func hidFragment(cid uint32, cmd transport.Command, data []byte) [][]byte {
	pkts := [][]byte{hidInitPacket(cid, cmd, len(data), data)}
	rest := data[min(len(data), hidInitPayload):]
	for seq := 0; len(rest) > 0; seq++ {
		pkts = append(pkts, hidContPacket(cid, byte(seq), rest))
		rest = rest[min(len(rest), hidContPayload):]
	}
	return pkts
}

func hidRandom(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// hidSession is a case's raw access to the device.
type hidSession struct {
	t    *T
	link HIDLink
}

// hidOpen skips the case without raw CTAPHID access.
func hidOpen(t *T) *hidSession {
	return &hidSession{t: t, link: t.RequireHID()}
}

func (h *hidSession) write(p []byte) {
	if err := h.link.WritePacket(p); err != nil {
		h.t.Fatalf("writing a report: %v", err)
	}
}

// send writes a whole message.
func (h *hidSession) send(cid uint32, cmd transport.Command, data []byte) {
	for _, p := range hidFragment(cid, cmd, data) {
		h.write(p)
	}
}

// read returns the next message on one of cids, reassembled, within d. ok is
// false when none came in time. Keepalives are returned like any message.
func (h *hidSession) read(d time.Duration, cids ...uint32) (m hidMsg, ok bool) {
	ctx, cancel := context.WithTimeout(h.t.Context(), d)
	defer cancel()
	var cur *hidMsg
	need, seq := 0, byte(0)
	for {
		p, err := h.link.ReadPacket(ctx)
		if err != nil {
			if h.t.Context().Err() != nil {
				h.t.Fatalf("the case ran out of time waiting for the device")
			}
			if ctx.Err() != nil {
				return hidMsg{}, false
			}
			h.t.Fatalf("reading a report: %v", err)
		}
		if len(p) < hidContHeader {
			continue
		}
		if len(p) < hidReport {
			p = append(p, make([]byte, hidReport-len(p))...)
		}
		cid := binary.BigEndian.Uint32(p)
		mine := false
		for _, c := range cids {
			mine = mine || c == cid
		}
		if !mine {
			continue
		}
		if p[4]&0x80 != 0 {
			if cur != nil {
				h.t.Fatalf("the device started a new message on channel %08x before finishing its %v reply", cid, cur.cmd)
			}
			n := int(binary.BigEndian.Uint16(p[5:7]))
			m := hidMsg{cid: cid, cmd: transport.Command(p[4] &^ 0x80), at: time.Now()}
			if n <= hidInitPayload {
				m.data = append([]byte(nil), p[hidInitHeader:hidInitHeader+n]...)
				return m, true
			}
			if n > hidMaxMessage {
				h.t.Fatalf("the device declared a %v reply of %d bytes, more than the %d CTAPHID can carry", m.cmd, n, hidMaxMessage)
			}
			m.data = append(make([]byte, 0, n), p[hidInitHeader:]...)
			cur, need, seq = &m, n, 0
			continue
		}
		if cur == nil || cid != cur.cid {
			continue // a continuation of a message this read did not see start
		}
		if p[4] != seq {
			h.t.Fatalf("the device sent continuation sequence %d of its %v reply, expected %d", p[4], cur.cmd, seq)
		}
		seq++
		cur.data = append(cur.data, p[hidContHeader:hidContHeader+min(need-len(cur.data), hidContPayload)]...)
		if len(cur.data) == need {
			return *cur, true
		}
	}
}

// next returns the next message on cid other than a keepalive, within d; nothing
// in time ends the case.
func (h *hidSession) next(cid uint32, what string) hidMsg {
	deadline := time.Now().Add(hidReplyWait)
	for {
		m, ok := h.read(time.Until(deadline), cid)
		if !ok {
			h.t.Fatalf("%s: observed no reply within %v", what, hidReplyWait)
		}
		if m.cmd != transport.CmdKeepalive {
			return m
		}
	}
}

// expect returns the payload of the reply to a cmd request on cid; anything else
// ends the case.
func (h *hidSession) expect(cid uint32, cmd transport.Command, what string) []byte {
	m := h.next(cid, what)
	if m.cmd != cmd {
		h.t.Fatalf("%s: observed %s, expected a %v reply", what, m, cmd)
	}
	return m.data
}

// expectError checks that the next message on cid is ERROR with code.
func (h *hidSession) expectError(cid uint32, code ctaphid.Error, what string) bool {
	m := h.next(cid, what)
	if m.cmd != transport.CmdError || len(m.data) != 1 || ctaphid.Error(m.data[0]) != code {
		h.t.Errorf("%s: observed %s, expected ERROR %s", what, m, code.Error())
		return false
	}
	return true
}

// ping sends a PING on cid and checks the echo.
func (h *hidSession) ping(cid uint32, data []byte, what string) bool {
	h.send(cid, transport.CmdPing, data)
	got := h.expect(cid, transport.CmdPing, what)
	if !bytes.Equal(got, data) {
		h.t.Errorf("%s: PING of %d bytes echoed as %d bytes that differ", what, len(data), len(got))
		return false
	}
	return true
}

// hidInitReply is a decoded INIT reply.
type hidInitReply struct {
	raw      []byte
	cid      uint32
	version  byte
	caps     byte
	received uint32 // the channel the reply came on
}

// init sends INIT on cid with a fresh nonce and returns the reply that echoes it,
// skipping other programs' INIT replies on the broadcast channel.
func (h *hidSession) init(cid uint32) hidInitReply {
	nonce := hidRandom(8)
	h.send(cid, transport.CmdInit, nonce)
	deadline := time.Now().Add(hidReplyWait)
	for {
		m, ok := h.read(time.Until(deadline), cid)
		if !ok {
			h.t.Fatalf("INIT on channel %08x: observed no reply within %v", cid, hidReplyWait)
		}
		switch {
		case m.cmd == transport.CmdKeepalive:
			continue
		case m.cmd == transport.CmdInit && len(m.data) >= 8 && !bytes.Equal(m.data[:8], nonce):
			continue // another program's INIT
		case m.cmd != transport.CmdInit:
			h.t.Fatalf("INIT on channel %08x: observed %s, expected an INIT reply", cid, m)
		case len(m.data) < hidInitReplyLen:
			h.t.Fatalf("INIT reply of %d bytes, expected %d", len(m.data), hidInitReplyLen)
		}
		return hidInitReply{raw: m.data, cid: binary.BigEndian.Uint32(m.data[8:12]),
			version: m.data[12], caps: m.data[16], received: m.cid}
	}
}

// alloc allocates a fresh channel.
func (h *hidSession) alloc() (uint32, byte) {
	r := h.init(ctaphid.BroadcastCID)
	if r.cid == 0 || r.cid == ctaphid.BroadcastCID {
		h.t.Fatalf("INIT allocated channel %08x, which is reserved", r.cid)
	}
	return r.cid, r.caps
}

// resync aborts whatever a case left on cid (INIT on the channel), without ending
// the case on failure: it runs from cleanups.
func (h *hidSession) resync(cid uint32) {
	nonce := hidRandom(8)
	for _, p := range hidFragment(cid, transport.CmdInit, nonce) {
		if h.link.WritePacket(p) != nil {
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), hidReplyWait)
	defer cancel()
	for {
		p, err := h.link.ReadPacket(ctx)
		if err != nil {
			return
		}
		if len(p) >= 15 && binary.BigEndian.Uint32(p) == cid && p[4] == byte(transport.CmdInit)|0x80 && bytes.Equal(p[7:15], nonce) {
			return
		}
	}
}

// unallocatedCID returns a channel ID that is neither reserved nor one of used.
func unallocatedCID(used ...uint32) uint32 {
	for {
		c := binary.BigEndian.Uint32(hidRandom(4))
		ok := c != 0 && c != ctaphid.BroadcastCID
		for _, u := range used {
			ok = ok && c != u
		}
		if ok {
			return c
		}
	}
}

// hidWait is a request that waits for a touch.
type hidWait struct {
	h          *hidSession
	cid        uint32
	sent       time.Time
	keepalives []hidMsg
	reply      *hidMsg // the request's answer, once it came
}

// presenceRequest is a CTAP2 request that waits for a touch and changes nothing:
// authenticatorSelection on a FIDO_2_1 key, else a makeCredential for a throwaway
// RP (a CTAP 2.0 key has no selection command).
func (h *hidSession) presenceRequest() (string, []byte) {
	if h.t.Info().HasVersion("FIDO_2_1") {
		return "authenticatorSelection", []byte{byte(ctap2.CmdSelection)}
	}
	body, err := ctap2.Marshal(&ctap2.MakeCredentialRequest{
		ClientDataHash:   hidRandom(32),
		RP:               &ctap2.RPEntity{ID: "ctaphid.conformance.invalid"},
		User:             &ctap2.UserEntity{ID: hidRandom(16), Name: "ctaphid"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
	})
	if err != nil {
		h.t.Fatalf("encoding makeCredential: %v", err)
	}
	return "makeCredential", append([]byte{byte(ctap2.CmdMakeCredential)}, body...)
}

// startPresenceWait sends a request that needs a touch on a fresh channel (or on
// cid, when not zero) and returns once the device shows that it waits: KEEPALIVE
// UPNEEDED, or only PROCESSING for hidPresenceWait. A device that answers at once
// grants presence by itself (the softkey with presence "auto"), and the case is
// skipped: there is no wait to observe.
func (h *hidSession) startPresenceWait(cid uint32) *hidWait {
	var caps byte
	if cid == 0 {
		cid, caps = h.alloc()
	} else {
		caps = h.init(cid).caps
	}
	if caps&ctaphid.CapCBOR == 0 {
		h.t.Skipf("the key has no CTAPHID_CBOR capability: no CTAP2 request waits for a touch")
	}
	name, req := h.presenceRequest()
	w := &hidWait{h: h, cid: cid}
	h.t.Cleanup(w.abort)
	h.send(cid, transport.CmdCBOR, req)
	w.sent = time.Now()
	deadline := w.sent.Add(hidPresenceWait)
	for {
		m, ok := h.read(time.Until(deadline), cid)
		if !ok {
			if len(w.keepalives) == 0 {
				h.t.Fatalf("%s: observed neither a reply nor a KEEPALIVE within %v", name, hidPresenceWait)
			}
			h.t.Logf("%s: only KEEPALIVE PROCESSING for %v; taking it as a wait", name, hidPresenceWait)
			return w
		}
		switch m.cmd {
		case transport.CmdKeepalive:
			w.keepalives = append(w.keepalives, m)
			if len(m.data) == 1 && m.data[0] == transport.StatusUPNeeded {
				h.t.Logf("%s: KEEPALIVE UPNEEDED after %v", name, m.at.Sub(w.sent).Round(time.Millisecond))
				return w
			}
		case transport.CmdCBOR:
			w.reply = &m
			h.t.Skipf("the key answered %s at once (%s) without waiting for a touch: it grants presence by itself, so there is no wait to observe", name, m)
		default:
			w.reply = &m
			h.t.Fatalf("%s: observed %s, expected KEEPALIVE while the key waits for a touch", name, m)
		}
	}
}

// cancel sends CTAPHID_CANCEL on the waiting channel and returns the request's
// answer and how long it took after the CANCEL.
func (w *hidWait) cancel() (hidMsg, time.Duration) {
	w.h.write(hidInitPacket(w.cid, transport.CmdCancel, 0, nil))
	sent := time.Now()
	m := w.finish("after CANCEL")
	return m, m.at.Sub(sent)
}

// finish reads the request's answer, recording keepalives.
func (w *hidWait) finish(what string) hidMsg {
	deadline := time.Now().Add(hidReplyWait)
	for {
		m, ok := w.h.read(time.Until(deadline), w.cid)
		if !ok {
			w.h.t.Fatalf("%s: observed no reply within %v", what, hidReplyWait)
		}
		if m.cmd == transport.CmdKeepalive {
			w.keepalives = append(w.keepalives, m)
			continue
		}
		w.reply = &m
		return m
	}
}

// abort, a cleanup, cancels a wait the case left running and resynchronises the
// channel, so that the device is idle for the next case.
func (w *hidWait) abort() {
	if w.reply != nil {
		return
	}
	w.h.link.WritePacket(hidInitPacket(w.cid, transport.CmdCancel, 0, nil))
	w.h.resync(w.cid)
}

func init() {
	register(
		Case{ID: "HID-1", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.1.3",
			Description: "INIT on the broadcast channel allocates a channel: 17-byte reply with the nonce, a new CID and protocol version 2",
			Run: func(t *T) {
				h := hidOpen(t)
				nonce := hidRandom(8)
				h.send(ctaphid.BroadcastCID, transport.CmdInit, nonce)
				deadline := time.Now().Add(hidReplyWait)
				for {
					m, ok := h.read(time.Until(deadline), ctaphid.BroadcastCID)
					if !ok {
						t.Fatalf("INIT: observed no reply with our nonce within %v", hidReplyWait)
					}
					if m.cmd == transport.CmdInit && len(m.data) >= 8 && !bytes.Equal(m.data[:8], nonce) {
						continue // another program's INIT
					}
					if m.cmd != transport.CmdInit {
						t.Fatalf("INIT: observed %s, expected an INIT reply on the broadcast channel", m)
					}
					if len(m.data) != hidInitReplyLen {
						t.Errorf("INIT reply length: observed %d, expected %d", len(m.data), hidInitReplyLen)
					}
					if len(m.data) < hidInitReplyLen {
						return
					}
					cid := binary.BigEndian.Uint32(m.data[8:12])
					if cid == 0 || cid == ctaphid.BroadcastCID {
						t.Errorf("allocated channel: observed %08x, expected neither 0 nor broadcast", cid)
					}
					if m.data[12] != 2 {
						t.Errorf("CTAPHID protocol version: observed %d, expected 2", m.data[12])
					}
					t.Logf("channel %08x, device version %d.%d.%d, capabilities 0x%02x", cid, m.data[13], m.data[14], m.data[15], m.data[16])
					return
				}
			}},
		Case{ID: "HID-2", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.1.3, §6.4",
			Description: "INIT capability flags match the key: CBOR iff getInfo answers over CTAPHID_CBOR, NMSG clear when getInfo lists U2F_V2",
			Run: func(t *T) {
				h := hidOpen(t)
				cid, caps := h.alloc()
				t.Logf("capabilities 0x%02x", caps)
				h.send(cid, transport.CmdCBOR, []byte{byte(ctap2.CmdGetInfo)})
				m := h.next(cid, "getInfo over CTAPHID_CBOR")
				var info ctap2.Info
				if caps&ctaphid.CapCBOR == 0 {
					if m.cmd != transport.CmdError || len(m.data) != 1 || ctaphid.Error(m.data[0]) != ctaphid.ErrInvalidCmd {
						t.Errorf("getInfo without the CBOR capability: observed %s, expected ERROR %s", m, ctaphid.ErrInvalidCmd)
					}
					info = ctap2.Info{Versions: []string{"U2F_V2"}}
				} else {
					switch {
					case m.cmd != transport.CmdCBOR:
						t.Fatalf("getInfo with the CBOR capability: observed %s, expected a CBOR reply", m)
					case len(m.data) == 0 || m.data[0] != byte(ctap2.StatusOK):
						t.Fatalf("getInfo with the CBOR capability: observed %s, expected CTAP2_OK", m)
					}
					if err := ctap2.Unmarshal(m.data[1:], &info); err != nil {
						t.Fatalf("getInfo reply: %v", err)
					}
					if !info.HasVersion("FIDO_2_0") && !info.HasVersion("FIDO_2_1") {
						t.Errorf("the CBOR capability is set but getInfo versions %v list no FIDO_2_x", info.Versions)
					}
				}
				if info.HasVersion("U2F_V2") && caps&ctaphid.CapNMSG != 0 {
					t.Errorf("capabilities 0x%02x: observed NMSG set, expected it clear since getInfo lists U2F_V2", caps)
				}
				if caps&ctaphid.CapNMSG != 0 {
					apdu := []byte{0, 0x03, 0, 0, 0, 0, 0, 0, 0} // U2F VERSION
					h.send(cid, transport.CmdMsg, apdu)
					h.expectError(cid, ctaphid.ErrInvalidCmd, "MSG with the NMSG capability")
				}
			}},
		Case{ID: "HID-3", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.3",
			Description: "two INITs allocate different channels, and a message on one is answered on that one only",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				b, _ := h.alloc()
				if a == b {
					t.Fatalf("two INITs: observed channel %08x twice, expected two different channels", a)
				}
				data := hidRandom(20)
				h.send(a, transport.CmdPing, data)
				m, ok := h.read(hidReplyWait, a, b)
				switch {
				case !ok:
					t.Fatalf("PING on channel A: observed no reply within %v", hidReplyWait)
				case m.cid != a:
					t.Fatalf("PING on channel A: observed %s on channel B, expected the reply on A", m)
				case m.cmd != transport.CmdPing || !bytes.Equal(m.data, data):
					t.Fatalf("PING on channel A: observed %s, expected the echo", m)
				}
				h.ping(b, hidRandom(20), "PING on channel B")
			}},
		Case{ID: "HID-4", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.1.3, §11.2.5.3",
			Description: "INIT on an allocated channel resynchronises it: same CID, the nonce, and the half-sent message dropped",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				msg := hidRandom(100)
				pkts := hidFragment(a, transport.CmdPing, msg)
				h.write(pkts[0])
				r := h.init(a)
				if r.received != a || r.cid != a {
					t.Errorf("INIT on channel %08x: observed the reply on %08x naming channel %08x, expected both %08x", a, r.received, r.cid, a)
				}
				h.write(pkts[1]) // the rest of the dropped message: must be ignored
				want := hidRandom(10)
				h.send(a, transport.CmdPing, want)
				m := h.next(a, "PING after the resync")
				if m.cmd != transport.CmdPing || !bytes.Equal(m.data, want) {
					t.Errorf("after INIT dropped a half-sent message: observed %s, expected only the echo of the next PING", m)
				}
			}},
		Case{ID: "HID-5", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.1.4, §11.2.4",
			Description: "PING echoes 0, 57, 58 and 7609 bytes (no, one and many continuation packets)",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				for _, n := range []int{0, hidInitPayload, hidInitPayload + 1, hidMaxMessage} {
					h.ping(a, hidRandom(n), fmt.Sprintf("PING of %d bytes", n))
				}
			}},
		Case{ID: "HID-6", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.4, §11.2.9.1.6",
			Description: "a message declaring more than 7609 bytes is refused with ERR_INVALID_LEN",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				t.Cleanup(func() { h.resync(a) })
				h.write(hidInitPacket(a, transport.CmdPing, hidMaxMessage+1, hidRandom(hidInitPayload)))
				h.expectError(a, ctaphid.ErrInvalidLen, fmt.Sprintf("PING declaring %d bytes", hidMaxMessage+1))
			}},
		Case{ID: "HID-7", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.5.4",
			Description: "a continuation packet with the wrong sequence number gets ERR_INVALID_SEQ and drops the message",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				t.Cleanup(func() { h.resync(a) })
				msg := hidRandom(100)
				h.write(hidInitPacket(a, transport.CmdPing, len(msg), msg))
				h.write(hidContPacket(a, 1, msg[hidInitPayload:]))
				if h.expectError(a, ctaphid.ErrInvalidSeq, "continuation with sequence 1 instead of 0") {
					h.ping(a, hidRandom(10), "PING after ERR_INVALID_SEQ")
				}
			}},
		Case{ID: "HID-8", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.4",
			Description: "a continuation packet without an init packet is ignored",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				h.write(hidContPacket(a, 0, hidRandom(hidContPayload)))
				want := hidRandom(10)
				h.send(a, transport.CmdPing, want)
				m := h.next(a, "PING after a stray continuation")
				if m.cmd != transport.CmdPing || !bytes.Equal(m.data, want) {
					t.Errorf("after a stray continuation packet: observed %s, expected only the echo of the next PING", m)
				}
			}},
		Case{ID: "HID-9", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.3, §11.2.9.1.6",
			Description: "a message on a channel that was never allocated gets ERR_INVALID_CHANNEL",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				c := unallocatedCID(a)
				h.send(c, transport.CmdPing, hidRandom(10))
				what := fmt.Sprintf("PING on unallocated channel %08x", c)
				if sim, ok := h.link.(SimulatorLink); ok && sim.Simulator() {
					if m := h.next(c, what); m.cmd == transport.CmdPing {
						t.Skipf("the simulator answers channels it did not allocate, as the UDP simulator convention allows")
					} else if m.cmd != transport.CmdError || len(m.data) != 1 || ctaphid.Error(m.data[0]) != ctaphid.ErrInvalidChannel {
						t.Errorf("%s: observed %s, expected ERROR %s (or, from a simulator, the PING echo)", what, m, ctaphid.ErrInvalidChannel.Error())
					}
					return
				}
				h.expectError(c, ctaphid.ErrInvalidChannel, what)
			}},
		Case{ID: "HID-10", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.3",
			Description: "a message on the reserved channel 0 gets ERR_INVALID_CHANNEL",
			Run: func(t *T) {
				h := hidOpen(t)
				h.send(0, transport.CmdPing, hidRandom(10))
				h.expectError(0, ctaphid.ErrInvalidChannel, "PING on channel 0")
			}},
		Case{ID: "HID-11", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.1.6",
			Description: "an unknown command gets ERR_INVALID_CMD",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				h.send(a, hidUnknownCmd, hidRandom(4))
				h.expectError(a, ctaphid.ErrInvalidCmd, fmt.Sprintf("command 0x%02x", byte(hidUnknownCmd)))
			}},
		Case{ID: "HID-12", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.5.1",
			Description: "while one channel's message is half sent, another channel gets ERR_CHANNEL_BUSY; the first completes",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				b, _ := h.alloc()
				t.Cleanup(func() { h.resync(a) })
				msg := hidRandom(100)
				pkts := hidFragment(a, transport.CmdPing, msg)
				h.write(pkts[0])
				h.send(b, transport.CmdPing, hidRandom(10))
				h.expectError(b, ctaphid.ErrChannelBusy, "PING on channel B while A's message is half sent")
				h.write(pkts[1])
				got := h.expect(a, transport.CmdPing, "PING on channel A after B was refused")
				if !bytes.Equal(got, msg) {
					t.Errorf("channel A's PING: observed %d bytes that differ from the %d sent, expected the echo", len(got), len(msg))
				}
			}},
		Case{ID: "HID-13", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.5.2; U2F HID v1.2 (U2FHID_TRANS_TIMEOUT)",
			Description: "a message whose continuation never comes gets ERR_MSG_TIMEOUT within 3 s",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				t.Cleanup(func() { h.resync(a) })
				msg := hidRandom(100)
				h.write(hidInitPacket(a, transport.CmdPing, len(msg), msg))
				sent := time.Now()
				m, ok := h.read(hidMsgTimeoutMax+500*time.Millisecond, a)
				if !ok {
					t.Fatalf("half-sent PING: observed no reply within %v, expected ERROR %s within %v", hidMsgTimeoutMax+500*time.Millisecond, ctaphid.ErrMsgTimeout, hidMsgTimeoutMax)
				}
				took := m.at.Sub(sent)
				t.Logf("%s after %v", m, took.Round(time.Millisecond))
				if m.cmd != transport.CmdError || len(m.data) != 1 || ctaphid.Error(m.data[0]) != ctaphid.ErrMsgTimeout {
					t.Fatalf("half-sent PING: observed %s, expected ERROR %s", m, ctaphid.ErrMsgTimeout)
				}
				if took > hidMsgTimeoutMax {
					t.Errorf("ERR_MSG_TIMEOUT: observed after %v, expected within %v", took.Round(time.Millisecond), hidMsgTimeoutMax)
				}
				h.ping(a, hidRandom(10), "PING after the timeout")
			}},
		Case{ID: "HID-14", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.1.5",
			Description: "CANCEL during a wait for a touch ends the request with CTAP2_ERR_KEEPALIVE_CANCEL within 50 ms",
			Run: func(t *T) {
				h := hidOpen(t)
				w := h.startPresenceWait(0)
				m, took := w.cancel()
				t.Logf("%s %v after CANCEL", m, took)
				if m.cmd != transport.CmdCBOR || len(m.data) == 0 || m.data[0] != byte(ctap2.ErrKeepaliveCancel) {
					t.Errorf("after CANCEL: observed %s, expected a CBOR reply with status %s", m, ctap2.ErrKeepaliveCancel.Name())
				}
				if took > hidCancelMax {
					t.Errorf("CANCEL to reply: observed %v, expected at most %v", took, hidCancelMax)
				}
			}},
		Case{ID: "HID-15", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.1.7",
			Description: "while a request waits for a touch the key sends KEEPALIVE (PROCESSING or UPNEEDED) at least every 500 ms",
			Run: func(t *T) {
				h := hidOpen(t)
				w := h.startPresenceWait(0)
				until := w.sent.Add(hidKeepaliveWatch)
				var end time.Time
				for w.reply == nil {
					m, ok := h.read(time.Until(until), w.cid)
					if !ok {
						end = until
						break
					}
					if m.cmd == transport.CmdKeepalive {
						w.keepalives = append(w.keepalives, m)
						continue
					}
					w.reply, end = &m, m.at
					t.Logf("the key answered %s after %v (touched)", m, m.at.Sub(w.sent).Round(time.Millisecond))
				}
				if w.reply == nil {
					w.cancel()
				}
				last, worst := w.sent, time.Duration(0)
				up := false
				for _, k := range w.keepalives {
					if !k.at.After(end) {
						worst, last = max(worst, k.at.Sub(last)), k.at
					}
					if len(k.data) != 1 || (k.data[0] != transport.StatusProcessing && k.data[0] != transport.StatusUPNeeded) {
						t.Errorf("%s: observed, expected status 0x01 PROCESSING or 0x02 UPNEEDED", k)
					}
					up = up || (len(k.data) == 1 && k.data[0] == transport.StatusUPNeeded)
				}
				worst = max(worst, end.Sub(last))
				t.Logf("%d keepalives over %v, longest gap %v", len(w.keepalives), end.Sub(w.sent).Round(time.Millisecond), worst.Round(time.Millisecond))
				if worst > hidKeepaliveMax {
					t.Errorf("gap between keepalives: observed %v, expected at most %v", worst.Round(time.Millisecond), hidKeepaliveMax)
				}
				if !up {
					t.Logf("no KEEPALIVE UPNEEDED while waiting for a touch (the spec says the key should send it)")
				}
			}},
		Case{ID: "HID-16", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.5.1",
			Description: "while a request waits for a touch, a message on another channel gets ERR_CHANNEL_BUSY at once",
			Run: func(t *T) {
				h := hidOpen(t)
				b, _ := h.alloc()
				w := h.startPresenceWait(0)
				h.send(b, transport.CmdPing, hidRandom(10))
				h.expectError(b, ctaphid.ErrChannelBusy, "PING on another channel during the wait")
				if m, _ := w.cancel(); m.cmd != transport.CmdCBOR {
					t.Errorf("the waiting request after CANCEL: observed %s, expected its CBOR reply", m)
				}
			}},
		Case{ID: "HID-17", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.1.5",
			Description: "CANCEL with nothing to cancel is not answered",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				h.write(hidInitPacket(a, transport.CmdCancel, 0, nil))
				if m, ok := h.read(hidQuietWait, a); ok {
					t.Fatalf("idle CANCEL: observed %s, expected no reply", m)
				}
				h.ping(a, hidRandom(10), "PING after an idle CANCEL")
			}},
		Case{ID: "HID-18", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.2.1",
			Description: "WINK is answered with an empty WINK reply when the key claims the WINK capability",
			Run: func(t *T) {
				h := hidOpen(t)
				a, caps := h.alloc()
				if caps&ctaphid.CapWink == 0 {
					t.Skipf("the key does not claim the WINK capability")
				}
				h.send(a, transport.CmdWink, nil)
				if got := h.expect(a, transport.CmdWink, "WINK"); len(got) != 0 {
					t.Errorf("WINK reply: observed %d payload bytes, expected none", len(got))
				}
			}},
		Case{ID: "HID-19", Area: AreaCTAPHID, Requirement: "CTAP 2.1 §11.2.9.2.2 (optional)",
			Description: "LOCK, when implemented, keeps other channels out (ERR_CHANNEL_BUSY) until released; more than 10 s is ERR_INVALID_PAR",
			Run: func(t *T) {
				h := hidOpen(t)
				a, _ := h.alloc()
				b, _ := h.alloc()
				t.Cleanup(func() {
					h.link.WritePacket(hidInitPacket(a, transport.CmdLock, 1, []byte{0}))
					h.resync(a)
				})
				h.send(a, transport.CmdLock, []byte{2})
				m := h.next(a, "LOCK 2 s")
				if m.cmd == transport.CmdError && len(m.data) == 1 && ctaphid.Error(m.data[0]) == ctaphid.ErrInvalidCmd {
					t.Skipf("the key does not implement the optional LOCK command")
				}
				if m.cmd != transport.CmdLock {
					t.Fatalf("LOCK 2 s: observed %s, expected a LOCK reply", m)
				}
				h.send(b, transport.CmdPing, hidRandom(10))
				h.expectError(b, ctaphid.ErrChannelBusy, "PING on another channel while locked")
				h.ping(a, hidRandom(10), "PING on the locking channel")
				h.send(a, transport.CmdLock, []byte{0})
				h.expect(a, transport.CmdLock, "LOCK 0 (release)")
				h.ping(b, hidRandom(10), "PING on another channel after the release")
				h.send(a, transport.CmdLock, []byte{11})
				h.expectError(a, ctaphid.ErrInvalidPar, "LOCK 11 s")
			}},
	)
}
