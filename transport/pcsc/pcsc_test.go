package pcsc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

const testReader = "Fake Reader 00 00"

// openFake opens a Device on card.
func openFake(t testing.TB, card *fakeCard, opts Options) *Device {
	t.Helper()
	d, err := newDevice(context.Background(), card, testReader, opts)
	if err != nil {
		t.Fatalf("opening the fake card: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// TestSelect: SELECT with Le 00 on open; the answer sets Capabilities; a card
// without the applet is ErrNoDevice naming 6A82; a SELECT answered with 61xx is
// collected with GET RESPONSE.
func TestSelect(t *testing.T) {
	for _, tt := range []struct {
		version string
		caps    byte
	}{
		{VersionFIDO, ctaphid.CapCBOR | ctaphid.CapNMSG},
		{VersionU2F, ctaphid.CapCBOR},
		{"FIDO_2_1_PRE", ctaphid.CapCBOR},
	} {
		card := newFakeCard(echo{}, tt.version)
		d := openFake(t, card, Options{})
		if got := d.Capabilities(); got != tt.caps {
			t.Errorf("%s: Capabilities() = %#x, want %#x", tt.version, got, tt.caps)
		}
		if d.AppletVersion() != tt.version {
			t.Errorf("AppletVersion() = %q, want %q", d.AppletVersion(), tt.version)
		}
		want := []byte{0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00, 0x00, 0x06, 0x47, 0x2F, 0x00, 0x01, 0x00}
		if got := card.sent()[0]; !bytes.Equal(got, want) {
			t.Errorf("SELECT = % X, want % X", got, want)
		}
	}

	card := newFakeCard(echo{}, "")
	_, err := newDevice(context.Background(), card, testReader, Options{})
	if !errors.Is(err, transport.ErrNoDevice) || !strings.Contains(err.Error(), "6A82 (FIDO applet not found)") {
		t.Errorf("card without the applet: %v, want ErrNoDevice naming 6A82", err)
	}
	var swErr SWError
	if !errors.As(err, &swErr) || swErr != 0x6A82 {
		t.Errorf("errors.As SWError: %v", swErr)
	}

	card = newFakeCard(echo{}, VersionFIDO)
	card.chunk = 3
	d := openFake(t, card, Options{})
	if d.AppletVersion() != VersionFIDO {
		t.Errorf("SELECT through 61xx: version %q", d.AppletVersion())
	}
	if n := len(card.sent()); n != 2 {
		t.Errorf("SELECT through 61xx took %d APDUs, want 2", n)
	}
}

// TestInfo: the URI is pcsc: + the reader name.
func TestInfo(t *testing.T) {
	d := openFake(t, newFakeCard(echo{}, VersionFIDO), Options{})
	want := transport.DeviceInfo{URI: "pcsc:" + testReader, Transport: "pcsc", Path: testReader, Product: "PC/SC " + testReader}
	if got := d.Info(); got != want {
		t.Errorf("Info() = %+v, want %+v", got, want)
	}
}

// TestShortChaining: long requests go as CLA 0x90 links of 255 bytes without Le,
// the last one CLA 0x80 with Le 00; long answers come back through GET RESPONSE.
func TestShortChaining(t *testing.T) {
	for _, n := range []int{0, 1, 254, 255, 256, 510, 511, 2048, 7609} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			card := newFakeCard(echo{}, VersionFIDO)
			d := openFake(t, card, Options{})
			msg := pattern(n)
			got, err := d.Transact(context.Background(), transport.CmdCBOR, msg)
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte{0}, msg...); !bytes.Equal(got, want) {
				t.Fatalf("echo of %d bytes: got %d bytes back", n, len(got))
			}
			apdus := card.sent()[1:] // after SELECT
			links := max(1, (n+maxShortData-1)/maxShortData)
			for i := range links {
				a := apdus[i]
				last := i == links-1
				size := min(maxShortData, n-i*maxShortData)
				switch {
				case !last && (a[0] != 0x90 || len(a) != 5+size):
					t.Errorf("link %d = % X…: want CLA 90, Lc %d, no Le", i, a[:5], size)
				case last && a[0] != 0x80:
					t.Errorf("last link CLA %02X, want 80", a[0])
				case last && a[len(a)-1] != 0x00:
					t.Errorf("last link has no Le 00")
				case a[1] != 0x10 || a[2] != 0x80 || a[3] != 0x00:
					t.Errorf("link %d header % X, want xx 10 80 00", i, a[:4])
				}
				if len(a) > 5+maxShortData+1 {
					t.Errorf("link %d is %d bytes", i, len(a))
				}
			}
			for _, a := range apdus[links:] {
				if !bytes.Equal(a, []byte{0x00, 0xC0, 0x00, 0x00, a[4]}) {
					t.Errorf("after the request: % X, want GET RESPONSE", a)
				}
			}
			if want := links + (n+1-1)/256; len(apdus) != want {
				t.Errorf("%d APDUs for %d bytes each way, want %d", len(apdus), n, want)
			}
		})
	}
}

// TestExtended: ExtendedAPDUs sends one APDU each way; AutoAPDUs uses one for long
// requests, and after a card's 6700 chains short APDUs from then on.
func TestExtended(t *testing.T) {
	ctx := context.Background()
	msg := pattern(2048)
	want := append([]byte{0}, msg...)

	card := newFakeCard(echo{}, VersionFIDO)
	d := openFake(t, card, Options{APDU: ExtendedAPDUs})
	for _, m := range [][]byte{msg, {0x04}} {
		if got, err := d.Transact(ctx, transport.CmdCBOR, m); err != nil || !bytes.Equal(got, append([]byte{0}, m...)) {
			t.Fatalf("extended: %d bytes, %v", len(got), err)
		}
	}
	apdus := card.sent()[1:]
	if len(apdus) != 2 {
		t.Fatalf("extended: %d APDUs for two requests, want 2", len(apdus))
	}
	if a := apdus[0]; a[4] != 0 || int(a[5])<<8|int(a[6]) != len(msg) || !bytes.Equal(a[len(a)-2:], []byte{0, 0}) {
		t.Errorf("extended APDU header % X, tail % X", a[:7], a[len(a)-2:])
	}
	if a := apdus[1]; !bytes.Equal(a, []byte{0x80, 0x10, 0x80, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00}) {
		t.Errorf("short request in extended mode: % X", a)
	}

	card = newFakeCard(echo{}, VersionFIDO)
	d = openFake(t, card, Options{APDU: AutoAPDUs})
	if got, err := d.Transact(ctx, transport.CmdCBOR, msg); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("auto on an extended card: %d bytes, %v", len(got), err)
	}
	if n := len(card.sent()) - 1; n != 1 {
		t.Errorf("auto on an extended card: %d APDUs, want 1", n)
	}

	card = newFakeCard(echo{}, VersionFIDO)
	card.noExt = true
	d = openFake(t, card, Options{APDU: AutoAPDUs})
	for range 2 {
		if got, err := d.Transact(ctx, transport.CmdCBOR, msg); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("auto on a short-only card: %d bytes, %v", len(got), err)
		}
	}
	var ext int
	for _, a := range card.sent() {
		if len(a) >= 7 && a[4] == 0 {
			ext++
		}
	}
	if ext != 1 {
		t.Errorf("auto on a short-only card tried %d extended APDUs, want 1 (then short for good)", ext)
	}

	card = newFakeCard(echo{}, VersionFIDO)
	card.noExt = true
	d = openFake(t, card, Options{APDU: ExtendedAPDUs})
	_, err := d.Transact(ctx, transport.CmdCBOR, msg)
	if err == nil || !strings.Contains(err.Error(), "6700 (wrong length)") {
		t.Errorf("extended on a short-only card: %v, want an error naming 6700", err)
	}
}

// TestKeepalive: while the card answers 0x9100 the host reports its status once
// per change and polls with NFCCTAP_GETRESPONSE about every PollInterval.
func TestKeepalive(t *testing.T) {
	h := echo{fn: func(ctx context.Context, req []byte, status func(byte)) []byte {
		time.Sleep(50 * time.Millisecond)
		status(transport.StatusUPNeeded)
		time.Sleep(300 * time.Millisecond)
		return []byte{0x00, 0xA0}
	}}
	card := newFakeCard(h, VersionFIDO)
	d := openFake(t, card, Options{})
	var mu sync.Mutex
	var got []byte
	ctx := transport.WithKeepalive(context.Background(), func(s byte) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	})
	start := time.Now()
	resp, err := d.Transact(ctx, transport.CmdCBOR, []byte{0x01, 0xA0})
	if err != nil || !bytes.Equal(resp, []byte{0x00, 0xA0}) {
		t.Fatalf("Transact = % X, %v", resp, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v for a 350 ms request", el)
	}
	mu.Lock()
	defer mu.Unlock()
	if !bytes.Equal(got, []byte{transport.StatusProcessing, transport.StatusUPNeeded}) {
		t.Errorf("keepalive statuses % X, want 01 02 (once per change)", got)
	}
	var polls int
	for _, a := range card.sent() {
		if bytes.HasPrefix(a, []byte{0x80, 0x11, 0x00, 0x00}) {
			polls++
		}
	}
	// 350 ms of work, 100 ms between polls, each poll waiting up to 20 ms.
	if polls < 2 || polls > 5 {
		t.Errorf("%d NFCCTAP_GETRESPONSE polls in 350 ms, want about 3", polls)
	}
	card.mu.Lock()
	defer card.mu.Unlock()
	if card.locks != 1 || card.unlocks != 1 {
		t.Errorf("card locked %d and unlocked %d times while polling, want once each", card.locks, card.unlocks)
	}
	// A quick request is not locked.
	card.locks, card.unlocks = 0, 0
	card.h = echo{}
	card.mu.Unlock()
	_, err = d.Transact(context.Background(), transport.CmdCBOR, []byte{0x04})
	card.mu.Lock()
	if err != nil || card.locks != 0 {
		t.Errorf("quick request: %v, %d locks", err, card.locks)
	}
}

// TestCancel: a cancelled context stops a busy request within 100 ms with the
// NFCCTAP cancel, and the card's work ends.
func TestCancel(t *testing.T) {
	stopped := make(chan struct{})
	h := echo{fn: func(ctx context.Context, req []byte, status func(byte)) []byte {
		if req[0] == 0x04 {
			return []byte{0x00}
		}
		status(transport.StatusUPNeeded)
		<-ctx.Done()
		close(stopped)
		return []byte{0x2D}
	}}
	card := newFakeCard(h, VersionFIDO)
	d := openFake(t, card, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	waiting := make(chan struct{})
	var once sync.Once
	ctx = transport.WithKeepalive(ctx, func(s byte) {
		if s == transport.StatusUPNeeded {
			once.Do(func() { close(waiting) })
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := d.Transact(ctx, transport.CmdCBOR, []byte{0x01, 0xA0})
		done <- err
	}()
	<-waiting
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	cancel()
	err := <-done
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Errorf("Transact returned %v after the cancel, want ≤ 100 ms", el)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Transact after cancel: %v, want context.Canceled", err)
	}
	card.mu.Lock()
	if card.locks != card.unlocks {
		t.Errorf("after cancel: %d locks, %d unlocks", card.locks, card.unlocks)
	}
	card.mu.Unlock()
	select {
	case <-stopped:
	case <-time.After(time.Second):
		t.Error("the card's work did not stop")
	}
	apdus := card.sent()
	if last := apdus[len(apdus)-1]; !bytes.HasPrefix(last, []byte{0x80, 0x11, 0x11, 0x00}) {
		t.Errorf("last APDU % X, want the NFCCTAP cancel 80 11 11 00", last)
	}
	// The device is usable afterwards.
	if got, err := d.Transact(context.Background(), transport.CmdCBOR, []byte{0x04}); err != nil || !bytes.Equal(got, []byte{0x00}) {
		t.Errorf("Transact after a cancel: % X, %v", got, err)
	}
}

// TestCloseStopsPolling: Close ends a polling transaction with ErrClosed.
func TestCloseStopsPolling(t *testing.T) {
	h := echo{fn: func(ctx context.Context, req []byte, status func(byte)) []byte {
		<-ctx.Done()
		return []byte{0x2D}
	}}
	card := newFakeCard(h, VersionFIDO)
	d, err := newDevice(context.Background(), card, testReader, Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.Transact(context.Background(), transport.CmdCBOR, []byte{0x01})
		done <- err
	}()
	time.Sleep(150 * time.Millisecond)
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, transport.ErrClosed) {
			t.Errorf("Transact after Close: %v, want ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not stop the transaction")
	}
	if _, err := d.Transact(context.Background(), transport.CmdCBOR, []byte{0x04}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Transact on a closed device: %v", err)
	}
}

// TestU2F: CmdMsg re-encodes the USB framing as a short APDU, collects 61xx and
// returns data || SW; status words are U2F's answer, not errors.
func TestU2F(t *testing.T) {
	card := newFakeCard(echo{}, VersionU2F)
	d := openFake(t, card, Options{})
	data := pattern(64)
	usb, err := ctap1.HIDCommand(ctap1.InsRegister, 0x03, 0x00, data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Transact(context.Background(), transport.CmdMsg, usb)
	if err != nil {
		t.Fatal(err)
	}
	short := append(append([]byte{0x00, 0x01, 0x03, 0x00, 64}, data...), 0x00)
	if sent := card.sent()[1]; !bytes.Equal(sent, short) {
		t.Errorf("sent % X, want the short form % X", sent, short)
	}
	// The echo handler answers the APDU it got (short again) and 9000.
	if want := sw(short, 0x9000); !bytes.Equal(got, want) {
		t.Errorf("reply % X, want % X", got, want)
	}

	// VERSION in the USB framing without data; a long answer through 61xx.
	card = newFakeCard(echo{}, VersionU2F)
	card.chunk = 4
	d = openFake(t, card, Options{})
	usb, _ = ctap1.HIDCommand(ctap1.InsVersion, 0, 0, nil)
	got, err = d.Transact(context.Background(), transport.CmdMsg, usb)
	if err != nil {
		t.Fatal(err)
	}
	if want := sw([]byte{0x00, 0x03, 0x00, 0x00, 0x00}, 0x9000); !bytes.Equal(got, want) {
		t.Errorf("VERSION reply % X, want % X", got, want)
	}

	// A U2F status word is the answer.
	card = newFakeCard(u2fStatus(0x6985), VersionU2F)
	d = openFake(t, card, Options{})
	got, err = d.Transact(context.Background(), transport.CmdMsg, usb)
	if err != nil || !bytes.Equal(got, []byte{0x69, 0x85}) {
		t.Errorf("U2F 6985: % X, %v", got, err)
	}

	// Too long for one short APDU: chained.
	card = newFakeCard(echo{}, VersionU2F)
	d = openFake(t, card, Options{})
	long, _ := ctap1.HIDCommand(ctap1.InsAuthenticate, 0x03, 0x00, pattern(300))
	if _, err := d.Transact(context.Background(), transport.CmdMsg, long); err != nil {
		t.Fatal(err)
	}
	if a := card.sent()[1]; a[0] != 0x10 || a[4] != 255 {
		t.Errorf("first link % X…, want CLA 10, Lc FF", a[:5])
	}

	if _, err := d.Transact(context.Background(), transport.CmdMsg, []byte{0x00, 0x01}); err == nil {
		t.Error("a 2-byte APDU was sent")
	}
}

type u2fStatus uint16

func (u2fStatus) HandleCBOR(context.Context, []byte, func(byte)) []byte { return []byte{0x01} }
func (s u2fStatus) HandleMsg(context.Context, []byte, func(byte)) []byte {
	return []byte{byte(s >> 8), byte(s)}
}

// TestUnsupported: commands without an NFC form, and a card that refuses
// NFCCTAP_MSG, give ErrUnsupportedCommand; the latter clears CapCBOR.
func TestUnsupported(t *testing.T) {
	card := newFakeCard(echo{}, VersionU2F)
	d := openFake(t, card, Options{})
	for _, cmd := range []transport.Command{transport.CmdPing, transport.CmdWink, transport.CmdLock, transport.CmdInit} {
		if _, err := d.Transact(context.Background(), cmd, nil); !errors.Is(err, transport.ErrUnsupportedCommand) {
			t.Errorf("%v: %v, want ErrUnsupportedCommand", cmd, err)
		}
	}
	card.noCBOR = true
	_, err := d.Transact(context.Background(), transport.CmdCBOR, []byte{0x04})
	if !errors.Is(err, transport.ErrUnsupportedCommand) || !strings.Contains(err.Error(), "6D00") {
		t.Errorf("CBOR on a U2F-only card: %v, want ErrUnsupportedCommand naming 6D00", err)
	}
	if caps := d.Capabilities(); caps&ctaphid.CapCBOR != 0 {
		t.Errorf("Capabilities() = %#x after 6D00, want no CBOR", caps)
	}
}

// TestStatusWords: an unexpected status word is an error naming it, in one line.
func TestStatusWords(t *testing.T) {
	for sw, name := range map[uint16]string{0x6F00: "SW 6F00 (no precise diagnosis)", 0x6A80: "SW 6A80 (wrong data)", 0x6123 + 0x4400: "SW A523"} {
		card := newFakeCard(echo{}, VersionFIDO)
		card.forceSW = sw
		d := openFake(t, card, Options{})
		_, err := d.Transact(context.Background(), transport.CmdCBOR, []byte{0x04})
		if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "\n") {
			t.Errorf("SW %04X: %v, want one line naming %q", sw, err, name)
		}
	}
	// A chain link refused.
	card := newFakeCard(echo{}, VersionFIDO)
	d := openFake(t, card, Options{})
	refuse := &chainRefuser{fakeCard: card, refuse: true}
	d.conn = refuse
	_, err := d.Transact(context.Background(), transport.CmdCBOR, pattern(600))
	if err == nil || !strings.Contains(err.Error(), "6884 (command chaining not supported)") {
		t.Errorf("chaining refused: %v", err)
	}
	// The next request selects the applet again first.
	refuse.refuse = false
	if _, err := d.Transact(context.Background(), transport.CmdCBOR, []byte{0x04}); err != nil {
		t.Fatal(err)
	}
	apdus := card.sent()
	if a := apdus[len(apdus)-2]; a[1] != insSelect {
		t.Errorf("after a broken chain: % X, want SELECT first", a)
	}
}

// chainRefuser answers 6884 to chained links while refuse is set.
type chainRefuser struct {
	*fakeCard
	refuse bool
}

func (c *chainRefuser) Transmit(apdu []byte) ([]byte, error) {
	if apdu[0]&claChain != 0 && c.refuse {
		return []byte{0x68, 0x84}, nil
	}
	return c.fakeCard.Transmit(apdu)
}

// TestCardRemovedMidChain: a card gone mid-transaction is one line wrapping ErrNoDevice.
func TestCardRemovedMidChain(t *testing.T) {
	for _, at := range []int{2, 3, 5} { // first link, a middle link, GET RESPONSE
		card := newFakeCard(echo{}, VersionFIDO)
		card.removeAt = at
		d := openFake(t, card, Options{})
		_, err := d.Transact(context.Background(), transport.CmdCBOR, pattern(600))
		if !errors.Is(err, transport.ErrNoDevice) {
			t.Errorf("removed at APDU %d: %v, want ErrNoDevice", at, err)
			continue
		}
		if want := "the card was removed from " + testReader; err.Error() != want {
			t.Errorf("removed: %q, want %q", err, want)
		}
	}
	card := newFakeCard(echo{}, VersionFIDO)
	d := openFake(t, card, Options{})
	card.Close() // the fake's reader vanishes
	d.closed.Store(false)
	_, err := d.Transact(context.Background(), transport.CmdCBOR, []byte{0x04})
	if !errors.Is(err, transport.ErrNoDevice) || err.Error() != "the reader "+testReader+" is gone" {
		t.Errorf("reader gone: %v", err)
	}
}

// TestTransmitAPDU: raw APDUs pass untouched both ways (61xx included), and the
// next Transact selects the FIDO applet again.
func TestTransmitAPDU(t *testing.T) {
	card := newFakeCard(echo{}, VersionFIDO)
	card.chunk = 4
	d := openFake(t, card, Options{})
	sel := append(append([]byte{0x00, 0xA4, 0x04, 0x00, 0x08}, fidoAID...), 0x00)
	got, err := d.TransmitAPDU(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{'F', 'I', 'D', 'O', 0x61, 0x04}; !bytes.Equal(got, want) {
		t.Errorf("raw SELECT = % X, want % X", got, want)
	}
	if _, err := d.Transact(context.Background(), transport.CmdCBOR, []byte{0x04}); err != nil {
		t.Fatal(err)
	}
	apdus := card.sent()
	if a := apdus[2]; a[1] != insSelect {
		t.Errorf("after a raw APDU: % X, want SELECT first", a)
	}
}

// TestCancelledBeforeStart: a done context sends nothing.
func TestCancelledBeforeStart(t *testing.T) {
	card := newFakeCard(echo{}, VersionFIDO)
	d := openFake(t, card, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Transact(ctx, transport.CmdCBOR, []byte{0x04}); !errors.Is(err, context.Canceled) {
		t.Errorf("Transact with a done context: %v", err)
	}
	if n := len(card.sent()); n != 1 {
		t.Errorf("%d APDUs sent, want only the SELECT of open", n)
	}
}

// TestParseCommand agrees with ctap1.ParseAPDU.
func TestParseCommand(t *testing.T) {
	for _, s := range [][]byte{
		{0, 1, 2, 3},
		{0, 1, 2, 3, 0},
		{0, 1, 2, 3, 7},
		{0, 1, 2, 3, 2, 9, 9},
		{0, 1, 2, 3, 2, 9, 9, 0},
		{0, 1, 2, 3, 0, 0, 0},
		{0, 1, 2, 3, 0, 1, 0},
		{0, 1, 2, 3, 0, 0, 0, 0, 0},
		{0, 1, 2, 3, 0, 0, 2, 9, 9},
		{0, 1, 2, 3, 0, 0, 2, 9, 9, 0, 0},
		{0, 1, 2, 3, 0, 0, 2, 9, 9, 1, 0},
		{0, 1, 2, 3, 2, 9},
		{0, 1, 2, 3, 0, 1},
		{0, 1, 2},
	} {
		checkParse(t, s)
	}
}

func checkParse(t *testing.T, b []byte) {
	t.Helper()
	got, err := parseCommand(b)
	want, werr := ctap1.ParseAPDU(b)
	if (err != nil) != (werr != nil) {
		t.Fatalf("% X: parseCommand error %v, ctap1.ParseAPDU error %v", b, err, werr)
	}
	if err != nil {
		return
	}
	if got.cla != want.CLA || got.ins != want.INS || got.p1 != want.P1 || got.p2 != want.P2 ||
		!bytes.Equal(got.data, want.Data) || got.ne != want.Ne {
		t.Fatalf("% X: parseCommand %+v, ctap1.ParseAPDU %+v", b, got, want)
	}
	// Round trip: the short or extended encoding parses back to the same command.
	var enc []byte
	if len(got.data) <= maxShortData && got.ne <= 256 {
		enc = shortAPDU(got.cla, got.ins, got.p1, got.p2, got.data, got.ne)
	} else {
		enc = extendedAPDU(got.cla, got.ins, got.p1, got.p2, got.data)
	}
	again, err := parseCommand(enc)
	if err != nil || !bytes.Equal(again.data, got.data) || again.ins != got.ins {
		t.Fatalf("% X re-encoded as % X: %+v, %v", b, enc, again, err)
	}
}

func FuzzParseCommand(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0, 0, 2, 9, 9, 0, 0})
	f.Add([]byte{0x80, 0x10, 0x80, 0x00, 1, 4, 0})
	f.Fuzz(func(t *testing.T, b []byte) { checkParse(t, b) })
}
