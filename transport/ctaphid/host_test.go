package ctaphid

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/transport"
)

// expiringCtx is a context whose deadline passes when the test says so: it
// reports context.DeadlineExceeded without depending on how fast goroutines run.
type expiringCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiringCtx() *expiringCtx {
	return &expiringCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *expiringCtx) expire()               { c.once.Do(func() { close(c.done) }) }
func (c *expiringCtx) Done() <-chan struct{} { return c.done }
func (c *expiringCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// within waits for a value from ch, failing the test after waitLimit.
func within[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("nothing happened within %v", waitLimit)
		panic("unreachable")
	}
}

// async runs f in a goroutine; its result arrives on the returned channel.
func async[T any](f func() T) <-chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}

type txResult struct {
	data []byte
	err  error
	took time.Duration
}

// goTransact runs one transaction in the background, so that the test can play
// the device meanwhile.
func goTransact(ctx context.Context, d *Device, cmd transport.Command, data []byte) <-chan txResult {
	return async(func() txResult {
		start := time.Now()
		got, err := d.Transact(ctx, cmd, data)
		return txResult{got, err, time.Since(start)}
	})
}

// testCtx is a context that ends with the test, bounded by waitLimit.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// recorder is an Options.Log that keeps every frame.
type recorder struct {
	mu     sync.Mutex
	frames []Frame
}

func (r *recorder) log(dir string, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, Frame{Dir: dir, Packet: append([]byte(nil), p...)})
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = nil
}

// packets returns the frames logged in direction dir.
func (r *recorder) packets(dir string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps [][]byte
	for _, f := range r.frames {
		if f.Dir == dir {
			ps = append(ps, f.Packet)
		}
	}
	return ps
}

// sentCommands lists the init packets sent, as "CMD@cid".
func (r *recorder) sentCommands() []string {
	var s []string
	for _, p := range r.packets("send") {
		if isInit(p) {
			cmd, _ := initHeader(p)
			s = append(s, fmt.Sprintf("%v@%08x", cmd, packetCID(p)))
		}
	}
	return s
}

// openDevice serves h on a Pipe and opens a host Device on the other end.
// Open itself waits up to waitLimit; opts.Timeout applies from then on, so that a
// short one cannot fail Open on a loaded machine.
func openDevice(t testing.TB, h Handler, sopts ServerOptions, opts Options) (*Device, *Server) {
	t.Helper()
	s, raw := startServer(t, h, sopts)
	timeout := opts.Timeout
	opts.Timeout = waitLimit
	d, err := Open(testCtx(t), raw.conn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	setTimeout(d, timeout)
	return d, s
}

// setTimeout changes Options.Timeout of d (0 = the default) between
// transactions. No transaction may be running.
func setTimeout(d *Device, timeout time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	d.opts.Timeout = timeout
}

// busyTrigger is an Options.Log that records frames and runs a function when the
// host has received a given number of ERR_CHANNEL_BUSY replies. The function runs
// on the host's goroutine after the reply was read, so what the host does next
// does not depend on timing.
type busyTrigger struct {
	recorder
	tmu   sync.Mutex
	count int
	at    int
	fn    func()
}

func (b *busyTrigger) log(dir string, p []byte) {
	b.recorder.log(dir, p)
	q := normalize(p)
	if dir != "recv" || q == nil || !isInit(q) {
		return
	}
	if c, _ := initHeader(q); c != transport.CmdError || q[initHeaderSize] != byte(ErrChannelBusy) {
		return
	}
	b.tmu.Lock()
	b.count++
	fn := b.fn
	if fn == nil || b.count < b.at {
		b.tmu.Unlock()
		return
	}
	b.fn = nil
	b.tmu.Unlock()
	fn()
}

// after arranges for fn to run at the n-th busy reply from now.
func (b *busyTrigger) after(n int, fn func()) {
	b.tmu.Lock()
	defer b.tmu.Unlock()
	b.at, b.fn = b.count+n, fn
}

// packetsFor is the number of reports that carry an n-byte message.
func packetsFor(n int) int {
	if n <= initPayloadSize {
		return 1
	}
	return 1 + (n-initPayloadSize+contPayloadSize-1)/contPayloadSize
}

// rawDevice plays a hand-scripted device against a host Device.
type rawDevice struct {
	t    testing.TB
	conn PacketConn
	asm  assembler
}

// newRawDevice returns the host end of a Pipe and the device that answers it.
func newRawDevice(t testing.TB) (PacketConn, *rawDevice) {
	host, dev := Pipe()
	t.Cleanup(func() { host.Close() })
	return host, &rawDevice{t: t, conn: dev}
}

// recv reads packets until one request is complete.
func (r *rawDevice) recv() message {
	r.t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		p, err := r.conn.ReadPacket(ctx)
		cancel()
		if err != nil {
			r.t.Fatalf("device waiting for a request: %v", err)
		}
		m, done, code := r.asm.feed(p)
		if code != 0 {
			r.t.Fatalf("host sent a malformed request: %v (packet % x)", code, p[:8])
		}
		if done {
			return m
		}
	}
}

// expect reads one request and checks its channel and command.
func (r *rawDevice) expect(cid uint32, cmd transport.Command) message {
	r.t.Helper()
	m := r.recv()
	if m.cid != cid || m.cmd != cmd {
		r.t.Fatalf("device got %v on %08x (% x), want %v on %08x", m.cmd, m.cid, trunc(m.data), cmd, cid)
	}
	return m
}

func (r *rawDevice) expectSilence(d time.Duration) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if p, err := r.conn.ReadPacket(ctx); err == nil {
		r.t.Fatalf("device got unexpected packet % x", p[:8])
	}
}

func (r *rawDevice) sendPkts(pkts ...[]byte) {
	r.t.Helper()
	for _, p := range pkts {
		if err := r.conn.WritePacket(p); err != nil {
			r.t.Fatalf("device writing: %v", err)
		}
	}
}

func (r *rawDevice) send(cid uint32, cmd transport.Command, data []byte) {
	r.t.Helper()
	pkts, err := fragment(cid, cmd, data)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendPkts(pkts...)
}

// answerInit expects INIT on channel on and answers it, assigning newCID.
func (r *rawDevice) answerInit(on, newCID uint32) {
	r.t.Helper()
	m := r.expect(on, transport.CmdInit)
	r.send(on, transport.CmdInit, initReply(m.data, newCID))
}

// rawVersion and rawCaps are what a rawDevice's INIT replies report.
var rawVersion = [4]byte{2, 7, 8, 9}

const rawCaps = CapWink | CapCBOR | CapNMSG

func initReply(nonce []byte, cid uint32) []byte {
	b := append([]byte(nil), nonce...)
	b = binary.BigEndian.AppendUint32(b, cid)
	b = append(b, rawVersion[:]...)
	return append(b, rawCaps)
}

// openRaw opens a host Device against a rawDevice, which allocates cid. As with
// openDevice, opts.Timeout applies after Open.
func openRaw(t testing.TB, cid uint32, opts Options) (*Device, *rawDevice) {
	t.Helper()
	host, rd := newRawDevice(t)
	type opened struct {
		d   *Device
		err error
	}
	timeout := opts.Timeout
	opts.Timeout = waitLimit
	ch := async(func() opened {
		d, err := Open(testCtx(t), host, opts)
		return opened{d, err}
	})
	rd.answerInit(BroadcastCID, cid)
	o := within(t, ch)
	if o.err != nil {
		t.Fatalf("Open: %v", o.err)
	}
	setTimeout(o.d, timeout)
	if o.d.CID() != cid {
		t.Fatalf("CID = %08x, want %08x", o.d.CID(), cid)
	}
	return o.d, rd
}

// startHub shares upstream, the host end of one device, between n host
// connections the way an HID device is shared by every program that opens it:
// each host's reports reach the device, and every device report reaches every host.
func startHub(t testing.TB, upstream PacketConn, n int) []PacketConn {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hosts := make([]PacketConn, n)
	ends := make([]PacketConn, n)
	for i := range n {
		hosts[i], ends[i] = Pipe()
		wg.Go(func() {
			for {
				p, err := ends[i].ReadPacket(ctx)
				if err != nil || upstream.WritePacket(p) != nil {
					return
				}
			}
		})
	}
	wg.Go(func() {
		for {
			p, err := upstream.ReadPacket(ctx)
			if err != nil {
				return
			}
			for _, e := range ends {
				_ = e.WritePacket(p)
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Error("hub goroutines did not stop")
		}
		for _, h := range hosts {
			h.Close()
		}
	})
	return hosts
}

func TestHostOpen(t *testing.T) {
	d, _ := openDevice(t, &fakeHandler{}, ServerOptions{Version: [3]byte{3, 4, 5}, Rand: &seqReader{}},
		Options{Info: transport.DeviceInfo{URI: "soft:mem", Transport: "soft"}})
	if d.CID() != 0x01020304 {
		t.Errorf("CID = %08x, want 01020304", d.CID())
	}
	if c := d.Capabilities(); c != CapWink|CapCBOR {
		t.Errorf("Capabilities = %02x, want %02x", c, CapWink|CapCBOR)
	}
	if p, ma, mi, b := d.Version(); p != protocolVersion || ma != 3 || mi != 4 || b != 5 {
		t.Errorf("Version = %d %d.%d.%d, want 2 3.4.5", p, ma, mi, b)
	}
	if d.Info().URI != "soft:mem" {
		t.Errorf("Info = %+v", d.Info())
	}
}

// TestHostFragmentation echoes messages at every packet boundary through the
// host Device and the Server and checks the exact packets on the wire.
func TestHostFragmentation(t *testing.T) {
	rec := &recorder{}
	d, _ := openDevice(t, &fakeHandler{}, ServerOptions{KeepaliveInterval: time.Hour}, Options{Log: rec.log})
	ctx := testCtx(t)
	sizes := []int{0, 1, 56, 57, 58, 59, 115, 116, 117, 118, 175, 176, 177, MaxMessageSize - 1, MaxMessageSize}
	for _, cmd := range []transport.Command{transport.CmdPing, transport.CmdCBOR} {
		for _, n := range sizes {
			t.Run(fmt.Sprintf("%v/%d", cmd, n), func(t *testing.T) {
				data := pattern(n)
				rec.reset()
				got, err := d.Transact(ctx, cmd, data)
				if cmd == transport.CmdCBOR && n == 0 {
					// A CBOR request needs at least its command byte.
					if !errors.Is(err, ErrInvalidLen) {
						t.Fatalf("empty CBOR: err = %v, want ErrInvalidLen", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("echo of %d bytes came back as %d bytes % x...", n, len(got), trunc(got))
				}
				want, _ := fragment(d.CID(), cmd, data)
				sent, recv := rec.packets("send"), rec.packets("recv")
				if len(sent) != packetsFor(n) || len(recv) != packetsFor(n) {
					t.Fatalf("sent %d and received %d packets, want %d each", len(sent), len(recv), packetsFor(n))
				}
				for i := range want {
					if !bytes.Equal(sent[i], want[i]) {
						t.Fatalf("sent packet %d = % x, want % x", i, sent[i][:8], want[i][:8])
					}
					if !bytes.Equal(recv[i], want[i]) {
						t.Fatalf("received packet %d = % x, want % x", i, recv[i][:8], want[i][:8])
					}
				}
			})
		}
	}
	// Ping checks the echo itself.
	for _, n := range []int{0, 58, MaxMessageSize} {
		if err := d.Ping(ctx, pattern(n)); err != nil {
			t.Errorf("Ping(%d bytes): %v", n, err)
		}
	}
}

func TestHostMessageTooLong(t *testing.T) {
	rec := &recorder{}
	d, _ := openDevice(t, &fakeHandler{}, ServerOptions{}, Options{Log: rec.log})
	ctx := testCtx(t)
	rec.reset()
	for _, cmd := range []transport.Command{transport.CmdPing, transport.CmdCBOR, transport.CmdMsg} {
		_, err := d.Transact(ctx, cmd, pattern(MaxMessageSize+1))
		if err == nil {
			t.Fatalf("%v of %d bytes accepted", cmd, MaxMessageSize+1)
		}
		if msg := err.Error(); !strings.Contains(msg, "7610") || !strings.Contains(msg, "7609") {
			t.Errorf("%v: error %q does not name the size and the limit", cmd, msg)
		}
	}
	if err := d.Ping(ctx, pattern(MaxMessageSize+1)); err == nil {
		t.Fatal("Ping of 7610 bytes accepted")
	}
	if n := len(rec.frames); n != 0 {
		t.Fatalf("%d packets on the wire for refused requests", n)
	}
	if err := d.Ping(ctx, pattern(MaxMessageSize)); err != nil {
		t.Fatalf("Ping after refusals: %v", err)
	}
}

func TestHostRefusesManagementCommands(t *testing.T) {
	rec := &recorder{}
	d, _ := openDevice(t, &fakeHandler{}, ServerOptions{}, Options{Log: rec.log})
	rec.reset()
	for _, cmd := range []transport.Command{transport.CmdInit, transport.CmdCancel, transport.CmdKeepalive, transport.CmdError, 0x80, 0xFF} {
		if _, err := d.Transact(testCtx(t), cmd, pattern(8)); err == nil {
			t.Errorf("Transact(%v) accepted", cmd)
		}
	}
	if err := d.Lock(testCtx(t), 11); err == nil {
		t.Error("Lock(11) accepted")
	}
	if n := len(rec.frames); n != 0 {
		t.Fatalf("%d packets on the wire for refused requests", n)
	}
}

func TestHostWinkLock(t *testing.T) {
	fh := &fakeHandler{}
	d, _ := openDevice(t, fh, ServerOptions{}, Options{})
	ctx := testCtx(t)
	if err := d.Wink(ctx); err != nil {
		t.Fatalf("Wink: %v", err)
	}
	if n := fh.winks.Load(); n != 1 {
		t.Errorf("handler winked %d times, want 1", n)
	}
	if err := d.Lock(ctx, 10); err != nil {
		t.Fatalf("Lock(10): %v", err)
	}
	if err := d.Ping(ctx, []byte("locked")); err != nil { // the owner is not locked out
		t.Fatalf("Ping while holding the lock: %v", err)
	}
	if err := d.Lock(ctx, 0); err != nil {
		t.Fatalf("Lock(0): %v", err)
	}

	// A device without CapWink refuses WINK, and the host reports the code.
	d2, _ := openDevice(t, fh, ServerOptions{Capabilities: CapCBOR}, Options{})
	if d2.Capabilities()&CapWink != 0 {
		t.Fatalf("Capabilities = %02x, want no CapWink", d2.Capabilities())
	}
	if err := d2.Wink(ctx); !errors.Is(err, ErrInvalidCmd) || !errors.Is(err, transport.ErrUnsupportedCommand) {
		t.Fatalf("Wink without CapWink: err = %v, want ErrInvalidCmd (transport.ErrUnsupportedCommand)", err)
	}
}

// TestHostLockSharedDevice locks the device from one program and checks what
// another program on the same device sees.
func TestHostLockSharedDevice(t *testing.T) {
	_, raw := startServer(t, &fakeHandler{}, ServerOptions{})
	hosts := startHub(t, raw.conn, 2)
	a, err := Open(testCtx(t), hosts[0], Options{})
	if err != nil {
		t.Fatal(err)
	}
	recB := &busyTrigger{}
	b, err := Open(testCtx(t), hosts[1], Options{Log: recB.log})
	if err != nil {
		t.Fatal(err)
	}
	if a.CID() == b.CID() {
		t.Fatalf("both hosts got channel %08x", a.CID())
	}
	ctx := testCtx(t)
	if err := a.Lock(ctx, 5); err != nil {
		t.Fatal(err)
	}
	// B retries while the lock holds, until ctx ends while it waits to retry.
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recB.after(2, cancel)
	start := time.Now()
	err = b.Ping(bctx, []byte("b"))
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrChannelBusy) || !errors.Is(err, transport.ErrInUse) {
		t.Fatalf("Ping while locked: err = %v, want context.Canceled and ErrChannelBusy", err)
	}
	if pings := countCmd(recB.packets("send"), b.CID(), transport.CmdPing); pings != 2 {
		t.Errorf("B sent PING %d times for 2 busy replies", pings)
	}
	if took := time.Since(start); took < busyRetryInterval {
		t.Errorf("B retried after %v, want >= %v", took, busyRetryInterval)
	}
	if err := a.Ping(ctx, []byte("a")); err != nil {
		t.Fatalf("owner Ping: %v", err)
	}
	// After the release B gets through, while a retry is pending or not.
	res := async(func() error { return b.Ping(ctx, []byte("b2")) })
	time.Sleep(30 * time.Millisecond)
	if err := a.Lock(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := within(t, res); err != nil {
		t.Fatalf("Ping after unlock: %v", err)
	}
}

func countCmd(pkts [][]byte, cid uint32, cmd transport.Command) int {
	n := 0
	for _, p := range pkts {
		if c, _ := initHeader(p); isInit(p) && packetCID(p) == cid && c == cmd {
			n++
		}
	}
	return n
}

// TestHostBusySharedDevice runs a request from a second program while the first
// one's handler blocks: the documented behaviour is to retry every 100 ms.
func TestHostBusySharedDevice(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	fh := &fakeHandler{cbor: blockingCBOR(transport.StatusUPNeeded, started, release)}
	_, raw := startServer(t, fh, ServerOptions{KeepaliveInterval: 10 * time.Millisecond})
	hosts := startHub(t, raw.conn, 2)
	ctx := testCtx(t)
	a, err := Open(ctx, hosts[0], Options{})
	if err != nil {
		t.Fatal(err)
	}
	recB := &busyTrigger{}
	b, err := Open(ctx, hosts[1], Options{Log: recB.log})
	if err != nil {
		t.Fatal(err)
	}
	resA := goTransact(ctx, a, transport.CmdCBOR, []byte{0x01})
	within(t, started)
	recB.after(2, func() { close(release) }) // A finishes once B has retried
	resB := goTransact(ctx, b, transport.CmdPing, pattern(150))
	ra, rb := within(t, resA), within(t, resB)
	if ra.err != nil || !bytes.Equal(ra.data, []byte{0}) {
		t.Fatalf("A: % x, %v", ra.data, ra.err)
	}
	if rb.err != nil || !bytes.Equal(rb.data, pattern(150)) {
		t.Fatalf("B: % x, %v", trunc(rb.data), rb.err)
	}
	// B saw A's keepalives and ERR_CHANNEL_BUSY, and sent the whole request again.
	busy := 0
	for _, p := range recB.packets("recv") {
		if c, _ := initHeader(p); isInit(p) && packetCID(p) == b.CID() && c == transport.CmdError {
			if p[initHeaderSize] != byte(ErrChannelBusy) {
				t.Errorf("B got error %02x", p[initHeaderSize])
			}
			busy++
		}
	}
	pings := countCmd(recB.packets("send"), b.CID(), transport.CmdPing)
	if busy < 2 || pings != busy+1 {
		t.Errorf("B got %d busy errors and sent PING %d times, want >= 2 and one more", busy, pings)
	}
	if n := len(recB.packets("send")); n != pings*packetsFor(150)+1 { // +1: INIT
		t.Errorf("B sent %d packets, want whole messages", n)
	}
}

// TestHostBusyRetry checks the retry against a scripted device: after
// ERR_CHANNEL_BUSY the host waits busyRetryInterval and sends the whole request again.
func TestHostBusyRetry(t *testing.T) {
	const cid = 0x0a0b0c0d
	trigger := &busyTrigger{}
	d, rd := openRaw(t, cid, Options{Log: trigger.log})
	res := goTransact(testCtx(t), d, transport.CmdPing, pattern(100))
	m := rd.expect(cid, transport.CmdPing)
	busyAt := time.Now()
	rd.send(cid, transport.CmdError, []byte{byte(ErrChannelBusy)})
	m2 := rd.expect(cid, transport.CmdPing)
	if gap := time.Since(busyAt); gap < busyRetryInterval {
		t.Errorf("retried after %v, want >= %v", gap, busyRetryInterval)
	}
	if !bytes.Equal(m.data, m2.data) {
		t.Fatal("retry carried different data")
	}
	rd.send(cid, transport.CmdPing, m2.data)
	if r := within(t, res); r.err != nil || !bytes.Equal(r.data, pattern(100)) {
		t.Fatalf("Transact = % x, %v", trunc(r.data), r.err)
	}

	// Other errors are final.
	res = goTransact(testCtx(t), d, transport.CmdCBOR, []byte{0x04})
	rd.expect(cid, transport.CmdCBOR)
	rd.send(cid, transport.CmdError, []byte{byte(ErrInvalidCmd)})
	if r := within(t, res); !errors.Is(r.err, ErrInvalidCmd) {
		t.Fatalf("err = %v, want ErrInvalidCmd", r.err)
	}
	rd.expectSilence(busyRetryInterval + 50*time.Millisecond)

	// A cancelled ctx stops the retries, and the error names both reasons.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	trigger.after(1, cancel)
	res = goTransact(ctx, d, transport.CmdPing, []byte("x"))
	rd.expect(cid, transport.CmdPing)
	rd.send(cid, transport.CmdError, []byte{byte(ErrChannelBusy)})
	r := within(t, res)
	if !errors.Is(r.err, context.Canceled) || !errors.Is(r.err, ErrChannelBusy) {
		t.Fatalf("err = %v, want context.Canceled and ErrChannelBusy", r.err)
	}
	rd.expectSilence(busyRetryInterval + 50*time.Millisecond)
}

// TestHostKeepalive checks that the statuses of a handler waiting for a touch
// reach the WithKeepalive callback, once per change.
func TestHostKeepalive(t *testing.T) {
	sawProcessing, upNeeded, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	fh := &fakeHandler{cbor: func(ctx context.Context, req []byte, status func(byte)) []byte {
		status(transport.StatusProcessing)
		select { // until the host has seen it, so that the sequence is deterministic
		case <-sawProcessing:
		case <-ctx.Done():
			return []byte{0x2D}
		}
		status(transport.StatusUPNeeded)
		select {
		case <-release:
			return append([]byte{0x00}, req...)
		case <-ctx.Done():
			return []byte{0x2D}
		}
	}}
	d, _ := openDevice(t, fh, ServerOptions{KeepaliveInterval: 10 * time.Millisecond}, Options{})

	var mu sync.Mutex
	var statuses []byte
	ctx := transport.WithKeepalive(testCtx(t), func(s byte) {
		mu.Lock()
		defer mu.Unlock()
		statuses = append(statuses, s)
		switch s {
		case transport.StatusProcessing:
			close(sawProcessing)
		case transport.StatusUPNeeded:
			close(upNeeded)
		}
	})
	res := goTransact(ctx, d, transport.CmdCBOR, []byte{0x01, 0xa0})
	select {
	case <-upNeeded:
	case r := <-res:
		t.Fatalf("Transact returned before the touch: % x, %v", r.data, r.err)
	case <-time.After(waitLimit):
		t.Fatal("no UP-needed status")
	}
	time.Sleep(50 * time.Millisecond) // several more UP-needed keepalives
	close(release)
	r := within(t, res)
	if r.err != nil || !bytes.Equal(r.data, []byte{0x00, 0x01, 0xa0}) {
		t.Fatalf("Transact = % x, %v", r.data, r.err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []byte{transport.StatusProcessing, transport.StatusUPNeeded}; !bytes.Equal(statuses, want) {
		t.Fatalf("keepalive callback saw % x, want % x", statuses, want)
	}
}

// TestHostCancel cancels ctx while the handler waits for a touch.
func TestHostCancel(t *testing.T) {
	started, handlerCancelled := make(chan struct{}, 1), make(chan struct{})
	fh := &fakeHandler{cbor: func(ctx context.Context, _ []byte, status func(byte)) []byte {
		status(transport.StatusUPNeeded)
		started <- struct{}{}
		select {
		case <-ctx.Done():
			close(handlerCancelled)
			return []byte{0x2D}
		case <-time.After(waitLimit):
			return []byte{0x00}
		}
	}}
	rec := &recorder{}
	d, _ := openDevice(t, fh, ServerOptions{KeepaliveInterval: 20 * time.Millisecond}, Options{Log: rec.log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := goTransact(ctx, d, transport.CmdCBOR, []byte{0x02, 0xa0})
	within(t, started)
	time.Sleep(30 * time.Millisecond) // let a keepalive or two through
	cancel()
	cancelled := time.Now()
	r := within(t, res)
	if took := time.Since(cancelled); took >= 200*time.Millisecond {
		t.Errorf("Transact returned %v after the cancel, want < 200ms", took)
	}
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", r.err)
	}
	within(t, handlerCancelled)
	if n := countCmd(rec.packets("send"), d.CID(), transport.CmdCancel); n != 1 {
		t.Errorf("host sent CANCEL %d times, want 1", n)
	}

	// The final reply (0x2D) was consumed during the cancel, so the next request
	// needs no resync and does not get that reply.
	rec.reset()
	if err := d.Ping(testCtx(t), []byte("after cancel")); err != nil {
		t.Fatalf("Ping after cancel: %v", err)
	}
	if got, want := rec.sentCommands(), []string{fmt.Sprintf("PING@%08x", d.CID())}; !slicesEqual(got, want) {
		t.Errorf("after the cancel the host sent %v, want %v", got, want)
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// TestHostCancelBeforeStart returns at once for a ctx that is already done.
func TestHostCancelBeforeStart(t *testing.T) {
	rec := &recorder{}
	d, _ := openDevice(t, &fakeHandler{}, ServerOptions{}, Options{Log: rec.log})
	rec.reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Transact(ctx, transport.CmdCBOR, []byte{4}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(rec.frames) != 0 {
		t.Fatalf("%d packets sent for a cancelled request", len(rec.frames))
	}
}

// TestHostTimeout runs against a device that reads but never answers.
func TestHostTimeout(t *testing.T) {
	const cid = 0x11223344
	t.Run("Options.Timeout", func(t *testing.T) {
		d, rd := openRaw(t, cid, Options{Timeout: 50 * time.Millisecond})
		res := goTransact(testCtx(t), d, transport.CmdPing, []byte("hello?"))
		rd.expect(cid, transport.CmdPing)
		r := within(t, res)
		if !errors.Is(r.err, transport.ErrTimeout) {
			t.Fatalf("err = %v, want transport.ErrTimeout", r.err)
		}
		if r.took < 50*time.Millisecond {
			t.Errorf("timed out after %v, before Options.Timeout", r.took)
		}
		// The host cancels, and resynchronises before the next request.
		rd.expect(cid, transport.CmdCancel)
		setTimeout(d, waitLimit) // the resync must not depend on this goroutine's speed
		res = goTransact(testCtx(t), d, transport.CmdPing, []byte("again"))
		rd.answerInit(cid, cid)
		m := rd.expect(cid, transport.CmdPing)
		rd.send(cid, transport.CmdPing, m.data)
		if r := within(t, res); r.err != nil || string(r.data) != "again" {
			t.Fatalf("after resync: %q, %v", r.data, r.err)
		}
	})
	t.Run("ctx deadline", func(t *testing.T) {
		d, rd := openRaw(t, cid, Options{Timeout: waitLimit})
		// The deadline passes once the device has the request, however slowly
		// the host goroutine got going.
		ctx := newExpiringCtx()
		res := goTransact(ctx, d, transport.CmdCBOR, []byte{0x04})
		rd.expect(cid, transport.CmdCBOR)
		ctx.expire()
		rd.expect(cid, transport.CmdCancel)
		r := within(t, res)
		if !errors.Is(r.err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", r.err)
		}
		// No final reply came during the grace period: resync first.
		res = goTransact(testCtx(t), d, transport.CmdPing, []byte("again"))
		rd.answerInit(cid, cid)
		m := rd.expect(cid, transport.CmdPing)
		rd.send(cid, transport.CmdPing, m.data)
		if r := within(t, res); r.err != nil {
			t.Fatalf("after resync: %v", r.err)
		}
	})
	t.Run("keepalives extend", func(t *testing.T) {
		const timeout = 200 * time.Millisecond
		d, rd := openRaw(t, cid, Options{Timeout: timeout})
		res := goTransact(testCtx(t), d, transport.CmdCBOR, []byte{0x04})
		rd.expect(cid, transport.CmdCBOR)
		last, maxGap := time.Now(), time.Duration(0)
		for range 8 {
			time.Sleep(timeout / 5)
			rd.send(cid, transport.CmdKeepalive, []byte{transport.StatusProcessing})
			maxGap, last = max(maxGap, time.Since(last)), time.Now()
		}
		rd.send(cid, transport.CmdCBOR, []byte{0x00})
		maxGap = max(maxGap, time.Since(last))
		r := within(t, res)
		if r.err != nil && maxGap >= timeout*3/4 {
			t.Skipf("the device goroutine stalled for %v (Timeout %v): machine too busy to tell", maxGap, timeout)
		}
		if r.err != nil || r.took < timeout {
			t.Fatalf("Transact = %v after %v (longest gap between keepalives %v)", r.err, r.took, maxGap)
		}
	})
	t.Run("Open", func(t *testing.T) {
		host, rd := newRawDevice(t)
		res := async(func() error {
			_, err := Open(testCtx(t), host, Options{Timeout: 50 * time.Millisecond})
			return err
		})
		rd.expect(BroadcastCID, transport.CmdInit)
		if err := within(t, res); !errors.Is(err, transport.ErrTimeout) {
			t.Fatalf("Open = %v, want transport.ErrTimeout", err)
		}
		rd.expectSilence(30 * time.Millisecond) // nothing to cancel on broadcast
	})
}

// TestHostForgottenChannel resynchronises with a device that lost our channel (a
// power cycle): it answers INIT on the old channel with an error, and the host
// allocates a new one.
func TestHostForgottenChannel(t *testing.T) {
	const cid, cid2 = 0x01010101, 0x02020202
	d, rd := openRaw(t, cid, Options{Timeout: 50 * time.Millisecond})
	res := goTransact(testCtx(t), d, transport.CmdPing, []byte("x"))
	rd.expect(cid, transport.CmdPing)
	if r := within(t, res); !errors.Is(r.err, transport.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", r.err)
	}
	rd.expect(cid, transport.CmdCancel)
	setTimeout(d, waitLimit)
	res = goTransact(testCtx(t), d, transport.CmdPing, []byte("y"))
	rd.expect(cid, transport.CmdInit)
	rd.send(cid, transport.CmdError, []byte{byte(ErrInvalidChannel)})
	rd.answerInit(BroadcastCID, cid2)
	m := rd.expect(cid2, transport.CmdPing)
	rd.send(cid2, transport.CmdPing, m.data)
	if r := within(t, res); r.err != nil || string(r.data) != "y" {
		t.Fatalf("Transact = %q, %v", r.data, r.err)
	}
	if d.CID() != cid2 {
		t.Fatalf("CID = %08x, want %08x", d.CID(), cid2)
	}
}

// TestHostInitNonceMismatch checks that Open adopts only the INIT reply to its own
// nonce on the broadcast channel, skipping other programs' replies.
func TestHostInitNonceMismatch(t *testing.T) {
	host, rd := newRawDevice(t)
	type opened struct {
		d   *Device
		err error
	}
	res := async(func() opened {
		d, err := Open(testCtx(t), host, Options{})
		return opened{d, err}
	})
	m := rd.expect(BroadcastCID, transport.CmdInit)
	if len(m.data) != initNonceSize {
		t.Fatalf("INIT request of %d bytes", len(m.data))
	}
	wrong := append([]byte(nil), m.data...)
	wrong[7] ^= 0x80
	rd.send(BroadcastCID, transport.CmdInit, initReply(wrong, 0x66666666))  // another program's nonce
	rd.send(BroadcastCID, transport.CmdInit, m.data[:4])                    // too short to carry a nonce
	rd.send(0x77777777, transport.CmdInit, initReply(m.data, 0x77777777))   // not on broadcast
	rd.send(BroadcastCID, transport.CmdPing, []byte("queued from earlier")) // another command
	rd.send(BroadcastCID, transport.CmdKeepalive, []byte{1})                // keepalive: fine
	rd.send(BroadcastCID, transport.CmdInit, initReply(m.data, 0x12345678)) // ours
	rd.send(BroadcastCID, transport.CmdInit, initReply(m.data, 0x0badcafe)) // a duplicate, too late
	o := within(t, res)
	if o.err != nil {
		t.Fatalf("Open: %v", o.err)
	}
	if o.d.CID() != 0x12345678 || o.d.Capabilities() != rawCaps {
		t.Fatalf("CID %08x caps %02x, want 12345678 %02x", o.d.CID(), o.d.Capabilities(), rawCaps)
	}
	if p, ma, mi, b := o.d.Version(); [4]byte{p, ma, mi, b} != rawVersion {
		t.Fatalf("Version = %v, want %v", [4]byte{p, ma, mi, b}, rawVersion)
	}
	// The late duplicate is on the broadcast channel, so it is not taken for a reply.
	res2 := goTransact(testCtx(t), o.d, transport.CmdPing, []byte("p"))
	rd.expect(0x12345678, transport.CmdPing)
	rd.send(0x12345678, transport.CmdPing, []byte("p"))
	if r := within(t, res2); r.err != nil || string(r.data) != "p" {
		t.Fatalf("Ping = %q, %v", r.data, r.err)
	}
}

func TestHostInitBadReply(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(nonce []byte) []byte
	}{
		{"short", func(n []byte) []byte { return initReply(n, 5)[:initReplySize-1] }},
		{"cid 0", func(n []byte) []byte { return initReply(n, 0) }},
		{"broadcast cid", func(n []byte) []byte { return initReply(n, BroadcastCID) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, rd := newRawDevice(t)
			res := async(func() error { _, err := Open(testCtx(t), host, Options{}); return err })
			m := rd.expect(BroadcastCID, transport.CmdInit)
			rd.send(BroadcastCID, transport.CmdInit, tc.reply(m.data))
			if err := within(t, res); err == nil {
				t.Fatal("Open accepted the reply")
			}
		})
	}
	t.Run("error", func(t *testing.T) {
		host, rd := newRawDevice(t)
		res := async(func() error { _, err := Open(testCtx(t), host, Options{}); return err })
		rd.expect(BroadcastCID, transport.CmdInit)
		rd.send(BroadcastCID, transport.CmdError, []byte{byte(ErrOther)})
		if err := within(t, res); !errors.Is(err, ErrOther) {
			t.Fatalf("Open = %v, want ErrOther", err)
		}
	})
}

// TestHostIgnoresOtherChannels has the device interleave traffic for other
// programs with the reply.
func TestHostIgnoresOtherChannels(t *testing.T) {
	const cid = 0x0000abcd
	d, rd := openRaw(t, cid, Options{})
	res := goTransact(testCtx(t), d, transport.CmdCBOR, pattern(100))
	m := rd.expect(cid, transport.CmdCBOR)
	mine, _ := fragment(cid, transport.CmdCBOR, m.data)
	other, _ := fragment(cid+1, transport.CmdCBOR, pattern(130))
	rd.sendPkts(
		mine[1],   // a continuation before the init packet: stray
		[]byte{1}, // a runt
		other[0], initPacket(cid+1, transport.CmdError, []byte{byte(ErrChannelBusy)}),
		initPacket(BroadcastCID, transport.CmdKeepalive, []byte{2}),
		mine[0],
		other[1], other[2], // another reply's continuations between ours
		mine[1],
	)
	if r := within(t, res); r.err != nil || !bytes.Equal(r.data, pattern(100)) {
		t.Fatalf("Transact = % x, %v", trunc(r.data), r.err)
	}
}

// TestHostMalformedReply checks that a reply breaking the framing fails the
// transaction and that the next one starts by resynchronising the channel.
func TestHostMalformedReply(t *testing.T) {
	const cid = 0x00c0ffee
	for _, tc := range []struct {
		name  string
		reply func(pkts [][]byte) [][]byte // from the correct reply's packets
	}{
		{"bad sequence", func(p [][]byte) [][]byte { return [][]byte{p[0], p[2]} }},
		{"repeated sequence", func(p [][]byte) [][]byte { return [][]byte{p[0], p[1], p[1]} }},
		{"keepalive mid reply", func(p [][]byte) [][]byte {
			return [][]byte{p[0], initPacket(cid, transport.CmdKeepalive, []byte{1})}
		}},
		{"new init mid reply", func(p [][]byte) [][]byte { return [][]byte{p[0], p[0]} }},
		{"wrong command", func(p [][]byte) [][]byte { return [][]byte{initPacket(cid, transport.CmdCBOR, []byte{0})} }},
		{"too long", func(p [][]byte) [][]byte {
			q := append([]byte(nil), p[0]...)
			binary.BigEndian.PutUint16(q[5:7], MaxMessageSize+1)
			return [][]byte{q}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, rd := openRaw(t, cid, Options{})
			res := goTransact(testCtx(t), d, transport.CmdPing, pattern(200))
			m := rd.expect(cid, transport.CmdPing)
			good, _ := fragment(cid, transport.CmdPing, m.data)
			rd.sendPkts(tc.reply(good)...)
			r := within(t, res)
			if !errors.Is(r.err, errMalformed) {
				t.Fatalf("err = %v, want a malformed-reply error", r.err)
			}
			// What the device still had queued arrives before the resync reply; the
			// host must skip it.
			res = goTransact(testCtx(t), d, transport.CmdPing, []byte("next"))
			init := rd.expect(cid, transport.CmdInit)
			rd.sendPkts(good[1:]...)
			rd.sendPkts(good...)
			rd.send(cid, transport.CmdInit, initReply(init.data, cid))
			m = rd.expect(cid, transport.CmdPing)
			rd.send(cid, transport.CmdPing, m.data)
			if r := within(t, res); r.err != nil || string(r.data) != "next" {
				t.Fatalf("after resync: %q, %v", r.data, r.err)
			}
		})
	}
}

// TestHostResyncServer resynchronises against the real Server: a CBOR handler
// that outlives Options.Timeout (no keepalives) leaves the channel needing a
// resync, and its late reply must not be taken for the next request's.
func TestHostResyncServer(t *testing.T) {
	rec := &recorder{}
	fh := &fakeHandler{cbor: func(ctx context.Context, req []byte, _ func(byte)) []byte {
		<-ctx.Done() // the host's CANCEL after its timeout, or the end of Serve
		return []byte{0x00}
	}}
	d, _ := openDevice(t, fh, ServerOptions{KeepaliveInterval: time.Hour}, Options{Timeout: 50 * time.Millisecond, Log: rec.log})
	if _, err := d.Transact(testCtx(t), transport.CmdCBOR, []byte{1}); !errors.Is(err, transport.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	setTimeout(d, waitLimit)
	rec.reset()
	if err := d.Ping(testCtx(t), pattern(300)); err != nil {
		t.Fatalf("Ping after timeout: %v", err)
	}
	cid := d.CID()
	if got, want := rec.sentCommands(), []string{fmt.Sprintf("INIT@%08x", cid), fmt.Sprintf("PING@%08x", cid)}; !slicesEqual(got, want) {
		t.Errorf("host sent %v, want %v", got, want)
	}
	if err := d.Ping(testCtx(t), []byte("again")); err != nil {
		t.Fatal(err)
	}
}

// TestHostDeviceReset: a device that was power-cycled behind the host's back
// answers ERR_INVALID_CHANNEL; the host allocates a new channel and retries.
func TestHostDeviceReset(t *testing.T) {
	rec := &recorder{}
	d, s := openDevice(t, &fakeHandler{}, ServerOptions{}, Options{Log: rec.log})
	old := d.CID()
	s.Reset()
	rec.reset()
	if err := d.Ping(testCtx(t), []byte("after reset")); err != nil {
		t.Fatalf("Ping after device reset: %v", err)
	}
	if d.CID() == old {
		t.Errorf("host kept the forgotten channel %08x", old)
	}
	want := []string{fmt.Sprintf("PING@%08x", old), fmt.Sprintf("INIT@%08x", BroadcastCID), fmt.Sprintf("PING@%08x", d.CID())}
	if got := rec.sentCommands(); !slicesEqual(got, want) {
		t.Errorf("host sent %v, want %v", got, want)
	}
}

func TestHostClose(t *testing.T) {
	d, rd := openRaw(t, 0x01000001, Options{})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := d.Transact(testCtx(t), transport.CmdPing, nil); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Transact after Close = %v, want ErrClosed", err)
	}
	rd.expectSilence(10 * time.Millisecond)
}

// TestHostCloseDuringTransaction closes the device while a transaction waits.
func TestHostCloseDuringTransaction(t *testing.T) {
	const cid = 0x01000002
	d, rd := openRaw(t, cid, Options{Timeout: waitLimit})
	res := goTransact(testCtx(t), d, transport.CmdCBOR, []byte{1})
	rd.expect(cid, transport.CmdCBOR)
	d.Close()
	if r := within(t, res); !errors.Is(r.err, transport.ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", r.err)
	}
}
