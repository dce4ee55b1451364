package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// TestTouchSelect: every key is asked at once, the touched one wins and the
// others are cancelled; a CTAP 2.0 key gets the makeCredential probe instead of
// authenticatorSelection, and every device is closed afterwards.
func TestTouchSelect(t *testing.T) {
	w, reg := newFakeWorld(t, "hid")
	a21 := &fakeKey{name: "a", aaguid: 1, touch: make(chan struct{})}
	b20 := &fakeKey{name: "b", aaguid: 2, touch: make(chan struct{}), versions: []string{"FIDO_2_0"}}
	c21 := &fakeKey{name: "c", aaguid: 3, touch: make(chan struct{})}
	w.plug("/dev/hidraw1", a21)
	w.plug("/dev/hidraw2", b20)
	w.plug("/dev/hidraw3", c21)
	close(b20.touch) // b is touched; a and c wait until cancelled

	app, _, errOut := testApp(reg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	uri, err := app.touchSelect(ctx, []string{"hid:/dev/hidraw1", "hid:/dev/hidraw2", "hid:/dev/hidraw3"})
	if err != nil || uri != "hid:/dev/hidraw2" {
		t.Fatalf("touchSelect = %q, %v; want hid:/dev/hidraw2", uri, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the losers were not cancelled: touchSelect waited for the deadline")
	}
	if !slices.Contains(b20.cmds, ctap2.CmdMakeCredential) || slices.Contains(b20.cmds, ctap2.CmdSelection) {
		t.Errorf("CTAP 2.0 key got %v, want the makeCredential probe", b20.cmds)
	}
	for _, k := range []*fakeKey{a21, c21} {
		if !slices.Contains(k.cmds, ctap2.CmdSelection) {
			t.Errorf("key %s got %v, want authenticatorSelection", k.name, k.cmds)
		}
	}
	if len(w.opened) != 3 || w.closed != 3 {
		t.Errorf("opened %v, closed %d", w.opened, w.closed)
	}
	if !strings.Contains(errOut.String(), "Touch the security key you want to use (3 attached)") {
		t.Errorf("stderr %q", errOut)
	}
}

// TestTouchSelectNoTouch: nobody touches anything: the --timeout deadline is
// exit code 5; a key that cannot be opened is skipped with a note, and if no key
// can be, the error says there is nothing to touch.
func TestTouchSelectNoTouch(t *testing.T) {
	w, reg := newFakeWorld(t, "hid")
	k := &fakeKey{name: "a", aaguid: 1, touch: make(chan struct{})}
	w.plug("/dev/hidraw1", k)
	app, _, errOut := testApp(reg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := app.touchSelect(ctx, []string{"hid:/dev/hidraw1", "hid:/dev/hidraw9"})
	if exitCode(err) != exitCancelled {
		t.Errorf("touchSelect: %v (exit %d), want exit %d", err, exitCode(err), exitCancelled)
	}
	if !strings.Contains(errOut.String(), "note: skipping hid:/dev/hidraw9") {
		t.Errorf("stderr %q", errOut)
	}
	_, err = app.touchSelect(context.Background(), []string{"hid:/dev/hidraw9"})
	if !errors.Is(err, errNoTouchSelect) {
		t.Errorf("touchSelect of nothing openable: %v", err)
	}
}

// TestPickDeviceTouch: several keys on a terminal are chosen by touch; without
// a terminal the list is the error, as before.
func TestPickDeviceTouch(t *testing.T) {
	w, reg := newFakeWorld(t, "hid")
	a := &fakeKey{name: "a", aaguid: 1, touch: make(chan struct{})}
	b := &fakeKey{name: "b", aaguid: 2, touch: make(chan struct{})}
	w.plug("/dev/hidraw1", a)
	w.plug("/dev/hidraw2", b)
	close(a.touch)

	app, _, _ := testApp(reg, "")
	_, err := app.pickDevice(context.Background())
	if !errors.Is(err, transport.ErrAmbiguous) || !strings.Contains(err.Error(), "hid:/dev/hidraw1") || len(w.opened) != 0 {
		t.Fatalf("pickDevice without a terminal: %v (opened %v)", err, w.opened)
	}
	app.io.errTTY = true
	uri, err := app.pickDevice(context.Background())
	if err != nil || uri != "hid:/dev/hidraw1" {
		t.Fatalf("pickDevice = %q, %v; want the touched hid:/dev/hidraw1", uri, err)
	}
}

// TestWinkUnsupported: a transport without WINK (here a fake, as PC/SC) is a
// one-line error and exit code 1, and nothing is sent.
func TestWinkUnsupported(t *testing.T) {
	w, reg := newFakeWorld(t, "pcsc")
	k := &fakeKey{name: "card", aaguid: 1}
	w.plug("Reader 0", k)
	dev, err := reg.Open(context.Background(), "pcsc:Reader 0")
	if err != nil {
		t.Fatal(err)
	}
	err = wink(context.Background(), guardedDevice{dev})
	if err == nil || exitCode(err) != exitError || !strings.Contains(err.Error(), "pcsc:Reader 0 cannot wink") {
		t.Errorf("wink: %v (exit %d)", err, exitCode(err))
	}
	if len(k.cmds) != 0 {
		t.Errorf("sent %v", k.cmds)
	}
}

// TestTouchSelectSoftkeys: the same over real CTAPHID framing, with softkeys
// that wait for a touch: the untouched key's wait ends by CTAPHID CANCEL (its
// presence prompt sees its context cancelled) well before the deadline.
func TestTouchSelectSoftkeys(t *testing.T) {
	touched := make(chan struct{})
	cancelled := make(chan string, 2)
	var closedWith atomic.Int32 // cancellations seen when the first device closed
	closedWith.Store(-1)
	presence := func(name string) func(context.Context, string) (bool, error) {
		return func(ctx context.Context, _ string) (bool, error) {
			if name == "b" {
				<-touched
				return true, nil
			}
			<-ctx.Done()
			cancelled <- name
			return false, ctx.Err()
		}
	}
	reg := new(transport.Registry)
	err := reg.Register(transport.Scheme{Name: "hid", Open: func(ctx context.Context, path string) (transport.Device, error) {
		auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{PresenceFunc: presence(path)})
		if err != nil {
			return nil, err
		}
		dev, err := expose.InProcess(ctx, auth, expose.InProcessOptions{Info: transport.DeviceInfo{URI: "hid:" + path, Transport: "hid", Path: path}})
		if err != nil {
			return nil, err
		}
		return closeHook{dev, func() { closedWith.CompareAndSwap(-1, int32(len(cancelled))) }}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	app, _, _ := testApp(reg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		time.Sleep(100 * time.Millisecond) // both keys are waiting by now
		close(touched)
	}()
	start := time.Now()
	uri, err := app.touchSelect(ctx, []string{"hid:a", "hid:b", "hid:c"})
	if err != nil || uri != "hid:b" {
		t.Fatalf("touchSelect = %q, %v; want hid:b", uri, err)
	}
	// Both waits ended before any device was closed (which would end them too):
	// the cancel went over the wire.
	if n := closedWith.Load(); n != 2 {
		t.Fatalf("%d keys had seen the cancel when the first was closed, want 2", n)
	}
	for range 2 {
		if name := <-cancelled; name == "b" {
			t.Error("the touched key was cancelled")
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v: the losers' cancel was slow", d)
	}
}

// closeHook runs a hook before closing the device.
type closeHook struct {
	transport.Device
	hook func()
}

func (c closeHook) Close() error {
	c.hook()
	return c.Device.Close()
}
