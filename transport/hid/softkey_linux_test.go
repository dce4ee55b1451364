package hid

// End-to-end tests without hidraw: ctap2.Client → Device → rawConn on one end of
// a SOCK_SEQPACKET socketpair (which keeps report boundaries, as hidraw does) →
// fakeNode → ctaphid.Server → softkey.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

const testNode = "/dev/hidraw7"

// fakeNode is the device end of a hidraw node: every open gets a copy of each
// input report, as hidraw gives one to every open file, and the output reports of
// all opens reach the device. It is the ctaphid.PacketConn a Server serves.
type fakeNode struct {
	t       testing.TB
	reports chan []byte
	gone    chan struct{}
	once    sync.Once
	bad     atomic.Int32 // host writes that were not report ID 0 + 64 bytes

	mu    sync.Mutex
	opens []*os.File
}

func newFakeNode(t testing.TB) *fakeNode {
	n := &fakeNode{t: t, reports: make(chan []byte, 1024), gone: make(chan struct{})}
	t.Cleanup(func() {
		n.unplug()
		if b := n.bad.Load(); b > 0 {
			t.Errorf("%d host writes were not 65 bytes starting with report ID 0", b)
		}
	})
	return n
}

// open returns a new host connection to the node.
func (n *fakeNode) open() *rawConn {
	n.t.Helper()
	fds := socketpair(n.t)
	conn, err := newRawConn(fds[0], testNode, Report{0, 512}, Report{0, 512})
	if err != nil {
		n.t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[1], true); err != nil {
		n.t.Fatal(err)
	}
	end := os.NewFile(uintptr(fds[1]), "device end")
	n.mu.Lock()
	n.opens = append(n.opens, end)
	n.mu.Unlock()
	go func() {
		for {
			buf := make([]byte, 128)
			k, err := end.Read(buf)
			if err != nil {
				return
			}
			if k != 65 || buf[0] != 0 {
				n.bad.Add(1)
				continue
			}
			select {
			case n.reports <- buf[1:k]:
			case <-n.gone:
				return
			}
		}
	}()
	return conn
}

func (n *fakeNode) ReadPacket(ctx context.Context) ([]byte, error) {
	select {
	case p := <-n.reports:
		return p, nil
	case <-n.gone:
		return nil, transport.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (n *fakeNode) WritePacket(p []byte) error {
	r := make([]byte, 64)
	copy(r, p)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, f := range n.opens {
		f.Write(r) // a closed open just misses it, as with hidraw
	}
	return nil
}

func (n *fakeNode) Close() error { return nil }

// unplug closes every open's device end: hosts then read EOF, as a pulled key
// gives EIO.
func (n *fakeNode) unplug() {
	n.once.Do(func() {
		close(n.gone)
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, f := range n.opens {
			f.Close()
		}
	})
}

// softNode is a softkey served on a fakeNode.
type softNode struct {
	*fakeNode
	auth *softkey.Authenticator
	busy atomic.Int32 // ERR_CHANNEL_BUSY replies sent
}

func newSoftNode(t testing.TB, cfg softkey.Config) *softNode {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &softNode{fakeNode: newFakeNode(t), auth: auth}
	srv := ctaphid.NewServer(auth, ctaphid.ServerOptions{
		Capabilities: ctaphid.CapWink | ctaphid.CapCBOR,
		Log: func(dir string, p []byte) {
			if dir == "send" && p[4] == byte(transport.CmdError)|0x80 && p[7] == byte(ctaphid.ErrChannelBusy) {
				s.busy.Add(1)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ctx, s.fakeNode)
	}()
	t.Cleanup(func() {
		cancel()
		<-served
		auth.Close()
	})
	return s
}

func (s *softNode) device(t testing.TB) (*Device, *ctap2.Client) {
	t.Helper()
	d, err := newDevice(context.Background(), s.open(), deviceInfo(testNode), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, ctap2.NewClient(d)
}

func mcRequest(user string) *ctap2.MakeCredentialRequest {
	return &ctap2.MakeCredentialRequest{
		ClientDataHash:   bytes.Repeat([]byte{1}, 32),
		RP:               &ctap2.RPEntity{ID: "example.com"},
		User:             &ctap2.UserEntity{ID: []byte(user), Name: user},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
		Options:          &ctap2.Options{RK: ctap2.Bool(true)},
	}
}

// waitingPresence is a PresenceFunc that signals when it is asked and when its
// wait ends, and grants presence when release is closed.
type waitingPresence struct {
	asked, stopped, release chan struct{}
	stoppedAt               atomic.Int64
}

func newWaitingPresence() *waitingPresence {
	return &waitingPresence{asked: make(chan struct{}), stopped: make(chan struct{}), release: make(chan struct{})}
}

func (w *waitingPresence) fn(ctx context.Context, _ string) (bool, error) {
	close(w.asked)
	defer func() {
		w.stoppedAt.Store(time.Now().UnixNano())
		close(w.stopped)
	}()
	select {
	case <-w.release:
		return true, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// TestSoftkeyRoundTrip: INIT, getInfo, makeCredential with verified attestation,
// getAssertion with a verified signature and WINK, all in 65-byte writes.
func TestSoftkeyRoundTrip(t *testing.T) {
	s := newSoftNode(t, softkey.Config{})
	d, c := s.device(t)
	ctx := context.Background()
	if caps := d.Capabilities(); caps != ctaphid.CapWink|ctaphid.CapCBOR {
		t.Errorf("Capabilities() = %#x", caps)
	}
	if info := d.Info(); info.URI != "hid:"+testNode || info.Transport != "hid" {
		t.Errorf("Info() = %+v", info)
	}
	info, err := c.GetInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if aaguid := s.auth.AAGUID(); !bytes.Equal(info.AAGUID, aaguid[:]) || !info.HasVersion("FIDO_2_1") {
		t.Errorf("getInfo: AAGUID %x versions %v", info.AAGUID, info.Versions)
	}
	mc, err := c.MakeCredential(ctx, mcRequest("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.VerifyAttestation(bytes.Repeat([]byte{1}, 32)); err != nil {
		t.Fatalf("attestation: %v", err)
	}
	_, key, err := mc.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	cdh := bytes.Repeat([]byte{2}, 32)
	as, err := c.GetAssertions(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || string(as[0].User.ID) != "alice" {
		t.Fatalf("assertions %+v", as)
	}
	if err := as[0].Verify(key, cdh); err != nil {
		t.Errorf("assertion signature: %v", err)
	}
	if err := d.Wink(ctx); err != nil {
		t.Errorf("wink: %v", err)
	}
	// A message of many packets (a long PING) crosses the socket intact.
	long := bytes.Repeat([]byte("0123456789"), 300)
	if got, err := d.Transact(ctx, transport.CmdPing, long); err != nil || !bytes.Equal(got, long) {
		t.Errorf("3000-byte PING: %d bytes back, %v", len(got), err)
	}
}

// TestSoftkeyCancel: keepalives report UP needed while the softkey waits for a
// touch; cancelling ctx sends CTAPHID_CANCEL, the softkey stops waiting within
// 100 ms and makeCredential returns context.Canceled; the channel works after.
func TestSoftkeyCancel(t *testing.T) {
	w := newWaitingPresence()
	s := newSoftNode(t, softkey.Config{PresenceFunc: w.fn})
	_, c := s.device(t)
	checkCancel(t, c, w, "bob", 2*time.Second)
}

// checkCancel starts a makeCredential on c, which the key holds waiting for a
// touch through w, and checks: UP-needed keepalives while it waits; after the
// cancel, the key stops waiting within 100 ms, makeCredential returns
// context.Canceled within 300 ms (CANCEL, then up to 200 ms for the final
// reply); the channel works afterwards. patience bounds each wait.
func checkCancel(t *testing.T, c *ctap2.Client, w *waitingPresence, user string, patience time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	upNeeded := make(chan struct{})
	var once sync.Once
	ctx = transport.WithKeepalive(ctx, func(b byte) {
		if b == transport.StatusUPNeeded {
			once.Do(func() { close(upNeeded) })
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := c.MakeCredential(ctx, mcRequest(user))
		done <- err
	}()
	<-w.asked
	select {
	case <-upNeeded:
	case <-time.After(patience):
		t.Fatal("no UP-needed keepalive while the key waits for a touch")
	}
	start := time.Now()
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(patience):
		t.Fatal("makeCredential did not return after cancel")
	}
	returned := time.Since(start)
	select {
	case <-w.stopped:
	case <-time.After(patience):
		t.Fatal("the key kept waiting for presence")
	}
	stoppedAfter := time.Duration(w.stoppedAt.Load() - start.UnixNano())
	t.Logf("cancel: the key stopped waiting %v after it, makeCredential returned after %v",
		stoppedAfter.Round(time.Microsecond), returned.Round(time.Microsecond))
	if stoppedAfter > 100*time.Millisecond {
		t.Errorf("the key stopped waiting %v after the cancel, want ≤ 100 ms", stoppedAfter)
	}
	if returned > 300*time.Millisecond {
		t.Errorf("makeCredential returned %v after the cancel", returned)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("makeCredential after cancel: %v, want context.Canceled", err)
	}
	if _, err := c.GetInfo(context.Background()); err != nil {
		t.Errorf("getInfo after a cancel: %v", err)
	}
}

// TestSoftkeyChannelBusy: while one program's request waits for a touch, a second
// program's getInfo is answered ERR_CHANNEL_BUSY, retried, and succeeds once the
// first is done.
func TestSoftkeyChannelBusy(t *testing.T) {
	w := newWaitingPresence()
	s := newSoftNode(t, softkey.Config{PresenceFunc: w.fn})
	a, ca := s.device(t)
	b, cb := s.device(t)
	if a.hid.CID() == b.hid.CID() {
		t.Fatalf("two opens share channel %08x", a.hid.CID())
	}
	ctx := context.Background()
	mcDone := make(chan error, 1)
	go func() {
		_, err := ca.MakeCredential(ctx, mcRequest("carol"))
		mcDone <- err
	}()
	<-w.asked
	time.AfterFunc(250*time.Millisecond, func() { close(w.release) })
	start := time.Now()
	if _, err := cb.GetInfo(ctx); err != nil {
		t.Fatalf("getInfo while the key is busy: %v", err)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Errorf("getInfo answered after %v, before the other request ended", el)
	}
	if n := s.busy.Load(); n < 1 {
		t.Errorf("%d ERR_CHANNEL_BUSY replies; the second program should have been told to wait", n)
	}
	if err := <-mcDone; err != nil {
		t.Errorf("makeCredential: %v", err)
	}
}

// TestSoftkeyRemoved: a key pulled out during a request ends it with one line
// wrapping ErrNoDevice; so does the next request.
func TestSoftkeyRemoved(t *testing.T) {
	w := newWaitingPresence()
	s := newSoftNode(t, softkey.Config{PresenceFunc: w.fn})
	d, c := s.device(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.MakeCredential(context.Background(), mcRequest("dave"))
		done <- err
	}()
	<-w.asked
	s.unplug()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("makeCredential did not notice the key was removed")
	}
	if !errors.Is(err, transport.ErrNoDevice) {
		t.Fatalf("key removed: %v, want ErrNoDevice", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "the key at "+testNode+" was removed") {
		t.Errorf("message %q", msg)
	}
	if _, err := d.Transact(context.Background(), transport.CmdPing, []byte("hi")); !errors.Is(err, transport.ErrNoDevice) {
		t.Errorf("request after removal: %v, want ErrNoDevice", err)
	}
}

// TestClosedDevice: requests after Close fail with ErrClosed.
func TestClosedDevice(t *testing.T) {
	s := newSoftNode(t, softkey.Config{})
	d, _ := s.device(t)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Transact(context.Background(), transport.CmdPing, nil); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// TestInitNonce: an INIT reply to another program's nonce, arriving first on the
// shared node, is not taken for ours.
func TestInitNonce(t *testing.T) {
	n := newFakeNode(t)
	conn := n.open()
	done := make(chan error, 1)
	var d *Device
	go func() {
		var err error
		d, err = newDevice(context.Background(), conn, deviceInfo(testNode), Options{})
		done <- err
	}()
	req, err := n.ReadPacket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	reply := func(nonce []byte, cid uint32) []byte {
		p := make([]byte, 64)
		binary.BigEndian.PutUint32(p, ctaphid.BroadcastCID)
		p[4], p[6] = byte(transport.CmdInit)|0x80, 17
		copy(p[7:], nonce)
		binary.BigEndian.PutUint32(p[15:], cid)
		p[19], p[23] = 2, ctaphid.CapCBOR
		return p
	}
	n.WritePacket(reply([]byte("someone!"), 0x11111111))
	n.WritePacket(reply(req[7:15], 0x22222222))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.hid.CID() != 0x22222222 {
		t.Errorf("channel %08x, want the one of the reply to our nonce", d.hid.CID())
	}
}
