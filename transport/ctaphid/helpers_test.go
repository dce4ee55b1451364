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

// waitLimit bounds every wait in the tests, so that a bug fails a test instead of
// hanging the run. Expected events arrive within milliseconds.
const waitLimit = 5 * time.Second

// fakeHandler echoes requests unless the test sets its hooks.
type fakeHandler struct {
	cbor  func(ctx context.Context, req []byte, status func(byte)) []byte
	msg   func(ctx context.Context, apdu []byte, status func(byte)) []byte
	winks atomic.Int32
}

func (h *fakeHandler) HandleCBOR(ctx context.Context, req []byte, status func(byte)) []byte {
	if h.cbor != nil {
		return h.cbor(ctx, req, status)
	}
	return append([]byte(nil), req...)
}

func (h *fakeHandler) HandleMsg(ctx context.Context, apdu []byte, status func(byte)) []byte {
	if h.msg != nil {
		return h.msg(ctx, apdu, status)
	}
	return append(append([]byte(nil), apdu...), 0x90, 0x00)
}

func (h *fakeHandler) Wink() { h.winks.Add(1) }

// blockingCBOR returns a CBOR hook that reports status, signals started, and then
// waits for release or cancellation, answering 0x00 or CTAP2_ERR_KEEPALIVE_CANCEL.
func blockingCBOR(status byte, started chan<- struct{}, release <-chan struct{}) func(context.Context, []byte, func(byte)) []byte {
	return func(ctx context.Context, _ []byte, report func(byte)) []byte {
		if status != 0 {
			report(status)
		}
		started <- struct{}{}
		select {
		case <-release:
			return []byte{0x00}
		case <-ctx.Done():
			return []byte{0x2D}
		}
	}
}

// seqReader is a deterministic io.Reader for channel IDs and nonces: 1, 2, 3, ...
type seqReader struct{ n byte }

func (r *seqReader) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

// startServer serves h on a fresh Pipe and returns the Server and the host end.
// Cleanup stops Serve and checks that it returned because of the cancellation.
func startServer(t testing.TB, h Handler, opts ServerOptions) (*Server, *rawHost) {
	t.Helper()
	host, dev := Pipe()
	s := NewServer(h, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, dev) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Serve returned %v, want context.Canceled", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("Serve did not return after cancel")
		}
		host.Close()
	})
	return s, &rawHost{t: t, conn: host}
}

// rawHost speaks hand-crafted packets to a Server.
type rawHost struct {
	t    testing.TB
	conn PacketConn
}

func (r *rawHost) send(pkts ...[]byte) {
	r.t.Helper()
	for _, p := range pkts {
		if err := r.conn.WritePacket(p); err != nil {
			r.t.Fatalf("writing packet: %v", err)
		}
	}
}

func (r *rawHost) sendMsg(cid uint32, cmd transport.Command, data []byte) {
	r.t.Helper()
	pkts, err := fragment(cid, cmd, data)
	if err != nil {
		r.t.Fatal(err)
	}
	r.send(pkts...)
}

func (r *rawHost) recvPacket(limit time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return r.conn.ReadPacket(ctx)
}

// recv reads one whole message from the server.
func (r *rawHost) recv() message {
	r.t.Helper()
	p, err := r.recvPacket(waitLimit)
	if err != nil {
		r.t.Fatalf("waiting for a reply: %v", err)
	}
	if !isInit(p) {
		r.t.Fatalf("got continuation packet % x, want an init packet", p[:8])
	}
	cmd, _ := initHeader(p)
	rd := newReplyReader(packetCID(p), cmd)
	for {
		ev, err := rd.feed(p)
		if err != nil {
			if e, ok := err.(Error); ok {
				return message{cid: packetCID(p), cmd: transport.CmdError, data: []byte{byte(e)}}
			}
			r.t.Fatalf("malformed reply from server: %v", err)
		}
		switch ev {
		case replyDone:
			return message{cid: rd.cid, cmd: cmd, data: rd.data()}
		case replyKeepalive:
			return message{cid: rd.cid, cmd: transport.CmdKeepalive, data: []byte{rd.status}}
		}
		if p, err = r.recvPacket(waitLimit); err != nil {
			r.t.Fatalf("waiting for a continuation: %v", err)
		}
	}
}

// expect reads one message and checks it.
func (r *rawHost) expect(cid uint32, cmd transport.Command, data []byte) {
	r.t.Helper()
	m := r.recv()
	if m.cid != cid || m.cmd != cmd || !bytes.Equal(m.data, data) {
		r.t.Fatalf("got %08x %v % x, want %08x %v % x", m.cid, m.cmd, trunc(m.data), cid, cmd, trunc(data))
	}
}

func (r *rawHost) expectError(cid uint32, code Error) {
	r.t.Helper()
	r.expect(cid, transport.CmdError, []byte{byte(code)})
}

// expectSilence checks that nothing arrives for d.
func (r *rawHost) expectSilence(d time.Duration) {
	r.t.Helper()
	if p, err := r.recvPacket(d); err == nil {
		r.t.Fatalf("unexpected packet % x", p[:8])
	}
}

// allocate runs INIT on the broadcast channel and returns the new channel.
func (r *rawHost) allocate() uint32 {
	r.t.Helper()
	nonce := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	r.sendMsg(BroadcastCID, transport.CmdInit, nonce)
	m := r.recv()
	if m.cid != BroadcastCID || m.cmd != transport.CmdInit || len(m.data) != initReplySize || !bytes.Equal(m.data[:8], nonce) {
		r.t.Fatalf("bad INIT reply %08x %v % x", m.cid, m.cmd, m.data)
	}
	return binary.BigEndian.Uint32(m.data[8:12])
}

func trunc(b []byte) []byte {
	if len(b) > 16 {
		return b[:16]
	}
	return b
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}
