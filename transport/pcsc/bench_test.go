//go:build !nopcsc && (cgo || windows)

package pcsc

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/ebfe/scard"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/internal/benchratio"
	"github.com/ctapkit/ctapkit/internal/pcsctest"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// TestMain stops the private pcscd the benchmarks may have started.
func TestMain(m *testing.M) {
	code := m.Run()
	pcsctest.StopShared()
	os.Exit(code)
}

// benchDevice opens a FIDO card through pcscd: the reader CTAPKIT_PCSC_READER
// names, on the machine's pcscd; else a softkey card (expose.Card over vpcd)
// behind a private pcscd (internal/pcsctest), skipping with the reason where
// none can run.
func benchDevice(b *testing.B) *Device {
	ctx := context.Background()
	if reader := os.Getenv("CTAPKIT_PCSC_READER"); reader != "" {
		dev, err := Open(ctx, reader, Options{CardWait: -1})
		if err != nil {
			b.Skipf("no FIDO card at CTAPKIT_PCSC_READER=%q: %v", reader, err)
		}
		b.Cleanup(func() { dev.Close() })
		return dev
	}
	d := pcsctest.Shared(b)
	insertCard(b, d.CardAddr(), softkey.Config{})
	dev := openRetry(b, d.Reader, Options{})
	return dev
}

// BenchmarkTransactOverhead measures what this transport adds per APDU: a getInfo
// through Device.Transact against the same APDUs (NFCCTAP_MSG, then GET RESPONSE
// while the card says 61xx) sent with raw scard Transmit calls on a second
// connection to the same card, alternating, in one run. x-raw is the ratio of the
// median times (target ≤ 1.1); x-raw-mean that of the means, which pcscd's
// periodic presence polls make noisier.
//
// The card is a softkey behind a private pcscd, or, with CTAPKIT_PCSC_READER
// set, that reader's card on the machine's pcscd.
func BenchmarkTransactOverhead(b *testing.B) {
	ctx := context.Background()
	dev := benchDevice(b)
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

	benchratio.Compare(b, func() { ours() }, func() { raw() }).Report(b, "x-raw", "transact", "raw")
	b.ReportMetric(float64(apdus), "apdus")
}

// BenchmarkGetAssertion times a getAssertion (allowList of one, ES256) through
// pcscd and vpcd against the same request to an in-process softkey over CTAPHID
// framing, alternating, and reports the ratio of medians (x-inprocess) and both
// times.
func BenchmarkGetAssertion(b *testing.B) {
	ctx := context.Background()
	viaPCSC := ctap2.NewClient(benchDevice(b))
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		b.Fatal(err)
	}
	local, err := expose.InProcess(ctx, auth, expose.InProcessOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer local.Close()
	inProcess := ctap2.NewClient(local)

	assert := func(c *ctap2.Client) func() {
		mc, err := c.MakeCredential(ctx, mcRequest("bench.example", "bench", false))
		if err != nil {
			b.Fatal(err)
		}
		id, _, err := mc.CredentialKey()
		if err != nil {
			b.Fatal(err)
		}
		req := &ctap2.GetAssertionRequest{RPID: "bench.example", ClientDataHash: make([]byte, 32),
			AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: id}}}
		return func() {
			if _, err := c.GetAssertion(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	pcscGA, localGA := assert(viaPCSC), assert(inProcess)
	benchratio.Compare(b, pcscGA, localGA).Report(b, "x-inprocess", "pcsc", "inprocess")
}
