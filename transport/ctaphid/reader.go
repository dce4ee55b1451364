package ctaphid

import (
	"errors"
	"fmt"

	"github.com/ctapkit/ctapkit/transport"
)

// errMalformed marks a reply that breaks the framing rules. The host cannot know
// what the device will send next after one, so it resynchronises the channel
// before the next transaction.
var errMalformed = errors.New("malformed reply")

// replyEvent says what one packet meant to a replyReader.
type replyEvent int

const (
	replyIgnored   replyEvent = iota // another channel's packet, or a stray continuation
	replyProgress                    // part of the reply; more packets to come
	replyKeepalive                   // KEEPALIVE; the status is in replyReader.status
	replyDone                        // the reply is complete; see replyReader.data
)

// replyReader is the host side's reply parser for one request on one channel
// (§11.2.4, §11.2.9). Like the device's assembler it is pure, so the fuzzer can
// play the device.
type replyReader struct {
	cid uint32
	cmd transport.Command
	// skipOther ignores init packets carrying other commands instead of failing.
	// INIT uses it: a resync must get past whatever the device still had queued.
	skipOther bool

	started bool
	need    int
	seq     byte
	buf     []byte
	status  byte // status of the last KEEPALIVE
}

func newReplyReader(cid uint32, cmd transport.Command) *replyReader {
	return &replyReader{cid: cid, cmd: cmd}
}

// feed processes one packet from the device. It returns an Error when the device
// answered ERROR, and an error wrapping errMalformed when the packet cannot
// belong to a well-formed reply.
func (r *replyReader) feed(pkt []byte) (replyEvent, error) {
	p := normalize(pkt)
	if p == nil || packetCID(p) != r.cid {
		return replyIgnored, nil
	}
	if !isInit(p) {
		if !r.started {
			return replyIgnored, nil
		}
		if p[4] != r.seq {
			return 0, fmt.Errorf("%w: continuation with sequence %d, want %d", errMalformed, p[4], r.seq)
		}
		r.seq++
		n := min(r.need-len(r.buf), contPayloadSize)
		r.buf = append(r.buf, p[contHeaderSize:contHeaderSize+n]...)
		if len(r.buf) < r.need {
			return replyProgress, nil
		}
		r.started = false
		return replyDone, nil
	}

	cmd, n := initHeader(p)
	switch {
	case cmd == transport.CmdError:
		r.started = false
		return 0, Error(p[initHeaderSize])
	case r.started:
		return 0, fmt.Errorf("%w: %v packet in the middle of a %d-byte %v reply", errMalformed, cmd, r.need, r.cmd)
	case cmd == transport.CmdKeepalive:
		r.status = p[initHeaderSize]
		return replyKeepalive, nil
	case cmd != r.cmd:
		if r.skipOther {
			return replyIgnored, nil
		}
		return 0, fmt.Errorf("%w: %v reply to a %v request", errMalformed, cmd, r.cmd)
	case n > MaxMessageSize:
		return 0, fmt.Errorf("%w: declared length %d exceeds %d", errMalformed, n, MaxMessageSize)
	}
	r.need, r.seq = n, 0
	r.buf = append(make([]byte, 0, n), p[initHeaderSize:initHeaderSize+min(n, initPayloadSize)]...)
	if n <= initPayloadSize {
		return replyDone, nil
	}
	r.started = true
	return replyProgress, nil
}

// data returns the reply after feed returned replyDone.
func (r *replyReader) data() []byte { return r.buf }

// restart forgets a complete reply that turned out not to be ours (an INIT reply
// to another program's nonce) and waits for the next one.
func (r *replyReader) restart() { r.started, r.buf = false, nil }
