package transport

import (
	"context"
	"errors"
	"testing"
)

func TestParseURI(t *testing.T) {
	good := map[string]URI{
		"hid:/dev/hidraw3":            {"hid", "/dev/hidraw3"},
		"pcsc:Virtual PCD 00 00":      {"pcsc", "Virtual PCD 00 00"},
		"soft:mem":                    {"soft", "mem"},
		"udp:127.0.0.1:8111":          {"udp", "127.0.0.1:8111"},
		"soft:/tmp/a:b.db":            {"soft", "/tmp/a:b.db"},
		"hid:IOService:/AppleACPI/x1": {"hid", "IOService:/AppleACPI/x1"},
	}
	for in, want := range good {
		got, err := ParseURI(in)
		if err != nil || got != want {
			t.Errorf("ParseURI(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("String() = %q, want %q", got.String(), in)
		}
	}
	for _, in := range []string{"", "hid", ":x", "hid:", "HID:x", "h d:x", "sóft:x"} {
		if _, err := ParseURI(in); !errors.Is(err, ErrBadURI) {
			t.Errorf("ParseURI(%q) err = %v, want ErrBadURI", in, err)
		}
	}
}

type nopDevice struct{ path string }

func (d nopDevice) Transact(context.Context, Command, []byte) ([]byte, error) { return nil, nil }
func (d nopDevice) Info() DeviceInfo                                          { return DeviceInfo{Path: d.path} }
func (d nopDevice) Close() error                                              { return nil }

func TestRegistry(t *testing.T) {
	var r Registry
	open := func(_ context.Context, p string) (Device, error) { return nopDevice{p}, nil }
	if err := r.Register(Scheme{Name: "x", Open: open,
		Enumerate: func(context.Context) ([]DeviceInfo, error) { return []DeviceInfo{{Path: "a"}}, nil }}); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(Scheme{Name: "x", Open: open}); err == nil {
		t.Fatal("duplicate scheme accepted")
	}
	if err := r.Register(Scheme{Name: "y", Open: open,
		Enumerate: func(context.Context) ([]DeviceInfo, error) { return nil, ErrNoDevice }}); err != nil {
		t.Fatal(err)
	}
	d, err := r.Open(context.Background(), "x:p")
	if err != nil || d.Info().Path != "p" {
		t.Fatalf("Open = %v, %v", d, err)
	}
	if _, err := r.Open(context.Background(), "z:p"); !errors.Is(err, ErrUnknownScheme) {
		t.Fatalf("unknown scheme: %v", err)
	}
	infos, err := r.Enumerate(context.Background())
	if err != nil || len(infos) != 1 {
		t.Fatalf("Enumerate = %v, %v", infos, err)
	}
}

func TestStatusNotifier(t *testing.T) {
	var got []byte
	n := StatusNotifier(func(s byte) { got = append(got, s) })
	for _, s := range []byte{1, 1, 2, 2, 2, 1} {
		n(s)
	}
	if string(got) != "\x01\x02\x01" {
		t.Fatalf("got %v", got)
	}
	KeepaliveFunc(context.Background())(1) // no-op must not panic
}

// FuzzParseURI: ParseURI never panics, and what it accepts prints back to a URI
// that parses to the same value.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"soft:mem", "soft:./sk.db", "hid:/dev/hidraw0", "pcsc:Yubico YubiKey", "udp:127.0.0.1:8111", "", ":", "soft:", "a:b:c", "HID:x", "soft:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			return
		}
		again, err := ParseURI(u.String())
		if err != nil || again != u {
			t.Fatalf("ParseURI(%q) = %+v, but its String %q parses to %+v, %v", s, u, u.String(), again, err)
		}
	})
}
