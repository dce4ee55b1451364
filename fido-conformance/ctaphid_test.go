package conformance_test

import (
	"bytes"
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/fido-conformance/softtarget"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// The CTAPHID cases about waits for a touch (CANCEL, KEEPALIVE, busy while
// waiting) skip against a softkey that presses itself at once, as the main suite
// run uses. These tests give them a softkey whose touch takes a while, check that
// the transport-level areas pass against it, and that each case notices the
// defect it is about.

// presenceAfter is a PresenceFunc whose touch comes d after the key asks, unless
// the host cancels first.
func presenceAfter(d time.Duration) func(context.Context, string) (bool, error) {
	return func(ctx context.Context, _ string) (bool, error) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// presenceNever is a PresenceFunc for a key nobody touches.
func presenceNever(ctx context.Context, _ string) (bool, error) {
	<-ctx.Done()
	return false, ctx.Err()
}

var transportAreas = regexp.MustCompile(`^(ctaphid|u2f|nfc)$`)

// runCases runs the selected cases and returns their results in run order.
func runCases(t *testing.T, target *conformance.Target, only *regexp.Regexp) []conformance.Result {
	t.Helper()
	results := conformance.Run(context.Background(), target, conformance.Options{Only: only, CaseTimeout: 20 * time.Second})
	if len(results) == 0 {
		t.Fatalf("no case matches %v", only)
	}
	return results
}

// runCase runs the one case id.
func runCase(t *testing.T, target *conformance.Target, id string) conformance.Result {
	t.Helper()
	return runCases(t, target, regexp.MustCompile("^"+regexp.QuoteMeta(id)+"$"))[0]
}

func logResult(t *testing.T, r conformance.Result) {
	t.Helper()
	t.Logf("%s (%v)", r, r.Duration.Round(time.Millisecond))
	for _, l := range r.Log {
		t.Logf("    %s", l)
	}
}

// TestTransportAreasWithPresenceWaits: against a softkey whose touch takes 400 ms,
// every CTAPHID and U2F case passes (NFC ones skip: no NFC device), the wait cases
// included.
func TestTransportAreasWithPresenceWaits(t *testing.T) {
	s := newSoftkey(t, softkey.Config{PresenceFunc: presenceAfter(400 * time.Millisecond)})
	s.AutoPresence = true // it presses itself, only not at once
	results := runCases(t, s.Target, transportAreas)
	for _, r := range results {
		logResult(t, r)
		switch {
		case r.Status == conformance.Fail:
			t.Errorf("%s failed", r.ID)
		case r.Status == conformance.Skip && r.Area != conformance.AreaNFC:
			t.Errorf("%s skipped: %s", r.ID, r.Message)
		}
	}
	ran := map[string]bool{}
	for _, r := range results {
		ran[r.ID] = true
	}
	for _, id := range []string{"HID-14", "HID-15", "HID-16", "U2F-2", "U2F-10", "U2F-11"} {
		if !ran[id] {
			t.Errorf("case %s did not run", id)
		}
	}
}

// hidTarget returns s's target with its raw CTAPHID link replaced by one to a
// separate ctaphid.Server for h with opts: a device whose framing layer is broken
// the way opts say.
func hidTarget(t *testing.T, s *softtarget.Softkey, h ctaphid.Handler, opts ctaphid.ServerOptions) *conformance.Target {
	t.Helper()
	host, dev := ctaphid.Pipe()
	srv := ctaphid.NewServer(h, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, dev)
	}()
	t.Cleanup(func() {
		cancel()
		host.Close()
		<-done
	})
	target := *s.Target
	target.HID = host
	return &target
}

// slowCancel is a softkey that notices CTAPHID_CANCEL d late.
type slowCancel struct {
	*softkey.Authenticator
	d time.Duration
}

func (s slowCancel) HandleCBOR(ctx context.Context, req []byte, status func(byte)) []byte {
	inner, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(s.d, cancel) })
	defer stop()
	return s.Authenticator.HandleCBOR(inner, req, status)
}

// TestCTAPHIDCasesCatchBrokenDevices: each framing-layer defect makes the case
// about it fail, and the same cases pass against the correct server.
func TestCTAPHIDCasesCatchBrokenDevices(t *testing.T) {
	s := newSoftkey(t, softkey.Config{PresenceFunc: presenceNever})
	good := ctaphid.ServerOptions{Capabilities: ctaphid.CapWink | ctaphid.CapCBOR}
	tests := []struct {
		name string
		id   string
		h    func() ctaphid.Handler
		opts func(*ctaphid.ServerOptions)
	}{
		{"CANCEL answered 200 ms late", "HID-14",
			func() ctaphid.Handler { return slowCancel{s.Authenticator(), 200 * time.Millisecond} }, nil},
		{"a keepalive every 2 s", "HID-15", nil,
			func(o *ctaphid.ServerOptions) { o.KeepaliveInterval = 2 * time.Second }},
		{"no message timeout for 5 s", "HID-13", nil,
			func(o *ctaphid.ServerOptions) { o.MsgTimeout = 5 * time.Second }},
		{"unallocated channels accepted", "HID-9", nil,
			func(o *ctaphid.ServerOptions) { o.AcceptUnallocated = true }},
		{"NMSG claimed by a key that lists U2F_V2", "HID-2", nil,
			func(o *ctaphid.ServerOptions) { o.Capabilities |= ctaphid.CapNMSG }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h ctaphid.Handler = s.Authenticator()
			if tt.h != nil {
				h = tt.h()
			}
			opts := good
			if tt.opts != nil {
				tt.opts(&opts)
			}
			broken := runCase(t, hidTarget(t, s, h, opts), tt.id)
			logResult(t, broken)
			if broken.Status != conformance.Fail {
				t.Errorf("%s against the broken device: %s, want fail", tt.id, broken.Status)
			}
			fine := runCase(t, hidTarget(t, s, s.Authenticator(), good), tt.id)
			if fine.Status != conformance.Pass {
				t.Errorf("%s against the correct device: %s", tt.id, fine)
			}
		})
	}
}

// fakeCard serves the softkey as an ISO 7816 card through APDUTransmitter, the
// capability the NFC cases look for: SELECT, NFCCTAP_MSG with command chaining,
// response chaining through GET RESPONSE, and U2F APDUs. The rest of the target
// (Transact) is the in-process CTAPHID device. The flags break it.
type fakeCard struct {
	transport.Device
	auth *softkey.Authenticator

	noChaining    bool // refuses chained APDUs
	noGetResponse bool // answers any length at once

	mu       sync.Mutex
	selected bool
	chain    []byte
	pending  []byte
}

var fidoAID = []byte{0xA0, 0x00, 0x00, 0x06, 0x47, 0x2F, 0x00, 0x01}

func (c *fakeCard) TransmitAPDU(ctx context.Context, apdu []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := ctap1.ParseAPDU(apdu)
	switch {
	case err != nil:
		return ctap1.SWWrongLength.Bytes(), nil
	case a.INS == 0xA4 && a.P1 == 0x04:
		c.selected, c.chain, c.pending = bytes.Equal(a.Data, fidoAID), nil, nil
		if !c.selected {
			return ctap1.SWFileNotFound.Bytes(), nil
		}
		return c.respond([]byte("U2F_V2")), nil
	case !c.selected:
		return ctap1.SWInsNotSupported.Bytes(), nil
	case a.INS == 0xC0:
		return c.next(a.Ne), nil
	case a.INS == 0x10 && a.CLA == 0x90:
		if c.noChaining {
			return []byte{0x68, 0x84}, nil // command chaining not supported
		}
		c.chain = append(c.chain, a.Data...)
		return ctap1.SWNoError.Bytes(), nil
	case a.INS == 0x10 && a.CLA == 0x80:
		msg := append(c.chain, a.Data...)
		c.chain = nil
		return c.respond(c.auth.HandleCBOR(ctx, msg, func(byte) {})), nil
	}
	resp := c.auth.HandleMsg(ctx, apdu, func(byte) {})
	if len(resp) < 2 || !bytes.Equal(resp[len(resp)-2:], ctap1.SWNoError.Bytes()) {
		return resp, nil
	}
	return c.respond(resp[:len(resp)-2]), nil
}

// respond answers data with 9000, or its first 256 bytes and 61xx.
func (c *fakeCard) respond(data []byte) []byte {
	if len(data) <= 256 || c.noGetResponse {
		return ctap1.Response(data, ctap1.SWNoError)
	}
	c.pending = append([]byte(nil), data[256:]...)
	return ctap1.Response(data[:256], c.more())
}

func (c *fakeCard) next(ne int) []byte {
	n := min(ne, len(c.pending))
	chunk := c.pending[:n]
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		return ctap1.Response(chunk, ctap1.SWNoError)
	}
	return ctap1.Response(chunk, c.more())
}

func (c *fakeCard) more() ctap1.StatusWord {
	return ctap1.StatusWord(0x6100 | min(len(c.pending), 256)&0xFF)
}

// TestNFCCasesAgainstFakeCard runs the NFC cases, which no transport can reach yet,
// against the softkey behind fakeCard, and against broken cards.
func TestNFCCasesAgainstFakeCard(t *testing.T) {
	s := newSoftkey(t, softkey.Config{})
	card := func(c *fakeCard) *conformance.Target {
		c.Device, c.auth = s.Device, s.Authenticator()
		target := *s.Target
		target.Device = c
		return &target
	}
	for _, r := range runCases(t, card(&fakeCard{}), regexp.MustCompile(`^nfc$`)) {
		logResult(t, r)
		if r.Status != conformance.Pass {
			t.Errorf("%s against the fake card: %s", r.ID, r.Status)
		}
	}
	if r := runCase(t, card(&fakeCard{noChaining: true}), "NFC-4"); r.Status != conformance.Fail {
		t.Errorf("NFC-4 against a card without command chaining: %s, want fail", r)
	}
	if r := runCase(t, card(&fakeCard{noGetResponse: true}), "NFC-3"); r.Status != conformance.Fail {
		t.Errorf("NFC-3 against a card without GET RESPONSE: %s, want fail", r)
	}
	// The U2F cases go short-APDU on an NFC device; they still pass.
	for _, r := range runCases(t, card(&fakeCard{}), regexp.MustCompile(`^u2f$`)) {
		if r.Status != conformance.Pass {
			t.Errorf("%s on the fake card's device: %s", r.ID, r)
		}
	}
}
