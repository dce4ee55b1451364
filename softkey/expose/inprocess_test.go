package expose

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/internal/benchratio"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// open serves a softkey on st through InProcess and returns a Client for it.
func open(t testing.TB, st store.Store, cfg softkey.Config, opts ...ctap2.ClientOption) (*ctap2.Client, transport.Device, *softkey.Authenticator) {
	t.Helper()
	auth, err := softkey.New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := InProcess(context.Background(), auth, InProcessOptions{Info: transport.DeviceInfo{URI: "soft:test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return ctap2.NewClient(dev, opts...), dev, auth
}

func makeCredential(t testing.TB, c *ctap2.Client, rpID, user string, rk bool) *ctap2.MakeCredentialResponse {
	t.Helper()
	resp, err := c.MakeCredential(context.Background(), &ctap2.MakeCredentialRequest{
		ClientDataHash:   bytes.Repeat([]byte{1}, 32),
		RP:               &ctap2.RPEntity{ID: rpID},
		User:             &ctap2.UserEntity{ID: []byte(user), Name: user},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
		Options:          &ctap2.Options{RK: ctap2.Bool(rk)},
	})
	if err != nil {
		t.Fatalf("makeCredential: %v", err)
	}
	return resp
}

// TestInProcessRoundTrip drives the softkey through real CTAPHID framing with the
// host Client: registration, discoverable assertions via getNextAssertion, and
// signatures checked against the registered keys.
func TestInProcessRoundTrip(t *testing.T) {
	c, dev, auth := open(t, store.NewMemory(store.Meta{}), softkey.Config{})
	info, err := c.GetInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if aaguid := auth.AAGUID(); !bytes.Equal(info.AAGUID, aaguid[:]) {
		t.Errorf("getInfo AAGUID %x, want %x", info.AAGUID, aaguid)
	}
	if dev.Info().URI != "soft:test" {
		t.Errorf("Info().URI = %q", dev.Info().URI)
	}
	keys := map[string]*ctap2.COSEKey{}
	for _, user := range []string{"alice", "bob"} {
		mc := makeCredential(t, c, "example.com", user, true)
		if _, err := mc.VerifyAttestation(bytes.Repeat([]byte{1}, 32)); err != nil {
			t.Fatalf("attestation: %v", err)
		}
		_, key, err := mc.CredentialKey()
		if err != nil {
			t.Fatal(err)
		}
		keys[user] = key
	}
	cdh := bytes.Repeat([]byte{2}, 32)
	as, err := c.GetAssertions(context.Background(), &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 {
		t.Fatalf("%d assertions, want 2", len(as))
	}
	for i, want := range []string{"bob", "alice"} { // newest first
		if got := string(as[i].User.ID); got != want {
			t.Errorf("assertion %d is for %q, want %q", i, got, want)
		}
		if err := as[i].Verify(keys[want], cdh); err != nil {
			t.Errorf("assertion %d: %v", i, err)
		}
	}
}

// TestInProcessKeepaliveAndCancel: while the softkey waits for a touch the host
// sees UP-needed keepalives, and cancelling the context sends CTAPHID_CANCEL,
// which ends the wait on the softkey side.
func TestInProcessKeepaliveAndCancel(t *testing.T) {
	waiting := make(chan struct{})
	var sawCancel atomic.Bool
	cfg := softkey.Config{PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		close(waiting)
		<-ctx.Done()
		sawCancel.Store(true)
		return false, ctx.Err()
	}}
	statuses := make(chan byte, 16)
	c, _, _ := open(t, store.NewMemory(store.Meta{}), cfg, ctap2.WithKeepaliveFunc(func(s byte) { statuses <- s }))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Selection(ctx) }()
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("softkey never asked for presence")
	}
	select {
	case s := <-statuses:
		if s != transport.StatusUPNeeded {
			t.Errorf("keepalive status %d, want UP needed", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no keepalive while waiting for presence")
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Selection after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Selection did not return after cancel")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancel took %v", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !sawCancel.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !sawCancel.Load() {
		t.Error("the softkey's presence wait was not cancelled")
	}
}

// TestInProcessCloseKeepsState: closing the device closes the softkey, which writes
// its state back; a new softkey on the same file continues the counter and still
// has the passkey.
func TestInProcessCloseKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sk.db")
	db, err := store.Create(path, store.CreateOptions{NoPassphrase: true})
	if err != nil {
		t.Fatal(err)
	}
	c, dev, auth := open(t, db, softkey.Config{})
	mc := makeCredential(t, c, "example.com", "alice", true)
	ad, err := mc.ParseAuthData()
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if resp := auth.HandleCBOR(context.Background(), []byte{byte(ctap2.CmdGetInfo)}, nil); !bytes.Equal(resp, []byte{byte(ctap2.ErrOther)}) {
		t.Errorf("softkey still answers after Close: % x", resp)
	}

	db, err = store.Open(path)
	if err != nil {
		t.Fatalf("reopening after Close: %v", err)
	}
	c, _, _ = open(t, db, softkey.Config{})
	ga, err := c.GetAssertion(context.Background(), &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	gad, err := ga.ParseAuthData()
	if err != nil {
		t.Fatal(err)
	}
	if gad.SignCount != ad.SignCount+1 {
		t.Errorf("counter after restart %d, want %d", gad.SignCount, ad.SignCount+1)
	}
}

// BenchmarkGetAssertionCTAPHID is a getAssertion as a host sees it: the Client
// encodes the request, CTAPHID frames it over the in-memory pipe, the softkey
// answers, and the Client checks and decodes the reply.
func BenchmarkGetAssertionCTAPHID(b *testing.B) {
	c, _, _ := open(b, store.NewMemory(store.Meta{}), softkey.Config{})
	makeCredential(b, c, "bench.example", "bench", true)
	req := &ctap2.GetAssertionRequest{RPID: "bench.example", ClientDataHash: make([]byte, 32)}
	ctx := context.Background()
	benchratio.Run(b, func() {
		if _, err := c.GetAssertion(ctx, req); err != nil {
			b.Fatal(err)
		}
	})
}
