// Package webauthntest gives relying-party developers a browser and a security key
// in a few lines of a Go test: an in-memory softkey behind ctapkit's WebAuthn
// client, turning the options JSON their server sends into the response JSON a
// browser would post back.
//
//	key := webauthntest.New(t, webauthntest.Options{Origin: "https://example.com"})
//	resp, err := key.Create(optionsJSON) // RegistrationResponseJSON
//	…
//	resp, err = key.Get(requestOptionsJSON) // AuthenticationResponseJSON
//
// Everything goes through real CTAPHID framing to the softkey engine, as with a
// USB key. Knobs mirror a browser's virtual authenticator: user verification
// (built-in or PIN), presence, attestation, and faults.
package webauthntest

import (
	"context"
	"crypto"
	"encoding/json"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/webauthn"
)

// Options configure the authenticator. The zero value (plus an Origin) is a
// key that presses itself, has no PIN and no built-in UV, and attests with
// packed self attestation.
type Options struct {
	// Origin is the page's origin, e.g. "https://example.com" or
	// "http://localhost:8080". Required.
	Origin string
	// UV is built-in user verification: softkey.UVPass (a fingerprint that
	// always matches), softkey.UVFail, or "" for none.
	UV softkey.UVMode
	// PIN, when set, is set on the key at start and used whenever user
	// verification is needed.
	PIN string
	// Presence is the touch policy: softkey.PresenceAuto (default) or
	// softkey.PresenceDeny (every touch refused: NotAllowedError).
	Presence softkey.PresencePolicy
	// Attestation is softkey.AttestationSelf (default), AttestationNone or
	// AttestationBatch (then BatchKey and BatchCerts sign; see Batch).
	Attestation softkey.AttestationMode
	BatchKey    crypto.Signer
	BatchCerts  [][]byte
	// Batch, when set, is packed batch attestation by a CA of its own
	// (softkey.NewBatchAttestation(AAGUID)): it sets Attestation, BatchKey and
	// BatchCerts. Give the RP Batch.CA as its trust anchor.
	Batch *softkey.BatchAttestation
	// AAGUID is the key's model identifier; zero picks a random one. A batch
	// certificate must carry the same (NewBatchAttestation(AAGUID)).
	AAGUID [16]byte
	// Algorithms the key offers, in its order of preference (default ES256,
	// EdDSA).
	Algorithms []ctap2.COSEAlgorithm
	// Faults break the key on purpose, to test that the RP notices.
	Faults *softkey.Faults
	// Config, when set, is the whole softkey configuration instead (the
	// fields above are then ignored, apart from Origin and PIN).
	Config *softkey.Config
}

// Authenticator is a softkey with a WebAuthn client in front of it.
type Authenticator struct {
	// Client is the WebAuthn client; Client.CTAP reaches the key at the CTAP
	// level (credential management, PIN, …).
	Client *webauthn.Client
	// Softkey is the authenticator engine.
	Softkey *softkey.Authenticator
	t       testing.TB
}

// New starts an in-memory authenticator for the test; it is closed by t.Cleanup.
func New(t testing.TB, opts Options) *Authenticator {
	t.Helper()
	if opts.Origin == "" {
		t.Fatal("webauthntest: Options.Origin is required")
	}
	cfg := softkey.Config{Presence: opts.Presence, UV: opts.UV, Attestation: opts.Attestation,
		BatchKey: opts.BatchKey, BatchCerts: opts.BatchCerts, Algorithms: opts.Algorithms, Faults: opts.Faults}
	if b := opts.Batch; b != nil {
		cfg.Attestation, cfg.BatchKey, cfg.BatchCerts = softkey.AttestationBatch, b.Key, b.Certs
	}
	if opts.Config != nil {
		cfg = *opts.Config
	}
	auth, err := softkey.New(store.NewMemory(store.Meta{AAGUID: opts.AAGUID}), cfg)
	if err != nil {
		t.Fatalf("webauthntest: %v", err)
	}
	ctx := context.Background()
	dev, err := expose.InProcess(ctx, auth, expose.InProcessOptions{
		Info: transport.DeviceInfo{URI: "soft:mem", Transport: "soft", Product: "ctapkit softkey (webauthntest)"}})
	if err != nil {
		auth.Close()
		t.Fatalf("webauthntest: %v", err)
	}
	t.Cleanup(func() { dev.Close() })
	ctapClient := ctap2.NewClient(dev)
	a := &Authenticator{Softkey: auth, t: t, Client: &webauthn.Client{CTAP: ctapClient, Origin: opts.Origin}}
	if opts.PIN != "" {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := ctapClient.SetPIN(ctx, opts.PIN); err != nil {
			t.Fatalf("webauthntest: setting the PIN: %v", err)
		}
		pin := opts.PIN
		a.Client.PIN = func(context.Context) (string, error) { return pin, nil }
	}
	return a
}

// Create runs navigator.credentials.create() with the server's options JSON
// (PublicKeyCredentialCreationOptionsJSON, bare or as {"publicKey": …}) and
// returns the RegistrationResponseJSON to post back.
func (a *Authenticator) Create(optionsJSON []byte) ([]byte, error) {
	o, err := webauthn.ParseCreationOptions(optionsJSON)
	if err != nil {
		return nil, err
	}
	resp, err := a.Client.Create(context.Background(), o)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

// Get runs navigator.credentials.get() with the server's options JSON
// (PublicKeyCredentialRequestOptionsJSON, bare or as {"publicKey": …}) and
// returns the AuthenticationResponseJSON to post back.
func (a *Authenticator) Get(optionsJSON []byte) ([]byte, error) {
	o, err := webauthn.ParseRequestOptions(optionsJSON)
	if err != nil {
		return nil, err
	}
	resp, err := a.Client.Get(context.Background(), o)
	if err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

// MustCreate is Create that fails the test on error.
func (a *Authenticator) MustCreate(optionsJSON []byte) []byte {
	a.t.Helper()
	out, err := a.Create(optionsJSON)
	if err != nil {
		a.t.Fatalf("webauthntest: create: %v", err)
	}
	return out
}

// MustGet is Get that fails the test on error.
func (a *Authenticator) MustGet(optionsJSON []byte) []byte {
	a.t.Helper()
	out, err := a.Get(optionsJSON)
	if err != nil {
		a.t.Fatalf("webauthntest: get: %v", err)
	}
	return out
}
