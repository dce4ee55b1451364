package ctaphid

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctapkit/ctapkit/transport"
)

// Handler is the authenticator behind a Server: the softkey, or a fake in tests.
type Handler interface {
	// HandleCBOR gets a CTAP2 request (command byte || CBOR) and returns status byte || CBOR.
	// ctx is cancelled when the host sends CTAPHID_CANCEL on that channel; the handler then returns
	// its own cancel status (0x2D). status(b) reports a keepalive status (0x01 processing, 0x02 UP needed).
	HandleCBOR(ctx context.Context, req []byte, status func(byte)) []byte
	// HandleMsg gets a U2F APDU and returns response data || SW1 SW2. nil result = MSG unsupported -> ERR_INVALID_CMD.
	HandleMsg(ctx context.Context, apdu []byte, status func(byte)) []byte
	// Wink identifies the device (blink, beep). It runs on the Server's packet loop,
	// so it must return promptly.
	Wink()
}

// ServerOptions configures the device side. Zero values select the defaults.
type ServerOptions struct {
	// Capabilities are advertised in the INIT reply and enforced: WINK needs CapWink,
	// CBOR needs CapCBOR and MSG is refused with CapNMSG. Default CapWink|CapCBOR
	// (which also means a capability set of zero cannot be expressed).
	Capabilities byte
	Version      [3]byte // major, minor, build in the INIT reply
	// MsgTimeout is how long a message may take from its init packet to its last
	// continuation before the device answers ERR_MSG_TIMEOUT. Default 500ms (RIOT,
	// ChromeOS u2fd; hosts send all packets back to back).
	MsgTimeout time.Duration
	// KeepaliveInterval paces the KEEPALIVEs sent while a CBOR or MSG handler runs.
	// Default 100ms, as OpenSK sends them.
	KeepaliveInterval time.Duration
	// MaxChannels bounds the allocated-channel table; allocating one more evicts the
	// oldest, so an INIT flood cannot grow memory. Default 128.
	MaxChannels int
	// AcceptUnallocated accepts any channel except 0 and broadcast, as UDP
	// simulators do for hosts that skip INIT.
	AcceptUnallocated bool
	// Log, if set, sees every packet received ("recv") and sent ("send").
	Log func(dir string, pkt []byte)
	// Rand picks channel IDs; nil = crypto/rand. Tests pass a fixed stream to make
	// transcripts reproducible.
	Rand io.Reader
}

const (
	defaultMsgTimeout        = 500 * time.Millisecond
	defaultKeepaliveInterval = 100 * time.Millisecond
	defaultMaxChannels       = 128
	maxLockSeconds           = 10
)

// Server is the device end of CTAPHID (§11.2): it answers INIT, PING, WINK and
// LOCK itself and passes CBOR and MSG requests to a Handler. Its methods are safe
// for concurrent use.
type Server struct {
	h    Handler
	opts ServerOptions
	now  func() time.Time // lock expiry; replaced in tests

	mu       sync.Mutex
	serving  bool
	conn     PacketConn      // while serving
	base     context.Context // parent of handler contexts, while serving
	results  chan result     // handler replies, while serving
	stop     chan struct{}   // closed when Serve returns
	jobs     chan func()     // to the handler worker, while serving
	channels map[uint32]struct{}
	order    []uint32 // allocated channels, oldest first
	asm      assembler
	asmStart time.Time
	txn      *txn // the running handler, if any
	lockCID  uint32
	lockEnd  time.Time
	handlers sync.WaitGroup
}

// txn is a running CBOR or MSG handler. The device serves one at a time; while it
// runs, other requests get ERR_CHANNEL_BUSY.
type txn struct {
	cid     uint32
	cmd     transport.Command
	cancel  context.CancelFunc
	status  atomic.Uint32 // last status reported by the handler; 0 = none yet
	changed chan struct{} // signalled when status changes, to send a keepalive now
	sent    byte          // status of the last keepalive sent
}

type result struct {
	t    *txn
	resp []byte
}

// NewServer returns a Server that passes requests to h.
func NewServer(h Handler, opts ServerOptions) *Server {
	if opts.Capabilities == 0 {
		opts.Capabilities = CapWink | CapCBOR
	}
	if opts.MsgTimeout <= 0 {
		opts.MsgTimeout = defaultMsgTimeout
	}
	if opts.KeepaliveInterval <= 0 {
		opts.KeepaliveInterval = defaultKeepaliveInterval
	}
	if opts.MaxChannels <= 0 {
		opts.MaxChannels = defaultMaxChannels
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	return &Server{h: h, opts: opts, now: time.Now, channels: make(map[uint32]struct{})}
}

// Serve reads packets from conn until ctx is done or conn fails, and answers them.
// Handlers run in their own goroutine so that CANCEL, INIT (resync) and other
// channels (ERR_CHANNEL_BUSY at once) are handled while a request runs;
// keepalives are sent every KeepaliveInterval while it runs, with the last status
// reported (default PROCESSING). Writes are serialized.
//
// Serve returns ctx.Err() when ctx is done. Before it returns it cancels the
// running handler and waits for every handler it started; it does not close conn.
// Only one Serve may run at a time; channels survive from one to the next, as they
// do across a USB reconnect without power loss.
func (s *Server) Serve(ctx context.Context, conn PacketConn) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return errors.New("ctaphid: server is already serving")
	}
	s.serving, s.conn, s.base = true, conn, ctx
	s.results, s.stop, s.jobs = make(chan result), make(chan struct{}), make(chan func())
	go work(s.jobs, s.stop)
	s.mu.Unlock()
	defer s.shutdown()

	pkts := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		for {
			p, err := conn.ReadPacket(ctx)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case pkts <- p:
			case <-ctx.Done():
				return
			}
		}
	}()

	asmTimer := time.NewTimer(time.Hour)
	asmTimer.Stop()
	defer asmTimer.Stop()
	var armedFor time.Time // asmStart the timer was armed for
	var ticker *time.Ticker
	var tickFor *txn // the txn the ticker paces
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()

	for {
		// Arm the timers for the current state. Only this goroutine touches them.
		s.mu.Lock()
		var changed <-chan struct{}
		if s.txn != tickFor {
			if ticker != nil {
				ticker.Stop()
				ticker = nil
			}
			if s.txn != nil {
				ticker = time.NewTicker(s.opts.KeepaliveInterval)
			}
			tickFor = s.txn
		}
		var tick <-chan time.Time
		if ticker != nil {
			tick, changed = ticker.C, s.txn.changed
		}
		if _, ok := s.asm.pending(); ok {
			if !armedFor.Equal(s.asmStart) {
				asmTimer.Reset(time.Until(s.asmStart.Add(s.opts.MsgTimeout)))
				armedFor = s.asmStart
			}
		} else if !armedFor.IsZero() {
			asmTimer.Stop()
			armedFor = time.Time{}
		}
		results := s.results
		s.mu.Unlock()

		var err error
		select {
		case <-ctx.Done():
			return parent.Err()
		case err := <-readErr:
			if parent.Err() != nil {
				return parent.Err()
			}
			return fmt.Errorf("ctaphid: reading packet: %w", err)
		case p := <-pkts:
			err = s.handlePacket(p)
		case <-asmTimer.C:
			armedFor = time.Time{}
			err = s.expireMessage()
		case <-tick:
			err = s.keepalive(false)
		case <-changed:
			err = s.keepalive(true)
		case r := <-results:
			err = s.finish(r)
		}
		if err != nil {
			return fmt.Errorf("ctaphid: writing packet: %w", err)
		}
	}
}

// shutdown ends a Serve: the running handler is cancelled, the message being
// assembled dropped, and Serve waits until every handler goroutine has returned.
func (s *Server) shutdown() {
	s.mu.Lock()
	if s.txn != nil {
		s.txn.cancel()
		s.txn = nil
	}
	s.asm.abort()
	close(s.stop)
	s.serving, s.conn, s.base, s.results = false, nil, nil, nil
	s.mu.Unlock()
	s.handlers.Wait()
}

// Reset drops every channel and pending message (a simulated power cycle). A
// running handler is cancelled and its reply discarded.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.txn != nil {
		s.txn.cancel()
		s.txn = nil
	}
	s.asm.abort()
	clear(s.channels)
	s.order = nil
	s.lockCID = 0
}

// handlePacket answers one packet from the host. INIT and CANCEL bypass the busy
// rules (§11.2.9.1.3, §11.2.9.1.5); everything else is checked against the channel
// table, the running handler and the lock before it reaches the assembler.
func (s *Server) handlePacket(pkt []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log("recv", pkt)
	p := normalize(pkt)
	if p == nil {
		return nil
	}
	cid := packetCID(p)
	if !isInit(p) {
		return s.feed(p)
	}
	cmd, n := initHeader(p)
	switch cmd {
	case transport.CmdCancel:
		if s.txn != nil && s.txn.cid == cid {
			s.txn.cancel() // the handler answers with its own cancel status
		}
		return nil // CANCEL is never answered
	case transport.CmdInit:
		return s.init(cid, n, p[initHeaderSize:initHeaderSize+initNonceSize])
	}
	if code := s.checkChannel(cid); code != 0 {
		return s.sendError(cid, code)
	}
	if s.txn != nil || s.lockedAgainst(cid) {
		return s.sendError(cid, ErrChannelBusy)
	}
	return s.feed(p)
}

// feed passes a packet to the assembler and dispatches the message it completes.
func (s *Server) feed(p []byte) error {
	_, wasPending := s.asm.pending()
	m, done, code := s.asm.feed(p)
	if code != 0 {
		return s.sendError(packetCID(p), code)
	}
	if !done {
		if _, pending := s.asm.pending(); pending && !wasPending {
			s.asmStart = time.Now()
		}
		return nil
	}
	return s.dispatch(m)
}

func (s *Server) checkChannel(cid uint32) Error {
	if cid == 0 || cid == BroadcastCID {
		return ErrInvalidChannel
	}
	if _, ok := s.channels[cid]; !ok && !s.opts.AcceptUnallocated {
		return ErrInvalidChannel
	}
	return 0
}

func (s *Server) lockedAgainst(cid uint32) bool {
	return s.lockCID != 0 && s.lockCID != cid && s.now().Before(s.lockEnd)
}

// init answers INIT: on the broadcast channel it allocates a channel; on an
// existing one it resynchronises, dropping that channel's message and handler.
func (s *Server) init(cid uint32, n int, nonce []byte) error {
	if cid == 0 {
		return s.sendError(cid, ErrInvalidChannel)
	}
	if n != initNonceSize {
		return s.sendError(cid, ErrInvalidLen)
	}
	newCID := cid
	if cid == BroadcastCID {
		var err error
		if newCID, err = s.allocate(); err != nil {
			return s.sendError(cid, ErrOther)
		}
	} else {
		if code := s.checkChannel(cid); code != 0 {
			return s.sendError(cid, code)
		}
		if pending, ok := s.asm.pending(); ok && pending == cid {
			s.asm.abort()
		}
		if s.txn != nil && s.txn.cid == cid {
			s.txn.cancel()
			s.txn = nil // its reply, when it comes, is dropped
		}
	}
	reply := make([]byte, 0, initReplySize)
	reply = append(reply, nonce...)
	reply = binary.BigEndian.AppendUint32(reply, newCID)
	reply = append(reply, protocolVersion)
	reply = append(reply, s.opts.Version[:]...)
	reply = append(reply, s.opts.Capabilities)
	return s.send(cid, transport.CmdInit, reply)
}

// allocate picks a fresh channel ID, evicting the oldest channel when the table
// is full.
func (s *Server) allocate() (uint32, error) {
	var b [4]byte
	for range 64 {
		if _, err := io.ReadFull(s.opts.Rand, b[:]); err != nil {
			return 0, err
		}
		cid := binary.BigEndian.Uint32(b[:])
		if _, taken := s.channels[cid]; taken || cid == 0 || cid == BroadcastCID {
			continue
		}
		s.channels[cid] = struct{}{}
		s.order = append(s.order, cid)
		for len(s.order) > s.opts.MaxChannels {
			evicted := s.order[0]
			delete(s.channels, evicted)
			s.order = s.order[1:]
			// Its lock goes with it: nobody could release it, and its host, told
			// ERR_INVALID_CHANNEL, would find its new channel locked out for up to 10 s.
			if s.lockCID == evicted {
				s.lockCID = 0
			}
		}
		return cid, nil
	}
	return 0, errors.New("no unused channel ID found")
}

// dispatch runs a complete request.
func (s *Server) dispatch(m message) error {
	caps := s.opts.Capabilities
	switch m.cmd {
	case transport.CmdPing:
		return s.send(m.cid, m.cmd, m.data)
	case transport.CmdWink:
		if caps&CapWink == 0 {
			return s.sendError(m.cid, ErrInvalidCmd)
		}
		s.h.Wink()
		return s.send(m.cid, m.cmd, nil)
	case transport.CmdLock:
		switch {
		case len(m.data) != 1:
			return s.sendError(m.cid, ErrInvalidLen)
		case m.data[0] > maxLockSeconds:
			return s.sendError(m.cid, ErrInvalidPar)
		case m.data[0] == 0:
			s.lockCID = 0
		default:
			s.lockCID, s.lockEnd = m.cid, s.now().Add(time.Duration(m.data[0])*time.Second)
		}
		return s.send(m.cid, m.cmd, nil)
	case transport.CmdCBOR:
		if caps&CapCBOR == 0 {
			return s.sendError(m.cid, ErrInvalidCmd)
		}
		if len(m.data) == 0 {
			return s.sendError(m.cid, ErrInvalidLen)
		}
		s.start(m)
		return nil
	case transport.CmdMsg:
		if caps&CapNMSG != 0 {
			return s.sendError(m.cid, ErrInvalidCmd)
		}
		s.start(m)
		return nil
	}
	return s.sendError(m.cid, ErrInvalidCmd)
}

// start runs the handler for a CBOR or MSG request in its own goroutine; the
// packet loop keeps answering CANCEL, INIT and other channels meanwhile.
func (s *Server) start(m message) {
	ctx, cancel := context.WithCancel(s.base)
	t := &txn{cid: m.cid, cmd: m.cmd, cancel: cancel, changed: make(chan struct{}, 1)}
	s.txn = t
	results, stop := s.results, s.stop
	status := func(b byte) {
		if t.status.Swap(uint32(b)) != uint32(b) {
			select {
			case t.changed <- struct{}{}:
			default:
			}
		}
	}
	s.handlers.Add(1)
	job := func() {
		defer s.handlers.Done()
		defer cancel()
		var resp []byte
		if m.cmd == transport.CmdCBOR {
			resp = s.h.HandleCBOR(ctx, m.data, status)
		} else {
			resp = s.h.HandleMsg(ctx, m.data, status)
		}
		select {
		case results <- result{t, resp}:
		case <-stop:
		}
	}
	// The idle worker takes the job; if it is still finishing an abandoned one, a
	// fresh goroutine does, so the packet loop never waits for a handler.
	select {
	case s.jobs <- job:
	default:
		go job()
	}
}

// work runs handler jobs until stop is closed. A long-lived goroutine keeps the
// stack that signing needs grown, instead of growing a new one per request.
func work(jobs <-chan func(), stop <-chan struct{}) {
	for {
		select {
		case job := <-jobs:
			job()
		case <-stop:
			return
		}
	}
}

// finish sends a handler's reply, unless INIT or Reset abandoned its transaction.
func (s *Server) finish(r result) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := r.t
	if t != s.txn {
		return nil
	}
	s.txn = nil
	switch {
	case t.cmd == transport.CmdMsg && r.resp == nil:
		return s.sendError(t.cid, ErrInvalidCmd)
	case len(r.resp) == 0 || len(r.resp) > MaxMessageSize:
		return s.sendError(t.cid, ErrOther) // not a reply CTAPHID can carry
	}
	return s.send(t.cid, t.cmd, r.resp)
}

// keepalive sends KEEPALIVE for the running handler: on every tick, and at once
// when the handler reports a new status, so that "touch your key" appears without
// waiting for the next tick.
func (s *Server) keepalive(onChange bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.txn
	if t == nil {
		return nil
	}
	status := byte(t.status.Load())
	if status == 0 {
		status = transport.StatusProcessing
	}
	if onChange && status == t.sent {
		return nil
	}
	t.sent = status
	return s.send(t.cid, transport.CmdKeepalive, []byte{status})
}

// expireMessage answers ERR_MSG_TIMEOUT when the message being assembled is older
// than MsgTimeout. It runs from a timer, because the packet that would otherwise
// reveal the timeout may never come.
func (s *Server) expireMessage() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cid, ok := s.asm.pending()
	if !ok || time.Since(s.asmStart) < s.opts.MsgTimeout {
		return nil
	}
	s.asm.abort()
	return s.sendError(cid, ErrMsgTimeout)
}

func (s *Server) sendError(cid uint32, code Error) error {
	return s.send(cid, transport.CmdError, []byte{byte(code)})
}

// send writes one message; s.mu is held, which is what serialises writes.
func (s *Server) send(cid uint32, cmd transport.Command, data []byte) error {
	pkts, err := fragment(cid, cmd, data)
	if err != nil {
		return err
	}
	for _, p := range pkts {
		s.log("send", p)
		if err := s.conn.WritePacket(p); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) log(dir string, p []byte) {
	if s.opts.Log != nil {
		s.opts.Log(dir, p)
	}
}
