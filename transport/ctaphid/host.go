package ctaphid

import (
	"bytes"
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

const (
	// defaultTimeout bounds the silence while waiting for a reply. A device that is
	// waiting for a touch sends keepalives, so only a stuck device is this quiet;
	// u2f_hid.h's U2FHID_TRANS_TIMEOUT is the same 3 s.
	defaultTimeout = 3 * time.Second
	// busyRetryInterval is how long to wait before retrying after
	// ERR_CHANNEL_BUSY, as python-fido2 does.
	busyRetryInterval = 100 * time.Millisecond
	// cancelGrace is how long to wait for the final reply after CANCEL. Reading it
	// keeps it from being taken for the reply to the next request.
	cancelGrace = 200 * time.Millisecond
)

// Options configures the host side of a CTAPHID connection.
type Options struct {
	Info transport.DeviceInfo // reported by Device.Info
	Rand io.Reader            // INIT nonces; nil = crypto/rand
	// Timeout is the longest silence tolerated while waiting for a reply. Every
	// KEEPALIVE and every packet of the reply starts it again, so it does not limit
	// how long the user may take to touch the key; ctx does. 0 = 3s.
	Timeout time.Duration
	// Log, if set, sees every packet sent ("send") and received ("recv"), including
	// other channels' traffic; NewFrameLogger turns it into the hex dump of -vv. It
	// must not keep or modify pkt.
	Log func(dir string, pkt []byte)
}

// channelInfo is what the INIT reply told us. It is replaced, not mutated, so the
// accessors can read it while a transaction resynchronises the channel.
type channelInfo struct {
	cid     uint32
	version [4]byte // CTAPHID protocol, device major, minor, build
	caps    byte
}

// Device is the host end of a CTAPHID channel on one PacketConn. It implements
// transport.Device; its methods are safe for concurrent use, and transactions are
// serialised because a channel carries one at a time.
type Device struct {
	conn PacketConn
	opts Options

	mu sync.Mutex // held for a whole transaction
	// resync is set when the channel may still carry the remains of an abandoned
	// transaction (a timeout, a cancel without final reply, a malformed reply). The
	// next transaction then starts with INIT on the channel, which makes the device
	// drop whatever it was doing (§11.2.9.1.3).
	resync bool

	ch        atomic.Pointer[channelInfo]
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ transport.Device = (*Device)(nil)

// Open allocates a channel on conn with INIT on the broadcast channel, using a
// random nonce so that replies to other programs' INITs are ignored, and returns
// the Device that uses it. If Open fails, conn is left open; once it succeeds,
// Device.Close closes conn.
func Open(ctx context.Context, conn PacketConn, opts Options) (*Device, error) {
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	d := &Device{conn: conn, opts: opts}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.initChannel(ctx, BroadcastCID); err != nil {
		return nil, err
	}
	return d, nil
}

// Drainer is a PacketConn that can drop the input that piled up while nobody
// read it. A hidraw node queues every report of every channel for each open file,
// up to 64, and then drops new ones: after another program's long exchange on the
// same key, the reply to our next request would be lost behind the stale ones.
type Drainer interface {
	Drain()
}

// Transact sends one request on the channel and returns the reply (§11.2.9).
// Keepalives are reported to transport.KeepaliveFunc(ctx) once per status change.
// ERR_CHANNEL_BUSY is retried every 100 ms until ctx is done. When ctx is done
// while the device is working, Transact sends CANCEL and returns an error
// wrapping ctx.Err(); silence longer than Options.Timeout gives an error wrapping
// transport.ErrTimeout, and an ERROR reply one wrapping the Error.
func (d *Device) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	switch cmd {
	case transport.CmdInit, transport.CmdCancel, transport.CmdKeepalive, transport.CmdError:
		return nil, fmt.Errorf("ctaphid: %v is channel management, not a request", cmd)
	}
	if cmd&0x80 != 0 {
		return nil, fmt.Errorf("ctaphid: command 0x%02x does not fit the 7-bit command field", byte(cmd))
	}
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("ctaphid: %v message of %d bytes exceeds the %d-byte limit", cmd, len(data), MaxMessageSize)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return nil, fmt.Errorf("ctaphid: %v request: %w", cmd, transport.ErrClosed)
	}
	if d.resync {
		if err := d.resynchronize(ctx); err != nil {
			return nil, err
		}
	}
	if dr, ok := d.conn.(Drainer); ok {
		dr.Drain()
	}
	resp, err := d.exchange(ctx, d.ch.Load().cid, cmd, data, nil)
	if errors.Is(err, ErrInvalidChannel) {
		// The device forgot our channel: it was power-cycled or reset behind our
		// back. It did not run the request, so allocate a new channel and retry once.
		if err := d.initChannel(ctx, BroadcastCID); err != nil {
			return nil, err
		}
		resp, err = d.exchange(ctx, d.ch.Load().cid, cmd, data, nil)
	}
	return resp, err
}

// Info returns Options.Info.
func (d *Device) Info() transport.DeviceInfo { return d.opts.Info }

// Close closes the PacketConn, which also ends a transaction in progress.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		d.closeErr = d.conn.Close()
	})
	return d.closeErr
}

// CID returns the allocated channel.
func (d *Device) CID() uint32 { return d.ch.Load().cid }

// Capabilities returns the capability flags of the INIT reply (CapWink, ...).
func (d *Device) Capabilities() byte { return d.ch.Load().caps }

// Version returns the CTAPHID protocol version and the device version numbers of
// the INIT reply.
func (d *Device) Version() (protocol, major, minor, build byte) {
	v := d.ch.Load().version
	return v[0], v[1], v[2], v[3]
}

// Ping sends data with PING and checks that the device echoes it.
func (d *Device) Ping(ctx context.Context, data []byte) error {
	got, err := d.Transact(ctx, transport.CmdPing, data)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("ctaphid: ping echo differs: sent %d bytes, got %d back", len(data), len(got))
	}
	return nil
}

// Wink asks the device to identify itself (blink, beep). Devices without CapWink
// answer ERR_INVALID_CMD.
func (d *Device) Wink(ctx context.Context) error {
	_, err := d.Transact(ctx, transport.CmdWink, nil)
	return err
}

// Lock gives this channel exclusive use of the device for seconds (at most 10);
// 0 releases the lock early. Other channels get ERR_CHANNEL_BUSY meanwhile.
func (d *Device) Lock(ctx context.Context, seconds byte) error {
	if seconds > 10 {
		return fmt.Errorf("ctaphid: lock of %d s exceeds the 10 s maximum", seconds)
	}
	_, err := d.Transact(ctx, transport.CmdLock, []byte{seconds})
	return err
}

// initChannel sends INIT on cid (BroadcastCID to allocate, our own to resync) and
// adopts the channel of the reply whose nonce matches.
func (d *Device) initChannel(ctx context.Context, cid uint32) error {
	nonce := make([]byte, initNonceSize)
	if _, err := io.ReadFull(d.opts.Rand, nonce); err != nil {
		return fmt.Errorf("ctaphid: generating INIT nonce: %w", err)
	}
	ours := func(reply []byte) bool {
		return len(reply) >= initNonceSize && bytes.Equal(reply[:initNonceSize], nonce)
	}
	reply, err := d.exchange(ctx, cid, transport.CmdInit, nonce, ours)
	if err != nil {
		return err
	}
	if len(reply) < initReplySize {
		return fmt.Errorf("ctaphid: INIT reply of %d bytes, want %d", len(reply), initReplySize)
	}
	info := &channelInfo{cid: binary.BigEndian.Uint32(reply[8:12]), caps: reply[16]}
	copy(info.version[:], reply[12:16])
	if info.cid == 0 || info.cid == BroadcastCID {
		return fmt.Errorf("ctaphid: device allocated the reserved channel %08x", info.cid)
	}
	d.ch.Store(info)
	return nil
}

// resynchronize makes the device drop the remains of an abandoned transaction by
// sending INIT on our channel. A device that answers ERROR has probably forgotten
// the channel (a power cycle), so we allocate a new one.
func (d *Device) resynchronize(ctx context.Context) error {
	err := d.initChannel(ctx, d.ch.Load().cid)
	if _, ok := errors.AsType[Error](err); ok {
		err = d.initChannel(ctx, BroadcastCID)
	}
	if err != nil {
		return fmt.Errorf("ctaphid: resynchronising channel: %w", err)
	}
	d.resync = false
	return nil
}

// exchange sends one message and waits for its reply, retrying while the device
// is busy. accept, if set, rejects complete replies that are not ours (INIT
// replies to other nonces), which are then skipped.
func (d *Device) exchange(ctx context.Context, cid uint32, cmd transport.Command, data []byte, accept func([]byte) bool) ([]byte, error) {
	pkts, err := fragment(cid, cmd, data)
	if err != nil {
		return nil, err
	}
	notify := transport.StatusNotifier(transport.KeepaliveFunc(ctx))
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("ctaphid: %v request: %w", cmd, err)
		}
		for _, p := range pkts {
			if err := d.write(p); err != nil {
				return nil, fmt.Errorf("ctaphid: sending %v request: %w", cmd, err)
			}
		}
		r := newReplyReader(cid, cmd)
		r.skipOther = cmd == transport.CmdInit
		reply, err := d.await(ctx, r, notify, accept)
		e, isErr := err.(Error)
		if !isErr {
			return reply, err
		}
		if e != ErrChannelBusy {
			return nil, fmt.Errorf("ctaphid: %v request: %w", cmd, e)
		}
		t := time.NewTimer(busyRetryInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("ctaphid: %v request: gave up waiting for a busy device (%w): %w", cmd, e, ctx.Err())
		case <-t.C:
		}
	}
}

// await reads packets until r has a complete reply. It returns an Error
// unwrapped, so that exchange can tell ERR_CHANNEL_BUSY apart.
func (d *Device) await(ctx context.Context, r *replyReader, notify func(byte), accept func([]byte) bool) ([]byte, error) {
	deadline := time.Now().Add(d.opts.Timeout)
	for {
		rctx, cancel := context.WithDeadline(ctx, deadline)
		p, err := d.conn.ReadPacket(rctx)
		silent := errors.Is(rctx.Err(), context.DeadlineExceeded)
		cancel()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil, d.abandon(ctx, r)
			case silent:
				// The device may still answer later; make sure that answer is not
				// taken for the next request's.
				d.resync = true
				if r.cid != BroadcastCID {
					_ = d.write(initPacket(r.cid, transport.CmdCancel, nil))
				}
				return nil, fmt.Errorf("ctaphid: waiting for %v reply: no packet for %v: %w", r.cmd, d.opts.Timeout, transport.ErrTimeout)
			default:
				return nil, fmt.Errorf("ctaphid: reading %v reply: %w", r.cmd, err)
			}
		}
		d.log("recv", p)
		ev, err := r.feed(p)
		if err != nil {
			if errors.Is(err, errMalformed) {
				d.resync = true
			}
			return nil, err
		}
		switch ev {
		case replyKeepalive:
			notify(r.status)
			deadline = time.Now().Add(d.opts.Timeout)
		case replyProgress:
			deadline = time.Now().Add(d.opts.Timeout)
		case replyDone:
			if accept != nil && !accept(r.data()) {
				r.restart()
				continue
			}
			return r.data(), nil
		}
	}
}

// abandon is called when ctx is done while a reply is outstanding. It sends
// CANCEL (§11.2.9.1.5) and reads on for a moment so that the device's final reply
// (CTAP2_ERR_KEEPALIVE_CANCEL for CBOR) is consumed here rather than taken for the
// reply to the next request.
func (d *Device) abandon(ctx context.Context, r *replyReader) error {
	err := fmt.Errorf("ctaphid: %v request cancelled: %w", r.cmd, ctx.Err())
	if r.cid == BroadcastCID {
		return err // nothing to cancel: an allocation holds no device state
	}
	if d.write(initPacket(r.cid, transport.CmdCancel, nil)) != nil {
		d.resync = true
		return err
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelGrace)
	defer cancel()
	for {
		p, rerr := d.conn.ReadPacket(gctx)
		if rerr != nil {
			d.resync = true // the reply may still come
			return err
		}
		d.log("recv", p)
		ev, ferr := r.feed(p)
		if ferr != nil {
			if errors.Is(ferr, errMalformed) {
				d.resync = true
			}
			return err
		}
		if ev == replyDone {
			return err
		}
	}
}

func (d *Device) write(p []byte) error {
	d.log("send", p)
	return d.conn.WritePacket(p)
}

func (d *Device) log(dir string, p []byte) {
	if d.opts.Log != nil {
		d.opts.Log(dir, p)
	}
}
