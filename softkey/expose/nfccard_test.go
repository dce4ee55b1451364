package expose

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// cardStyle is how a host shapes its APDUs (see the PC/SC notes): python-fido2
// selects without Le, sends NFCCTAP_MSG with P1 = 80 and polls 9100, chains in
// 250-byte links; libfido2 selects with Le, sends P1 = 00, chains in 240-byte
// links. Both follow 61xx with GET RESPONSE. The extended host sends each request
// as one extended APDU.
type cardStyle struct {
	name     string
	selectLe bool
	p1       byte
	link     int
	extended bool
}

var (
	stylePython   = cardStyle{name: "python-fido2", p1: 0x80, link: 250}
	styleLibfido2 = cardStyle{name: "libfido2", selectLe: true, p1: 0x00, link: 240}
	styleExtended = cardStyle{name: "extended", selectLe: true, p1: 0x80, extended: true}
	cardStyles    = []cardStyle{stylePython, styleLibfido2, styleExtended}
)

// cardHost drives a Card the way its style's host does and records every command
// APDU. It is a transport.Device, so the ctap2 and ctap1 clients run over it.
type cardHost struct {
	t     testing.TB
	card  *Card
	style cardStyle

	mu    sync.Mutex
	sent  [][]byte
	resps [][]byte
}

func newCardHost(t testing.TB, card *Card, style cardStyle) *cardHost {
	return &cardHost{t: t, card: card, style: style}
}

// tx sends one APDU and splits the response.
func (h *cardHost) tx(ctx context.Context, apdu []byte) ([]byte, ctap1.StatusWord) {
	h.t.Helper()
	resp := h.card.Transmit(ctx, apdu)
	h.mu.Lock()
	h.sent = append(h.sent, bytes.Clone(apdu))
	h.resps = append(h.resps, bytes.Clone(resp))
	h.mu.Unlock()
	data, sw, err := ctap1.ParseResponse(resp)
	if err != nil {
		h.t.Errorf("%s: response to %x: %v", h.style.name, apdu, err)
		return nil, 0
	}
	return data, sw
}

func (h *cardHost) transcript() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sent
}

// exchange sends one command, chained or extended as the style does, and gathers a
// long response with GET RESPONSE.
func (h *cardHost) exchange(ctx context.Context, cla, ins, p1, p2 byte, data []byte) ([]byte, ctap1.StatusWord) {
	h.t.Helper()
	if h.style.extended {
		apdu := append([]byte{cla, ins, p1, p2, 0, byte(len(data) >> 8), byte(len(data))}, data...)
		return h.tx(ctx, apdu)
	}
	for len(data) > h.style.link {
		link := data[:h.style.link]
		data = data[h.style.link:]
		if _, sw := h.tx(ctx, append([]byte{cla | 0x10, ins, p1, p2, byte(len(link))}, link...)); sw != ctap1.SWNoError {
			return nil, sw
		}
	}
	apdu := []byte{cla, ins, p1, p2}
	if len(data) > 0 {
		apdu = append(append(apdu, byte(len(data))), data...)
	}
	resp, sw := h.tx(ctx, append(apdu, 0x00))
	for sw>>8 == 0x61 {
		more, next := h.tx(ctx, []byte{0x00, 0xC0, 0x00, 0x00, byte(sw)})
		resp, sw = append(resp, more...), next
	}
	return resp, sw
}

func (h *cardHost) selectApplet(ctx context.Context) (string, ctap1.StatusWord) {
	h.t.Helper()
	apdu := append([]byte{0x00, 0xA4, 0x04, 0x00, 0x08}, fidoAID...)
	if h.style.selectLe {
		apdu = append(apdu, 0x00)
	}
	data, sw := h.tx(ctx, apdu)
	return string(data), sw
}

// Transact carries CBOR in NFCCTAP_MSG (polling 9100 as the style does; a cancelled
// ctx sends the cancel poll) and U2F APDUs as short APDUs, as python-fido2 does.
func (h *cardHost) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	switch cmd {
	case transport.CmdCBOR:
		notify := transport.StatusNotifier(transport.KeepaliveFunc(ctx))
		resp, sw := h.exchange(ctx, 0x80, 0x10, h.style.p1, 0x00, data)
		cancelled := false
		for sw == swStatusUpdate {
			if len(resp) != 1 {
				return nil, fmt.Errorf("9100 with %d data bytes", len(resp))
			}
			notify(resp[0])
			p1 := byte(0x00)
			if ctx.Err() != nil {
				p1, cancelled = 0x11, true
			}
			resp, sw = h.exchange(context.Background(), 0x80, 0x11, p1, 0x00, nil)
		}
		if cancelled {
			return nil, ctx.Err()
		}
		if sw != ctap1.SWNoError {
			return nil, sw
		}
		return resp, nil
	case transport.CmdMsg:
		a, err := ctap1.ParseAPDU(data)
		if err != nil {
			return nil, err
		}
		resp, sw := h.exchange(ctx, a.CLA, a.INS, a.P1, a.P2, a.Data)
		return ctap1.Response(resp, sw), nil
	}
	return nil, transport.ErrUnsupportedCommand
}

func (h *cardHost) Info() transport.DeviceInfo {
	return transport.DeviceInfo{URI: "card:" + h.style.name, Transport: "test"}
}

func (h *cardHost) Close() error { return nil }

func newCardSoftkey(t testing.TB, cfg softkey.Config) *softkey.Authenticator {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	return auth
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkGetInfo selects the applet and reads getInfo with python-fido2's APDUs,
// failing unless both work: the "card still usable" check after bad input.
func checkGetInfo(t testing.TB, card *Card, auth *softkey.Authenticator) {
	t.Helper()
	h := newCardHost(t, card, stylePython)
	ctx := context.Background()
	if v, sw := h.selectApplet(ctx); sw != ctap1.SWNoError || v != "U2F_V2" {
		t.Fatalf("SELECT: %q %04X", v, uint16(sw))
	}
	c := ctap2.NewClient(h)
	info, err := c.GetInfo(ctx)
	if err != nil {
		t.Fatalf("getInfo: %v", err)
	}
	if aaguid := auth.AAGUID(); !bytes.Equal(info.AAGUID, aaguid[:]) {
		t.Fatalf("getInfo AAGUID %x, want %x", info.AAGUID, aaguid)
	}
}

func TestCardATR(t *testing.T) {
	a := ATR()
	if got, want := hex.EncodeToString(a), "3b888001464944 4f7669636312"; got != strings.ReplaceAll(want, " ", "") {
		t.Errorf("ATR %s, want %s", got, want)
	}
	var tck byte
	for _, b := range a[1:] {
		tck ^= b
	}
	if tck != 0 {
		t.Errorf("ATR check byte wrong: XOR of T0..TCK is %02x", tck)
	}
	a[0] = 0
	if ATR()[0] != 0x3B {
		t.Error("ATR returns the card's own slice")
	}
}

// TestCardHostTranscripts checks the exact APDUs of python-fido2 and libfido2
// opening the card and reading getInfo (which may need GET RESPONSE).
func TestCardHostTranscripts(t *testing.T) {
	for _, style := range []cardStyle{stylePython, styleLibfido2} {
		t.Run(style.name, func(t *testing.T) {
			auth := newCardSoftkey(t, softkey.Config{})
			h := newCardHost(t, NewCard(auth, CardOptions{}), style)
			ctx := context.Background()
			if v, sw := h.selectApplet(ctx); sw != ctap1.SWNoError || v != "U2F_V2" {
				t.Fatalf("SELECT: %q %04X", v, uint16(sw))
			}
			info, err := ctap2.NewClient(h).GetInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if aaguid := auth.AAGUID(); !bytes.Equal(info.AAGUID, aaguid[:]) {
				t.Errorf("AAGUID %x, want %x", info.AAGUID, aaguid)
			}
			want := []string{"00a4040008a0000006472f0001", "8010" + fmt.Sprintf("%02x", style.p1) + "00010400"}
			if style.selectLe {
				want[0] += "00"
			}
			sent := h.transcript()
			for i, w := range want {
				if i >= len(sent) || hex.EncodeToString(sent[i]) != w {
					t.Fatalf("APDU %d: %x, want %s", i, sent[min(i, len(sent)-1)], w)
				}
			}
			// Whatever follows is GET RESPONSE with the Le the card announced.
			for i := len(want); i < len(sent); i++ {
				prev := h.resps[i-1]
				wantGR := []byte{0x00, 0xC0, 0x00, 0x00, prev[len(prev)-1]}
				if prev[len(prev)-2] != 0x61 || !bytes.Equal(sent[i], wantGR) {
					t.Errorf("APDU %d: %x after %x", i, sent[i], prev[len(prev)-2:])
				}
			}
		})
	}
}

// TestCardSelect: both SELECT forms answer the applet version; U2F_V2 only when the
// handler speaks U2F; other AIDs 6A82 without deselecting.
func TestCardSelect(t *testing.T) {
	ctx := context.Background()
	auth := newCardSoftkey(t, softkey.Config{})
	card := NewCard(auth, CardOptions{})
	for _, apdu := range []string{"00a4040008a0000006472f0001", "00a4040008a0000006472f000100"} {
		if got := hex.EncodeToString(card.Transmit(ctx, mustHex(t, apdu))); got != hex.EncodeToString([]byte("U2F_V2"))+"9000" {
			t.Errorf("%s: %s", apdu, got)
		}
	}
	if got := card.Transmit(ctx, mustHex(t, "00a4040007a0000006472f00")); !bytes.Equal(got, []byte{0x6A, 0x82}) {
		t.Errorf("SELECT of another AID: %x, want 6a82", got)
	}
	if got := card.Transmit(ctx, mustHex(t, "801080000104 00")); got[len(got)-2] != 0x90 && got[len(got)-2] != 0x61 {
		t.Errorf("getInfo after a failed SELECT: %x; the applet should stay selected", got)
	}

	noU2F := NewCard(cborOnly{auth}, CardOptions{})
	if got := noU2F.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001")); string(got) != "FIDO_2_0\x90\x00" {
		t.Errorf("SELECT on a CTAP2-only handler: %q", got)
	}
	if got := noU2F.Transmit(ctx, mustHex(t, "0003000000")); !bytes.Equal(got, []byte{0x6D, 0x00}) {
		t.Errorf("U2F VERSION on a CTAP2-only handler: %x, want 6d00", got)
	}
}

// cborOnly is a handler without U2F.
type cborOnly struct{ *softkey.Authenticator }

func (cborOnly) HandleMsg(context.Context, []byte, func(byte)) []byte { return nil }

// TestCardClients runs the ctap2 client through each host style: a makeCredential
// whose long excludeList needs chaining, a getAssertion whose signature verifies, and
// a 2 KiB large-blob write and read (chained links or one extended APDU out,
// GET RESPONSE back).
func TestCardClients(t *testing.T) {
	for _, style := range cardStyles {
		t.Run(style.name, func(t *testing.T) {
			ctx := context.Background()
			auth := newCardSoftkey(t, softkey.Config{})
			h := newCardHost(t, NewCard(auth, CardOptions{}), style)
			if _, sw := h.selectApplet(ctx); sw != ctap1.SWNoError {
				t.Fatalf("SELECT: %04X", uint16(sw))
			}
			c := ctap2.NewClient(h)

			var exclude []ctap2.CredentialDescriptor
			for range 20 {
				id := make([]byte, 64)
				rand.Read(id)
				exclude = append(exclude, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id})
			}
			cdh := sha256.Sum256([]byte("client data"))
			mc, err := c.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
				ClientDataHash:   cdh[:],
				RP:               &ctap2.RPEntity{ID: "example.com"},
				User:             &ctap2.UserEntity{ID: []byte{1}, Name: "alice"},
				PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
				ExcludeList:      exclude,
				Options:          &ctap2.Options{RK: ctap2.Bool(true)},
				Extensions:       map[string]ctap2.RawMessage{"largeBlobKey": ctap2.RawMessage{0xF5}},
			})
			if err != nil {
				t.Fatalf("makeCredential: %v", err)
			}
			checkChained(t, h, 1000)
			id, pub, err := mc.CredentialKey()
			if err != nil {
				t.Fatal(err)
			}
			ga, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{
				RPID: "example.com", ClientDataHash: cdh[:],
				AllowList:  append(exclude, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id}),
				Extensions: map[string]ctap2.RawMessage{"largeBlobKey": ctap2.RawMessage{0xF5}},
			})
			if err != nil {
				t.Fatalf("getAssertion: %v", err)
			}
			if err := ga.Verify(pub, cdh[:]); err != nil {
				t.Fatal(err)
			}
			if len(ga.LargeBlobKey) != ctap2.LargeBlobKeySize {
				t.Fatalf("no largeBlobKey in the assertion")
			}

			blob := make([]byte, 2048)
			rand.Read(blob)
			if err := c.PutLargeBlob(ctx, nil, ga.LargeBlobKey, blob); err != nil {
				t.Fatalf("writing a 2 KiB large blob: %v", err)
			}
			checkChained(t, h, 1900)
			got, err := c.GetLargeBlob(ctx, ga.LargeBlobKey)
			if err != nil {
				t.Fatalf("reading it back: %v", err)
			}
			if !bytes.Equal(got, blob) {
				t.Fatal("large blob read back differs")
			}
			if !style.extended {
				checkGetResponse(t, h)
			}
		})
	}
}

// checkChained checks that the last request of at least n bytes went as the style
// sends it: links of exactly the style's size with CLA 90, or one extended APDU.
func checkChained(t *testing.T, h *cardHost, n int) {
	t.Helper()
	sent := h.transcript()
	if h.style.extended {
		for _, a := range sent {
			if len(a) > n && a[4] == 0 {
				return
			}
		}
		t.Fatalf("no extended APDU of more than %d bytes was sent", n)
	}
	links := 0
	for _, a := range sent {
		if a[0] == 0x90 {
			if len(a) != 5+h.style.link {
				t.Fatalf("link of %d bytes, want %d", len(a), 5+h.style.link)
			}
			links++
		}
	}
	if links < n/h.style.link {
		t.Fatalf("%d chained links, want at least %d", links, n/h.style.link)
	}
}

// checkGetResponse checks that some response came in pieces: 61 00 answered by
// 00 C0 00 00 00 with 256 more bytes.
func checkGetResponse(t *testing.T, h *cardHost) {
	t.Helper()
	for i, a := range h.transcript() {
		if bytes.Equal(a, []byte{0x00, 0xC0, 0x00, 0x00, 0x00}) && len(h.resps[i]) == 258 {
			return
		}
	}
	t.Fatal("no 256-byte GET RESPONSE piece")
}

// TestCardResponseChaining: a reply longer than Ne comes in Ne-sized pieces with
// 61xx (61 00 while 256 or more remain) and ends with the reply's own status word.
func TestCardResponseChaining(t *testing.T) {
	ctx := context.Background()
	reply := make([]byte, 700)
	rand.Read(reply)
	card := NewCard(fixedHandler{cbor: reply}, CardOptions{})
	card.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001"))
	steps := []struct {
		apdu, sw string
		n        int
	}{
		{"80108000010400", "6100", 256},
		{"00c0000000", "61bc", 256},
		{"00c0000010", "61ac", 16},
		{"00c00000", "9000", 172}, // no Le: up to 256
		{"00c0000000", "6985", 0}, // nothing left
	}
	var got []byte
	for _, s := range steps {
		resp := card.Transmit(ctx, mustHex(t, s.apdu))
		if sw := hex.EncodeToString(resp[len(resp)-2:]); sw != s.sw || len(resp)-2 != s.n {
			t.Fatalf("%s: %d bytes %s, want %d bytes %s", s.apdu, len(resp)-2, sw, s.n, s.sw)
		}
		got = append(got, resp[:len(resp)-2]...)
	}
	if !bytes.Equal(got, reply) {
		t.Error("reassembled reply differs")
	}

	// An extended APDU gets it whole; a short Le smaller than 256 sets the piece size.
	if resp := card.Transmit(ctx, mustHex(t, "80108000000001040000")); len(resp) != 702 {
		t.Errorf("extended APDU: %d response bytes, want 702", len(resp))
	}
	if resp := card.Transmit(ctx, mustHex(t, "80108000010480")); len(resp) != 130 || resp[128] != 0x61 {
		t.Errorf("Le 80: %d bytes ending %x", len(resp), resp[len(resp)-2:])
	}
	// Another command drops what was not fetched.
	card.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001"))
	if resp := card.Transmit(ctx, mustHex(t, "00c0000000")); !bytes.Equal(resp, []byte{0x69, 0x85}) {
		t.Errorf("GET RESPONSE after another command: %x, want 6985", resp)
	}
	// MaxShortResponse caps short answers.
	small := NewCard(fixedHandler{cbor: reply}, CardOptions{MaxShortResponse: 100})
	small.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001"))
	if resp := small.Transmit(ctx, mustHex(t, "80108000010400")); len(resp) != 102 || resp[100] != 0x61 {
		t.Errorf("MaxShortResponse 100: %d bytes ending %x", len(resp), resp[len(resp)-2:])
	}
}

// fixedHandler answers every CBOR request with cbor and U2F with U2F_V2.
type fixedHandler struct{ cbor []byte }

func (f fixedHandler) HandleCBOR(context.Context, []byte, func(byte)) []byte { return f.cbor }
func (fixedHandler) HandleMsg(context.Context, []byte, func(byte)) []byte {
	return ctap1.Response([]byte(ctap1.Version), ctap1.SWNoError)
}
func (fixedHandler) Wink() {}

// TestCardKeepalive: a touch that takes 300 ms keeps a polling host (python-fido2)
// on 9100 with status "UP needed", then delivers the credential; a host that does
// not poll (libfido2) just waits for it.
func TestCardKeepalive(t *testing.T) {
	for _, style := range []cardStyle{stylePython, styleLibfido2} {
		t.Run(style.name, func(t *testing.T) {
			ctx := context.Background()
			auth := newCardSoftkey(t, softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
				select {
				case <-time.After(300 * time.Millisecond):
					return true, nil
				case <-ctx.Done():
					return false, ctx.Err()
				}
			}})
			h := newCardHost(t, NewCard(auth, CardOptions{}), style)
			h.selectApplet(ctx)
			var mu sync.Mutex
			var statuses []byte
			c := ctap2.NewClient(h, ctap2.WithKeepaliveFunc(func(s byte) {
				mu.Lock()
				statuses = append(statuses, s)
				mu.Unlock()
			}))
			start := time.Now()
			cdh := sha256.Sum256([]byte("x"))
			if _, err := c.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
				ClientDataHash:   cdh[:],
				RP:               &ctap2.RPEntity{ID: "example.com"},
				User:             &ctap2.UserEntity{ID: []byte{1}, Name: "alice"},
				PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
			}); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < 300*time.Millisecond {
				t.Errorf("makeCredential took %v, less than the touch", d)
			}
			updates := 0
			for _, r := range h.resps {
				if len(r) == 3 && r[1] == 0x91 && r[2] == 0x00 {
					updates++
					if r[0] != transport.StatusUPNeeded {
						t.Errorf("9100 with status %02x, want 02", r[0])
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if style.p1 == 0x80 {
				// 300 ms at one poll per 20 ms; at least a few, at most one per ms.
				if updates < 3 || updates > 300 {
					t.Errorf("%d 9100 answers in 300 ms", updates)
				}
				if len(statuses) != 1 || statuses[0] != transport.StatusUPNeeded {
					t.Errorf("keepalive statuses %v, want [2]", statuses)
				}
			} else if updates != 0 {
				t.Errorf("%d 9100 answers to a host that does not poll", updates)
			}
		})
	}
}

// TestCardCancel: NFCCTAP_GETRESPONSE with P1 = 11 cancels a touch wait; the card
// answers CTAP2_ERR_KEEPALIVE_CANCEL within 100 ms and the handler saw its context
// end.
func TestCardCancel(t *testing.T) {
	ctx := context.Background()
	var cancelled atomic.Bool
	auth := newCardSoftkey(t, softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		<-ctx.Done()
		cancelled.Store(true)
		return false, ctx.Err()
	}})
	card := NewCard(auth, CardOptions{})
	card.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001"))
	selection := mustHex(t, "80108000010b00") // authenticatorSelection waits for a touch
	if got := card.Transmit(ctx, selection); !bytes.Equal(got, []byte{0x02, 0x91, 0x00}) {
		t.Fatalf("selection: %x, want 02 9100", got)
	}
	if got := card.Transmit(ctx, mustHex(t, "8011000000")); !bytes.Equal(got, []byte{0x02, 0x91, 0x00}) {
		t.Fatalf("poll: %x, want 02 9100", got)
	}
	start := time.Now()
	got := card.Transmit(ctx, mustHex(t, "8011110000"))
	for bytes.Equal(got, []byte{0x02, 0x91, 0x00}) && time.Since(start) < time.Second {
		got = card.Transmit(ctx, mustHex(t, "8011000000"))
	}
	elapsed := time.Since(start)
	if !bytes.Equal(got, []byte{byte(ctap2.ErrKeepaliveCancel), 0x90, 0x00}) {
		t.Fatalf("after cancel: %x, want 2d 9000", got)
	}
	if elapsed > 100*time.Millisecond {
		t.Errorf("cancel took %v", elapsed)
	}
	if !cancelled.Load() {
		t.Error("the presence wait did not see its context end")
	}
	if got := card.Transmit(ctx, mustHex(t, "8011000000")); !bytes.Equal(got, []byte{0x69, 0x85}) {
		t.Errorf("poll with no request: %x, want 6985", got)
	}
	checkGetInfo(t, card, auth)
}

// TestCardAbandonedRequests: a running request is cancelled by PowerOff, by another
// command, and by the end of Transmit's context for a host that does not poll.
func TestCardAbandonedRequests(t *testing.T) {
	var waits atomic.Int32
	auth := newCardSoftkey(t, softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		waits.Add(1)
		<-ctx.Done()
		waits.Add(-1)
		return false, ctx.Err()
	}})
	card := NewCard(auth, CardOptions{})
	ctx := context.Background()
	sel := mustHex(t, "00a4040008a0000006472f0001")
	waitIdle := func() {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for waits.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if waits.Load() != 0 {
			t.Fatal("the abandoned request still waits for a touch")
		}
	}

	card.Transmit(ctx, sel)
	card.Transmit(ctx, mustHex(t, "80108000010b00"))
	card.PowerOff()
	waitIdle()
	if got := card.Transmit(ctx, mustHex(t, "8011000000")); !bytes.Equal(got, []byte{0x6D, 0x00}) {
		t.Errorf("poll after power off: %x, want 6d00 (not selected)", got)
	}

	card.Transmit(ctx, sel)
	card.Transmit(ctx, mustHex(t, "80108000010b00"))
	checkGetInfo(t, card, auth) // SELECT + getInfo: the selection is dropped
	waitIdle()

	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if got := card.Transmit(tctx, mustHex(t, "80100000010b00")); !bytes.Equal(got, []byte{0x6F, 0x00}) {
		t.Errorf("blocking request whose context ended: %x, want 6f00", got)
	}
	waitIdle()
	checkGetInfo(t, card, auth)
}

// TestCardPowerOffRace powers the card off while requests run and polls go on, for
// the race detector.
func TestCardPowerOffRace(t *testing.T) {
	auth := newCardSoftkey(t, softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		select {
		case <-time.After(time.Millisecond):
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}})
	card := NewCard(auth, CardOptions{KeepaliveInterval: time.Millisecond, PollInterval: time.Millisecond})
	ctx := context.Background()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				card.PowerOff()
				time.Sleep(100 * time.Microsecond)
			}
		}
	}()
	for range 200 {
		card.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001"))
		card.Transmit(ctx, mustHex(t, "80108000010b00"))
		card.Transmit(ctx, mustHex(t, "8011000000"))
		card.Transmit(ctx, mustHex(t, "9010800001"+"0b"))
	}
	close(stop)
	<-done
	checkGetInfo(t, card, auth)
}

// TestCardU2F: U2F REGISTER and AUTHENTICATE as short APDUs (the long REGISTER
// answer through GET RESPONSE), and the signature verifies.
func TestCardU2F(t *testing.T) {
	ctx := context.Background()
	auth := newCardSoftkey(t, softkey.Config{})
	for _, style := range []cardStyle{stylePython, styleLibfido2} {
		t.Run(style.name, func(t *testing.T) {
			h := newCardHost(t, NewCard(auth, CardOptions{}), style)
			h.selectApplet(ctx)
			u := ctap1.NewClient(h, ctap1.WithShortAPDUs())
			if v, err := u.Version(ctx); err != nil || v != ctap1.Version {
				t.Fatalf("VERSION: %q %v", v, err)
			}
			req := ctap1.RegisterRequest{Challenge: sha256.Sum256([]byte("c")), Application: sha256.Sum256([]byte("example.com"))}
			reg, err := u.Register(ctx, &req)
			if err != nil {
				t.Fatal(err)
			}
			if err := reg.Verify(&req); err != nil {
				t.Fatal(err)
			}
			areq := ctap1.AuthenticateRequest{Control: ctap1.EnforcePresence, Challenge: sha256.Sum256([]byte("d")),
				Application: req.Application, KeyHandle: reg.KeyHandle}
			ar, err := u.Authenticate(ctx, &areq)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), reg.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			key := ctap2.COSEKey{Alg: ctap2.AlgES256, Public: pub}
			if err := key.Verify(ctap1.AuthenticateSignedData(areq.Application, ar.UserPresence, ar.Counter, areq.Challenge), ar.Signature); err != nil {
				t.Fatal(err)
			}
			if ok, err := u.CheckKeyHandle(ctx, req.Application, reg.KeyHandle); err != nil || !ok {
				t.Errorf("check-only: %v %v", ok, err)
			}
			sawGR := false
			for _, a := range h.transcript() {
				sawGR = sawGR || (a[0] == 0x00 && a[1] == 0xC0)
			}
			if !sawGR {
				t.Error("the REGISTER answer came without GET RESPONSE")
			}
		})
	}
}

// TestCardBadInput: every malformed or misplaced APDU gets its status word, and the
// card answers SELECT and getInfo afterwards.
func TestCardBadInput(t *testing.T) {
	ctx := context.Background()
	auth := newCardSoftkey(t, softkey.Config{})
	getInfo := "80108000010400"
	cases := []struct {
		name     string
		selected bool
		apdus    []string // the last one's answer is checked
		sw       string
	}{
		{"empty", true, []string{""}, "6700"},
		{"one byte", true, []string{"00"}, "6700"},
		{"three bytes", true, []string{"00a404"}, "6700"},
		{"Lc longer than data", true, []string{"00a4040008a0000006472f00"}, "6700"},
		{"Lc shorter than data", true, []string{"80100000020400000000"}, "6700"},
		{"extended Lc mismatch", true, []string{"801080000000050400"}, "6700"},
		{"extended truncated", true, []string{"801080000000"}, "6700"},
		{"NFCCTAP_MSG without data", true, []string{"8010800000"}, "6700"},
		{"unknown INS", true, []string{"80ff000000"}, "6d00"},
		{"unknown INS chained", true, []string{"90ff000001aa"}, "6d00"},
		{"bad CLA", true, []string{"a010800001040" + "0"}, "6e00"},
		{"secure messaging CLA", true, []string{"0c10800001040" + "0"}, "6e00"},
		{"logical channel CLA", true, []string{"01a4040008a0000006472f0001"}, "6e00"},
		{"NFCCTAP_MSG P1", true, []string{"80100100010400"}, "6a86"},
		{"NFCCTAP_MSG P2", true, []string{"80108001010400"}, "6a86"},
		{"NFCCTAP_GETRESPONSE P1", true, []string{"8011220000"}, "6a86"},
		{"SELECT P1", true, []string{"00a4000008a0000006472f0001"}, "6a86"},
		{"SELECT P2", true, []string{"00a4040c08a0000006472f0001"}, "6a86"},
		{"GET RESPONSE P1", true, []string{"00c0010000"}, "6a86"},
		{"other AID", false, []string{"00a4040005a000000003"}, "6a82"},
		{"getInfo before SELECT", false, []string{getInfo}, "6d00"},
		{"U2F before SELECT", false, []string{"0003000000"}, "6d00"},
		{"chained SELECT", true, []string{"10a4040008a0000006472f0001"}, "6884"},
		{"chain before SELECT", false, []string{"9010800001aa"}, "6d00"},
		{"GET RESPONSE with nothing pending", true, []string{"00c0000000"}, "6985"},
		{"poll with no request", true, []string{"8011000000"}, "6985"},
		{"U2F unknown INS", true, []string{"0077000000"}, "6d00"},
		{"U2F register of wrong length", true, []string{"000103000300000000"}, "6700"},
		{"CTAP error status", true, []string{"801080000101 00"}, "9000"},
		// A chain interrupted by another command is dropped and the command runs.
		{"interrupted chain", true, []string{"90108000050102030405", "00a4040008a0000006472f0001"}, "9000"},
		{"interrupted chain, other P1", true, []string{"9010800001a4", "80100000010400"}, "9000"},
		{"final link of a dropped chain", true, []string{"90108000015a", "00a4040008a0000006472f0001", "80108000010400"}, "9000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			card := NewCard(auth, CardOptions{})
			if tc.selected {
				card.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001"))
			}
			var got []byte
			for _, a := range tc.apdus {
				got = card.Transmit(ctx, mustHex(t, a))
			}
			if len(got) < 2 {
				t.Fatalf("response %x has no status word", got)
			}
			if sw := hex.EncodeToString(got[len(got)-2:]); sw != tc.sw && !(tc.sw == "9000" && got[len(got)-2] == 0x61) {
				t.Errorf("status %s, want %s (response %x)", sw, tc.sw, got)
			}
			checkGetInfo(t, card, auth)
		})
	}

	t.Run("interrupted chain answers the new command", func(t *testing.T) {
		card := NewCard(auth, CardOptions{})
		card.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001"))
		card.Transmit(ctx, mustHex(t, "90108000050102030405"))
		got := card.Transmit(ctx, mustHex(t, "80100000010100")) // P1 differs: not the final link
		// 01 alone is makeCredential without parameters: MISSING_PARAMETER, not the
		// INVALID_CBOR of 0102030405 01.
		if !bytes.Equal(got, []byte{byte(ctap2.ErrMissingParameter), 0x90, 0x00}) {
			t.Errorf("got %x", got)
		}
	})
	t.Run("chain that never finishes", func(t *testing.T) {
		card := NewCard(auth, CardOptions{})
		card.Transmit(ctx, mustHex(t, "00a4040008a0000006472f0001"))
		link := append(mustHex(t, "90108000fa"), bytes.Repeat([]byte{0xAA}, 250)...)
		var got []byte
		for range 300 { // 75000 bytes, more than a chain may hold
			got = card.Transmit(ctx, link)
			if !bytes.Equal(got, []byte{0x90, 0x00}) {
				break
			}
		}
		if !bytes.Equal(got, []byte{0x67, 0x00}) {
			t.Errorf("an endless chain: %x, want 6700 once it is too long", got)
		}
		card.Transmit(ctx, link)
		card.PowerOff() // drops the chain
		checkGetInfo(t, card, auth)
	})
}

// FuzzCardTransmit feeds the card sequences of APDUs: every answer has a status word,
// nothing panics, and SELECT + getInfo work afterwards. The input is a list of
// length-prefixed APDUs; a zero length stands for PowerOff.
func FuzzCardTransmit(f *testing.F) {
	seed := func(apdus ...string) {
		var b []byte
		for _, a := range apdus {
			raw, _ := hex.DecodeString(a)
			b = append(b, byte(len(raw)))
			b = append(b, raw...)
		}
		f.Add(b)
	}
	seed("00a4040008a0000006472f0001", "80108000010400", "00c0000000")
	seed("00a4040008a0000006472f000100", "80100000010400", "00c0000000")
	seed("00a4040008a0000006472f0001", "90108000050102030405", "80108000010400")
	seed("00a4040008a0000006472f0001", "80108000010b00", "", "8011000000", "8011110000")
	seed("00a4040008a0000006472f0001", "0003000000", "00c0000000")
	seed("00a4040008a0000006472f0001", "80108000000001040000")
	seed("00", "0c", "ffffffff", "80110000", "00a4040008a0000006472f00")
	seed("10a40400083030303030303030") // a chained SELECT must not swallow the next one

	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		f.Fatal(err)
	}
	defer auth.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		card := NewCard(auth, CardOptions{KeepaliveInterval: time.Millisecond, PollInterval: time.Millisecond})
		ctx := context.Background()
		for len(in) > 0 {
			n := int(in[0])
			in = in[1:]
			if n == 0 {
				card.PowerOff()
				continue
			}
			n = min(n, len(in))
			resp := card.Transmit(ctx, in[:n])
			in = in[n:]
			if len(resp) < 2 {
				t.Fatalf("response %x has no status word", resp)
			}
		}
		h := newCardHost(t, card, stylePython)
		if _, sw := h.selectApplet(ctx); sw != ctap1.SWNoError {
			t.Fatalf("SELECT afterwards: %04X", uint16(sw))
		}
		reply, err := h.Transact(ctx, transport.CmdCBOR, []byte{byte(ctap2.CmdGetInfo)})
		if err != nil || len(reply) == 0 || reply[0] != 0 {
			t.Fatalf("getInfo afterwards: %x %v", reply, err)
		}
		var info ctap2.Info
		if err := ctap2.Unmarshal(reply[1:], &info); err != nil {
			t.Fatalf("getInfo afterwards: %v", err)
		}
	})
}
