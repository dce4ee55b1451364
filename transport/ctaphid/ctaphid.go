// Package ctaphid implements CTAPHID, the framing that carries CTAP messages over
// 64-byte USB HID reports (FIDO CTAP 2.1 §11.2), for both ends of the wire.
//
// The host side (Open, Device) allocates a channel with INIT and runs one
// transaction at a time on it, skipping other channels' traffic, reporting
// keepalives and sending CANCEL when the caller gives up. The device side (Server)
// is what the softkey is exposed through: it allocates channels, reassembles
// requests, enforces the busy, lock and timeout rules and runs the Handler in its
// own goroutine so that CANCEL and INIT are honoured while a request runs.
//
// Both sides speak through a PacketConn, so hidraw, uhid, UDP simulators and the
// in-memory Pipe are interchangeable. The packet parsers on both sides (assembler,
// replyReader) are pure types without goroutines or clocks, which is what lets the
// fuzz targets drive them directly.
package ctaphid

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/ctapkit/ctapkit/transport"
)

// Sizes of the CTAPHID framing for the usual 64-byte report (§11.2.4).
const (
	// ReportSize is the size of one HID report, without a report-ID byte.
	ReportSize = 64
	// MaxMessageSize is the largest message that fits one init packet plus the
	// 128 continuation packets that a 7-bit sequence number can count.
	MaxMessageSize = initPayloadSize + (maxSeq+1)*contPayloadSize // 7609

	initHeaderSize  = 7 // CID(4) CMD(1) BCNTH(1) BCNTL(1)
	contHeaderSize  = 5 // CID(4) SEQ(1)
	initPayloadSize = ReportSize - initHeaderSize
	contPayloadSize = ReportSize - contHeaderSize
	maxSeq          = 0x7F

	initFlag = 0x80 // set in byte 4 of an init packet, clear in a continuation
)

// BroadcastCID is the channel on which INIT allocates a new channel (§11.2.3).
// Channel 0 is reserved and never valid.
const BroadcastCID uint32 = 0xFFFFFFFF

// Capability flags of the INIT reply (§11.2.9.1.3).
const (
	CapWink byte = 0x01 // implements WINK
	CapLock byte = 0x02 // legacy U2FHID flag: implements LOCK; CTAP hosts ignore it
	CapCBOR byte = 0x04 // implements CBOR (CTAP2)
	CapNMSG byte = 0x08 // does NOT implement MSG (no CTAP1/U2F)
)

// protocolVersion is the CTAPHID protocol version reported in the INIT reply.
const protocolVersion = 2

// initNonceSize is the length of the INIT request payload, and initReplySize the
// length of its reply: nonce || CID || protocol || major || minor || build || caps.
const (
	initNonceSize = 8
	initReplySize = 17
)

// Error is a CTAPHID_ERROR code (§11.2.9.1.6), the one-byte payload of an ERROR
// reply. It is what the host returns (wrapped) when the device answers ERROR, and
// what the Server sends when a packet breaks the framing rules. The values equal
// the CTAP1_ERR_* status codes, so a StatusError table can name them too.
type Error byte

// CTAPHID_ERROR codes.
const (
	ErrInvalidCmd     Error = 0x01 // unknown command, or MSG on an NMSG device
	ErrInvalidPar     Error = 0x02 // bad parameter, e.g. LOCK longer than 10 s
	ErrInvalidLen     Error = 0x03 // bad length: too long a message, INIT not 8 bytes, LOCK not 1
	ErrInvalidSeq     Error = 0x04 // continuation out of order, or a new message mid-message
	ErrMsgTimeout     Error = 0x05 // the rest of a message did not arrive in time
	ErrChannelBusy    Error = 0x06 // another channel owns the device; retry later
	ErrLockRequired   Error = 0x0A // the command needs a channel lock
	ErrInvalidChannel Error = 0x0B // channel 0, or a channel that was never allocated
	ErrOther          Error = 0x7F // unspecified
)

var errorNames = map[Error]string{
	ErrInvalidCmd:     "CTAPHID_ERR_INVALID_CMD",
	ErrInvalidPar:     "CTAPHID_ERR_INVALID_PAR",
	ErrInvalidLen:     "CTAPHID_ERR_INVALID_LEN",
	ErrInvalidSeq:     "CTAPHID_ERR_INVALID_SEQ",
	ErrMsgTimeout:     "CTAPHID_ERR_MSG_TIMEOUT",
	ErrChannelBusy:    "CTAPHID_ERR_CHANNEL_BUSY",
	ErrLockRequired:   "CTAPHID_ERR_LOCK_REQUIRED",
	ErrInvalidChannel: "CTAPHID_ERR_INVALID_CHANNEL",
	ErrOther:          "CTAPHID_ERR_OTHER",
}

func (e Error) Error() string {
	if n, ok := errorNames[e]; ok {
		return n
	}
	return fmt.Sprintf("CTAPHID_ERR(0x%02x)", byte(e))
}

// Is makes a busy device match transport.ErrInUse and ERR_INVALID_CMD match
// transport.ErrUnsupportedCommand, so callers that only know the transport sentinels
// can tell "another program is using the key" and "the key does not implement this"
// (CBOR on a U2F-only key) from failure.
func (e Error) Is(target error) bool {
	return (target == transport.ErrInUse && e == ErrChannelBusy) ||
		(target == transport.ErrUnsupportedCommand && e == ErrInvalidCmd)
}

// PacketConn carries 64-byte HID reports (no report-ID byte). hidraw,
// karalabe/hid, uhid, UDP and Pipe implement it. Implementations may return reports
// shorter than ReportSize (a UDP peer that trims zero padding); both sides of this
// package treat the missing bytes as zeros.
type PacketConn interface {
	// ReadPacket blocks until a report arrives; it returns ctx.Err() when ctx is done.
	ReadPacket(ctx context.Context) ([]byte, error)
	WritePacket(p []byte) error
	Close() error
}

// RawLinker is a device that can open a second, raw CTAPHID link to the same key,
// as another program would: a second open of the HID node, a second socket to a
// UDP simulator. Conformance tests speak raw packets through it.
type RawLinker interface {
	RawLink() (PacketConn, error)
}

// packetCID returns the channel of a packet of at least 4 bytes.
func packetCID(p []byte) uint32 { return binary.BigEndian.Uint32(p) }

// isInit reports whether p (at least contHeaderSize bytes) is an init packet.
func isInit(p []byte) bool { return p[4]&initFlag != 0 }

// normalize returns p as exactly one report: nil when p is too short to carry a
// header, zero-padded when it is short, truncated when a transport hands over more.
// Both parsers call it first so that neither indexes past a short report.
func normalize(p []byte) []byte {
	switch {
	case len(p) < contHeaderSize:
		return nil
	case len(p) == ReportSize:
		return p
	}
	q := make([]byte, ReportSize)
	copy(q, p)
	return q
}

// initHeader decodes the command and declared length of an init packet.
func initHeader(p []byte) (transport.Command, int) {
	return transport.Command(p[4] &^ initFlag), int(binary.BigEndian.Uint16(p[5:7]))
}

// fragment splits a message into the init and continuation packets that carry it,
// zero-padded to ReportSize.
func fragment(cid uint32, cmd transport.Command, data []byte) ([][]byte, error) {
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("ctaphid: %v message of %d bytes exceeds the %d-byte limit", cmd, len(data), MaxMessageSize)
	}
	n := 1
	if len(data) > initPayloadSize {
		n += (len(data) - initPayloadSize + contPayloadSize - 1) / contPayloadSize
	}
	buf := make([]byte, n*ReportSize)
	pkts := make([][]byte, n)
	for i := range pkts {
		p := buf[i*ReportSize : (i+1)*ReportSize : (i+1)*ReportSize]
		binary.BigEndian.PutUint32(p, cid)
		if i == 0 {
			p[4] = byte(cmd) | initFlag
			binary.BigEndian.PutUint16(p[5:7], uint16(len(data)))
			data = data[copy(p[initHeaderSize:], data):]
		} else {
			p[4] = byte(i - 1)
			data = data[copy(p[contHeaderSize:], data):]
		}
		pkts[i] = p
	}
	return pkts, nil
}

// initPacket builds a single-packet message, which every reply of the Server's
// own (ERROR, KEEPALIVE, INIT) is.
func initPacket(cid uint32, cmd transport.Command, data []byte) []byte {
	p := make([]byte, ReportSize)
	binary.BigEndian.PutUint32(p, cid)
	p[4] = byte(cmd) | initFlag
	binary.BigEndian.PutUint16(p[5:7], uint16(len(data)))
	copy(p[initHeaderSize:], data)
	return p
}
