package conformance_test

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport/udp"
)

// udpSoftkey is a conformance target that reaches a softkey the way FIDO test
// suites reach an authenticator simulator: CTAPHID reports as UDP datagrams to
// expose.ServeUDP on a loopback port. The CTAPHID cases get a second socket to
// the same port as their raw link, as a second host program. A power cycle
// restarts the softkey on the same state and the same port.
type udpSoftkey struct {
	*conformance.Target
	conn net.PacketConn // the simulator's socket, kept across power cycles
	st   store.Store
	cfg  softkey.Config
	opts expose.UDPOptions

	mu     sync.Mutex
	auth   *softkey.Authenticator
	stop   context.CancelFunc
	served chan error
}

func newUDPSoftkey(t *testing.T, cfg softkey.Config, opts expose.UDPOptions) *udpSoftkey {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &udpSoftkey{Target: &conformance.Target{}, conn: conn,
		st: keepOpenStore{store.NewMemory(store.Meta{})}, cfg: cfg, opts: opts}
	s.AutoPresence = cfg.PresenceFunc == nil
	s.PowerCycle = s.powerCycle
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dev, err := udp.Open(ctx, addr, udp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := udp.Dial(addr, udp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Device, s.Client, s.HID = dev, ctap2.NewClient(dev), raw
	t.Cleanup(func() {
		dev.Close()
		raw.Close()
		s.halt()
		conn.Close()
	})
	return s
}

// start serves a new softkey on the state and the socket.
func (s *udpSoftkey) start() error {
	auth, err := softkey.New(s.st, s.cfg)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- expose.ServeUDP(ctx, auth, s.conn, s.opts) }()
	s.mu.Lock()
	s.auth, s.stop, s.served = auth, stop, served
	s.mu.Unlock()
	return nil
}

// halt stops serving and closes the softkey, which keeps its persistent state.
func (s *udpSoftkey) halt() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth == nil {
		return nil
	}
	s.stop()
	<-s.served
	err := s.auth.Close()
	s.auth = nil
	return err
}

// powerCycle: the simulator restarts on the same port, forgetting its channels
// and volatile state; the hosts keep their sockets, as they would.
func (s *udpSoftkey) powerCycle(context.Context) error {
	if err := s.halt(); err != nil {
		return err
	}
	return s.start()
}

// hid9 is the case about channels INIT did not allocate, which the UDP
// convention accepts on purpose (hosts of the simulators skip INIT).
const hid9 = "HID-9"

// checkUDPResults fails the test on any failed case. HID-9 must skip for the
// convention's reason when the device accepts unallocated channels, and pass
// when it refuses them (RequireInit).
func checkUDPResults(t *testing.T, results []conformance.Result, requireInit bool) (pass, skip int) {
	t.Helper()
	for _, r := range results {
		switch {
		case r.ID == hid9 && !requireInit && (r.Status != conformance.Skip || !strings.Contains(r.Message, "simulator convention")):
			t.Errorf("%s against the UDP convention: %s, want a skip: the simulator answers unallocated channels", r.ID, r)
		case r.ID == hid9 && requireInit && r.Status != conformance.Pass:
			t.Errorf("%s with RequireInit: %s, want pass", r.ID, r)
		case r.Status == conformance.Fail:
			t.Errorf("%s", r)
			for _, l := range r.Log {
				t.Logf("    %s", l)
			}
		case r.Status == conformance.Skip:
			skip++
			if r.Message == "" {
				t.Errorf("%s skipped without a reason", r.ID)
			}
			if r.Area == conformance.AreaCTAPHID && r.ID != hid9 && !strings.Contains(r.Message, "without waiting for a touch") {
				t.Errorf("CTAPHID case skipped over UDP: %s", r)
			}
			t.Logf("%s", r)
		default:
			pass++
		}
	}
	return pass, skip
}

// TestSoftkeyPassesSuiteOverUDP: the whole suite, destructive and CTAPHID-layer
// cases included, over UDP datagrams to ServeUDP: by the convention (unallocated
// channels accepted, so HID-9 does not apply) and with RequireInit (HID-9 too).
func TestSoftkeyPassesSuiteOverUDP(t *testing.T) {
	for _, requireInit := range []bool{false, true} {
		name := "convention"
		if requireInit {
			name = "RequireInit"
		}
		t.Run(name, func(t *testing.T) {
			s := newUDPSoftkey(t, softkey.Config{}, expose.UDPOptions{RequireInit: requireInit})
			results := conformance.Run(context.Background(), s.Target, conformance.Options{Destructive: true})
			pass, skip := checkUDPResults(t, results, requireInit)
			t.Logf("over UDP (%s): %d passed, %d skipped or not applicable, of %d", name, pass, skip, len(results))
		})
	}
}

// TestTransportAreasOverUDPWithPresenceWaits: against a softkey whose touch takes
// 400 ms, the CTAPHID cases about waits (CANCEL, KEEPALIVE, busy while waiting)
// run over UDP too; every CTAPHID and U2F case passes, NFC ones skip.
func TestTransportAreasOverUDPWithPresenceWaits(t *testing.T) {
	s := newUDPSoftkey(t, softkey.Config{PresenceFunc: presenceAfter(400 * time.Millisecond)}, expose.UDPOptions{})
	s.AutoPresence = true // it presses itself, only not at once
	results := conformance.Run(context.Background(), s.Target, conformance.Options{Only: transportAreas, CaseTimeout: 20 * time.Second})
	ran := map[string]bool{}
	for _, r := range results {
		ran[r.ID] = true
		switch {
		case r.ID == hid9:
			// As above: the convention accepts unallocated channels.
		case r.Status == conformance.Fail:
			logResult(t, r)
			t.Errorf("%s failed", r.ID)
		case r.Status == conformance.Skip && r.Area != conformance.AreaNFC:
			t.Errorf("%s skipped: %s", r.ID, r.Message)
		}
	}
	for _, id := range []string{"HID-14", "HID-15", "HID-16", "U2F-2", "U2F-10", "U2F-11"} {
		if !ran[id] {
			t.Errorf("case %s did not run", id)
		}
	}
	for i := 1; i <= 19; i++ {
		if id := "HID-" + strconv.Itoa(i); !ran[id] {
			t.Errorf("case %s did not run", id)
		}
	}
}

var hidOnly = regexp.MustCompile(`^ctaphid$`)

// TestCTAPHIDCasesOverUDPTwice: the CTAPHID cases leave the simulator usable:
// a second run on the same target passes as the first did.
func TestCTAPHIDCasesOverUDPTwice(t *testing.T) {
	s := newUDPSoftkey(t, softkey.Config{}, expose.UDPOptions{RequireInit: true})
	for run := range 2 {
		results := conformance.Run(context.Background(), s.Target, conformance.Options{Only: hidOnly})
		pass, _ := checkUDPResults(t, results, true)
		if pass == 0 {
			t.Fatalf("run %d: no CTAPHID case passed", run)
		}
	}
	if _, err := s.Client.GetInfo(context.Background()); err != nil {
		t.Fatalf("getInfo after the CTAPHID cases: %v", err)
	}
}
