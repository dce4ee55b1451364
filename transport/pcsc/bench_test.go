//go:build !nopcsc && (cgo || windows)

package pcsc

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/ebfe/scard"

	"github.com/ctapkit/ctapkit/transport"
)

// BenchmarkTransactOverhead measures what this transport adds per APDU: a getInfo
// through Device.Transact against the same APDUs (NFCCTAP_MSG, then GET RESPONSE
// while the card says 61xx) sent with raw scard Transmit calls on a second
// connection to the same card, alternating, in one run. x-raw is the ratio of the
// median times (target ≤ 1.1); x-raw-mean that of the means, which pcscd's
// periodic presence polls make noisier.
//
// It needs a running pcscd with a FIDO card: the first one Enumerate finds, or the
// reader named by CTAPKIT_PCSC_READER. For example:
//
//	ctapkit softkey serve --state sk.db --pcsc &
//	go test -run '^$' -bench TransactOverhead ./transport/pcsc
func BenchmarkTransactOverhead(b *testing.B) {
	ctx := context.Background()
	reader := os.Getenv("CTAPKIT_PCSC_READER")
	if reader == "" {
		infos, err := Enumerate(ctx)
		if err != nil {
			b.Skipf("no PC/SC here: %v", err)
		}
		if len(infos) == 0 {
			b.Skip("no FIDO card in any PC/SC reader (start pcscd and `ctapkit softkey serve --pcsc`, or set CTAPKIT_PCSC_READER)")
		}
		reader = infos[0].Path
	}
	dev, err := Open(ctx, reader, Options{CardWait: -1})
	if err != nil {
		b.Skipf("no FIDO card at %q: %v", reader, err)
	}
	defer dev.Close()
	sc, err := scard.EstablishContext()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Release()
	card, err := sc.Connect(dev.Reader(), scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		b.Fatal(err)
	}
	defer card.Disconnect(scard.LeaveCard)

	getInfo := []byte{0x04}
	var apdus int
	raw := func() []byte {
		apdus = 0
		var out []byte
		apdu := []byte{claCTAP, insCTAPMsg, p1GetRespOK, 0x00, 0x01, 0x04, 0x00}
		for {
			resp, err := card.Transmit(apdu)
			apdus++
			if err != nil || len(resp) < 2 {
				b.Fatalf("raw Transmit: % X, %v", resp, err)
			}
			n := len(resp) - 2
			out = append(out, resp[:n]...)
			switch sw1, sw2 := resp[n], resp[n+1]; {
			case sw1 == 0x61:
				apdu = []byte{claISO, insGetResp, 0x00, 0x00, sw2}
			case sw1 == 0x90 && sw2 == 0x00:
				return out
			default:
				b.Fatalf("raw getInfo: SW %02X%02X", sw1, sw2)
			}
		}
	}
	ours := func() []byte {
		resp, err := dev.Transact(ctx, transport.CmdCBOR, getInfo)
		if err != nil {
			b.Fatal(err)
		}
		return resp
	}
	if r, o := raw(), ours(); !bytes.Equal(r, o) {
		b.Fatalf("raw getInfo (%d bytes) and Transact (%d bytes) differ", len(r), len(o))
	}

	var tOurs, tRaw []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Alternate the order so that neither side always follows the other.
		if i%2 == 0 {
			tOurs = append(tOurs, timed(func() { ours() }))
			tRaw = append(tRaw, timed(func() { raw() }))
		} else {
			tRaw = append(tRaw, timed(func() { raw() }))
			tOurs = append(tOurs, timed(func() { ours() }))
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(median(tOurs))/float64(median(tRaw)), "x-raw")
	b.ReportMetric(float64(sum(tOurs))/float64(sum(tRaw)), "x-raw-mean")
	b.ReportMetric(float64(median(tOurs).Nanoseconds()), "transact-ns")
	b.ReportMetric(float64(median(tRaw).Nanoseconds()), "raw-ns")
	b.ReportMetric(float64(apdus), "apdus")
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func sum(d []time.Duration) time.Duration {
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t
}
