package expose

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"time"

	"github.com/ctapkit/ctapkit/ctap2/ctap1"
)

// The client side of vsmartcard's vpcd protocol: vpcd, a pcscd reader driver,
// listens on TCP (35963 for reader "Virtual PCD 00 00", 35964 for "… 00 01") and a
// card connects to it. Both directions send frames of a big-endian uint16 length
// and that many bytes. A 1-byte frame from vpcd is a control byte; anything longer
// is a command APDU, answered with one response frame.

// DefaultVPCDAddr is the first vpcd slot on this machine.
const DefaultVPCDAddr = "localhost:35963"

// vpcd control bytes. Only GET ATR is answered.
const (
	vpcdPowerOff = 0x00
	vpcdPowerOn  = 0x01
	vpcdReset    = 0x02
	vpcdGetATR   = 0x04
)

// DialVPCD connects to vpcd at addr (host:port) as a card.
func DialVPCD(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to vpcd at %s: %w", addr, err)
	}
	return conn, nil
}

// ServeVPCD answers vpcd on conn with card until ctx is done (it returns ctx.Err())
// or the connection ends (an error; io.EOF when vpcd closed it between frames, as
// pcscd does when it stops). Power events reset the card, and so does the end of
// the connection: the card has left the reader. ServeVPCD does not close conn.
func ServeVPCD(ctx context.Context, conn net.Conn, card *Card) error {
	defer card.PowerOff()
	stop := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0)) // unblocks the pending read or write
	})
	defer stop()
	tcp, _ := conn.(*net.TCPConn)
	var hdr [2]byte
	for {
		if err := readVPCD(conn, tcp, hdr[:]); err != nil {
			return vpcdError(ctx, err, "reading from vpcd")
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if err := readVPCD(conn, tcp, msg); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return vpcdError(ctx, err, "reading from vpcd")
		}
		var reply []byte
		switch len(msg) {
		case 0:
			continue
		case 1:
			switch msg[0] {
			case vpcdPowerOff, vpcdPowerOn, vpcdReset:
				card.PowerOff()
			case vpcdGetATR:
				reply = ATR()
			}
		default:
			reply = card.Transmit(ctx, msg)
			if len(reply) > 0xFFFF {
				reply = ctap1.SWUnknown.Bytes() // cannot be framed; never seen with CTAP-sized replies
			}
		}
		if reply == nil {
			continue
		}
		// Length and body in one write: split, they cost a delayed ACK on the
		// other side, as Debian's vpcd shows.
		frame := make([]byte, 2+len(reply))
		binary.BigEndian.PutUint16(frame, uint16(len(reply)))
		copy(frame[2:], reply)
		if _, err := conn.Write(frame); err != nil {
			return vpcdError(ctx, err, "writing to vpcd")
		}
	}
}

// readVPCD fills b and re-arms TCP quick-ACK mode. Debian's vpcd writes a frame's
// length and body in two sends without TCP_NODELAY, so Nagle holds the body until
// the length is ACKed; without quick ACKs the kernel delays that ACK by ~40 ms per
// APDU. Linux leaves quick-ACK mode by itself, hence after every read.
func readVPCD(conn net.Conn, tcp *net.TCPConn, b []byte) error {
	_, err := io.ReadFull(conn, b)
	if tcp != nil {
		quickACK(tcp)
	}
	return err
}

// tcpQuickACK is Linux's TCP_QUICKACK, which the syscall package defines only there.
const tcpQuickACK = 0x0C

// setsockoptInt is syscall.SetsockoptInt where it takes an int descriptor (not on
// Windows), held as a value so that this file builds everywhere.
var setsockoptInt, _ = any(syscall.SetsockoptInt).(func(fd, level, opt, value int) error)

func quickACK(tcp *net.TCPConn) {
	if runtime.GOOS != "linux" || setsockoptInt == nil {
		return
	}
	rc, err := tcp.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		setsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpQuickACK, 1) // best effort: only speed is at stake
	})
}

func vpcdError(ctx context.Context, err error, op string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%s: %w", op, err)
}
