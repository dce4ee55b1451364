//go:build !nopcsc && (cgo || windows)

package pcsc

// Tests of the scard side through the real stack: libpcsclite → a private pcscd
// (internal/pcsctest) → vpcd → the softkey's card. Skipped with the reason where
// pcscd cannot run (required on CI).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/internal/pcsctest"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// slot1Reader is the name of the private pcscd's second vpcd reader.
const slot1Reader = "Virtual PCD 00 01"

// insertCard connects a softkey card to the vpcd slot at addr and returns a
// function that pulls it out (idempotent, also run at cleanup).
func insertCard(t testing.TB, addr string, cfg softkey.Config) (remove func()) {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := expose.DialVPCD(context.Background(), addr)
	if err != nil {
		auth.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		served <- expose.ServeVPCD(context.Background(), conn, expose.NewCard(auth, expose.CardOptions{}))
	}()
	var done bool
	remove = func() {
		if done {
			return
		}
		done = true
		conn.Close()
		<-served
		auth.Close()
	}
	t.Cleanup(remove)
	return remove
}

// openRetry opens reader, retrying while pcscd may still show a previous card.
func openRetry(t testing.TB, reader string, opts Options) *Device {
	t.Helper()
	dev, err := Open(context.Background(), reader, opts)
	for i := 0; err != nil && i < 10; i++ {
		time.Sleep(500 * time.Millisecond)
		dev, err = Open(context.Background(), reader, opts)
	}
	if err != nil {
		t.Fatalf("opening %s: %v", reader, err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

func slotAddr(d *pcsctest.Daemon, slot int) string {
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(d.Port+slot))
}

// TestSCardReaders: reader names, indexes and substrings; Enumerate lists the card
// and skips the empty slot; a reader without a card is ErrNoDevice, at once or
// after CardWait, and a cancelled wait ends promptly.
func TestSCardReaders(t *testing.T) {
	d := pcsctest.Shared(t)
	insertCard(t, d.CardAddr(), softkey.Config{})
	dev := openRetry(t, d.Reader, Options{})
	if got := dev.Info(); got != readerInfo(d.Reader) {
		t.Errorf("Info() = %+v", got)
	}
	info, err := ctap2.NewClient(dev).GetInfo(context.Background())
	if err != nil || !info.HasVersion("FIDO_2_1") {
		t.Fatalf("getInfo through pcscd: %+v, %v", info, err)
	}

	infos, err := Enumerate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(infos, readerInfo(d.Reader)) || slices.Contains(infos, readerInfo(slot1Reader)) {
		t.Errorf("Enumerate = %+v, want the card in %s and not the empty %s", infos, d.Reader, slot1Reader)
	}

	ctx := context.Background()
	for _, name := range []string{"0", "virtual pcd", "PCD 00 00"} {
		dev, err := Open(ctx, name, Options{})
		if err != nil {
			t.Errorf("Open(%q): %v", name, err)
			continue
		}
		if dev.Reader() != d.Reader {
			t.Errorf("Open(%q) opened %q, want %q", name, dev.Reader(), d.Reader)
		}
		dev.Close()
	}
	for name, want := range map[string]string{
		"nosuch": `no reader matches "nosuch" (readers: Virtual PCD 00 00, Virtual PCD 00 01)`,
		"7":      "no reader number 7",
	} {
		if _, err := Open(ctx, name, Options{}); !errors.Is(err, transport.ErrNoDevice) || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q): %v, want ErrNoDevice with %q", name, err, want)
		}
	}

	if _, err := Open(ctx, slot1Reader, Options{CardWait: -1}); !errors.Is(err, transport.ErrNoDevice) || !strings.Contains(err.Error(), "no card on "+slot1Reader) {
		t.Errorf("empty reader: %v", err)
	}
	start := time.Now()
	_, err = Open(ctx, slot1Reader, Options{CardWait: 300 * time.Millisecond})
	if el := time.Since(start); !errors.Is(err, transport.ErrNoDevice) || el < 250*time.Millisecond || el > 2*time.Second {
		t.Errorf("empty reader with CardWait 300 ms: %v after %v", err, el)
	}
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(200*time.Millisecond, cancel)
	start = time.Now()
	_, err = Open(cctx, slot1Reader, Options{CardWait: 10 * time.Second})
	if el := time.Since(start); !errors.Is(err, context.Canceled) || el > time.Second {
		t.Errorf("cancelled wait for a card: %v after %v", err, el)
	}
}

// TestSCardCardArrives: Open waits for a card put on the reader meanwhile.
func TestSCardCardArrives(t *testing.T) {
	d := pcsctest.Shared(t)
	time.AfterFunc(300*time.Millisecond, func() { insertCard(t, slotAddr(d, 1), softkey.Config{}) })
	dev, err := Open(context.Background(), slot1Reader, Options{CardWait: 10 * time.Second})
	if err != nil {
		t.Fatalf("Open while the card arrives: %v", err)
	}
	defer dev.Close()
	if _, err := ctap2.NewClient(dev).GetInfo(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSCardCardRemoved: the card leaving during a touch wait ends the request with
// the one-line ErrNoDevice error.
func TestSCardCardRemoved(t *testing.T) {
	d := pcsctest.Shared(t)
	asked := make(chan struct{})
	remove := insertCard(t, d.CardAddr(), softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		close(asked)
		<-ctx.Done()
		return false, ctx.Err()
	}})
	dev := openRetry(t, d.Reader, Options{})
	done := make(chan error, 1)
	go func() {
		_, err := ctap2.NewClient(dev).MakeCredential(context.Background(), mcRequest("example.com", "frank", false))
		done <- err
	}()
	<-asked
	remove()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("makeCredential did not notice the card leaving")
	}
	if !errors.Is(err, transport.ErrNoDevice) || !strings.HasSuffix(err.Error(), "the card was removed from "+d.Reader) {
		t.Errorf("card removed: %v", err)
	}
}
