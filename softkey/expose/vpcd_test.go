package expose

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/softkey"
)

// fakeVPCD is the reader side of the vpcd protocol, as pcscd's vpcd driver speaks it.
type fakeVPCD struct {
	t    testing.TB
	conn net.Conn
	// split writes a frame's length and body separately, as Debian's vpcd does.
	split bool
}

func (v *fakeVPCD) send(msg []byte) {
	v.t.Helper()
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(msg)))
	if v.split {
		if _, err := v.conn.Write(frame); err != nil {
			v.t.Fatal(err)
		}
		frame = nil
	}
	if _, err := v.conn.Write(append(frame, msg...)); err != nil {
		v.t.Fatal(err)
	}
}

func (v *fakeVPCD) recv() []byte {
	v.t.Helper()
	v.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [2]byte
	if _, err := io.ReadFull(v.conn, hdr[:]); err != nil {
		v.t.Fatalf("reading a frame: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(v.conn, b); err != nil {
		v.t.Fatalf("reading a frame: %v", err)
	}
	return b
}

func (v *fakeVPCD) transmit(apdu string) []byte {
	v.t.Helper()
	v.send(mustHex(v.t, apdu))
	return v.recv()
}

// startVPCD listens like vpcd, connects a card served by ServeVPCD to it and
// returns the reader end and the channel ServeVPCD's result arrives on.
func startVPCD(t *testing.T, ctx context.Context, card *Card) (*fakeVPCD, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := DialVPCD(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	reader, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	served := make(chan error, 1)
	go func() { served <- ServeVPCD(ctx, conn, card) }()
	return &fakeVPCD{t: t, conn: reader}, served
}

func waitServed(t *testing.T, served <-chan error) error {
	t.Helper()
	select {
	case err := <-served:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("ServeVPCD did not return")
		return nil
	}
}

// TestVPCDSession is a pcscd session as vpcd carries it: ATR polls between APDUs,
// power cycles (no reply) that deselect the applet, and the reader going away.
func TestVPCDSession(t *testing.T) {
	auth := newCardSoftkey(t, softkey.Config{})
	v, served := startVPCD(t, context.Background(), NewCard(auth, CardOptions{}))

	v.send([]byte{vpcdGetATR})
	if got := v.recv(); !bytes.Equal(got, ATR()) {
		t.Fatalf("ATR %x", got)
	}
	v.send([]byte{vpcdPowerOff})
	v.send([]byte{vpcdPowerOn})
	if got := v.transmit("00a4040008a0000006472f0001"); string(got) != "U2F_V2\x90\x00" {
		t.Fatalf("SELECT: %q", got)
	}
	v.send([]byte{vpcdGetATR})
	if got := v.recv(); !bytes.Equal(got, ATR()) {
		t.Fatalf("ATR between APDUs: %x", got)
	}
	resp := v.transmit("80108000010400")
	for resp[len(resp)-2] == 0x61 {
		more := v.transmit(fmt.Sprintf("00c00000%02x", resp[len(resp)-1]))
		resp = append(resp[:len(resp)-2], more...)
	}
	if resp[0] != 0x00 || !bytes.Equal(resp[len(resp)-2:], []byte{0x90, 0x00}) {
		t.Fatalf("getInfo: %x", resp)
	}
	v.send([]byte{vpcdReset})
	if got := v.transmit("80108000010400"); !bytes.Equal(got, []byte{0x6D, 0x00}) {
		t.Errorf("getInfo after reset: %x, want 6d00 (deselected)", got)
	}
	v.send([]byte{0x7F}) // unknown control byte: ignored
	v.send(nil)          // empty frame: ignored
	if got := v.transmit("00a4040008a0000006472f000100"); string(got) != "U2F_V2\x90\x00" {
		t.Fatalf("SELECT after reset: %q", got)
	}

	v.conn.Close()
	if err := waitServed(t, served); !errors.Is(err, io.EOF) {
		t.Errorf("ServeVPCD after vpcd closed: %v, want EOF", err)
	}
}

// TestVPCDCardRemovedMidFrame: a connection that ends inside a frame is an
// unexpected EOF, and the card is powered off.
func TestVPCDCardRemovedMidFrame(t *testing.T) {
	auth := newCardSoftkey(t, softkey.Config{})
	card := NewCard(auth, CardOptions{})
	v, served := startVPCD(t, context.Background(), card)
	if got := v.transmit("00a4040008a0000006472f0001"); string(got) != "U2F_V2\x90\x00" {
		t.Fatalf("SELECT: %q", got)
	}
	v.conn.Write([]byte{0x00, 0x07, 0x80, 0x10})
	v.conn.Close()
	if err := waitServed(t, served); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ServeVPCD: %v, want unexpected EOF", err)
	}
	if got := card.Transmit(context.Background(), mustHex(t, "80108000010400")); !bytes.Equal(got, []byte{0x6D, 0x00}) {
		t.Errorf("card after the connection ended: %x, want 6d00 (powered off)", got)
	}
}

// TestVPCDContext: ServeVPCD returns ctx.Err() promptly when ctx ends, idle or
// while a host that does not poll waits for a touch.
func TestVPCDContext(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		auth := newCardSoftkey(t, softkey.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		_, served := startVPCD(t, ctx, NewCard(auth, CardOptions{}))
		time.Sleep(10 * time.Millisecond)
		start := time.Now()
		cancel()
		if err := waitServed(t, served); !errors.Is(err, context.Canceled) {
			t.Errorf("ServeVPCD: %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("waiting for a touch", func(t *testing.T) {
		auth := newCardSoftkey(t, softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
			<-ctx.Done()
			return false, ctx.Err()
		}})
		ctx, cancel := context.WithCancel(context.Background())
		v, served := startVPCD(t, ctx, NewCard(auth, CardOptions{}))
		v.transmit("00a4040008a0000006472f0001")
		v.send(mustHex(t, "80100000010b00")) // libfido2 style: blocks until the touch
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := waitServed(t, served); !errors.Is(err, context.Canceled) {
			t.Errorf("ServeVPCD: %v, want context.Canceled", err)
		}
	})
}

// countingConn counts writes.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes []int
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(b))
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// TestVPCDOneWritePerFrame: each reply frame (length and body) is one write.
func TestVPCDOneWritePerFrame(t *testing.T) {
	auth := newCardSoftkey(t, softkey.Config{})
	cardEnd, readerEnd := net.Pipe()
	defer readerEnd.Close()
	cc := &countingConn{Conn: cardEnd}
	served := make(chan error, 1)
	go func() { served <- ServeVPCD(context.Background(), cc, NewCard(auth, CardOptions{})) }()
	v := &fakeVPCD{t: t, conn: readerEnd}
	var sizes []int
	v.send([]byte{vpcdGetATR})
	sizes = append(sizes, 2+len(v.recv()))
	sizes = append(sizes, 2+len(v.transmit("00a4040008a0000006472f0001")))
	sizes = append(sizes, 2+len(v.transmit("80108000010400")))
	readerEnd.Close()
	waitServed(t, served)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if !slices.Equal(cc.writes, sizes) {
		t.Errorf("writes of %v bytes, want one per frame: %v", cc.writes, sizes)
	}
}

// TestVPCDQuickACK reproduces Debian vpcd's split writes without TCP_NODELAY: an
// APDU round trip must not cost a delayed ACK (~40 ms).
func TestVPCDQuickACK(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_QUICKACK is Linux only")
	}
	auth := newCardSoftkey(t, softkey.Config{})
	v, _ := startVPCD(t, context.Background(), NewCard(auth, CardOptions{}))
	if err := v.conn.(*net.TCPConn).SetNoDelay(false); err != nil {
		t.Fatal(err)
	}
	v.split = true
	v.transmit("00a4040008a0000006472f0001")
	var times []time.Duration
	for range 25 {
		start := time.Now()
		v.transmit("80108000010b00") // selection: short answer, presence auto
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	if median := times[len(times)/2]; median > 20*time.Millisecond {
		t.Errorf("median APDU round trip %v: the card delays its ACKs", median)
	}
}

func TestDialVPCDRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = DialVPCD(context.Background(), addr)
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("DialVPCD to a closed port: %v", err)
	}
}
