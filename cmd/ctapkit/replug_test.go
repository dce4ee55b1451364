package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
)

// fakeKey is a key in a fakeWorld. It refuses reset until it has been plugged
// in again (fresh), as real keys refuse it 10 s after power-up.
type fakeKey struct {
	name     string
	aaguid   byte // the AAGUID is this byte 16 times
	serial   string
	versions []string // getInfo versions; default FIDO_2_0, FIDO_2_1

	// Guarded by the world's mutex.
	gen    int  // plug generation: a handle from an earlier one is dead
	fresh  bool // plugged in just now: reset allowed
	resets int
	cmds   []ctap2.Command // CBOR commands received
	// touch, if set, makes requests that need a touch wait for it (or ctx).
	touch chan struct{}
}

// fakeWorld is a registry scheme whose keys the test plugs and unplugs. Every
// Enumerate is a poll; script runs first, acting as the user.
type fakeWorld struct {
	t      *testing.T
	scheme string

	mu      sync.Mutex
	slots   map[string]*fakeKey // path → the key plugged there
	refused bool                // a reset was refused: the user acts from now on
	polls   int                 // Enumerate calls since then
	script  func(w *fakeWorld, poll int)
	opened  []string
	closed  int
}

func newFakeWorld(t *testing.T, scheme string) (*fakeWorld, *transport.Registry) {
	w := &fakeWorld{t: t, scheme: scheme, slots: map[string]*fakeKey{}}
	reg := new(transport.Registry)
	if err := reg.Register(transport.Scheme{Name: scheme, Open: w.open, Enumerate: w.enumerate}); err != nil {
		t.Fatal(err)
	}
	return w, reg
}

// plug inserts k at path (locked by the caller or before the test runs).
func (w *fakeWorld) plug(path string, k *fakeKey) {
	k.gen++
	k.fresh = true
	w.slots[path] = k
}

func (w *fakeWorld) unplug(k *fakeKey) {
	for p, s := range w.slots {
		if s == k {
			delete(w.slots, p)
		}
	}
}

func (w *fakeWorld) info(path string, k *fakeKey) transport.DeviceInfo {
	return transport.DeviceInfo{URI: w.scheme + ":" + path, Transport: w.scheme, Path: path,
		VendorID: 0x1050, ProductID: 0x0407, Serial: k.serial, Product: k.name}
}

func (w *fakeWorld) enumerate(context.Context) ([]transport.DeviceInfo, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refused {
		w.polls++
		if w.script != nil {
			w.script(w, w.polls)
		}
	}
	var infos []transport.DeviceInfo
	for p, k := range w.slots {
		infos = append(infos, w.info(p, k))
	}
	return infos, nil
}

func (w *fakeWorld) open(_ context.Context, path string) (transport.Device, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.slots[path]
	if !ok {
		return nil, fmt.Errorf("no key at %s: %w", path, transport.ErrNoDevice)
	}
	w.opened = append(w.opened, path)
	return &fakeDev{w: w, k: k, gen: k.gen, path: path}, nil
}

type fakeDev struct {
	w    *fakeWorld
	k    *fakeKey
	gen  int
	path string
}

func (d *fakeDev) Info() transport.DeviceInfo { return d.w.info(d.path, d.k) }

func (d *fakeDev) Close() error {
	d.w.mu.Lock()
	d.w.closed++
	d.w.mu.Unlock()
	return nil
}

func (d *fakeDev) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	w, k := d.w, d.k
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.slots[d.path] != k || k.gen != d.gen {
		return nil, fmt.Errorf("key unplugged: %w", transport.ErrNoDevice)
	}
	if cmd != transport.CmdCBOR || len(data) == 0 {
		return nil, transport.ErrUnsupportedCommand
	}
	k.cmds = append(k.cmds, ctap2.Command(data[0]))
	switch ctap2.Command(data[0]) {
	case ctap2.CmdGetInfo:
		versions := k.versions
		if versions == nil {
			versions = []string{"FIDO_2_0", "FIDO_2_1"}
		}
		body, err := ctap2.Marshal(&ctap2.Info{Versions: versions, AAGUID: bytes.Repeat([]byte{k.aaguid}, 16),
			Options: map[string]bool{"clientPin": false}})
		if err != nil {
			w.t.Error(err)
		}
		return append([]byte{0}, body...), nil
	case ctap2.CmdReset:
		if !k.fresh {
			w.refused = true
			return []byte{byte(ctap2.ErrNotAllowed)}, nil
		}
		k.resets++
		return []byte{0}, nil
	case ctap2.CmdSelection, ctap2.CmdMakeCredential:
		if k.touch != nil {
			w.mu.Unlock()
			select {
			case <-k.touch:
			case <-ctx.Done():
				w.mu.Lock()
				return nil, ctx.Err() // what ctaphid returns after CANCEL
			}
			w.mu.Lock()
		}
		if ctap2.Command(data[0]) == ctap2.CmdMakeCredential {
			return []byte{byte(ctap2.ErrPINNotSet)}, nil // the 2.0 probe, touched
		}
		return []byte{0}, nil
	}
	return []byte{byte(ctap2.ErrInvalidCommand)}, nil
}

// testApp is an app on reg with buffers for streams, no terminal.
func testApp(reg *transport.Registry, uri string) (*app, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	a := &app{io: &IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, registry: reg,
		deviceURI: uri, timeout: 5 * time.Second}
	return a, &out, &errOut
}

var fastReplug = replugOptions{poll: time.Millisecond, limit: 5 * time.Second}

// TestResetReplug: the chosen key refuses, is removed and comes back at another
// path; the reset goes to it, and not to an identical key attached all along.
func TestResetReplug(t *testing.T) {
	w, reg := newFakeWorld(t, "hid")
	chosen := &fakeKey{name: "chosen", aaguid: 1}
	twin := &fakeKey{name: "twin", aaguid: 1} // same model, no serial either
	w.plug("/dev/hidraw3", chosen)
	w.plug("/dev/hidraw5", twin)
	chosen.fresh, twin.fresh = false, false
	w.script = func(w *fakeWorld, poll int) {
		switch poll {
		case 3:
			w.unplug(chosen)
		case 6:
			w.plug("/dev/hidraw7", chosen)
		}
	}
	a, out, errOut := testApp(reg, "hid:/dev/hidraw3")
	if err := a.reset(context.Background(), fastReplug); err != nil {
		t.Fatalf("reset: %v\nstderr:\n%s", err, errOut)
	}
	if chosen.resets != 1 || twin.resets != 0 {
		t.Errorf("resets: chosen %d, twin %d; want 1, 0", chosen.resets, twin.resets)
	}
	if got := out.String(); got != "hid:/dev/hidraw7 has been reset\n" {
		t.Errorf("stdout %q", got)
	}
	for _, want := range []string{"refused the reset", "Remove the key (hid:/dev/hidraw3) and insert it again", "Key removed. Insert it again.",
		"The key is back (hid:/dev/hidraw7). Touch it now"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	for _, p := range w.opened {
		if p == "/dev/hidraw5" {
			t.Errorf("the twin attached all along was opened")
		}
	}
	if len(w.opened) != w.closed {
		t.Errorf("%d devices opened, %d closed", len(w.opened), w.closed)
	}
}

// TestResetReplugOtherKey: another key inserted instead is named and left
// alone; the wait goes on, and the chosen key gets the reset when it comes.
// Keys that differ by AAGUID, or by serial number with the same AAGUID, are
// both told apart.
func TestResetReplugOtherKey(t *testing.T) {
	for _, tc := range []struct {
		name  string
		other *fakeKey
		why   string
	}{
		{"aaguid", &fakeKey{name: "other", aaguid: 2, serial: "A1"}, "AAGUID 0202"},
		{"serial", &fakeKey{name: "other", aaguid: 1, serial: "B2"}, `serial "B2", not "A1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, reg := newFakeWorld(t, "hid")
			chosen := &fakeKey{name: "chosen", aaguid: 1, serial: "A1"}
			w.plug("/dev/hidraw3", chosen)
			chosen.fresh = false
			w.script = func(w *fakeWorld, poll int) {
				switch poll {
				case 2:
					w.unplug(chosen)
				case 4:
					w.plug("/dev/hidraw3", tc.other) // the same path, even
				case 8:
					w.unplug(tc.other)
				case 10:
					w.plug("/dev/hidraw4", chosen)
				}
			}
			a, out, errOut := testApp(reg, "hid:/dev/hidraw3")
			if err := a.reset(context.Background(), fastReplug); err != nil {
				t.Fatalf("reset: %v\nstderr:\n%s", err, errOut)
			}
			if chosen.resets != 1 || tc.other.resets != 0 {
				t.Errorf("resets: chosen %d, other %d; want 1, 0", chosen.resets, tc.other.resets)
			}
			want := "hid:/dev/hidraw3 is not the key you chose (" + tc.why
			if !strings.Contains(errOut.String(), want) || strings.Count(errOut.String(), "is not the key") != 1 {
				t.Errorf("stderr should name the other key once with %q:\n%s", want, errOut)
			}
			if !strings.Contains(out.String(), "hid:/dev/hidraw4 has been reset") {
				t.Errorf("stdout %q", out)
			}
		})
	}
}

// TestResetReplugTimeout: when only another key comes, nothing is reset and
// the wait ends with exit code 5 and a message that says what was awaited.
func TestResetReplugTimeout(t *testing.T) {
	w, reg := newFakeWorld(t, "hid")
	chosen := &fakeKey{name: "chosen", aaguid: 1}
	other := &fakeKey{name: "other", aaguid: 9}
	w.plug("/dev/hidraw3", chosen)
	chosen.fresh = false
	w.script = func(w *fakeWorld, poll int) {
		switch poll {
		case 2:
			w.unplug(chosen)
		case 3:
			w.plug("/dev/hidraw4", other)
		}
	}
	a, _, errOut := testApp(reg, "hid:/dev/hidraw3")
	a.timeout = 50 * time.Millisecond
	err := a.reset(context.Background(), replugOptions{poll: time.Millisecond, limit: 200 * time.Millisecond})
	if code := exitCode(err); code != exitCancelled {
		t.Fatalf("reset: %v (exit %d), want exit %d", err, code, exitCancelled)
	}
	if line, _ := errorMessage(err); !strings.Contains(line, "timed out waiting for the key to be inserted again; nothing was reset") {
		t.Errorf("message %q", line)
	}
	if chosen.resets != 0 || other.resets != 0 {
		t.Errorf("resets: chosen %d, other %d", chosen.resets, other.resets)
	}
	if !strings.Contains(errOut.String(), "hid:/dev/hidraw4 is not the key you chose (AAGUID 0909") {
		t.Errorf("stderr:\n%s", errOut)
	}

	// Never removed at all: the wait for the removal times out.
	w, reg = newFakeWorld(t, "pcsc")
	w.plug("Reader 0", chosen)
	chosen.fresh = false
	a, _, _ = testApp(reg, "pcsc:Reader 0")
	a.timeout = 50 * time.Millisecond
	err = a.reset(context.Background(), replugOptions{poll: time.Millisecond, limit: 100 * time.Millisecond})
	if line, _ := errorMessage(err); exitCode(err) != exitCancelled || !strings.Contains(line, "to be removed") {
		t.Errorf("reset: %v, want a timeout waiting for the removal", err)
	}
}

// TestResetReplugFast: re-plugged between two polls and back at the same path,
// the key is still recognised as having gone (its old connection is dead).
func TestResetReplugFast(t *testing.T) {
	w, reg := newFakeWorld(t, "hid")
	chosen := &fakeKey{name: "chosen", aaguid: 1}
	w.plug("/dev/hidraw3", chosen)
	chosen.fresh = false
	w.script = func(w *fakeWorld, poll int) {
		if poll == 3 {
			w.unplug(chosen)
			w.plug("/dev/hidraw3", chosen)
		}
	}
	a, out, errOut := testApp(reg, "hid:/dev/hidraw3")
	if err := a.reset(context.Background(), fastReplug); err != nil {
		t.Fatalf("reset: %v\nstderr:\n%s", err, errOut)
	}
	if chosen.resets != 1 || out.String() != "hid:/dev/hidraw3 has been reset\n" {
		t.Errorf("resets %d, stdout %q", chosen.resets, out)
	}
}

// TestResetReplugLookalikeGone: when a key like the chosen one (no serial to
// tell them apart) is also removed during the wait, the key that comes back
// might be either: nothing is reset.
func TestResetReplugLookalikeGone(t *testing.T) {
	w, reg := newFakeWorld(t, "hid")
	chosen := &fakeKey{name: "chosen", aaguid: 1}
	twin := &fakeKey{name: "twin", aaguid: 1}
	w.plug("/dev/hidraw3", chosen)
	w.plug("/dev/hidraw5", twin)
	chosen.fresh, twin.fresh = false, false
	w.script = func(w *fakeWorld, poll int) {
		switch poll {
		case 2:
			w.unplug(chosen)
		case 3:
			w.unplug(twin)
		case 4:
			w.plug("/dev/hidraw6", twin)
		}
	}
	a, _, errOut := testApp(reg, "hid:/dev/hidraw3")
	err := a.reset(context.Background(), fastReplug)
	if err == nil || !errors.Is(err, transport.ErrAmbiguous) || !strings.Contains(err.Error(), "cannot be told apart") {
		t.Fatalf("reset: %v, want a refusal\nstderr:\n%s", err, errOut)
	}
	if chosen.resets != 0 || twin.resets != 0 {
		t.Errorf("resets: chosen %d, twin %d", chosen.resets, twin.resets)
	}
}

// TestResetNotAllowedNoReplug: soft: and udp: keys cannot be pulled out; the
// refusal is exit code 4 with a hint, and no re-plug is asked for.
func TestResetNotAllowedNoReplug(t *testing.T) {
	for _, scheme := range []string{"udp", "soft"} {
		w, reg := newFakeWorld(t, scheme)
		k := &fakeKey{name: "sim", aaguid: 1}
		w.plug("x", k)
		k.fresh = false
		a, _, errOut := testApp(reg, scheme+":x")
		err := a.reset(context.Background(), fastReplug)
		if exitCode(err) != exitCTAP || !errors.Is(err, ctap2.ErrNotAllowed) {
			t.Errorf("%s: %v, want CTAP2_ERR_NOT_ALLOWED", scheme, err)
		}
		if _, hint := errorMessage(err); !strings.Contains(hint, "10 s") {
			t.Errorf("%s: hint %q", scheme, hint)
		}
		if strings.Contains(errOut.String(), "Remove the key") || w.polls != 0 {
			t.Errorf("%s: asked for a re-plug:\n%s", scheme, errOut)
		}
	}
}

// TestResetRefusedAgain: a key that still refuses after coming back (too slow)
// is not retried in a loop.
func TestResetRefusedAgain(t *testing.T) {
	w, reg := newFakeWorld(t, "hid")
	chosen := &fakeKey{name: "chosen", aaguid: 1}
	w.plug("/dev/hidraw3", chosen)
	chosen.fresh = false
	w.script = func(w *fakeWorld, poll int) {
		switch poll {
		case 2:
			w.unplug(chosen)
		case 3:
			w.plug("/dev/hidraw3", chosen)
			chosen.fresh = false
		}
	}
	a, _, _ := testApp(reg, "hid:/dev/hidraw3")
	err := a.reset(context.Background(), fastReplug)
	if !errors.Is(err, ctap2.ErrNotAllowed) || !strings.Contains(err.Error(), "refused again") {
		t.Fatalf("reset: %v", err)
	}
}
