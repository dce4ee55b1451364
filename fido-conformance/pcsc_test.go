package conformance_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/internal/pcsctest"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/pcsc"
)

// pcscSoftkey is a conformance target that reaches a softkey the way a host
// reaches an NFC key: libpcsclite → a private pcscd → its vpcd reader → TCP → the
// softkey's card. A power cycle takes the card out of the reader (closing the
// vpcd connection), restarts the softkey on the same state and puts it back.
type pcscSoftkey struct {
	*conformance.Target
	daemon *pcsctest.Daemon
	st     store.Store
	cfg    softkey.Config
	opts   pcsc.Options

	mu     sync.Mutex
	auth   *softkey.Authenticator
	conn   net.Conn
	served chan error
}

func newPCSCSoftkey(t *testing.T, cfg softkey.Config, opts pcsc.Options) *pcscSoftkey {
	t.Helper()
	d := pcsctest.Shared(t)
	s := &pcscSoftkey{Target: &conformance.Target{AutoPresence: true}, daemon: d,
		st: keepOpenStore{store.NewMemory(store.Meta{})}, cfg: cfg, opts: opts}
	s.PowerCycle = s.powerCycle
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The previous test's card may still be in pcscd's eyes: insert retries.
	if err := s.reinsert(ctx); err != nil {
		t.Fatalf("%v (pcscd log: %s)", err, d.Log)
	}
	t.Cleanup(func() { s.remove() })
	return s
}

// keepOpenStore survives the softkey's Close, so that a power cycle keeps state.
type keepOpenStore struct{ store.Store }

func (keepOpenStore) Close() error { return nil }

// insert starts the softkey, connects its card to vpcd and opens it over PC/SC.
func (s *pcscSoftkey) insert(ctx context.Context) error {
	auth, err := softkey.New(s.st, s.cfg)
	if err != nil {
		return err
	}
	conn, err := expose.DialVPCD(ctx, s.daemon.CardAddr())
	if err != nil {
		auth.Close()
		return err
	}
	served := make(chan error, 1)
	go func() {
		served <- expose.ServeVPCD(context.Background(), conn, expose.NewCard(auth, expose.CardOptions{}))
	}()
	dev, err := pcsc.Open(ctx, s.daemon.Reader, s.opts)
	if err != nil {
		conn.Close()
		<-served
		auth.Close()
		return err
	}
	s.mu.Lock()
	s.auth, s.conn, s.served = auth, conn, served
	s.Device, s.Client = dev, ctap2.NewClient(dev)
	s.mu.Unlock()
	return nil
}

func (s *pcscSoftkey) remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth == nil {
		return nil
	}
	// The host lets go of the card first; then the card leaves the reader.
	// Errors of either are those of a card pulled out: not a failure here.
	s.Device.Close()
	s.conn.Close()
	<-s.served
	err := s.auth.Close()
	s.auth = nil
	return err
}

func (s *pcscSoftkey) powerCycle(ctx context.Context) error {
	if err := s.remove(); err != nil {
		return err
	}
	return s.reinsert(ctx)
}

func (s *pcscSoftkey) reinsert(ctx context.Context) error {
	// pcscd notices a card leaving and a new one arriving on its ~400 ms poll of
	// the vpcd socket; a card inserted before the old one's removal was seen
	// gets the old one's dead connection.
	err := s.insert(ctx)
	for i := 0; err != nil && i < 10; i++ {
		time.Sleep(500 * time.Millisecond)
		err = s.insert(ctx)
	}
	return err
}

func TestMain(m *testing.M) {
	code := m.Run()
	pcsctest.StopShared()
	os.Exit(code)
}

// TestSoftkeyPassesSuiteOverPCSC: the whole suite, destructive and NFC-layer
// cases included, through pcscd and vpcd, with short APDUs and chaining (as
// python-fido2 and most readers) and with extended APDUs.
func TestSoftkeyPassesSuiteOverPCSC(t *testing.T) {
	for _, mode := range []pcsc.APDUMode{pcsc.ShortAPDUs, pcsc.ExtendedAPDUs} {
		t.Run(mode.String(), func(t *testing.T) {
			s := newPCSCSoftkey(t, softkey.Config{}, pcsc.Options{APDU: mode})
			results := conformance.Run(context.Background(), s.Target, conformance.Options{Destructive: true})
			pass, skip := 0, 0
			for _, r := range results {
				switch r.Status {
				case conformance.Fail:
					t.Errorf("%s", r)
					for _, l := range r.Log {
						t.Logf("    %s", l)
					}
				case conformance.Skip:
					skip++
					if r.Area == conformance.AreaNFC {
						t.Errorf("NFC case skipped over PC/SC: %s", r)
					}
					t.Logf("%s", r)
				case conformance.Pass:
					pass++
				}
			}
			t.Logf("over PC/SC (%s APDUs): %d passed, %d skipped of %d", mode, pass, skip, len(results))
		})
	}
}

// TestPCSCCardRemovedMidSuite: a card pulled out fails the case in flight with
// a one-line error, and the suite goes on (the next case fails fast too).
func TestPCSCCardRemovedMidSuite(t *testing.T) {
	s := newPCSCSoftkey(t, softkey.Config{}, pcsc.Options{})
	ctx := context.Background()
	if _, err := s.Client.GetInfo(ctx); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.conn.Close()
	s.mu.Unlock()
	start := time.Now()
	_, err := s.Client.GetInfo(ctx)
	if err == nil {
		t.Fatal("getInfo after the card left: no error")
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("the error took %v", time.Since(start))
	}
	t.Logf("card removed: %v", err)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a removed card should say so, not time out: %v", err)
	}
}

// TestPCSCKeepaliveAndCancel: through pcscd, a request waiting for a touch keeps
// the host polling (keepalive UPNEEDED reported) and a cancel ends it within
// 100 ms.
func TestPCSCKeepaliveAndCancel(t *testing.T) {
	touched := make(chan struct{})
	cfg := softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		select {
		case <-touched:
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}}
	s := newPCSCSoftkey(t, cfg, pcsc.Options{})
	var mu sync.Mutex
	var statuses []byte
	ctx, cancel := context.WithCancel(transport.WithKeepalive(context.Background(), func(st byte) {
		mu.Lock()
		statuses = append(statuses, st)
		mu.Unlock()
	}))
	cancelled := make(chan time.Time, 1)
	time.AfterFunc(600*time.Millisecond, func() { cancelled <- time.Now(); cancel() })
	cdh := make([]byte, 32)
	_, err := s.Client.MakeCredential(ctx, &ctap2.MakeCredentialRequest{ClientDataHash: cdh,
		RP: &ctap2.RPEntity{ID: "example.com"}, User: &ctap2.UserEntity{ID: []byte{1}, Name: "a"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}}})
	returned := time.Now()
	if err == nil {
		t.Fatal("makeCredential succeeded without a touch")
	}
	if late := returned.Sub(<-cancelled); late > 100*time.Millisecond {
		t.Errorf("makeCredential returned %v after the cancel, want ≤ 100 ms", late)
	} else {
		t.Logf("cancelled through pcscd: returned %v after the cancel (%v)", late, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(statuses) == 0 || statuses[len(statuses)-1] != transport.StatusUPNeeded {
		t.Errorf("keepalive statuses %v, want UPNEEDED reported while waiting", statuses)
	}
	close(touched)
}
