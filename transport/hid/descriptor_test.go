package hid

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// Descriptors as devices send them.
var (
	// yubikeyFIDO is the FIDO interface of a YubiKey 5 (and of most keys): one
	// application collection, 64-byte input and output reports, no report IDs.
	yubikeyFIDO = []byte{
		0x06, 0xD0, 0xF1, // Usage Page (FIDO Alliance)
		0x09, 0x01, // Usage (CTAPHID)
		0xA1, 0x01, // Collection (Application)
		0x09, 0x20, //   Usage (Data In)
		0x15, 0x00, //   Logical Minimum (0)
		0x26, 0xFF, 0x00, //   Logical Maximum (255)
		0x75, 0x08, //   Report Size (8)
		0x95, 0x40, //   Report Count (64)
		0x81, 0x02, //   Input (Data, Var, Abs)
		0x09, 0x21, //   Usage (Data Out)
		0x15, 0x00, //   Logical Minimum (0)
		0x26, 0xFF, 0x00, //   Logical Maximum (255)
		0x75, 0x08, //   Report Size (8)
		0x95, 0x40, //   Report Count (64)
		0x91, 0x02, //   Output (Data, Var, Abs)
		0xC0, // End Collection
	}
	// bootKeyboard is the HID 1.11 appendix B.1 keyboard.
	bootKeyboard = []byte{
		0x05, 0x01, 0x09, 0x06, 0xA1, 0x01, // Generic Desktop, Keyboard, Application
		0x05, 0x07, 0x19, 0xE0, 0x29, 0xE7, 0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x08, 0x81, 0x02, // modifiers: 8 bits
		0x95, 0x01, 0x75, 0x08, 0x81, 0x01, // reserved byte
		0x95, 0x05, 0x75, 0x01, 0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, // LEDs: 5 bits out
		0x95, 0x01, 0x75, 0x03, 0x91, 0x01, // LED padding: 3 bits out
		0x95, 0x06, 0x75, 0x08, 0x15, 0x00, 0x25, 0x65, 0x05, 0x07, 0x19, 0x00, 0x29, 0x65, 0x81, 0x00, // 6 keys
		0xC0,
	}
	// composite is a keyboard (ID 1), a consumer control (ID 2) and a FIDO
	// function (ID 3) behind one interface, with a physical collection, Push and
	// Pop, a long item and a 4-byte usage thrown in.
	composite = []byte{
		0x05, 0x01, 0x09, 0x06, 0xA1, 0x01, 0x85, 0x01, // keyboard, Report ID 1
		0x05, 0x07, 0x75, 0x01, 0x95, 0x08, 0x81, 0x02, // 8 bits in
		0x75, 0x08, 0x95, 0x06, 0x81, 0x00, // 6 bytes in
		0x75, 0x01, 0x95, 0x05, 0x91, 0x02, 0x75, 0x03, 0x95, 0x01, 0x91, 0x01, // 1 byte out
		0xC0,
		0x05, 0x0C, 0x09, 0x01, 0xA1, 0x01, 0x85, 0x02, // consumer control, Report ID 2
		0xA1, 0x00, // Collection (Physical)
		0xA4,                   // Push
		0x75, 0x10, 0x95, 0x01, // 16 bits
		0x81, 0x00,
		0xB4,                         // Pop
		0xC0,                         // End Collection (Physical)
		0xFE, 0x02, 0x10, 0xAA, 0xBB, // a long item, skipped
		0xC0,
		0x0B, 0x01, 0x00, 0xD0, 0xF1, // Usage (F1D0:0001) as one 4-byte item
		0xA1, 0x01, 0x85, 0x03,
		0x75, 0x08, 0x95, 0x40, 0x81, 0x02, 0x91, 0x02,
		0xC0,
	}
)

func TestParseDescriptor(t *testing.T) {
	for _, tt := range []struct {
		name string
		desc []byte
		want Descriptor
	}{
		{"yubikey", yubikeyFIDO, Descriptor{[]Application{{
			UsagePage: 0xF1D0, Usage: 1, Input: []Report{{0, 512}}, Output: []Report{{0, 512}},
		}}}},
		{"keyboard", bootKeyboard, Descriptor{[]Application{{
			UsagePage: 1, Usage: 6, Input: []Report{{0, 64}}, Output: []Report{{0, 8}},
		}}}},
		{"composite", composite, Descriptor{[]Application{
			{UsagePage: 1, Usage: 6, Input: []Report{{1, 56}}, Output: []Report{{1, 8}}},
			{UsagePage: 0x0C, Usage: 1, Input: []Report{{2, 16}}},
			{UsagePage: 0xF1D0, Usage: 1, Input: []Report{{3, 512}}, Output: []Report{{3, 512}}},
		}}},
		{"empty", nil, Descriptor{}},
		{"usage page after usage", []byte{0x09, 0x01, 0x06, 0xD0, 0xF1, 0xA1, 0x01, 0xC0},
			Descriptor{[]Application{{UsagePage: 0xF1D0, Usage: 1}}}},
		{"items outside collections", []byte{0x75, 0x08, 0x95, 0x04, 0x81, 0x02}, Descriptor{}},
		{"usage minimum names the collection", []byte{0x05, 0x01, 0x19, 0x02, 0x29, 0x05, 0xA1, 0x01, 0xC0},
			Descriptor{[]Application{{UsagePage: 1, Usage: 2}}}},
		{"reports add up per ID", []byte{0x06, 0xD0, 0xF1, 0x09, 0x01, 0xA1, 0x01,
			0x75, 0x08, 0x95, 0x20, 0x81, 0x02, 0x81, 0x02, // 32 + 32 bytes, ID 0
			0x85, 0x05, 0x95, 0x02, 0xB1, 0x02, // feature, ID 5: 2 bytes
			0xC0},
			Descriptor{[]Application{{UsagePage: 0xF1D0, Usage: 1, Input: []Report{{0, 512}}, Feature: []Report{{5, 16}}}}}},
		{"nested application", []byte{0x05, 0x01, 0x09, 0x02, 0xA1, 0x01, 0x75, 0x08, 0x95, 0x01, 0x81, 0x02,
			0x09, 0x07, 0xA1, 0x01, 0x81, 0x02, 0xC0, 0x81, 0x02, 0xC0},
			Descriptor{[]Application{{UsagePage: 1, Usage: 2, Input: []Report{{0, 16}}}, {UsagePage: 1, Usage: 7, Input: []Report{{0, 8}}}}}},
	} {
		got, err := ParseDescriptor(tt.desc)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestParseDescriptorErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		desc []byte
	}{
		{"truncated item", yubikeyFIDO[:12]},
		{"truncated 4-byte item", []byte{0x0B, 0x01, 0x00}},
		{"truncated long item header", []byte{0xFE, 0x05}},
		{"truncated long item data", []byte{0xFE, 0x05, 0x10, 0x01}},
		{"open collection", yubikeyFIDO[:len(yubikeyFIDO)-1]},
		{"end without collection", []byte{0xC0}},
		{"report ID 0", []byte{0x85, 0x00}},
		{"report ID 256", []byte{0x86, 0x00, 0x01}},
		{"pop without push", []byte{0xB4}},
		{"report size too large", []byte{0xA1, 0x01, 0x76, 0x01, 0x01, 0x95, 0x01, 0x81, 0x02, 0xC0}},
		{"report too long", []byte{0xA1, 0x01, 0x75, 0x08, 0x96, 0x00, 0x80, 0x81, 0x02, 0x81, 0x02, 0x81, 0x02, 0xC0}},
		{"report count huge", []byte{0xA1, 0x01, 0x75, 0x08, 0x97, 0xFF, 0xFF, 0xFF, 0xFF, 0x81, 0x02, 0xC0}},
	} {
		if _, err := ParseDescriptor(tt.desc); !errors.Is(err, ErrDescriptor) {
			t.Errorf("%s: err = %v, want ErrDescriptor", tt.name, err)
		}
	}
}

func TestFIDOReports(t *testing.T) {
	in, out, err := fidoReports(yubikeyFIDO)
	if err != nil || in != (Report{0, 512}) || out != (Report{0, 512}) || in.Len() != 64 {
		t.Errorf("yubikey: %v %v %v", in, out, err)
	}
	in, out, err = fidoReports(composite)
	if err != nil || in != (Report{3, 512}) || out != (Report{3, 512}) {
		t.Errorf("composite: %v %v %v", in, out, err)
	}
	if _, _, err := fidoReports(bootKeyboard); !errors.Is(err, errNotFIDO) {
		t.Errorf("keyboard: err = %v, want errNotFIDO", err)
	}
	noOut := []byte{0x06, 0xD0, 0xF1, 0x09, 0x01, 0xA1, 0x01, 0x75, 0x08, 0x95, 0x40, 0x81, 0x02, 0xC0}
	if _, _, err := fidoReports(noOut); !errors.Is(err, ErrDescriptor) {
		t.Errorf("FIDO without output report: err = %v, want ErrDescriptor", err)
	}
}

// encodeDescriptor writes d back as items: each application under a 4-byte
// usage, each report between Push and Pop so that ID 0 can follow a numbered one.
func encodeDescriptor(d Descriptor) []byte {
	var b []byte
	for _, a := range d.Applications {
		b = binary.LittleEndian.AppendUint32(append(b, 0x0B), uint32(a.UsagePage)<<16|uint32(a.Usage))
		b = append(b, 0xA1, 0x01)
		for _, k := range []struct {
			main    byte
			reports []Report
		}{{0x81, a.Input}, {0x91, a.Output}, {0xB1, a.Feature}} {
			for _, r := range k.reports {
				b = append(b, 0xA4)
				if r.ID != 0 {
					b = append(b, 0x85, r.ID)
				}
				if r.Bits/8 > 0 || r.Bits == 0 {
					b = binary.LittleEndian.AppendUint16(append(b, 0x75, 0x08, 0x96), uint16(r.Bits/8))
					b = append(b, k.main, 0x02)
				}
				if r.Bits%8 > 0 {
					b = append(b, 0x75, 0x01, 0x95, byte(r.Bits%8), k.main, 0x02)
				}
				b = append(b, 0xB4)
			}
		}
		b = append(b, 0xC0)
	}
	return b
}

// mainBits adds up Report Size × Report Count over the main items inside
// application collections, without ParseDescriptor's bookkeeping: what the
// reports must add up to. ok is false where ParseDescriptor must fail.
func mainBits(b []byte) (total int, ok bool) {
	var size, count uint32
	type state struct{ size, count uint32 }
	var stack []state
	var kinds []bool // per open collection: application?
	apps := 0
	for off := 0; off < len(b); {
		if b[off] == 0xFE {
			if off+3 > len(b) || off+3+int(b[off+1]) > len(b) {
				return 0, false
			}
			off += 3 + int(b[off+1])
			continue
		}
		n := []int{0, 1, 2, 4}[b[off]&3]
		if off+1+n > len(b) {
			return 0, false
		}
		var v uint32
		for i := n - 1; i >= 0; i-- {
			v = v<<8 | uint32(b[off+1+i])
		}
		item := b[off] &^ 3
		off += 1 + n
		switch item {
		case 0xA0:
			kinds = append(kinds, v&0xFF == 1)
			if v&0xFF == 1 {
				apps++
			}
		case 0xC0:
			if len(kinds) == 0 {
				return 0, false
			}
			if kinds[len(kinds)-1] {
				apps--
			}
			kinds = kinds[:len(kinds)-1]
		case 0x80, 0x90, 0xB0:
			if apps > 0 {
				total += int(size) * int(count)
			}
		case 0x74:
			size = v
		case 0x94:
			count = v
		case 0xA4:
			stack = append(stack, state{size, count})
		case 0xB4:
			if len(stack) == 0 {
				return 0, false
			}
			size, count = stack[len(stack)-1].size, stack[len(stack)-1].count
			stack = stack[:len(stack)-1]
		}
	}
	return total, len(kinds) == 0
}

func FuzzParseDescriptor(f *testing.F) {
	for _, s := range [][]byte{
		yubikeyFIDO, bootKeyboard, composite,
		yubikeyFIDO[:12], yubikeyFIDO[:len(yubikeyFIDO)-1], composite[:len(composite)/2],
		{0xFE, 0x05, 0x10, 0x01}, {0xA4, 0xA4, 0xB4, 0xB4, 0xB4}, {0x85, 0x00},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, desc []byte) {
		d, err := ParseDescriptor(desc)
		want, ok := mainBits(desc)
		if err != nil {
			if !errors.Is(err, ErrDescriptor) {
				t.Fatalf("error %v does not wrap ErrDescriptor", err)
			}
			return
		}
		if !ok {
			t.Fatalf("parsed a descriptor that breaks the item rules: %+v", d)
		}
		got := 0
		for _, a := range d.Applications {
			for _, rs := range [][]Report{a.Input, a.Output, a.Feature} {
				seen := map[byte]bool{}
				for _, r := range rs {
					if seen[r.ID] {
						t.Fatalf("report ID %d listed twice: %+v", r.ID, a)
					}
					seen[r.ID] = true
					if r.Bits < 0 || r.Len() > maxReportBytes {
						t.Fatalf("report %+v out of range", r)
					}
					got += r.Bits
				}
			}
		}
		if got != want {
			t.Fatalf("reports add up to %d bits, the items say %d", got, want)
		}
		// Round trip: the summary written back as items parses to itself.
		again, err := ParseDescriptor(encodeDescriptor(d))
		if err != nil {
			t.Fatalf("re-encoded descriptor: %v", err)
		}
		if !reflect.DeepEqual(normalized(again), normalized(d)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", again, d)
		}
		_, fido := d.FIDO()
		_, fidoAgain := again.FIDO()
		if fido != fidoAgain {
			t.Fatalf("FIDO() = %v, after the round trip %v", fido, fidoAgain)
		}
	})
}

// normalized makes empty report lists nil, which the round trip cannot tell apart.
func normalized(d Descriptor) Descriptor {
	for i := range d.Applications {
		a := &d.Applications[i]
		for _, l := range []*[]Report{&a.Input, &a.Output, &a.Feature} {
			if len(*l) == 0 {
				*l = nil
			}
		}
	}
	return d
}
