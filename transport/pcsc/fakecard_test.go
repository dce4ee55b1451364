package pcsc

import (
	"bytes"
	"context"
	"sync"
	"time"
)

// handler is the authenticator behind a fakeCard: softkey.Authenticator, or a
// stub. It is the CBOR/MSG half of ctaphid.Handler.
type handler interface {
	HandleCBOR(ctx context.Context, req []byte, status func(byte)) []byte
	HandleMsg(ctx context.Context, apdu []byte, status func(byte)) []byte
}

// fakeCard is a cardConn that behaves as an ISO 7816 FIDO card over h: SELECT,
// NFCCTAP_MSG with command chaining or in one extended APDU, answers over chunk
// bytes through 61xx and GET RESPONSE, 0x9100 while a request runs longer than
// busyAfter (when the host set P1 0x80), NFCCTAP_GETRESPONSE polls and cancel, and
// U2F APDUs. Its fields make it a different or broken card.
type fakeCard struct {
	h         handler
	version   string        // SELECT answer; "" = no FIDO applet (6A82)
	noExt     bool          // extended APDUs get 6700
	noCBOR    bool          // NFCCTAP_MSG gets 6D00 (a U2F-only card)
	forceSW   uint16        // NFCCTAP_MSG answered with this SW
	chunk     int           // response bytes per APDU before 61xx; 0 = 256
	busyAfter time.Duration // 0 = 20 ms
	// removeAt makes the removeAt-th Transmit (1-based) and all after it fail as
	// a removed card does.
	removeAt int

	mu       sync.Mutex
	apdus    [][]byte // every command received
	selected bool
	chain    []byte
	pending  []byte
	job      *job
	closed   bool
	locks    int // Lock calls
	unlocks  int // Unlock calls
}

// job is a CTAP2 request running on the card.
type job struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	status byte
	resp   []byte
}

func (j *job) setStatus(s byte) { j.mu.Lock(); j.status = s; j.mu.Unlock() }
func (j *job) getStatus() byte  { j.mu.Lock(); defer j.mu.Unlock(); return j.status }

func newFakeCard(h handler, version string) *fakeCard {
	return &fakeCard{h: h, version: version}
}

func sw(data []byte, w uint16) []byte {
	return append(append([]byte(nil), data...), byte(w>>8), byte(w))
}

func (c *fakeCard) Transmit(apdu []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errReaderGone
	}
	c.apdus = append(c.apdus, append([]byte(nil), apdu...))
	if c.removeAt > 0 && len(c.apdus) >= c.removeAt {
		return nil, errCardRemoved
	}
	a, err := parseCommand(apdu)
	if err != nil {
		return sw(nil, 0x6700), nil
	}
	ext := len(apdu) >= 7 && apdu[4] == 0
	if ext && c.noExt {
		return sw(nil, 0x6700), nil
	}
	switch {
	case a.ins == insSelect && a.p1 == 0x04:
		c.selected, c.chain, c.pending = false, nil, nil
		if c.version == "" || !bytes.Equal(a.data, fidoAID) {
			return sw(nil, 0x6A82), nil
		}
		c.selected = true
		return c.respond([]byte(c.version), a.ne), nil
	case !c.selected:
		return sw(nil, 0x6D00), nil
	case a.ins == insGetResp:
		return c.next(a.ne), nil
	case a.ins == insCTAPMsg && a.cla&0xEF == claCTAP:
		if c.noCBOR {
			return sw(nil, 0x6D00), nil
		}
		if a.cla&claChain != 0 {
			c.chain = append(c.chain, a.data...)
			return sw(nil, 0x9000), nil
		}
		msg := append(c.chain, a.data...)
		c.chain = nil
		if c.forceSW != 0 {
			return sw(nil, c.forceSW), nil
		}
		c.start(msg)
		return c.await(a.p1&p1GetRespOK != 0, a.ne), nil
	case a.ins == insCTAPGetRsp && a.cla == claCTAP:
		if c.job == nil {
			return sw(nil, 0x6985), nil
		}
		if a.p1 == p1Cancel {
			c.job.cancel()
			<-c.job.done
		}
		return c.await(true, a.ne), nil
	case a.cla&claChain != 0: // a chained U2F command
		c.chain = append(c.chain, a.data...)
		return sw(nil, 0x9000), nil
	}
	msg := shortAPDU(a.cla, a.ins, a.p1, a.p2, append(c.chain, a.data...), 256)
	if len(c.chain)+len(a.data) > maxShortData {
		msg = extendedAPDU(a.cla, a.ins, a.p1, a.p2, append(c.chain, a.data...))
	}
	c.chain = nil
	resp := c.h.HandleMsg(context.Background(), msg, func(byte) {})
	if len(resp) < 2 {
		return sw(nil, 0x6D00), nil
	}
	n := len(resp) - 2
	if resp[n] != 0x90 || resp[n+1] != 0x00 {
		return resp, nil
	}
	return c.respond(resp[:n], a.ne), nil
}

// start runs msg on the handler in the background.
func (c *fakeCard) start(msg []byte) {
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{cancel: cancel, done: make(chan struct{}), status: 0x01}
	c.job = j
	go func() {
		defer close(j.done)
		defer cancel()
		j.resp = c.h.HandleCBOR(ctx, msg, j.setStatus)
	}()
}

// await answers the running job: its result once it ends, or 0x9100 and its
// status if it runs longer than busyAfter and the host polls.
func (c *fakeCard) await(canPoll bool, ne int) []byte {
	j := c.job
	wait := c.busyAfter
	if wait == 0 {
		wait = 20 * time.Millisecond
	}
	var timeout <-chan time.Time
	if canPoll {
		timeout = time.After(wait)
	}
	select {
	case <-j.done:
		c.job = nil
		return c.respond(j.resp, ne)
	case <-timeout:
		return sw([]byte{j.getStatus()}, 0x9100)
	}
}

// respond answers data with 9000, or its first part and 61xx.
func (c *fakeCard) respond(data []byte, ne int) []byte {
	chunk := c.chunk
	if chunk == 0 {
		chunk = 256
	}
	if ne > 256 {
		chunk = ne // an extended Le takes it all
	}
	if len(data) <= chunk {
		return sw(data, 0x9000)
	}
	c.pending = append([]byte(nil), data[chunk:]...)
	return sw(data[:chunk], c.more())
}

func (c *fakeCard) next(ne int) []byte {
	n := min(ne, len(c.pending))
	part := c.pending[:n]
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		return sw(part, 0x9000)
	}
	return sw(part, c.more())
}

func (c *fakeCard) more() uint16 { return 0x6100 | uint16(min(len(c.pending), 256)&0xFF) }

func (c *fakeCard) Lock() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.locks++
	return nil
}

func (c *fakeCard) Unlock() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unlocks++
	return nil
}

func (c *fakeCard) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// sent returns a copy of the commands received so far.
func (c *fakeCard) sent() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.apdus...)
}

// echo is a handler that returns status 0 || the request, or runs fn if set.
type echo struct {
	fn func(ctx context.Context, req []byte, status func(byte)) []byte
}

func (e echo) HandleCBOR(ctx context.Context, req []byte, status func(byte)) []byte {
	if e.fn != nil {
		return e.fn(ctx, req, status)
	}
	return append([]byte{0x00}, req...)
}

func (echo) HandleMsg(_ context.Context, apdu []byte, _ func(byte)) []byte {
	return sw(apdu, 0x9000)
}
