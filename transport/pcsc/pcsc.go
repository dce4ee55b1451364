// Package pcsc reaches FIDO authenticators through smart-card readers (NFC and
// contact) with PC/SC: CTAP 2.1 §11.3 over ISO 7816-4 APDUs.
//
// A Device selects the FIDO applet (AID A0000006472F0001) when it opens, then maps
// the transport commands onto APDUs: CmdCBOR becomes NFCCTAP_MSG (80 10 80 00,
// P1 0x80 telling the card that we poll with NFCCTAP_GETRESPONSE while it answers
// 0x9100), CmdMsg is the U2F APDU itself. Answers over 256 bytes are collected with
// GET RESPONSE (61xx), and so are SELECT's, as libfido2 learnt to do.
//
// Long messages: by default a Device sends short APDUs with ISO 7816-4 command
// chaining (CLA bit 0x10, links of 255 bytes, Le only on the last), the encoding
// CTAP requires every NFC authenticator to accept and every reader can carry.
// Options.APDU selects extended APDUs instead (one APDU each way), or AutoAPDUs:
// extended first for messages that do not fit a short APDU, and short chaining for
// the rest of the Device's life once the card refuses one with 6700 (wrong length).
//
// Device URIs are pcsc:READER. READER is a reader's exact PC/SC name
// ("pcsc:Virtual PCD 00 00"), else a decimal index into pcscd's reader list
// ("pcsc:1", like libfido2's pcsc://slot1), else a case-insensitive substring of
// one reader's name, or of several of which exactly one holds a card
// ("pcsc:yubico"). Info always reports the full name.
//
// While a request waits (0x9100), the Device holds a PC/SC transaction, so that
// another program's APDUs (a SELECT from a device listing) wait instead of
// cancelling it.
//
// The protocol logic here talks to a small cardConn interface, so it is tested
// without pcscd; scard.go implements it with github.com/ebfe/scard (cgo,
// libpcsclite). Built with the nopcsc tag, the package keeps its API but every
// function that needs PC/SC fails.
package pcsc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// SchemeName is the device URI scheme: pcsc:READER.
const SchemeName = "pcsc"

// APDUMode chooses how a Device frames messages that do not fit a short APDU.
type APDUMode int

const (
	// ShortAPDUs chains short APDUs of at most 255 data bytes (the default).
	ShortAPDUs APDUMode = iota
	// ExtendedAPDUs sends every CTAP2 request as one extended APDU with Le 0000,
	// so that the answer can come back in one piece too.
	ExtendedAPDUs
	// AutoAPDUs tries an extended APDU for messages over 255 bytes and falls back
	// to short chaining for good when the card answers 6700.
	AutoAPDUs
)

func (m APDUMode) String() string {
	switch m {
	case ShortAPDUs:
		return "short"
	case ExtendedAPDUs:
		return "extended"
	case AutoAPDUs:
		return "auto"
	}
	return fmt.Sprintf("APDUMode(%d)", int(m))
}

// Options configures a Device. The zero value selects the defaults.
type Options struct {
	// APDU chooses short chaining (default), extended APDUs or both.
	APDU APDUMode
	// PollInterval is the wait between NFCCTAP_GETRESPONSE polls while the card
	// answers 0x9100 (busy, or waiting for a touch). 0 = 100 ms, as python-fido2.
	PollInterval time.Duration
	// CardWait bounds how long Open waits for a card on the reader (an NFC key to
	// be tapped, a virtual card to connect) when ctx has no earlier deadline.
	// 0 = 5 s; negative = do not wait.
	CardWait time.Duration
	// Log, if set, sees every command APDU ("send") and response APDU ("recv").
	// It must not keep or modify apdu.
	Log func(dir string, apdu []byte)
}

const (
	defaultPollInterval = 100 * time.Millisecond
	defaultCardWait     = 5 * time.Second
	// maxResponse bounds the bytes collected through GET RESPONSE, so that a card
	// answering 61xx forever cannot make us loop forever.
	maxResponse = 1 << 20
)

// cardConn is a connection to the card in one reader: one APDU in, one out. The
// real one (scard.go) goes through pcscd; tests use fakes. Transmit reports a card
// that is gone with an error wrapping errCardRemoved or errReaderGone.
type cardConn interface {
	Transmit(apdu []byte) ([]byte, error)
	Close() error
}

// cardLocker is a cardConn that can hold other programs' APDUs back (a PC/SC
// transaction). Device locks the card while it polls a request that answered 9100:
// another host's SELECT would otherwise cancel it mid-wait, since cards drop a
// running request on any other command. Short exchanges are not locked; their
// window is tens of microseconds and a lock costs a third of an APDU.
type cardLocker interface {
	Lock() error
	Unlock() error
}

// Why a cardConn cannot reach the card; Device turns them into one-line errors
// that wrap transport.ErrNoDevice.
var (
	errCardRemoved = errors.New("card removed")
	errReaderGone  = errors.New("reader gone")
	errServiceGone = errors.New("pcscd gone")
)

// ErrNotBuilt is what every function that needs PC/SC returns in a build without
// it (the nopcsc tag, or no cgo).
var ErrNotBuilt = errors.New("built without PC/SC support (nopcsc tag or CGO_ENABLED=0)")

// goneError says, in one line, that the card or its reader went away. It matches
// transport.ErrNoDevice and the cardConn's own error.
type goneError struct {
	msg   string
	cause error
}

func (e *goneError) Error() string   { return e.msg }
func (e *goneError) Unwrap() []error { return []error{transport.ErrNoDevice, e.cause} }

// APDU bytes of CTAP 2.1 §11.3 and ISO 7816-4.
const (
	claISO        byte = 0x00
	claCTAP       byte = 0x80 // NFCCTAP_MSG and NFCCTAP_GETRESPONSE
	claChain      byte = 0x10 // "more links of this command follow"
	insSelect     byte = 0xA4
	insGetResp    byte = 0xC0 // ISO GET RESPONSE
	insCTAPMsg    byte = 0x10
	insCTAPGetRsp byte = 0x11
	p1GetRespOK   byte = 0x80 // NFCCTAP_MSG: we poll 0x9100 with NFCCTAP_GETRESPONSE
	p1Cancel      byte = 0x11 // NFCCTAP_GETRESPONSE: cancel instead of poll

	maxShortData = 255
	maxExtData   = 65535
)

// Status words with a role in the protocol.
const (
	swOK           uint16 = 0x9000
	swStatusUpdate uint16 = 0x9100 // NFCCTAP: still working; data = keepalive status
	swWrongLength  uint16 = 0x6700
	swInsUnknown   uint16 = 0x6D00
	swClaUnknown   uint16 = 0x6E00
)

// fidoAID is the FIDO applet (CTAP 2.1 §11.3.3).
var fidoAID = []byte{0xA0, 0x00, 0x00, 0x06, 0x47, 0x2F, 0x00, 0x01}

// Applet versions a card answers SELECT with.
const (
	VersionU2F  = "U2F_V2"   // U2F; CTAP2 maybe too, getInfo tells
	VersionFIDO = "FIDO_2_0" // CTAP2 only, no U2F
)

// SWError is a status word the card answered where success was expected.
type SWError uint16

var swNames = map[SWError]string{
	0x6700: "wrong length",
	0x6881: "logical channel not supported",
	0x6882: "secure messaging not supported",
	0x6883: "last command of the chain expected",
	0x6884: "command chaining not supported",
	0x6982: "security status not satisfied",
	0x6985: "conditions of use not satisfied",
	0x6986: "command not allowed",
	0x6A80: "wrong data",
	0x6A81: "function not supported",
	0x6A82: "FIDO applet not found",
	0x6A86: "incorrect P1 P2",
	0x6D00: "instruction not supported",
	0x6E00: "class not supported",
	0x6F00: "no precise diagnosis",
	0x9100: "status update",
}

func (s SWError) Error() string {
	if n, ok := swNames[s]; ok {
		return fmt.Sprintf("SW %04X (%s)", uint16(s), n)
	}
	return fmt.Sprintf("SW %04X", uint16(s))
}

// Device is a FIDO applet on the card in one reader. It implements
// transport.Device; its methods are safe for concurrent use and transactions are
// serialised, since a card does one thing at a time.
type Device struct {
	conn    cardConn
	reader  string
	opts    Options
	version string // SELECT's answer

	mu       sync.Mutex // held for a whole transaction
	reselect bool       // an abandoned exchange may have left state: SELECT first
	noExt    bool       // AutoAPDUs: the card refused an extended APDU

	noCBOR    atomic.Bool // NFCCTAP_MSG got 6D00: a U2F-only card
	closed    atomic.Bool
	done      chan struct{} // closed by Close, wakes a polling transaction
	closeOnce sync.Once
	closeErr  error
}

var _ transport.Device = (*Device)(nil)

// newDevice selects the FIDO applet on conn and returns the Device that uses it. If
// it fails, conn is left open.
func newDevice(ctx context.Context, conn cardConn, reader string, opts Options) (*Device, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = defaultPollInterval
	}
	d := &Device{conn: conn, reader: reader, opts: opts, done: make(chan struct{})}
	if err := d.selectApplet(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// selectApplet sends SELECT with Le 00 (strict cards refuse it without) and keeps
// the applet's version string.
func (d *Device) selectApplet(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pcsc: selecting the FIDO applet on %s: %w", d.reader, err)
	}
	apdu := append([]byte{claISO, insSelect, 0x04, 0x00, byte(len(fidoAID))}, fidoAID...)
	resp, sw, err := d.exchange(append(apdu, 0x00))
	if err != nil {
		return err
	}
	if sw != swOK {
		return fmt.Errorf("pcsc: the card in %s has no FIDO applet (SELECT: %w): %w", d.reader, SWError(sw), transport.ErrNoDevice)
	}
	d.version = string(resp)
	d.reselect = false
	return nil
}

// Transact sends one CTAP message. CmdCBOR goes as NFCCTAP_MSG and returns status
// byte || CBOR; while the card answers 0x9100 its status byte is reported to
// transport.KeepaliveFunc(ctx) (once per change) and the answer is polled every
// Options.PollInterval. When ctx ends meanwhile, Transact sends the NFCCTAP cancel
// and returns an error wrapping ctx.Err(). CmdMsg sends the U2F APDU (re-encoded
// short when it fits) and returns data || SW1 SW2 as over USB. A card that does not
// know NFCCTAP_MSG (6D00) gives an error wrapping transport.ErrUnsupportedCommand;
// other commands (PING, WINK, LOCK) have no NFC form and give that error too.
func (d *Device) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	switch cmd {
	case transport.CmdCBOR, transport.CmdMsg:
	default:
		return nil, fmt.Errorf("pcsc: %v has no NFC form: %w", cmd, transport.ErrUnsupportedCommand)
	}
	if len(data) > maxExtData {
		return nil, fmt.Errorf("pcsc: %v message of %d bytes exceeds the %d-byte limit", cmd, len(data), maxExtData)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.ready(ctx, cmd.String()+" request"); err != nil {
		return nil, err
	}
	if cmd == transport.CmdMsg {
		return d.u2f(ctx, data)
	}
	return d.cbor(ctx, data)
}

// ready checks, with d.mu held, that a transaction may start, and selects the
// applet again after an abandoned one.
func (d *Device) ready(ctx context.Context, what string) error {
	if d.closed.Load() {
		return fmt.Errorf("pcsc: %s: %w", what, transport.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pcsc: %s: %w", what, err)
	}
	if d.reselect {
		return d.selectApplet(ctx)
	}
	return nil
}

// cbor runs one CTAP2 request.
func (d *Device) cbor(ctx context.Context, data []byte) ([]byte, error) {
	resp, sw, err := d.sendCBOR(ctx, data)
	notify := transport.StatusNotifier(transport.KeepaliveFunc(ctx))
	poll := []byte{claCTAP, insCTAPGetRsp, 0x00, 0x00, 0x00}
	locked := false
	defer func() {
		if locked {
			d.conn.(cardLocker).Unlock()
		}
	}()
	for {
		if err != nil {
			return nil, err
		}
		switch sw {
		case swOK:
			return resp, nil
		case swStatusUpdate:
			if l, ok := d.conn.(cardLocker); ok && !locked {
				// Without the lock we still work, as hosts without transactions do.
				locked = l.Lock() == nil
			}
			status := transport.StatusProcessing
			if len(resp) > 0 {
				status = resp[0]
			}
			notify(status)
			if err := d.wait(ctx); err != nil {
				return nil, err
			}
			resp, sw, err = d.exchange(poll)
		case swInsUnknown, swClaUnknown:
			// A U2F-only card; Capabilities now says so, for ctap2.Client's fallback.
			d.noCBOR.Store(true)
			return nil, fmt.Errorf("pcsc: the card in %s refuses NFCCTAP_MSG (%w): %w", d.reader, SWError(sw), transport.ErrUnsupportedCommand)
		default:
			return nil, fmt.Errorf("pcsc: NFCCTAP_MSG to %s: %w", d.reader, SWError(sw))
		}
	}
}

// sendCBOR sends NFCCTAP_MSG in the framing Options.APDU asks for.
func (d *Device) sendCBOR(ctx context.Context, data []byte) ([]byte, uint16, error) {
	ext := d.opts.APDU == ExtendedAPDUs || d.opts.APDU == AutoAPDUs && !d.noExt && len(data) > maxShortData
	if !ext {
		return d.send(ctx, claCTAP, insCTAPMsg, p1GetRespOK, 0x00, data, 256)
	}
	resp, sw, err := d.exchange(extendedAPDU(claCTAP, insCTAPMsg, p1GetRespOK, 0x00, data))
	if err == nil && sw == swWrongLength && d.opts.APDU == AutoAPDUs {
		// The card (or reader) takes only short APDUs; it ran nothing, so resend.
		d.noExt = true
		return d.send(ctx, claCTAP, insCTAPMsg, p1GetRespOK, 0x00, data, 256)
	}
	return resp, sw, err
}

// wait sleeps one poll interval. If ctx ends first it cancels the card's work
// with NFCCTAP_GETRESPONSE P1=0x11 and returns an error wrapping ctx.Err().
func (d *Device) wait(ctx context.Context) error {
	t := time.NewTimer(d.opts.PollInterval)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-d.done:
		return fmt.Errorf("pcsc: CBOR request: %w", transport.ErrClosed)
	case <-ctx.Done():
	}
	// The card answers the cancel at once: with its final status (0x2D
	// KEEPALIVE_CANCEL) or, if it has not stopped yet, 0x9100. Only a clean 9000
	// leaves it ready; otherwise SELECT it again before the next request.
	_, sw, err := d.transmit([]byte{claCTAP, insCTAPGetRsp, p1Cancel, 0x00, 0x00})
	if err != nil || sw != swOK {
		d.reselect = true
	}
	return fmt.Errorf("pcsc: CBOR request cancelled: %w", ctx.Err())
}

// u2f sends a U2F APDU and returns data || SW1 SW2 as CTAPHID_MSG would: status
// words are U2F's answer, not transport errors.
func (d *Device) u2f(ctx context.Context, apdu []byte) ([]byte, error) {
	a, err := parseCommand(apdu)
	if err != nil {
		return nil, fmt.Errorf("pcsc: U2F request: %w", err)
	}
	var resp []byte
	var sw uint16
	// U2F over NFC uses short APDUs (the USB framing is extended): re-encode, and
	// chain what does not fit unless told to use extended APDUs. AutoAPDUs cannot
	// probe here: 6700 is also U2F's answer to a malformed request.
	if len(a.data) > maxShortData && d.opts.APDU == ExtendedAPDUs {
		resp, sw, err = d.exchange(extendedAPDU(a.cla, a.ins, a.p1, a.p2, a.data))
	} else {
		resp, sw, err = d.send(ctx, a.cla, a.ins, a.p1, a.p2, a.data, min(a.ne, 256))
	}
	if err != nil {
		return nil, err
	}
	return append(resp, byte(sw>>8), byte(sw)), nil
}

// send transmits a command as short APDUs: links of 255 bytes with the chaining
// bit and no Le, each of which the card must answer 9000, then the last link with
// Le 00 if ne > 0. It follows 61xx and returns the answer's data and status word.
// A chain that cannot finish (ctx ends, the card refuses a link) leaves the card
// mid-command, so the next transaction selects the applet first.
func (d *Device) send(ctx context.Context, cla, ins, p1, p2 byte, data []byte, ne int) ([]byte, uint16, error) {
	for len(data) > maxShortData {
		_, sw, err := d.transmit(shortAPDU(cla|claChain, ins, p1, p2, data[:maxShortData], 0))
		if err != nil {
			return nil, 0, err
		}
		if sw != swOK {
			d.reselect = true
			return nil, sw, nil
		}
		data = data[maxShortData:]
		if err := ctx.Err(); err != nil {
			d.reselect = true
			return nil, 0, fmt.Errorf("pcsc: chained command cancelled: %w", err)
		}
	}
	return d.exchange(shortAPDU(cla, ins, p1, p2, data, ne))
}

// exchange transmits one APDU and, while the card answers 61xx, collects the rest
// of its answer with GET RESPONSE (Le = xx).
func (d *Device) exchange(apdu []byte) ([]byte, uint16, error) {
	resp, sw, err := d.transmit(apdu)
	if err != nil || sw>>8 != 0x61 {
		return resp, sw, err
	}
	out := append([]byte(nil), resp...)
	for sw>>8 == 0x61 {
		if len(out) > maxResponse {
			d.reselect = true
			return nil, 0, fmt.Errorf("pcsc: the card in %s answered 61xx beyond %d bytes", d.reader, maxResponse)
		}
		resp, sw, err = d.transmit([]byte{claISO, insGetResp, 0x00, 0x00, byte(sw)})
		if err != nil {
			return nil, 0, err
		}
		out = append(out, resp...)
	}
	return out, sw, nil
}

// transmit sends one APDU and splits the answer into data and status word.
func (d *Device) transmit(apdu []byte) ([]byte, uint16, error) {
	if d.opts.Log != nil {
		d.opts.Log("send", apdu)
	}
	resp, err := d.conn.Transmit(apdu)
	if err != nil {
		return nil, 0, d.connErr(err)
	}
	if d.opts.Log != nil {
		d.opts.Log("recv", resp)
	}
	if len(resp) < 2 {
		d.reselect = true
		return nil, 0, fmt.Errorf("pcsc: the card in %s answered %d bytes, no status word", d.reader, len(resp))
	}
	n := len(resp) - 2
	return resp[:n], uint16(resp[n])<<8 | uint16(resp[n+1]), nil
}

// connErr turns the cardConn's errors into the one-line errors users see.
func (d *Device) connErr(err error) error {
	switch {
	case d.closed.Load():
		return fmt.Errorf("pcsc: %s: %w", d.reader, transport.ErrClosed)
	case errors.Is(err, errCardRemoved):
		return &goneError{fmt.Sprintf("the card was removed from %s", d.reader), err}
	case errors.Is(err, errReaderGone):
		return &goneError{fmt.Sprintf("the reader %s is gone", d.reader), err}
	case errors.Is(err, errServiceGone):
		return &goneError{fmt.Sprintf("pcscd stopped while talking to %s", d.reader), err}
	}
	d.reselect = true
	return fmt.Errorf("pcsc: transmitting to %s: %w", d.reader, err)
}

// TransmitAPDU sends one command APDU exactly as given and returns the card's
// answer as it came, data || SW1 SW2: no chaining, no GET RESPONSE, no 0x9100
// polling. It is fido-conformance's APDUTransmitter capability, for the NFC-layer
// cases. Afterwards, Transact selects the applet again before its next request.
func (d *Device) TransmitAPDU(ctx context.Context, apdu []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed.Load() {
		return nil, fmt.Errorf("pcsc: raw APDU: %w", transport.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pcsc: raw APDU: %w", err)
	}
	// The caller may select another applet or leave a chain open.
	d.reselect = true
	if d.opts.Log != nil {
		d.opts.Log("send", apdu)
	}
	resp, err := d.conn.Transmit(apdu)
	if err != nil {
		return nil, d.connErr(err)
	}
	if d.opts.Log != nil {
		d.opts.Log("recv", resp)
	}
	return resp, nil
}

// Info describes the reader: transport "pcsc", URI "pcsc:READER".
func (d *Device) Info() transport.DeviceInfo { return readerInfo(d.reader) }

func readerInfo(reader string) transport.DeviceInfo {
	return transport.DeviceInfo{
		URI:       SchemeName + ":" + reader,
		Transport: SchemeName,
		Path:      reader,
		Product:   "PC/SC " + reader,
	}
}

// Scheme returns the pcsc: URI scheme for a transport.Registry: Open with opts,
// and Enumerate.
func Scheme(opts Options) transport.Scheme {
	return transport.Scheme{
		Name: SchemeName,
		Open: func(ctx context.Context, path string) (transport.Device, error) {
			d, err := Open(ctx, path, opts)
			if err != nil {
				return nil, err
			}
			return d, nil
		},
		Enumerate: Enumerate,
	}
}

// Reader returns the PC/SC name of the reader.
func (d *Device) Reader() string { return d.reader }

// AppletVersion returns the FIDO applet's answer to SELECT: "U2F_V2" or
// "FIDO_2_0" (or whatever else the card said).
func (d *Device) AppletVersion() string { return d.version }

// Capabilities reports what the card speaks in CTAPHID capability flags, the way
// a ctaphid.Device does, so that ctap2.Client's U2F fallback works over NFC:
// CapCBOR unless NFCCTAP_MSG was refused with 6D00, and CapNMSG when SELECT said
// "FIDO_2_0" (a CTAP2-only applet). A card answering "U2F_V2" may still speak
// CTAP2 (solo1 does), so it counts as CBOR-capable until getInfo says otherwise.
// NFC has no WINK.
func (d *Device) Capabilities() byte {
	if d.noCBOR.Load() {
		return 0
	}
	if d.version == VersionFIDO {
		return ctaphid.CapCBOR | ctaphid.CapNMSG
	}
	return ctaphid.CapCBOR
}

// Close disconnects from the card. A transaction polling a busy card stops with
// transport.ErrClosed.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		close(d.done)
		d.mu.Lock()
		defer d.mu.Unlock()
		d.closeErr = d.conn.Close()
	})
	return d.closeErr
}

// command is a parsed command APDU.
type command struct {
	cla, ins, p1, p2 byte
	data             []byte
	ne               int // expected response length; 0 = no Le
}

// parseCommand decodes a command APDU, short or extended, in any ISO 7816-4
// case, including the USB framing of U2F (00 INS P1 P2 00 Lc1 Lc2 data 00 00,
// with a zero Lc and no data for VERSION). It is the subset of ctap1.ParseAPDU
// this package needs; transport packages do not import ctap2's tree.
func parseCommand(b []byte) (command, error) {
	if len(b) < 4 {
		return command{}, fmt.Errorf("command APDU of %d bytes", len(b))
	}
	c := command{cla: b[0], ins: b[1], p1: b[2], p2: b[3]}
	body := b[4:]
	le := func(v, zero int) int {
		if v == 0 {
			return zero
		}
		return v
	}
	switch {
	case len(body) == 0:
		return c, nil
	case len(body) == 1:
		c.ne = le(int(body[0]), 256)
		return c, nil
	case body[0] != 0:
		lc := int(body[0])
		switch len(body) {
		case 1 + lc:
		case 2 + lc:
			c.ne = le(int(body[1+lc]), 256)
		default:
			return command{}, fmt.Errorf("short command APDU with Lc %d and %d body bytes", lc, len(body))
		}
		c.data = body[1 : 1+lc]
		return c, nil
	case len(body) < 3:
		return command{}, fmt.Errorf("extended command APDU with %d body bytes", len(body))
	}
	n := int(body[1])<<8 | int(body[2])
	rest := body[3:]
	switch {
	case len(rest) == 0:
		c.ne = le(n, 65536)
		return c, nil
	case n == 0 && len(rest) == 2:
		c.ne = le(int(rest[0])<<8|int(rest[1]), 65536)
		return c, nil
	case n > 0 && len(rest) == n:
	case n > 0 && len(rest) == n+2:
		c.ne = le(int(rest[n])<<8|int(rest[n+1]), 65536)
	default:
		return command{}, fmt.Errorf("extended command APDU with Lc %d and %d data bytes", n, len(rest))
	}
	c.data = rest[:n]
	return c, nil
}

// shortAPDU encodes a short command: Lc and data if any, Le if ne > 0 (256 as 00).
func shortAPDU(cla, ins, p1, p2 byte, data []byte, ne int) []byte {
	out := make([]byte, 0, 6+len(data))
	out = append(out, cla, ins, p1, p2)
	if len(data) > 0 {
		out = append(out, byte(len(data)))
		out = append(out, data...)
	}
	if ne > 0 {
		out = append(out, byte(ne)) // 256 encodes as 00
	}
	return out
}

// extendedAPDU encodes an extended command with Le 0000 (65536): case 4E, or
// case 2E without data.
func extendedAPDU(cla, ins, p1, p2 byte, data []byte) []byte {
	out := make([]byte, 0, 9+len(data))
	out = append(out, cla, ins, p1, p2, 0x00)
	if len(data) > 0 {
		out = append(out, byte(len(data)>>8), byte(len(data)))
		out = append(out, data...)
	}
	return append(out, 0x00, 0x00)
}
