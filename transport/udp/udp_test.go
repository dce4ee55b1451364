package udp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
	"github.com/ctapkit/ctapkit/transport/udp"
)

// serveSoftkey serves a softkey with cfg by the UDP convention on a free
// loopback port and returns that address.
func serveSoftkey(t testing.TB, cfg softkey.Config) string {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- expose.ServeUDP(ctx, auth, conn, expose.UDPOptions{}) }()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
		auth.Close()
	})
	return conn.LocalAddr().String()
}

func open(t testing.TB, addr string, opts udp.Options) *udp.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dev, err := udp.Open(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

func register(t testing.TB, c *ctap2.Client, user string) ([]byte, *ctap2.COSEKey) {
	t.Helper()
	cdh := sha256.Sum256([]byte("register " + user))
	mc, err := c.MakeCredential(context.Background(), &ctap2.MakeCredentialRequest{
		ClientDataHash:   cdh[:],
		RP:               &ctap2.RPEntity{ID: "example.com"},
		User:             &ctap2.UserEntity{ID: []byte(user), Name: user},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
	})
	if err != nil {
		t.Fatalf("makeCredential: %v", err)
	}
	id, pub, err := mc.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	return id, pub
}

func assert(t testing.TB, c *ctap2.Client, id []byte, pub *ctap2.COSEKey) {
	t.Helper()
	cdh := make([]byte, 32)
	rand.Read(cdh)
	ga, err := c.GetAssertion(context.Background(), &ctap2.GetAssertionRequest{
		RPID:           "example.com",
		ClientDataHash: cdh,
		AllowList:      []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: id}},
	})
	if err != nil {
		t.Fatalf("getAssertion: %v", err)
	}
	if err := ga.Verify(pub, cdh); err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
}

// TestOpenInfoAndCeremonies: getInfo, makeCredential and getAssertion (signature
// verified) against the softkey over UDP; the device describes itself as udp:.
func TestOpenInfoAndCeremonies(t *testing.T) {
	addr := serveSoftkey(t, softkey.Config{})
	dev := open(t, addr, udp.Options{})
	if got, want := dev.Info(), (transport.DeviceInfo{URI: "udp:" + addr, Transport: "udp", Path: addr, Product: "CTAPHID over UDP " + addr}); got != want {
		t.Errorf("Info() = %+v, want %+v", got, want)
	}
	if dev.Capabilities()&ctaphid.CapCBOR == 0 {
		t.Errorf("capabilities %02x lack CBOR", dev.Capabilities())
	}
	c := ctap2.NewClient(dev)
	info, err := c.GetInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !info.HasVersion("FIDO_2_1") {
		t.Errorf("getInfo versions %v", info.Versions)
	}
	id, pub := register(t, c, "alice")
	assert(t, c, id, pub)
	assert(t, c, id, pub)
	if err := dev.Wink(context.Background()); err != nil {
		t.Errorf("wink: %v", err)
	}
}

// TestPingFragmentation: PINGs of 0, 57, 58 and the largest 7609 bytes cross as
// 1 to 129 datagrams and come back whole.
func TestPingFragmentation(t *testing.T) {
	dev := open(t, serveSoftkey(t, softkey.Config{}), udp.Options{})
	for _, n := range []int{0, 1, 57, 58, 1000, ctaphid.MaxMessageSize} {
		data := make([]byte, n)
		rand.Read(data)
		if err := dev.Ping(context.Background(), data); err != nil {
			t.Fatalf("PING of %d bytes: %v", n, err)
		}
	}
	if d := dev.Conn().Dropped(); d != 0 {
		t.Errorf("%d datagrams dropped", d)
	}
}

// TestCancel: cancelling the context while the softkey waits for a touch sends
// CANCEL over UDP; the request ends within 100 ms with an error wrapping the
// context's, the softkey's wait ends, and the next request works.
func TestCancel(t *testing.T) {
	waiting := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	addr := serveSoftkey(t, softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		waiting <- struct{}{}
		<-ctx.Done()
		cancelled <- struct{}{}
		return false, ctx.Err()
	}})
	dev := open(t, addr, udp.Options{})
	var statuses []byte
	var mu sync.Mutex
	c := ctap2.NewClient(dev, ctap2.WithKeepaliveFunc(func(s byte) {
		mu.Lock()
		defer mu.Unlock()
		statuses = append(statuses, s)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Selection(ctx) }()
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("the softkey never asked for a touch")
	}
	time.Sleep(150 * time.Millisecond) // a keepalive or two
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("selection after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("selection did not return after cancel")
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("cancel took %v, want at most 100 ms", d)
	}
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Error("the softkey's wait for a touch was not cancelled")
	}
	mu.Lock()
	if !bytes.Contains(statuses, []byte{transport.StatusUPNeeded}) {
		t.Errorf("keepalive statuses %v lack UP needed", statuses)
	}
	mu.Unlock()
	if err := dev.Ping(context.Background(), []byte("after cancel")); err != nil {
		t.Fatalf("PING after cancel: %v", err)
	}
}

// TestTwoHosts: two hosts, each with its own socket and channel, use the
// softkey at once; each gets its own replies (a busy device is retried).
func TestTwoHosts(t *testing.T) {
	addr := serveSoftkey(t, softkey.Config{})
	devs := []*udp.Device{open(t, addr, udp.Options{}), open(t, addr, udp.Options{})}
	if devs[0].CID() == devs[1].CID() {
		t.Fatalf("both hosts got channel %08x", devs[0].CID())
	}
	if devs[0].Conn().LocalAddr().String() == devs[1].Conn().LocalAddr().String() {
		t.Fatal("both hosts send from the same address")
	}
	var wg sync.WaitGroup
	for i, dev := range devs {
		wg.Go(func() {
			c := ctap2.NewClient(dev)
			id, pub := register(t, c, []string{"alice", "bob"}[i])
			for range 5 {
				assert(t, c, id, pub)
				data := make([]byte, 300+i)
				rand.Read(data)
				if err := dev.Ping(context.Background(), data); err != nil {
					t.Errorf("host %d: PING: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestLocalAddr: Options.LocalAddr binds the address the device answers to, as
// suites that insist on 127.0.0.1:7112 need; a taken one is ErrInUse.
func TestLocalAddr(t *testing.T) {
	addr := serveSoftkey(t, softkey.Config{})
	probe, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := probe.LocalAddr().String()
	probe.Close()
	dev := open(t, addr, udp.Options{LocalAddr: local})
	if got := dev.Conn().LocalAddr().String(); got != local {
		t.Errorf("local address %s, want %s", got, local)
	}
	if err := dev.Ping(context.Background(), []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, err = udp.Open(context.Background(), addr, udp.Options{LocalAddr: local})
	if !errors.Is(err, transport.ErrInUse) {
		t.Errorf("a second host on %s: %v, want ErrInUse", local, err)
	}
}

// TestNothingListening: opening a port where nothing listens fails at once
// with ErrNoDevice (the loopback interface reports the port unreachable), and a
// silent address with ErrTimeout.
func TestNothingListening(t *testing.T) {
	probe, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.LocalAddr().String()
	probe.Close()
	start := time.Now()
	_, err = udp.Open(context.Background(), addr, udp.Options{})
	if !errors.Is(err, transport.ErrNoDevice) {
		t.Fatalf("Open of a closed port: %v, want ErrNoDevice", err)
	}
	if !strings.Contains(err.Error(), "nothing listens") || time.Since(start) > time.Second {
		t.Errorf("Open of a closed port took %v: %v", time.Since(start), err)
	}

	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, err = udp.Open(context.Background(), silent.LocalAddr().String(), udp.Options{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, transport.ErrTimeout) {
		t.Errorf("Open of a silent port: %v, want ErrTimeout", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = udp.Open(ctx, silent.LocalAddr().String(), udp.Options{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open of a silent port with a 100 ms context: %v, want DeadlineExceeded", err)
	}
}

// TestServerGoesAway: the softkey stopping mid-session makes the next request
// fail with a one-line error instead of hanging.
func TestServerGoesAway(t *testing.T) {
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- expose.ServeUDP(ctx, auth, conn, expose.UDPOptions{}) }()
	dev := open(t, conn.LocalAddr().String(), udp.Options{Timeout: time.Second})
	if err := dev.Ping(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	conn.Close()
	err = dev.Ping(context.Background(), nil)
	if !errors.Is(err, transport.ErrNoDevice) && !errors.Is(err, transport.ErrTimeout) {
		t.Fatalf("PING after the softkey went away: %v", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("multi-line error: %q", err)
	}
}

// TestConnDropsWrongSizes: a datagram that is not one report is dropped and
// counted; the report after it is read.
func TestConnDropsWrongSizes(t *testing.T) {
	dev, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	c, err := udp.Dial(dev.LocalAddr().String(), udp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WritePacket([]byte{1, 2, 3}); err == nil {
		t.Error("WritePacket of 3 bytes: no error")
	}
	for _, n := range []int{10, 65, 0, 64} {
		p := make([]byte, n)
		if n == 64 {
			binary.BigEndian.PutUint32(p, 0xC0FFEE00)
		}
		if _, err := dev.WriteTo(p, c.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p, err := c.ReadPacket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 64 || binary.BigEndian.Uint32(p) != 0xC0FFEE00 {
		t.Fatalf("read %x", p)
	}
	if c.Dropped() != 3 {
		t.Errorf("Dropped() = %d, want 3", c.Dropped())
	}
	// A cancelled read returns ctx.Err(), and the next read works.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel2)
	if _, err := c.ReadPacket(ctx2); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
	dev.WriteTo(make([]byte, 64), c.LocalAddr())
	if _, err := c.ReadPacket(ctx); err != nil {
		t.Fatalf("read after a cancelled one: %v", err)
	}
	c.Close()
	if _, err := c.ReadPacket(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("read after Close: %v, want ErrClosed", err)
	}
}

// TestScheme: udp: URIs through a registry; the port defaults to 8111; bad
// addresses are ErrBadURI.
func TestScheme(t *testing.T) {
	var r transport.Registry
	if err := r.Register(udp.Scheme(udp.Options{})); err != nil {
		t.Fatal(err)
	}
	addr := serveSoftkey(t, softkey.Config{})
	dev, err := r.Open(context.Background(), "udp:"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Info().URI != "udp:"+addr {
		t.Errorf("URI %q", dev.Info().URI)
	}
	if infos, err := r.Enumerate(context.Background()); len(infos) != 0 || err != nil {
		t.Errorf("Enumerate: %v, %v; udp: cannot enumerate", infos, err)
	}
	for _, bad := range []string{"udp:host:port", "udp::8111", "udp:127.0.0.1:0", "udp:127.0.0.1:70000", "udp:[::1"} {
		if _, err := r.Open(context.Background(), bad); !errors.Is(err, transport.ErrBadURI) {
			t.Errorf("Open(%q): %v, want ErrBadURI", bad, err)
		}
	}
	// No port: 8111. Whether something listens there is not this test's business.
	c, err := udp.Dial("127.0.0.1", udp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().String(); got != "127.0.0.1:8111" {
		t.Errorf("udp:127.0.0.1 dials %s", got)
	}
	c6, err := udp.Dial("[::1]", udp.Options{})
	if err == nil {
		defer c6.Close()
		if got := c6.RemoteAddr().String(); got != "[::1]:8111" {
			t.Errorf("udp:[::1] dials %s", got)
		}
	}
}
