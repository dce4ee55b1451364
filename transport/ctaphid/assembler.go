package ctaphid

import "github.com/ctapkit/ctapkit/transport"

// message is one reassembled CTAPHID request or reply.
type message struct {
	cid  uint32
	cmd  transport.Command
	data []byte
}

// assembler is the device side's request reassembler (§11.2.4, §11.2.5). A device
// has one receive buffer, so it assembles one message at a time whatever the
// channel; the channel that started it owns the device until it completes.
//
// It is pure: no clock and no I/O, so it can be fuzzed packet by packet. The Server
// adds what needs state beyond one message: channel allocation, INIT and CANCEL
// (which bypass assembly), locks, running handlers and the message timeout, which
// it enforces by calling abort.
type assembler struct {
	active bool
	cid    uint32
	cmd    transport.Command
	need   int    // declared length
	buf    []byte // payload so far
	seq    byte   // expected sequence number of the next continuation
}

// feed processes one packet from the host. It returns the message when p
// completes one. A non-zero Error must be sent to the channel that sent p; the
// assembler has already dropped whatever the error invalidates. Otherwise, with
// done false, there is nothing to send.
func (a *assembler) feed(pkt []byte) (m message, done bool, code Error) {
	p := normalize(pkt)
	if p == nil {
		return message{}, false, 0 // not even a header: line noise
	}
	cid := packetCID(p)
	if !isInit(p) {
		if !a.active || cid != a.cid {
			return message{}, false, 0 // spurious continuation: ignored (§11.2.4)
		}
		if p[4] != a.seq {
			a.abort()
			return message{}, false, ErrInvalidSeq
		}
		a.seq++
		n := min(a.need-len(a.buf), contPayloadSize)
		a.buf = append(a.buf, p[contHeaderSize:contHeaderSize+n]...)
		if len(a.buf) < a.need {
			return message{}, false, 0
		}
		m = message{cid: a.cid, cmd: a.cmd, data: a.buf}
		a.abort()
		return m, true, 0
	}

	if a.active {
		if cid != a.cid {
			return message{}, false, ErrChannelBusy
		}
		// The owner started over without finishing: both messages are lost.
		a.abort()
		return message{}, false, ErrInvalidSeq
	}
	cmd, n := initHeader(p)
	if n > MaxMessageSize {
		return message{}, false, ErrInvalidLen
	}
	if n <= initPayloadSize {
		data := make([]byte, n)
		copy(data, p[initHeaderSize:])
		return message{cid: cid, cmd: cmd, data: data}, true, 0
	}
	*a = assembler{active: true, cid: cid, cmd: cmd, need: n,
		buf: append(make([]byte, 0, n), p[initHeaderSize:]...)}
	return message{}, false, 0
}

// pending reports the channel whose message is being assembled.
func (a *assembler) pending() (cid uint32, ok bool) { return a.cid, a.active }

// abort drops the message being assembled, if any.
func (a *assembler) abort() { *a = assembler{} }
