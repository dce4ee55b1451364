package ctaphid

import (
	"context"
	"errors"
	"sync"

	"github.com/ctapkit/ctapkit/transport"
)

// pipeLimit bounds the packets queued in one direction of a Pipe. It is far above
// anything a correct peer produces (a full message is 129 packets, a keepalive
// every 100 ms); reaching it means the other end stopped reading.
const pipeLimit = 1 << 14

var errPipeFull = errors.New("ctaphid: pipe: peer stopped reading")

// Pipe returns two connected in-memory PacketConns (host end, device end), the
// HID link of in-process tests and of the soft: device. Packets are copied. Writes
// queue instead of blocking, as an HID driver's report buffer does; without that
// a server that answers ERR_CHANNEL_BUSY while the host is still writing a long
// message would deadlock against it. Close on either end makes both ends' reads
// and writes return transport.ErrClosed.
func Pipe() (host, device PacketConn) {
	shared := &pipeShared{closed: make(chan struct{})}
	a := newPipeQueue()
	b := newPipeQueue()
	return &pipeEnd{shared: shared, in: a, out: b}, &pipeEnd{shared: shared, in: b, out: a}
}

type pipeShared struct {
	once   sync.Once
	closed chan struct{}
}

type pipeQueue struct {
	mu    sync.Mutex
	pkts  [][]byte
	ready chan struct{} // holds a token while pkts may be non-empty
}

func newPipeQueue() *pipeQueue { return &pipeQueue{ready: make(chan struct{}, 1)} }

func (q *pipeQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

type pipeEnd struct {
	shared  *pipeShared
	in, out *pipeQueue
}

func (e *pipeEnd) ReadPacket(ctx context.Context) ([]byte, error) {
	for {
		select {
		case <-e.shared.closed:
			return nil, transport.ErrClosed
		default:
		}
		q := e.in
		q.mu.Lock()
		if len(q.pkts) > 0 {
			p := q.pkts[0]
			q.pkts[0] = nil
			q.pkts = q.pkts[1:]
			if len(q.pkts) > 0 {
				q.signal() // another reader of this end may be waiting
			}
			q.mu.Unlock()
			return p, nil
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-e.shared.closed:
			return nil, transport.ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (e *pipeEnd) WritePacket(p []byte) error {
	select {
	case <-e.shared.closed:
		return transport.ErrClosed
	default:
	}
	q := e.out
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pkts) >= pipeLimit {
		return errPipeFull
	}
	q.pkts = append(q.pkts, append([]byte(nil), p...))
	q.signal()
	return nil
}

func (e *pipeEnd) Close() error {
	e.shared.once.Do(func() { close(e.shared.closed) })
	return nil
}
