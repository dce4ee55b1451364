package hid

import (
	"errors"
	"fmt"
)

// FIDO usage (FIDO CTAP 2.1 §11.2.8.1): the application collection of a CTAPHID
// authenticator.
const (
	UsagePageFIDO uint16 = 0xF1D0
	UsageCTAPHID  uint16 = 0x01
)

// Report is one report of an application collection.
type Report struct {
	// ID is the report ID, 0 when the descriptor uses none. Numbered reports carry
	// their ID as a first byte on the wire.
	ID byte
	// Bits is the sum of Report Size × Report Count over the main items of this
	// kind and ID.
	Bits int
}

// Len is the report's length in bytes, without the report ID byte.
func (r Report) Len() int { return (r.Bits + 7) / 8 }

// Application is a top-level function of a HID device: an application collection
// and the reports declared inside it, each kind in order of first appearance.
type Application struct {
	UsagePage uint16
	Usage     uint16
	Input     []Report
	Output    []Report
	Feature   []Report
}

// IsFIDO reports whether a is a CTAPHID authenticator.
func (a Application) IsFIDO() bool { return a.UsagePage == UsagePageFIDO && a.Usage == UsageCTAPHID }

// Descriptor is what a HID report descriptor says about the device's functions.
// Main items outside every application collection belong to none and are left out.
type Descriptor struct {
	Applications []Application
}

// FIDO returns the first application collection that is a CTAPHID authenticator.
func (d Descriptor) FIDO() (Application, bool) {
	for _, a := range d.Applications {
		if a.IsFIDO() {
			return a, true
		}
	}
	return Application{}, false
}

// Limits that keep a hostile descriptor from costing more than a real one; the
// Linux kernel refuses the same (HID_MAX_BUFFER_SIZE, report_size > 256).
const (
	maxReportBytes    = 16384
	maxReportSizeBits = 256
	maxCollectionNest = 64
	maxGlobalStack    = 16
)

// ErrDescriptor is wrapped by every error ParseDescriptor returns.
var ErrDescriptor = errors.New("invalid HID report descriptor")

// Item types and tags (HID 1.11 §6.2.2).
const (
	typeMain   = 0
	typeGlobal = 1
	typeLocal  = 2

	tagInput         = 0x8
	tagOutput        = 0x9
	tagCollection    = 0xA
	tagFeature       = 0xB
	tagEndCollection = 0xC

	tagUsagePage   = 0x0
	tagReportSize  = 0x7
	tagReportID    = 0x8
	tagReportCount = 0x9
	tagPush        = 0xA
	tagPop         = 0xB

	tagUsage        = 0x0
	tagUsageMinimum = 0x1

	longItemPrefix        = 0xFE
	collectionApplication = 0x01
)

type globalState struct {
	usagePage   uint16
	reportSize  uint32
	reportID    byte
	reportCount uint32
}

// localUsage is a Usage or Usage Minimum as written: a 4-byte one carries its own
// page, a shorter one takes the page in force at the next main item, as the Linux
// kernel resolves them.
type localUsage struct {
	value    uint32
	extended bool
}

// ParseDescriptor walks the short items of a HID report descriptor (long items
// are skipped) with the global and local state rules of HID 1.11 §6.2.2 and
// collects, for each application collection, its usage and the size of its input,
// output and feature reports per report ID. It fails on truncated items,
// unbalanced collections and sizes past what a kernel would accept.
func ParseDescriptor(b []byte) (Descriptor, error) {
	var (
		d       Descriptor
		g       globalState
		stack   []globalState
		usages  []localUsage
		nest    []int // per open collection: index into d.Applications, or -1
		current = -1  // the innermost open application collection
	)
	for off := 0; off < len(b); {
		prefix := b[off]
		if prefix == longItemPrefix {
			if off+3 > len(b) {
				return Descriptor{}, fmt.Errorf("%w: long item at offset %d is truncated", ErrDescriptor, off)
			}
			next := off + 3 + int(b[off+1])
			if next > len(b) {
				return Descriptor{}, fmt.Errorf("%w: long item at offset %d is truncated", ErrDescriptor, off)
			}
			off = next
			continue
		}
		size := int(prefix & 0x3)
		if size == 3 {
			size = 4
		}
		if off+1+size > len(b) {
			return Descriptor{}, fmt.Errorf("%w: item 0x%02x at offset %d is truncated", ErrDescriptor, prefix, off)
		}
		var v uint32
		for i := size - 1; i >= 0; i-- {
			v = v<<8 | uint32(b[off+1+i])
		}
		typ, tag := (prefix>>2)&0x3, prefix>>4
		at := off
		off += 1 + size

		switch typ {
		case typeMain:
			switch tag {
			case tagCollection:
				if len(nest) >= maxCollectionNest {
					return Descriptor{}, fmt.Errorf("%w: collections nested deeper than %d", ErrDescriptor, maxCollectionNest)
				}
				idx := -1
				if v&0xFF == collectionApplication {
					page, usage := g.usagePage, uint16(0)
					if len(usages) > 0 {
						page, usage = resolve(usages[0], g.usagePage)
					}
					d.Applications = append(d.Applications, Application{UsagePage: page, Usage: usage})
					idx = len(d.Applications) - 1
					current = idx
				}
				nest = append(nest, idx)
			case tagEndCollection:
				if len(nest) == 0 {
					return Descriptor{}, fmt.Errorf("%w: End Collection at offset %d closes nothing", ErrDescriptor, at)
				}
				nest = nest[:len(nest)-1]
				current = -1
				for i := len(nest) - 1; i >= 0; i-- {
					if nest[i] >= 0 {
						current = nest[i]
						break
					}
				}
			case tagInput, tagOutput, tagFeature:
				if g.reportSize > maxReportSizeBits {
					return Descriptor{}, fmt.Errorf("%w: Report Size %d exceeds %d bits", ErrDescriptor, g.reportSize, maxReportSizeBits)
				}
				if g.reportCount > maxReportBytes*8 {
					return Descriptor{}, fmt.Errorf("%w: Report Count %d exceeds %d", ErrDescriptor, g.reportCount, maxReportBytes*8)
				}
				if current >= 0 {
					a := &d.Applications[current]
					list := &a.Input
					switch tag {
					case tagOutput:
						list = &a.Output
					case tagFeature:
						list = &a.Feature
					}
					if err := addBits(list, g.reportID, int(g.reportSize)*int(g.reportCount)); err != nil {
						return Descriptor{}, err
					}
				}
			}
			usages = usages[:0] // local state ends with every main item
		case typeGlobal:
			switch tag {
			case tagUsagePage:
				g.usagePage = uint16(v)
			case tagReportSize:
				g.reportSize = v
			case tagReportCount:
				g.reportCount = v
			case tagReportID:
				if v == 0 || v > 0xFF {
					return Descriptor{}, fmt.Errorf("%w: Report ID %d at offset %d (want 1-255)", ErrDescriptor, v, at)
				}
				g.reportID = byte(v)
			case tagPush:
				if len(stack) >= maxGlobalStack {
					return Descriptor{}, fmt.Errorf("%w: more than %d nested Push items", ErrDescriptor, maxGlobalStack)
				}
				stack = append(stack, g)
			case tagPop:
				if len(stack) == 0 {
					return Descriptor{}, fmt.Errorf("%w: Pop at offset %d without Push", ErrDescriptor, at)
				}
				g = stack[len(stack)-1]
				stack = stack[:len(stack)-1]
			}
		case typeLocal:
			// Only the first usage names a collection; keeping one bounds memory.
			if (tag == tagUsage || tag == tagUsageMinimum) && len(usages) == 0 {
				usages = append(usages, localUsage{value: v, extended: size == 4})
			}
		}
	}
	if len(nest) > 0 {
		return Descriptor{}, fmt.Errorf("%w: %d collection(s) left open", ErrDescriptor, len(nest))
	}
	return d, nil
}

// resolve returns the page and usage of u, given the Usage Page in force.
func resolve(u localUsage, page uint16) (uint16, uint16) {
	if u.extended {
		return uint16(u.value >> 16), uint16(u.value)
	}
	return page, uint16(u.value)
}

// addBits adds bits to the report with the given ID, appending it if new.
func addBits(list *[]Report, id byte, bits int) error {
	i := 0
	for i < len(*list) && (*list)[i].ID != id {
		i++
	}
	if i == len(*list) {
		*list = append(*list, Report{ID: id})
	}
	r := &(*list)[i]
	if r.Bits+bits > maxReportBytes*8 {
		return fmt.Errorf("%w: report %d longer than %d bytes", ErrDescriptor, id, maxReportBytes)
	}
	r.Bits += bits
	return nil
}

// fidoReports finds the CTAPHID application of a descriptor and its input and
// output reports, which CTAPHID needs to be one of each with the same ID.
func fidoReports(desc []byte) (in, out Report, err error) {
	d, err := ParseDescriptor(desc)
	if err != nil {
		return Report{}, Report{}, err
	}
	a, ok := d.FIDO()
	if !ok {
		return Report{}, Report{}, errNotFIDO
	}
	if len(a.Input) == 0 || len(a.Output) == 0 {
		return Report{}, Report{}, fmt.Errorf("%w: the FIDO collection lacks an input or output report", ErrDescriptor)
	}
	return a.Input[0], a.Output[0], nil
}

// errNotFIDO: a HID device that is not a security key (a keyboard, a mouse).
var errNotFIDO = errors.New("not a FIDO device (no usage page 0xF1D0, usage 1 application collection)")
