package ctap1_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// The U2F client against the softkey served in-process through real CTAPHID framing.

func openSoftkey(t testing.TB, cfg softkey.Config) transport.Device {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := expose.InProcess(context.Background(), auth, expose.InProcessOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

func cdh(s string) []byte { return bytes.Repeat([]byte(s), 32)[:32] }

func TestSoftkeyAdvertisesU2F(t *testing.T) {
	dev := openSoftkey(t, softkey.Config{})
	caps := dev.(interface{ Capabilities() byte }).Capabilities()
	if caps&ctaphid.CapNMSG != 0 || caps&ctaphid.CapCBOR == 0 {
		t.Errorf("capabilities %#02x: want CBOR without NMSG", caps)
	}
	v, err := ctap1.NewClient(dev).Version(context.Background())
	if err != nil || v != ctap1.Version {
		t.Errorf("Version = %q, %v", v, err)
	}
}

// TestSoftkeyU2FRegisterThenCTAP2 registers over U2F and signs in over CTAP2 with the
// key handle in the allowList.
func TestSoftkeyU2FRegisterThenCTAP2(t *testing.T) {
	dev := openSoftkey(t, softkey.Config{})
	ctx := context.Background()
	u2f := ctap1.NewClient(dev)
	req := &ctap1.RegisterRequest{Challenge: [32]byte(cdh("c")), Application: ctap2.RPIDHash("example.com")}
	reg, err := u2f.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Verify(req); err != nil {
		t.Fatal(err)
	}
	mc, err := reg.MakeCredentialResponse(req.Application)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctap2.VerifyAttestation(mc.Fmt, mc.AttStmt, mc.AuthData, req.Challenge[:]); err != nil {
		t.Fatalf("fido-u2f attestation: %v", err)
	}
	_, key, err := mc.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}

	c2 := ctap2.NewClient(dev)
	ga, err := c2.GetAssertion(ctx, &ctap2.GetAssertionRequest{
		RPID: "example.com", ClientDataHash: cdh("g"),
		AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: reg.KeyHandle}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ga.Verify(key, cdh("g")); err != nil {
		t.Fatalf("CTAP2 assertion with the U2F-registered key: %v", err)
	}
	ad, _ := ga.ParseAuthData()

	// And back over U2F: the counter is shared and keeps rising.
	auth, err := u2f.Authenticate(ctx, &ctap1.AuthenticateRequest{
		Control: ctap1.EnforcePresence, Challenge: [32]byte(cdh("a")), Application: req.Application, KeyHandle: reg.KeyHandle,
	})
	if err != nil {
		t.Fatal(err)
	}
	if auth.Counter <= ad.SignCount {
		t.Errorf("U2F counter %d after CTAP2 %d", auth.Counter, ad.SignCount)
	}
	if err := auth.GetAssertionResponse(req.Application, reg.KeyHandle).Verify(key, cdh("a")); err != nil {
		t.Error(err)
	}
}

// TestSoftkeyCTAP2CredentialOverU2F makes a non-resident ES256 credential over CTAP2
// and signs with it over U2F.
func TestSoftkeyCTAP2CredentialOverU2F(t *testing.T) {
	dev := openSoftkey(t, softkey.Config{})
	ctx := context.Background()
	mc, err := ctap2.NewClient(dev).MakeCredential(ctx, &ctap2.MakeCredentialRequest{
		ClientDataHash:   cdh("m"),
		RP:               &ctap2.RPEntity{ID: "example.com"},
		User:             &ctap2.UserEntity{ID: []byte("u"), Name: "u"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
	})
	if err != nil {
		t.Fatal(err)
	}
	id, key, err := mc.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	u2f := ctap1.NewClient(dev)
	app := ctap2.RPIDHash("example.com")
	if found, err := u2f.CheckKeyHandle(ctx, app, id); err != nil || !found {
		t.Errorf("check-only: %v %v", found, err)
	}
	if found, err := u2f.CheckKeyHandle(ctx, ctap2.RPIDHash("other.example"), id); err != nil || found {
		t.Errorf("check-only, other application: %v %v", found, err)
	}
	for _, control := range []ctap1.Control{ctap1.EnforcePresence, ctap1.DontEnforcePresence} {
		r, err := u2f.Authenticate(ctx, &ctap1.AuthenticateRequest{Control: control, Challenge: [32]byte(cdh("x")), Application: app, KeyHandle: id})
		if err != nil {
			t.Fatalf("%v: %v", control, err)
		}
		if err := r.GetAssertionResponse(app, id).Verify(key, cdh("x")); err != nil {
			t.Errorf("%v: %v", control, err)
		}
	}
	_, err = u2f.Authenticate(ctx, &ctap1.AuthenticateRequest{Control: ctap1.EnforcePresence, Application: app, KeyHandle: append(bytes.Clone(id[:62]), id[62]^1)})
	if !errors.Is(err, ctap1.SWWrongData) {
		t.Errorf("tampered key handle: %v", err)
	}
}

// TestSoftkeyCTAP2OverU2FEmulation runs the Client's CTAP2 emulation against the
// softkey, as a host would for a U2F-only key, and uses the result over CTAP2.
func TestSoftkeyCTAP2OverU2FEmulation(t *testing.T) {
	dev := openSoftkey(t, softkey.Config{})
	ctx := context.Background()
	u2f := ctap1.NewClient(dev)
	req := &ctap2.MakeCredentialRequest{
		ClientDataHash:   cdh("m"),
		RP:               &ctap2.RPEntity{ID: "example.com"},
		User:             &ctap2.UserEntity{ID: []byte("u"), Name: "u"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
	}
	mc, err := u2f.MakeCredential(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.VerifyAttestation(req.ClientDataHash); err != nil {
		t.Fatal(err)
	}
	id, key, _ := mc.CredentialKey()
	req.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: id}}
	if _, err := u2f.MakeCredential(ctx, req); !errors.Is(err, ctap2.ErrCredentialExcluded) {
		t.Errorf("excluded: %v", err)
	}
	// The CTAP2 side agrees that it is excluded.
	if _, err := ctap2.NewClient(dev).MakeCredential(ctx, req); !errors.Is(err, ctap2.ErrCredentialExcluded) {
		t.Errorf("CTAP2 excluded: %v", err)
	}
	gareq := &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh("g"),
		AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: []byte("foreign")}, {Type: ctap2.CredentialType, ID: id}}}
	ga, err := u2f.GetAssertion(ctx, gareq)
	if err != nil {
		t.Fatal(err)
	}
	if err := ga.Verify(key, cdh("g")); err != nil {
		t.Error(err)
	}
	gareq.RPID = "other.example"
	if _, err := u2f.GetAssertion(ctx, gareq); !errors.Is(err, ctap2.ErrNoCredentials) {
		t.Errorf("other RP: %v", err)
	}
}

// TestSoftkeyU2FPolling: with a presence callback the softkey answers 0x6985 at once
// and the client polls until the touch arrives; with presence denied the client gives
// up when its context ends.
func TestSoftkeyU2FPolling(t *testing.T) {
	var asked atomic.Int32
	dev := openSoftkey(t, softkey.Config{PresenceFunc: func(ctx context.Context, rpID string) (bool, error) {
		asked.Add(1)
		select {
		case <-time.After(300 * time.Millisecond):
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}})
	var notes []byte
	u2f := ctap1.NewClient(dev, ctap1.WithKeepaliveFunc(func(s byte) { notes = append(notes, s) }))
	start := time.Now()
	req := &ctap1.RegisterRequest{Application: ctap2.RPIDHash("example.com")}
	reg, err := u2f.Register(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("registered after %v, before the touch", d)
	}
	if err := reg.Verify(req); err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 1 || !bytes.Contains(notes, []byte{transport.StatusUPNeeded}) {
		t.Errorf("asked %d times, keepalive notes %x", asked.Load(), notes)
	}

	denied := ctap1.NewClient(openSoftkey(t, softkey.Config{Presence: softkey.PresenceDeny}))
	ctx, cancel := context.WithTimeout(context.Background(), 350*time.Millisecond)
	defer cancel()
	if _, err := denied.Register(ctx, req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("denied presence: %v, want the deadline", err)
	}
}
