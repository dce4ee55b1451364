package pcsc

// End-to-end tests without pcscd: ctap2.Client → Device → the softkey's real ISO
// 7816 card (softkey/expose.Card) → softkey, in short and extended APDU modes.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// cardLink is a cardConn to an expose.Card, in process. remove makes it behave as
// pcscd does once the card has left the reader.
type cardLink struct {
	card    *expose.Card
	removed atomic.Bool

	mu    sync.Mutex
	apdus int // commands sent
	ext   int // extended ones
}

func (l *cardLink) Transmit(apdu []byte) ([]byte, error) {
	if l.removed.Load() {
		return nil, errCardRemoved
	}
	l.mu.Lock()
	l.apdus++
	if len(apdu) >= 7 && apdu[4] == 0 {
		l.ext++
	}
	l.mu.Unlock()
	return l.card.Transmit(context.Background(), apdu), nil
}

func (l *cardLink) Close() error {
	l.card.PowerOff()
	return nil
}

func (l *cardLink) counts() (apdus, ext int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.apdus, l.ext
}

// softCard is a softkey behind an expose.Card, opened as a Device.
type softCard struct {
	auth   *softkey.Authenticator
	link   *cardLink
	dev    *Device
	client *ctap2.Client
}

func newSoftCard(t testing.TB, cfg softkey.Config, opts Options) *softCard {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auth.Close() })
	link := &cardLink{card: expose.NewCard(auth, expose.CardOptions{})}
	dev, err := newDevice(context.Background(), link, "Virtual PCD 00 00", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	u2f := ctap1.NewClient(dev, ctap1.WithShortAPDUs())
	return &softCard{auth: auth, link: link, dev: dev, client: ctap2.NewClient(dev, ctap2.WithU2FFallback(u2f))}
}

var apduModes = []struct {
	name string
	mode APDUMode
}{{"short", ShortAPDUs}, {"extended", ExtendedAPDUs}, {"auto", AutoAPDUs}}

func mcRequest(rpID, user string, rk bool) *ctap2.MakeCredentialRequest {
	return &ctap2.MakeCredentialRequest{
		ClientDataHash:   bytes.Repeat([]byte{1}, 32),
		RP:               &ctap2.RPEntity{ID: rpID},
		User:             &ctap2.UserEntity{ID: []byte(user), Name: user},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
		Options:          &ctap2.Options{RK: ctap2.Bool(rk)},
	}
}

// TestCardRoundTrip: getInfo, makeCredential with verified attestation, and
// getAssertion with a verified signature, over every APDU mode.
func TestCardRoundTrip(t *testing.T) {
	for _, m := range apduModes {
		t.Run(m.name, func(t *testing.T) {
			s := newSoftCard(t, softkey.Config{}, Options{APDU: m.mode})
			ctx := context.Background()
			if s.dev.AppletVersion() != VersionU2F {
				t.Errorf("SELECT answered %q, want U2F_V2 (the softkey speaks U2F too)", s.dev.AppletVersion())
			}
			info, err := s.client.GetInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if aaguid := s.auth.AAGUID(); !bytes.Equal(info.AAGUID, aaguid[:]) {
				t.Errorf("getInfo AAGUID %x, want %x", info.AAGUID, aaguid)
			}
			if !info.HasVersion("FIDO_2_1") {
				t.Errorf("getInfo versions %v", info.Versions)
			}
			mc, err := s.client.MakeCredential(ctx, mcRequest("example.com", "alice", true))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mc.VerifyAttestation(bytes.Repeat([]byte{1}, 32)); err != nil {
				t.Fatalf("attestation: %v", err)
			}
			_, key, err := mc.CredentialKey()
			if err != nil {
				t.Fatal(err)
			}
			cdh := bytes.Repeat([]byte{2}, 32)
			as, err := s.client.GetAssertions(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh})
			if err != nil {
				t.Fatal(err)
			}
			if len(as) != 1 || string(as[0].User.ID) != "alice" {
				t.Fatalf("assertions %+v", as)
			}
			if err := as[0].Verify(key, cdh); err != nil {
				t.Errorf("assertion signature: %v", err)
			}
		})
	}
}

// TestCardLargeBlob: a 2 KiB large blob written and read back; requests of almost
// 2 KiB go as 8 chained links, or as one extended APDU.
func TestCardLargeBlob(t *testing.T) {
	for _, m := range apduModes {
		t.Run(m.name, func(t *testing.T) {
			s := newSoftCard(t, softkey.Config{}, Options{APDU: m.mode})
			ctx := context.Background()
			key := bytes.Repeat([]byte{7}, 32)
			data := make([]byte, 2048)
			rand.Read(data) // incompressible: the array stays over 2 KiB
			before, _ := s.link.counts()
			if err := s.client.PutLargeBlob(ctx, nil, key, data); err != nil {
				t.Fatal(err)
			}
			after, ext := s.link.counts()
			got, err := s.client.GetLargeBlob(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, not the 2 KiB written", len(got))
			}
			switch m.mode {
			case ShortAPDUs:
				if ext != 0 || after-before < 10 {
					t.Errorf("short: %d APDUs (%d extended) for a 2 KiB write", after-before, ext)
				}
			case ExtendedAPDUs, AutoAPDUs:
				if ext == 0 {
					t.Errorf("%s: no extended APDU for a 2 KiB write", m.name)
				}
			}
		})
	}
}

// TestCardU2F: U2F REGISTER and AUTHENTICATE through CmdMsg, short APDUs.
func TestCardU2F(t *testing.T) {
	s := newSoftCard(t, softkey.Config{}, Options{})
	ctx := context.Background()
	u2f := ctap1.NewClient(s.dev, ctap1.WithShortAPDUs())
	if v, err := u2f.Version(ctx); err != nil || v != ctap1.Version {
		t.Fatalf("VERSION = %q, %v", v, err)
	}
	req := &ctap1.RegisterRequest{Challenge: sha256.Sum256([]byte("challenge")), Application: sha256.Sum256([]byte("https://example.com"))}
	reg, err := u2f.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Verify(req); err != nil {
		t.Fatalf("register signature: %v", err)
	}
	// The host's USB-framed VERSION also works through Transact.
	usb, _ := ctap1.HIDCommand(ctap1.InsVersion, 0, 0, nil)
	got, err := s.dev.Transact(ctx, transport.CmdMsg, usb)
	if err != nil || !bytes.Equal(got, append([]byte(ctap1.Version), 0x90, 0x00)) {
		t.Errorf("USB-framed VERSION: % X, %v", got, err)
	}
	auth, err := u2f.Authenticate(ctx, &ctap1.AuthenticateRequest{Control: ctap1.EnforcePresence,
		Challenge: sha256.Sum256([]byte("c2")), Application: req.Application, KeyHandle: reg.KeyHandle})
	if err != nil {
		t.Fatal(err)
	}
	if auth.Counter == 0 {
		t.Errorf("authenticate counter 0")
	}
}

// TestCardKeepalive: a 300 ms wait for presence is reported as UP needed, once,
// while the host polls; the request then succeeds.
func TestCardKeepalive(t *testing.T) {
	cfg := softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		select {
		case <-time.After(300 * time.Millisecond):
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}}
	s := newSoftCard(t, cfg, Options{})
	var mu sync.Mutex
	var statuses []byte
	ctx := transport.WithKeepalive(context.Background(), func(b byte) {
		mu.Lock()
		statuses = append(statuses, b)
		mu.Unlock()
	})
	before, _ := s.link.counts()
	if _, err := s.client.MakeCredential(ctx, mcRequest("example.com", "bob", false)); err != nil {
		t.Fatal(err)
	}
	after, _ := s.link.counts()
	mu.Lock()
	defer mu.Unlock()
	if n := bytes.Count(statuses, []byte{transport.StatusUPNeeded}); n != 1 {
		t.Errorf("keepalive statuses % X: want UP needed exactly once", statuses)
	}
	// 300 ms at one poll per ~100 ms (+ the card's 20 ms hold): 2–5 polls.
	if polls := after - before - 1; polls < 2 || polls > 6 {
		t.Errorf("%d polls during a 300 ms wait", polls)
	}
}

// TestCardCancel: cancelling the context during the presence wait returns within
// 100 ms, and the softkey's wait ends with it.
func TestCardCancel(t *testing.T) {
	asked := make(chan struct{})
	stopped := make(chan struct{})
	cfg := softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		close(asked)
		<-ctx.Done()
		close(stopped)
		return false, ctx.Err()
	}}
	s := newSoftCard(t, cfg, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	upNeeded := make(chan struct{})
	var once sync.Once
	ctx = transport.WithKeepalive(ctx, func(b byte) {
		if b == transport.StatusUPNeeded {
			once.Do(func() { close(upNeeded) })
		}
	})
	done := make(chan error, 1)
	go func() {
		_, err := s.client.MakeCredential(ctx, mcRequest("example.com", "carol", false))
		done <- err
	}()
	<-asked
	<-upNeeded
	time.Sleep(120 * time.Millisecond) // mid-poll
	start := time.Now()
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("makeCredential did not return after cancel")
	}
	if el := time.Since(start); el > 100*time.Millisecond {
		t.Errorf("makeCredential returned %v after the cancel, want ≤ 100 ms", el)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("makeCredential after cancel: %v, want context.Canceled", err)
	}
	select {
	case <-stopped:
	case <-time.After(time.Second):
		t.Error("the softkey kept waiting for presence")
	}
	if _, err := s.client.GetInfo(context.Background()); err != nil {
		t.Errorf("getInfo after a cancel: %v", err)
	}
}

// TestCardRemoved: the card leaving the reader during the presence wait ends the
// request with a one-line ErrNoDevice error.
func TestCardRemoved(t *testing.T) {
	asked := make(chan struct{})
	cfg := softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		close(asked)
		<-ctx.Done()
		return false, ctx.Err()
	}}
	s := newSoftCard(t, cfg, Options{})
	done := make(chan error, 1)
	go func() {
		_, err := s.client.MakeCredential(context.Background(), mcRequest("example.com", "dave", false))
		done <- err
	}()
	<-asked
	s.link.removed.Store(true)
	s.link.card.PowerOff()
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("makeCredential did not notice the card was removed")
	}
	if !errors.Is(err, transport.ErrNoDevice) {
		t.Fatalf("card removed: %v, want ErrNoDevice", err)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "the card was removed from Virtual PCD 00 00") {
		t.Errorf("card removed: %q, want one line saying so", msg)
	}
}

// TestU2FOnlyCardFallback: on a card that refuses NFCCTAP_MSG (6D00) the client
// learns from getInfo's ErrUnsupportedCommand and Capabilities that the key is
// U2F-only, and makeCredential/getAssertion go over U2F.
func TestU2FOnlyCardFallback(t *testing.T) {
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	card := newFakeCard(auth, VersionU2F)
	card.noCBOR = true
	dev := openFake(t, card, Options{})
	client := ctap2.NewClient(dev, ctap2.WithU2FFallback(ctap1.NewClient(dev, ctap1.WithShortAPDUs())))
	ctx := context.Background()
	if !client.U2FOnly(ctx) {
		t.Fatal("U2FOnly = false on a card that refuses NFCCTAP_MSG")
	}
	mc, err := client.MakeCredential(ctx, mcRequest("example.com", "erin", false))
	if err != nil {
		t.Fatal(err)
	}
	if mc.Fmt != "fido-u2f" {
		t.Errorf("fmt %q, want fido-u2f", mc.Fmt)
	}
	cred, key, err := mc.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	cdh := bytes.Repeat([]byte{3}, 32)
	ga, err := client.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh,
		AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: cred}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ga.Verify(key, cdh); err != nil {
		t.Errorf("U2F assertion: %v", err)
	}
}

// TestCardConformance runs the whole fido-conformance suite, destructive cases
// included, through this transport (NFC cases through TransmitAPDU) against the
// real card, with short and with extended APDUs.
func TestCardConformance(t *testing.T) {
	for _, m := range apduModes[:2] {
		t.Run(m.name, func(t *testing.T) {
			s := newSoftCard(t, softkey.Config{}, Options{APDU: m.mode})
			target := &conformance.Target{Device: s.dev, Client: s.client, AutoPresence: true}
			results := conformance.Run(context.Background(), target, conformance.Options{Destructive: true})
			checkResults(t, results)
		})
	}
}

func checkResults(t *testing.T, results []conformance.Result) {
	t.Helper()
	var nfc int
	for _, r := range results {
		if strings.HasPrefix(r.ID, "NFC-") && r.Status == conformance.Pass {
			nfc++
		}
		if r.Status == conformance.Fail {
			t.Errorf("%s", r)
			for _, l := range r.Log {
				t.Logf("    %s", l)
			}
		}
	}
	if nfc == 0 {
		t.Error("no NFC case passed: TransmitAPDU is not reached")
	}
}
