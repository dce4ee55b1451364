// Package softtarget points the conformance suite at a softkey in-process: the
// CTAP2 client goes through real CTAPHID framing, CTAPHID cases get their own raw
// connection to the same authenticator, and power cycles restart the softkey on
// the same state, as unplugging a key would.
package softtarget

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// Softkey is a conformance target backed by a softkey. Close releases it and the
// store.
type Softkey struct {
	*conformance.Target

	st   store.Store
	cfg  softkey.Config
	info transport.DeviceInfo

	skew atomic.Int64 // nanoseconds the softkey's clock is ahead

	mu       sync.Mutex
	auth     *softkey.Authenticator
	stopHID  context.CancelFunc
	hidDone  chan struct{}
	hostPipe ctaphid.PacketConn
}

// New starts a softkey with cfg on st (which it owns) and returns it as a target.
// Presence is automatic unless cfg says otherwise.
func New(ctx context.Context, st store.Store, cfg softkey.Config, info transport.DeviceInfo) (*Softkey, error) {
	s := &Softkey{Target: &conformance.Target{}, st: keepOpen{st}, info: info}
	// The softkey's clock runs ahead by what AdvanceClock added, so timing
	// rules (the reset window) are tested without waiting.
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	cfg.Now = func() time.Time { return now().Add(time.Duration(s.skew.Load())) }
	s.cfg = cfg
	s.AdvanceClock = func(d time.Duration) { s.skew.Add(int64(d)) }
	s.AutoPresence = cfg.PresenceFunc == nil && (cfg.Presence == "" || cfg.Presence == softkey.PresenceAuto)
	s.PowerCycle = s.powerCycle
	if err := s.start(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// keepOpen lets the softkey close and restart on the same store: a power cycle
// must keep the persistent state (store.Memory forgets everything on Close).
type keepOpen struct{ store.Store }

func (keepOpen) Close() error { return nil }

func (s *Softkey) start(ctx context.Context) error {
	auth, err := softkey.New(s.st, s.cfg)
	if err != nil {
		return fmt.Errorf("starting softkey: %w", err)
	}
	dev, err := expose.InProcess(ctx, auth, expose.InProcessOptions{Info: s.info})
	if err != nil {
		auth.Close()
		return err
	}
	// The raw CTAPHID link: a second server for the same authenticator on its own
	// pipe, as a second USB host program would reach the same key.
	host, devEnd := ctaphid.Pipe()
	srv := ctaphid.NewServer(auth, ctaphid.ServerOptions{Capabilities: ctaphid.CapWink | ctaphid.CapCBOR})
	hidCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(hidCtx, devEnd)
	}()
	s.mu.Lock()
	s.auth, s.stopHID, s.hidDone, s.hostPipe = auth, stop, done, host
	s.Device, s.Client, s.HID = dev, ctap2.NewClient(dev), host
	s.mu.Unlock()
	return nil
}

func (s *Softkey) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth == nil {
		return nil
	}
	s.stopHID()
	s.hostPipe.Close()
	<-s.hidDone
	err := s.Device.Close() // closes the authenticator too
	s.auth = nil
	return err
}

func (s *Softkey) powerCycle(ctx context.Context) error {
	if err := s.stop(); err != nil {
		return err
	}
	return s.start(ctx)
}

// Authenticator returns the running softkey (it changes on a power cycle).
func (s *Softkey) Authenticator() *softkey.Authenticator {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auth
}

// Close stops the softkey and closes the store.
func (s *Softkey) Close() error {
	err := s.stop()
	return errors.Join(err, s.st.(keepOpen).Store.Close())
}
