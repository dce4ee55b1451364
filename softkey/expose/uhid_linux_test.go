package expose

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctapkit/ctapkit/transport/hid"
)

// TestServeUHIDNoDevice: without /dev/uhid the error says how to get it.
func TestServeUHIDNoDevice(t *testing.T) {
	err := ServeUHID(context.Background(), nil, UHIDOptions{Device: filepath.Join(t.TempDir(), "uhid")})
	if !errors.Is(err, ErrNoUHID) || !strings.Contains(err.Error(), "modprobe uhid") {
		t.Fatalf("ServeUHID = %v, want ErrNoUHID naming modprobe uhid", err)
	}
}

// TestCreate2Event checks UHID_CREATE2 against struct uhid_create2_req's layout
// and the report descriptor against transport/hid's parser: a FIDO application
// with one 64-byte input and one 64-byte output report.
func TestCreate2Event(t *testing.T) {
	ev := create2Event(UHIDOptions{Name: "n", Serial: "s", VendorID: 0x1209, ProductID: 0x0001})
	ne := binary.NativeEndian
	if len(ev) != 4376 {
		t.Errorf("event size %d, want sizeof(struct uhid_event) 4376", len(ev))
	}
	if ne.Uint32(ev) != 11 || ev[4] != 'n' || string(ev[132:139]) != "ctapkit" || ev[196] != 's' {
		t.Errorf("type, name, phys or uniq misplaced")
	}
	rdSize := int(ne.Uint16(ev[260:]))
	if ne.Uint16(ev[262:]) != 3 || ne.Uint32(ev[264:]) != 0x1209 || ne.Uint32(ev[268:]) != 1 || rdSize != len(fidoReportDescriptor) {
		t.Errorf("bus %d, ids %x:%x, rd_size %d", ne.Uint16(ev[262:]), ne.Uint32(ev[264:]), ne.Uint32(ev[268:]), rdSize)
	}
	d, err := hid.ParseDescriptor(ev[280 : 280+rdSize])
	if err != nil {
		t.Fatal(err)
	}
	app, ok := d.FIDO()
	if !ok || len(app.Input) != 1 || len(app.Output) != 1 || app.Input[0].Len() != 64 || app.Output[0].Len() != 64 {
		t.Errorf("descriptor parses as %+v", d)
	}
}
