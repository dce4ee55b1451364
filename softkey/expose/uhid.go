package expose

import "errors"

// ErrNoUHID means the kernel offers no /dev/uhid (module not loaded, not Linux).
var ErrNoUHID = errors.New("uhid unavailable")

// Defaults of the uhid device. 1209:0001 is pid.codes' Test PID, reserved for
// private testing, which is all a virtual key on the local machine is; hosts find
// FIDO devices by the report descriptor's usage page, not by IDs.
const (
	DefaultUHIDName      = "ctapkit softkey"
	DefaultUHIDVendorID  = 0x1209
	DefaultUHIDProductID = 0x0001
)

// UHIDOptions configures ServeUHID. Zero values select the defaults.
type UHIDOptions struct {
	// Name is the HID device name (hidraw HIDIOCGRAWNAME); default DefaultUHIDName.
	Name string
	// VendorID and ProductID; default DefaultUHIDVendorID:DefaultUHIDProductID.
	VendorID, ProductID uint16
	// Serial is the HID uniq string (hosts show it as the serial number and
	// ServeUHID finds its hidraw node by it); default a random one.
	Serial string
	// U2FOnly announces no CBOR capability, as a U2F-only key (see InProcessOptions).
	U2FOnly bool
	// OnNode is called once with the hidraw node (/dev/hidrawN) when the kernel
	// has made it, so that callers can start hosts without racing the kernel.
	OnNode func(path string)
	// Log, if set, sees every CTAPHID packet received ("recv") and sent ("send").
	Log func(dir string, pkt []byte)
	// Device is the uhid character device; default /dev/uhid.
	Device string
}

// fidoReportDescriptor is the HID report descriptor of a FIDO authenticator (CTAP
// 2.1 §11.2.8.1): usage page 0xF1D0, usage 0x01 (CTAPHID), one 64-byte input and
// one 64-byte output report, no report IDs. libfido2 lists only devices with it.
var fidoReportDescriptor = []byte{
	0x06, 0xD0, 0xF1, // Usage Page (FIDO Alliance)
	0x09, 0x01, // Usage (CTAPHID)
	0xA1, 0x01, // Collection (Application)
	0x09, 0x20, //   Usage (Input Report Data)
	0x15, 0x00, //   Logical Minimum (0)
	0x26, 0xFF, 0x00, //   Logical Maximum (255)
	0x75, 0x08, //   Report Size (8)
	0x95, 0x40, //   Report Count (64)
	0x81, 0x02, //   Input (Data, Variable, Absolute)
	0x09, 0x21, //   Usage (Output Report Data)
	0x15, 0x00, //   Logical Minimum (0)
	0x26, 0xFF, 0x00, //   Logical Maximum (255)
	0x75, 0x08, //   Report Size (8)
	0x95, 0x40, //   Report Count (64)
	0x91, 0x02, //   Output (Data, Variable, Absolute)
	0xC0, // End Collection
}
