package webauthn_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	gowebauthn "github.com/go-webauthn/webauthn/webauthn"

	"github.com/ctapkit/ctapkit/webauthn/webauthntest"
)

// rpUser is a go-webauthn user with its credentials.
type rpUser struct {
	id    []byte
	name  string
	creds []gowebauthn.Credential
}

func (u *rpUser) WebAuthnID() []byte                           { return u.id }
func (u *rpUser) WebAuthnName() string                         { return u.name }
func (u *rpUser) WebAuthnDisplayName() string                  { return u.name }
func (u *rpUser) WebAuthnCredentials() []gowebauthn.Credential { return u.creds }

// newRP is an independent relying party: go-webauthn.
func newRP(t *testing.T, origin, rpID string) *gowebauthn.WebAuthn {
	t.Helper()
	rp, err := gowebauthn.New(&gowebauthn.Config{RPID: rpID, RPDisplayName: "Example", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

func TestGoWebAuthnRegistersAndLogsIn(t *testing.T) {
	const origin = "https://login.example.com"
	rp := newRP(t, origin, "example.com")
	key := webauthntest.New(t, webauthntest.Options{Origin: origin})
	user := &rpUser{id: []byte("user-1"), name: "alice"}

	creation, session, err := rp.BeginRegistration(user)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(creation)
	resp := key.MustCreate(opts)
	t.Logf("registration: %s", resp)
	parsed, err := protocol.ParseCredentialCreationResponseBody(bytes.NewReader(resp))
	if err != nil {
		t.Fatalf("go-webauthn cannot parse our registration: %v", err)
	}
	cred, err := rp.CreateCredential(user, *session, parsed)
	if err != nil {
		t.Fatalf("go-webauthn refuses our registration: %v", err)
	}
	user.creds = append(user.creds, *cred)

	var last uint32
	for i := range 2 {
		assertion, session, err := rp.BeginLogin(user)
		if err != nil {
			t.Fatal(err)
		}
		opts, _ := json.Marshal(assertion)
		resp := key.MustGet(opts)
		parsed, err := protocol.ParseCredentialRequestResponseBody(bytes.NewReader(resp))
		if err != nil {
			t.Fatalf("go-webauthn cannot parse our assertion: %v", err)
		}
		got, err := rp.ValidateLogin(user, *session, parsed)
		if err != nil {
			t.Fatalf("go-webauthn refuses our assertion %d: %v", i, err)
		}
		if got.Authenticator.CloneWarning || got.Authenticator.SignCount <= last {
			t.Errorf("assertion %d: counter %d after %d (clone warning %v)", i, got.Authenticator.SignCount, last, got.Authenticator.CloneWarning)
		}
		last = got.Authenticator.SignCount
		user.creds[0] = *got
	}
}
