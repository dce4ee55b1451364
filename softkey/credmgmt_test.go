package softkey

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

const (
	permCM   = ctap2.PermCredentialManagement
	permACFG = ctap2.PermAuthenticatorConfig
	permLBW  = ctap2.PermLargeBlobWrite
)

// mgmtDevice is a transport.Device that hands CBOR messages straight to a softkey,
// so that ctap2's host Client (an implementation of its own) drives it in-process.
type mgmtDevice struct{ a *Authenticator }

func (d *mgmtDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	if cmd != transport.CmdCBOR {
		return nil, errors.New("mgmtDevice carries CBOR messages only")
	}
	return d.a.HandleCBOR(ctx, data, nil), nil
}

func (d *mgmtDevice) Info() transport.DeviceInfo {
	return transport.DeviceInfo{URI: "soft:test", Transport: "soft", Path: "test"}
}

func (d *mgmtDevice) Close() error { return nil }

// hostClient is ctap2's host Client on a.
func hostClient(a *Authenticator) *ctap2.Client { return ctap2.NewClient(&mgmtDevice{a: a}) }

// cmFixture is a softkey on a store that outlives it (for restarts), with resident
// credentials a1 and a2 for a.example and b1 for b.example (made in that order,
// a second apart, before the PIN "1234" was set).
type cmFixture struct {
	st    *spyStore
	a     *Authenticator
	h     *pinHost
	clock *fakeClock
	made  map[string]*madeCredential // by user ID
}

func newCMFixture(t *testing.T, v uint, cfg Config) *cmFixture {
	t.Helper()
	f := &cmFixture{st: persistentStore(), clock: newClock(), made: map[string]*madeCredential{}}
	cfg.Now = f.clock.Now
	f.a = newSoftkeyOn(t, f.st, cfg)
	for _, c := range []struct{ rp, user string }{{"a.example", "a1"}, {"a.example", "a2"}, {"b.example", "b1"}} {
		f.clock.Advance(time.Second)
		f.made[c.user] = makeCredential(t, f.a, residentRequest(c.rp, []byte(c.user)))
	}
	f.h = newPINHost(t, f.a, v)
	f.h.mustSetPIN("1234")
	return f
}

// cmReq builds a credentialManagement request by hand: subCommandParams (nil:
// none) encoded once, and with tok a pinUvAuthParam over subCommand || exactly
// those bytes.
func cmReq(t testing.TB, sub ctap2.CredMgmtSubcommand, params any, tok *ctap2.PINToken) map[int]any {
	t.Helper()
	m := map[int]any{1: uint(sub)}
	var enc []byte
	if params != nil {
		enc = mustMarshal(t, params)
		m[2] = ctap2.RawMessage(enc)
	}
	if tok != nil {
		m[3] = tok.Protocol.Version()
		m[4] = tok.Protocol.Authenticate(tok.Token, append([]byte{byte(sub)}, enc...))
	}
	return m
}

// cmSend sends a credentialManagement request (0x0A) and decodes any reply.
func cmSend(t testing.TB, a *Authenticator, req any) (ctap2.StatusError, *ctap2.CredMgmtResponse) {
	t.Helper()
	return cmSendCmd(t, a, ctap2.CmdCredentialManagement, req)
}

func cmSendCmd(t testing.TB, a *Authenticator, cmd ctap2.Command, req any) (ctap2.StatusError, *ctap2.CredMgmtResponse) {
	t.Helper()
	st, body := call(t, a, cmd, req)
	var resp ctap2.CredMgmtResponse
	if len(body) > 0 {
		if err := ctap2.Unmarshal(body, &resp); err != nil {
			t.Fatalf("decoding credentialManagement reply: %v", err)
		}
	}
	return st, &resp
}

// cmOK sends a request that must succeed.
func cmOK(t testing.TB, a *Authenticator, req any) *ctap2.CredMgmtResponse {
	t.Helper()
	st, resp := cmSend(t, a, req)
	wantStatus(t, "credentialManagement", st, ctap2.StatusOK)
	return resp
}

// rpHash is an RP ID hash as a slice.
func rpHash(rpID string) []byte {
	h := ctap2.RPIDHash(rpID)
	return h[:]
}

// credParams names a credential for deleteCredential / updateUserInformation.
func credParams(id []byte, user *ctap2.UserEntity) *ctap2.CredMgmtParams {
	return &ctap2.CredMgmtParams{CredentialID: &ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id}, User: user}
}

// TestCredMgmtHost: ctap2's host Client manages the softkey's credentials through
// a cm token, under both PIN protocols: metadata, RPs, credentials (with keys that
// match the attested ones), update, delete, and the effect on getAssertion.
func TestCredMgmtHost(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		ctx := context.Background()
		f := newCMFixture(t, v, Config{MaxResidentCredentials: 10})
		c := hostClient(f.a)
		tok := f.h.mustToken("1234", permCM, "")

		md, err := c.CredsMetadata(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if md.Existing != 3 || md.MaxRemaining != 7 {
			t.Fatalf("metadata %+v, want 3 existing, 7 remaining", md)
		}
		rps, err := c.EnumerateRPs(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if len(rps) != 2 || rps[0].ID != "a.example" || rps[1].ID != "b.example" ||
			rps[0].Name != "RP a.example" || !bytes.Equal(rps[1].RPIDHash, rpHash("b.example")) {
			t.Fatalf("RPs %+v", rps)
		}
		creds, err := c.EnumerateCredentials(ctx, tok, rpHash("a.example"))
		if err != nil {
			t.Fatal(err)
		}
		if len(creds) != 2 {
			t.Fatalf("%d credentials for a.example, want 2", len(creds))
		}
		for i, user := range []string{"a2", "a1"} { // newest first
			got, want := creds[i], f.made[user]
			if !bytes.Equal(got.ID.ID, want.id) || got.ID.Type != ctap2.CredentialType {
				t.Errorf("credential %d: ID %x, want %s's %x", i, got.ID.ID, user, want.id)
			}
			if !bytes.Equal(got.PublicKey, want.auth.Attested.PublicKey) {
				t.Errorf("credential %s: public key %x, want the attested %x", user, got.PublicKey, want.auth.Attested.PublicKey)
			}
			if string(got.User.ID) != user || got.User.Name != "user-"+user || got.User.DisplayName != "User "+user {
				t.Errorf("credential %s: user %+v", user, got.User)
			}
			if got.CredProtect != 1 || got.LargeBlobKey != nil {
				t.Errorf("credential %s: credProtect %d, largeBlobKey %x; want 1 and none", user, got.CredProtect, got.LargeBlobKey)
			}
		}

		// Update keeps the user handle and replaces the names.
		a1 := f.made["a1"].id
		if err := c.UpdateUserInformation(ctx, tok, a1, ctap2.UserEntity{ID: []byte("a1"), Name: "alice", DisplayName: "Alice A."}); err != nil {
			t.Fatal(err)
		}
		ga := f.h.mustToken("1234", permGA, "a.example")
		resp, _ := getAssertion(t, f.a, protectGA(silent(gaRequest("a.example", a1)), ga))
		if string(resp.User.ID) != "a1" || resp.User.Name != "alice" || resp.User.DisplayName != "Alice A." {
			t.Fatalf("user after update %+v", resp.User)
		}

		// Delete: gone from enumeration and from getAssertion.
		tok = f.h.mustToken("1234", permCM, "")
		if err := c.DeleteCredential(ctx, tok, a1); err != nil {
			t.Fatal(err)
		}
		creds, err = c.EnumerateCredentials(ctx, tok, rpHash("a.example"))
		if err != nil {
			t.Fatal(err)
		}
		if len(creds) != 1 || !bytes.Equal(creds[0].ID.ID, f.made["a2"].id) {
			t.Fatalf("credentials after delete: %+v", creds)
		}
		st, _ := call(t, f.a, ctap2.CmdGetAssertion, silent(gaRequest("a.example", a1)))
		wantStatus(t, "getAssertion with the deleted credential", st, ctap2.ErrNoCredentials)
		resp, _ = getAssertion(t, f.a, silent(gaRequest("a.example")))
		if resp.NumberOfCredentials > 1 || string(resp.User.ID) != "a2" {
			t.Fatalf("discoverable getAssertion after delete: user %q, %d credentials", resp.User.ID, resp.NumberOfCredentials)
		}
		if err := c.DeleteCredential(ctx, tok, a1); !errors.Is(err, ctap2.ErrNoCredentials) {
			t.Fatalf("deleting it again: %v, want NO_CREDENTIALS", err)
		}
		md, err = c.CredsMetadata(ctx, tok)
		if err != nil || md.Existing != 2 || md.MaxRemaining != 8 {
			t.Fatalf("metadata after delete %+v, %v", md, err)
		}
		// Deleting b.example's only credential removes the RP.
		if err := c.DeleteCredential(ctx, tok, f.made["b1"].id); err != nil {
			t.Fatal(err)
		}
		if rps, err = c.EnumerateRPs(ctx, tok); err != nil || len(rps) != 1 || rps[0].ID != "a.example" {
			t.Fatalf("RPs after deleting b1: %+v, %v", rps, err)
		}
	})
}

// TestCredMgmtExactBytes: pinUvAuthParam covers the subCommandParams bytes as
// sent, not a re-encoding: a non-minimal (but valid) encoding authenticated as
// sent is accepted, the same request authenticated over the canonical encoding is
// not.
func TestCredMgmtExactBytes(t *testing.T) {
	f := newCMFixture(t, 2, Config{})
	tok := f.h.mustToken("1234", permCM, "")
	canonical := mustMarshal(t, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")})
	// {1: h'..'} with the byte string's length as a two-byte argument (59 0020).
	loose := append(unhex("a1 01 59 0020"), rpHash("a.example")...)
	sub := byte(ctap2.CredMgmtEnumerateCredentialsBegin)
	req := func(params, macOver []byte) map[int]any {
		return map[int]any{1: sub, 2: ctap2.RawMessage(params), 3: uint(2),
			4: tok.Protocol.Authenticate(tok.Token, append([]byte{sub}, macOver...))}
	}
	st, _ := cmSend(t, f.a, req(loose, canonical))
	wantStatus(t, "MAC over the canonical re-encoding of what was sent", st, ctap2.ErrPINAuthInvalid)
	resp := cmOK(t, f.a, req(loose, loose))
	if resp.TotalCredentials != 2 {
		t.Fatalf("totalCredentials %d, want 2", resp.TotalCredentials)
	}
	// The hand-made canonical request is the one ctap2's Client sends.
	if !bytes.Equal(canonical, append(unhex("a1 01 58 20"), rpHash("a.example")...)) {
		t.Fatalf("canonical params %x", canonical)
	}
}

// TestCredMgmtPermissions: only a token with the cm permission manages credentials,
// and one bound to an RP ID only that RP's.
func TestCredMgmtPermissions(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		f := newCMFixture(t, v, Config{})
		b1 := f.made["b1"].id
		del := func(tok *ctap2.PINToken, id []byte) ctap2.StatusError {
			st, _ := cmSend(t, f.a, cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(id, nil), tok))
			return st
		}
		stillThere := func(what string, id []byte) {
			t.Helper()
			if _, err := f.st.Credential(id); err != nil {
				t.Fatalf("%s: credential %x is gone (%v)", what, id, err)
			}
		}

		for _, perms := range []ctap2.Permission{permGA, permMCGA, permLBW | permACFG} {
			tok := f.h.mustToken("1234", perms, "")
			st, _ := cmSend(t, f.a, cmReq(t, ctap2.CredMgmtGetCredsMetadata, nil, tok))
			wantStatus(t, "getCredsMetadata without cm", st, ctap2.ErrPINAuthInvalid)
			st, _ = cmSend(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateRPsBegin, nil, tok))
			wantStatus(t, "enumerateRPsBegin without cm", st, ctap2.ErrPINAuthInvalid)
			wantStatus(t, "deleteCredential without cm", del(tok, b1), ctap2.ErrPINAuthInvalid)
			stillThere("delete without cm", b1)
		}

		// A cm token bound to a.example.
		tok := f.h.mustToken("1234", permCM, "a.example")
		st, _ := cmSend(t, f.a, cmReq(t, ctap2.CredMgmtGetCredsMetadata, nil, tok))
		wantStatus(t, "getCredsMetadata with an RP-bound token", st, ctap2.ErrPINAuthInvalid)
		st, _ = cmSend(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateRPsBegin, nil, tok))
		wantStatus(t, "enumerateRPsBegin with an RP-bound token", st, ctap2.ErrPINAuthInvalid)
		st, _ = cmSend(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("b.example")}, tok))
		wantStatus(t, "enumerating another RP's credentials", st, ctap2.ErrPINAuthInvalid)
		wantStatus(t, "deleting another RP's credential", del(tok, b1), ctap2.ErrPINAuthInvalid)
		stillThere("delete with a token for another RP", b1)
		user := &ctap2.UserEntity{ID: []byte("b1"), Name: "mallory"}
		st, _ = cmSend(t, f.a, cmReq(t, ctap2.CredMgmtUpdateUserInformation, credParams(b1, user), tok))
		wantStatus(t, "updating another RP's credential", st, ctap2.ErrPINAuthInvalid)
		if c, _ := f.st.Credential(b1); c.User.Name != "user-b1" {
			t.Fatalf("b1's user became %+v", c.User)
		}
		// Its own RP is fine.
		resp := cmOK(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")}, tok))
		if resp.TotalCredentials != 2 {
			t.Fatalf("totalCredentials %d", resp.TotalCredentials)
		}
		wantStatus(t, "deleting its own RP's credential", del(tok, f.made["a1"].id), ctap2.StatusOK)

		// Auth failures.
		tok = f.h.mustToken("1234", permCM, "")
		req := cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(b1, nil), tok)
		delete(req, 4)
		st, _ = cmSend(t, f.a, req)
		wantStatus(t, "no pinUvAuthParam", st, ctap2.ErrPUATRequired)
		req = cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(b1, nil), tok)
		delete(req, 3)
		st, _ = cmSend(t, f.a, req)
		wantStatus(t, "no pinUvAuthProtocol", st, ctap2.ErrMissingParameter)
		req = cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(b1, nil), tok)
		req[3] = uint(3)
		st, _ = cmSend(t, f.a, req)
		wantStatus(t, "pinUvAuthProtocol 3", st, ctap2.ErrInvalidParameter)
		req[3] = uint(0)
		st, _ = cmSend(t, f.a, req)
		wantStatus(t, "pinUvAuthProtocol 0", st, ctap2.ErrInvalidParameter)
		// A MAC made for deleting a2 does not delete b1.
		mac := cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(f.made["a2"].id, nil), tok)[4]
		req = cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(b1, nil), tok)
		req[4] = mac
		st, _ = cmSend(t, f.a, req)
		wantStatus(t, "a MAC over other params", st, ctap2.ErrPINAuthInvalid)
		req = cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(b1, nil), tok)
		req[1] = uint(ctap2.CredMgmtUpdateUserInformation)
		req[2] = ctap2.RawMessage(mustMarshal(t, credParams(b1, &ctap2.UserEntity{ID: []byte("b1")})))
		st, _ = cmSend(t, f.a, req)
		wantStatus(t, "a MAC for another subcommand", st, ctap2.ErrPINAuthInvalid)
		stillThere("bad MACs", b1)

		// A new token (and a PIN change) ends the old one.
		old := tok
		f.h.mustToken("1234", permCM, "")
		wantStatus(t, "a replaced token", del(old, b1), ctap2.ErrPINAuthInvalid)
		tok = f.h.mustToken("1234", permCM, "")
		wantStatus(t, "changePIN", f.h.changePIN("1234", "5678"), ctap2.StatusOK)
		wantStatus(t, "a token from before changePIN", del(tok, b1), ctap2.ErrPINAuthInvalid)
		stillThere("stale tokens", b1)
		wantStatus(t, "a fresh token", del(f.h.mustToken("5678", permCM, ""), b1), ctap2.StatusOK)
	})
}

// TestCredMgmtUnprotected: without a PIN no token can exist, so credential
// management is closed: PUAT_REQUIRED without a pinUvAuthParam, PIN_AUTH_INVALID
// with a made-up one.
func TestCredMgmtUnprotected(t *testing.T) {
	a := newSoftkey(t, Config{})
	made := makeCredential(t, a, residentRequest("a.example", []byte("u")))
	st, _ := cmSend(t, a, cmReq(t, ctap2.CredMgmtEnumerateRPsBegin, nil, nil))
	wantStatus(t, "enumerateRPsBegin without auth", st, ctap2.ErrPUATRequired)
	fake := &ctap2.PINToken{Protocol: ctap2.PINProtocolByVersion(2), Token: make([]byte, 32)}
	st, _ = cmSend(t, a, cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(made.id, nil), fake))
	wantStatus(t, "deleteCredential with a made-up token", st, ctap2.ErrPINAuthInvalid)
	st, _ = cmSend(t, a, cmReq(t, ctap2.CredMgmtEnumerateRPsGetNextRP, nil, nil))
	wantStatus(t, "GetNextRP", st, ctap2.ErrNotAllowed)
	if n, _ := a.st.CountCredentials(); n != 1 {
		t.Fatalf("%d credentials, want 1", n)
	}
}

// TestCredMgmtSequence: the GetNext subcommands continue only the enumeration
// they belong to, directly after it (no other command in between, not even
// getInfo or a failed command), within 30 s, and only while something is left.
func TestCredMgmtSequence(t *testing.T) {
	f := newCMFixture(t, 2, Config{})
	tok := f.h.mustToken("1234", permCM, "")
	rpsBegin := func() {
		t.Helper()
		if resp := cmOK(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateRPsBegin, nil, tok)); resp.TotalRPs != 2 || resp.RP.ID != "a.example" {
			t.Fatalf("enumerateRPsBegin: %+v", resp)
		}
	}
	credsBegin := func() {
		t.Helper()
		if resp := cmOK(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")}, tok)); resp.TotalCredentials != 2 {
			t.Fatalf("enumerateCredentialsBegin: %+v", resp)
		}
	}
	nextRP := func() (ctap2.StatusError, *ctap2.CredMgmtResponse) {
		return cmSend(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateRPsGetNextRP, nil, nil))
	}
	nextCred := func() (ctap2.StatusError, *ctap2.CredMgmtResponse) {
		return cmSend(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateCredentialsGetNextCredential, nil, nil))
	}

	st, _ := nextRP()
	wantStatus(t, "GetNextRP without a Begin", st, ctap2.ErrNotAllowed)

	rpsBegin()
	st, resp := nextRP()
	wantStatus(t, "GetNextRP", st, ctap2.StatusOK)
	if resp.RP == nil || resp.RP.ID != "b.example" || !bytes.Equal(resp.RPIDHash, rpHash("b.example")) || resp.TotalRPs != 0 {
		t.Fatalf("GetNextRP: %+v", resp)
	}
	st, _ = nextRP()
	wantStatus(t, "GetNextRP past the last RP", st, ctap2.ErrNotAllowed)

	for _, tc := range []struct {
		name  string
		begin func()
		in    func()
		next  func() (ctap2.StatusError, *ctap2.CredMgmtResponse)
	}{
		{"getInfo", rpsBegin, func() { info(t, f.a) }, nextRP},
		{"getInfo (credentials)", credsBegin, func() { info(t, f.a) }, nextCred},
		{"the wrong GetNext", credsBegin, func() { nextRP() }, nextCred},
		{"getCredsMetadata", rpsBegin, func() { cmOK(t, f.a, cmReq(t, ctap2.CredMgmtGetCredsMetadata, nil, tok)) }, nextRP},
		{"an unknown command", rpsBegin, func() { callRaw(t, f.a, []byte{0x55}) }, nextRP},
		{"a failed credentialManagement", credsBegin, func() { cmSend(t, f.a, map[int]any{1: 0x99}) }, nextCred},
		{"getPINRetries", credsBegin, func() { f.h.retries() }, nextCred},
		{"a silent getAssertion", rpsBegin, func() { getAssertion(t, f.a, silent(gaRequest("a.example"))) }, nextRP},
		{"31 s", credsBegin, func() { f.clock.Advance(31 * time.Second) }, nextCred},
	} {
		tc.begin()
		tc.in()
		if st, _ := tc.next(); st != ctap2.ErrNotAllowed {
			t.Errorf("GetNext after %s: %v, want NOT_ALLOWED", tc.name, st)
		}
	}

	// 29 s, twice, are fine: the window restarts at every GetNext.
	f.clock.Advance(time.Second)
	makeCredential(t, f.a, protectMC(residentRequest("a.example", []byte("a3")), f.h.mustToken("1234", permMC, "a.example")))
	tok = f.h.mustToken("1234", permCM, "")
	resp = cmOK(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")}, tok))
	got := []string{string(resp.User.ID)}
	for range 2 {
		f.clock.Advance(29 * time.Second)
		st, resp := nextCred()
		wantStatus(t, "GetNextCredential after 29 s", st, ctap2.StatusOK)
		if resp.TotalCredentials != 0 || resp.PublicKey == nil {
			t.Fatalf("GetNextCredential: %+v", resp)
		}
		got = append(got, string(resp.User.ID))
	}
	if !slices.Equal(got, []string{"a3", "a2", "a1"}) {
		t.Fatalf("credentials %q, want newest first", got)
	}
	st, _ = nextCred()
	wantStatus(t, "GetNextCredential past the last", st, ctap2.ErrNotAllowed)
}

// TestCredMgmtPrototype: command 0x41 works like 0x0A (and continues its
// enumerations) but has no updateUserInformation.
func TestCredMgmtPrototype(t *testing.T) {
	f := newCMFixture(t, 1, Config{})
	tok := f.h.mustToken("1234", permCM, "")
	st, resp := cmSendCmd(t, f.a, ctap2.CmdCredentialMgmtPre, cmReq(t, ctap2.CredMgmtEnumerateRPsBegin, nil, tok))
	wantStatus(t, "0x41 enumerateRPsBegin", st, ctap2.StatusOK)
	if resp.TotalRPs != 2 {
		t.Fatalf("totalRPs %d", resp.TotalRPs)
	}
	st, resp = cmSendCmd(t, f.a, ctap2.CmdCredentialMgmtPre, cmReq(t, ctap2.CredMgmtEnumerateRPsGetNextRP, nil, nil))
	wantStatus(t, "0x41 GetNextRP", st, ctap2.StatusOK)
	if resp.RP.ID != "b.example" {
		t.Fatalf("GetNextRP: %+v", resp)
	}
	a1 := f.made["a1"].id
	user := &ctap2.UserEntity{ID: []byte("a1"), Name: "changed"}
	st, _ = cmSendCmd(t, f.a, ctap2.CmdCredentialMgmtPre, cmReq(t, ctap2.CredMgmtUpdateUserInformation, credParams(a1, user), tok))
	wantStatus(t, "0x41 updateUserInformation", st, ctap2.ErrInvalidSubcommand)
	if c, _ := f.st.Credential(a1); c.User.Name != "user-a1" {
		t.Fatalf("user changed through 0x41: %+v", c.User)
	}
	st, _ = cmSendCmd(t, f.a, ctap2.CmdCredentialMgmtPre, cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(a1, nil), tok))
	wantStatus(t, "0x41 deleteCredential", st, ctap2.StatusOK)
	if _, err := f.st.Credential(a1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a1 not deleted through 0x41: %v", err)
	}
}

// TestCredMgmtErrors: malformed and impossible requests.
func TestCredMgmtErrors(t *testing.T) {
	f := newCMFixture(t, 2, Config{})
	tok := f.h.mustToken("1234", permCM, "")
	a1 := f.made["a1"].id
	for _, tc := range []struct {
		name string
		req  any
		want ctap2.StatusError
	}{
		{"no subCommand", map[int]any{3: 2}, ctap2.ErrMissingParameter},
		{"empty map", map[int]any{}, ctap2.ErrMissingParameter},
		{"unknown subCommand", cmReq(t, 0x08, nil, tok), ctap2.ErrInvalidSubcommand},
		{"subCommand 0", cmReq(t, 0, nil, tok), ctap2.ErrInvalidSubcommand},
		{"subCommand as text", map[int]any{1: "1"}, ctap2.ErrCBORUnexpectedType},
		{"subCommandParams as an int", map[int]any{1: 4, 2: 7, 3: 2, 4: []byte{1}}, ctap2.ErrCBORUnexpectedType},
		{"rpIDHash as text", cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, map[int]any{1: "a.example"}, tok), ctap2.ErrCBORUnexpectedType},
		{"enumerateCredentialsBegin without params", cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, nil, tok), ctap2.ErrMissingParameter},
		{"enumerateCredentialsBegin without rpIDHash", cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, map[int]any{}, tok), ctap2.ErrMissingParameter},
		{"enumerateCredentialsBegin without auth and params", cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, nil, nil), ctap2.ErrMissingParameter},
		{"rpIDHash of 31 bytes", cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: make([]byte, 31)}, tok), ctap2.ErrInvalidParameter},
		{"an RP without credentials", cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("c.example")}, tok), ctap2.ErrNoCredentials},
		{"deleteCredential without params", cmReq(t, ctap2.CredMgmtDeleteCredential, nil, tok), ctap2.ErrMissingParameter},
		{"deleteCredential without credentialID", cmReq(t, ctap2.CredMgmtDeleteCredential, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")}, tok), ctap2.ErrMissingParameter},
		{"deleting an unknown ID", cmReq(t, ctap2.CredMgmtDeleteCredential, credParams([]byte("nope"), nil), tok), ctap2.ErrNoCredentials},
		{"deleting an empty ID", cmReq(t, ctap2.CredMgmtDeleteCredential, credParams([]byte{}, nil), tok), ctap2.ErrNoCredentials},
		{"updateUserInformation without user", cmReq(t, ctap2.CredMgmtUpdateUserInformation, credParams(a1, nil), tok), ctap2.ErrMissingParameter},
		{"updateUserInformation of another user ID", cmReq(t, ctap2.CredMgmtUpdateUserInformation, credParams(a1, &ctap2.UserEntity{ID: []byte("a2"), Name: "x"}), tok), ctap2.ErrInvalidParameter},
		{"updateUserInformation of an unknown ID", cmReq(t, ctap2.CredMgmtUpdateUserInformation, credParams([]byte("nope"), &ctap2.UserEntity{ID: []byte("a1")}), tok), ctap2.ErrNoCredentials},
	} {
		st, _ := cmSend(t, f.a, tc.req)
		if st != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
		}
	}
	// A non-resident credential cannot be managed.
	sealed := makeCredential(t, f.a, mcRequest("a.example", []byte("nr")))
	st, _ := cmSend(t, f.a, cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(sealed.id, nil), tok))
	// The makeCredential collected a touch, which leaves the token only lbw.
	wantStatus(t, "a cm token after a user-present makeCredential", st, ctap2.ErrPINAuthInvalid)
	tok = f.h.mustToken("1234", permCM, "")
	st, _ = cmSend(t, f.a, cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(sealed.id, nil), tok))
	wantStatus(t, "deleting a non-resident credential", st, ctap2.ErrNoCredentials)
	if c, _ := f.st.Credential(a1); c.User.ID == nil || string(c.User.ID) != "a1" || c.User.Name != "user-a1" {
		t.Fatalf("a1 changed: %+v", c.User)
	}
	if n, _ := f.st.CountCredentials(); n != 3 {
		t.Fatalf("%d credentials after failed requests, want 3", n)
	}

	// No credentials at all.
	for _, id := range [][]byte{a1, f.made["a2"].id, f.made["b1"].id} {
		cmOK(t, f.a, cmReq(t, ctap2.CredMgmtDeleteCredential, credParams(id, nil), tok))
	}
	st, _ = cmSend(t, f.a, cmReq(t, ctap2.CredMgmtEnumerateRPsBegin, nil, tok))
	wantStatus(t, "enumerateRPsBegin without credentials", st, ctap2.ErrNoCredentials)
	md := cmOK(t, f.a, cmReq(t, ctap2.CredMgmtGetCredsMetadata, nil, tok))
	if md.ExistingResidentCredentialsCount == nil || *md.ExistingResidentCredentialsCount != 0 ||
		md.MaxPossibleRemainingResidentCredentialsCount == nil || *md.MaxPossibleRemainingResidentCredentialsCount != defaultMaxResident {
		t.Fatalf("metadata without credentials: %+v", md)
	}
}

// TestCredMgmtUpdateKeepsCredential: updateUserInformation changes the names only:
// ID, key, user handle, credProtect and the extension data in Extra stay; absent
// names are removed. Enumeration reports credProtect and largeBlobKey.
func TestCredMgmtUpdateKeepsCredential(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{})
	made := makeCredential(t, a, residentRequest("a.example", []byte("u")))
	lbk := bytes.Repeat([]byte{0x42}, 32)
	c, err := st.Credential(made.id)
	if err != nil {
		t.Fatal(err)
	}
	c.CredProtect = 3
	c.Extra = map[string][]byte{"largeBlobKey": lbk, "credBlob": []byte("blob")}
	if err := st.PutCredential(c); err != nil {
		t.Fatal(err)
	}
	h := newPINHost(t, a, 2)
	h.mustSetPIN("1234")
	tok := h.mustToken("1234", permCM, "")

	resp := cmOK(t, a, cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")}, tok))
	if resp.CredProtect != 3 || !bytes.Equal(resp.LargeBlobKey, lbk) || resp.TotalCredentials != 1 {
		t.Fatalf("enumeration: credProtect %d, largeBlobKey %x, total %d", resp.CredProtect, resp.LargeBlobKey, resp.TotalCredentials)
	}
	cmOK(t, a, cmReq(t, ctap2.CredMgmtUpdateUserInformation, credParams(made.id, &ctap2.UserEntity{ID: []byte("u"), Name: "new"}), tok))
	after, err := st.Credential(made.id)
	if err != nil {
		t.Fatal(err)
	}
	if after.User.Name != "new" || after.User.DisplayName != "" || string(after.User.ID) != "u" {
		t.Fatalf("user after update %+v, want name new and no displayName", after.User)
	}
	if after.CredProtect != 3 || !bytes.Equal(after.Extra["largeBlobKey"], lbk) || string(after.Extra["credBlob"]) != "blob" ||
		!bytes.Equal(after.PrivateKey, c.PrivateKey) || after.RPID != "a.example" {
		t.Fatalf("update changed more than the names: %+v", after)
	}
	// Reported after a restart too, and the key still signs.
	b := newSoftkeyOn(t, st, Config{})
	hb := newPINHost(t, b, 1)
	tok = hb.mustToken("1234", permCM|permGA, "a.example")
	resp = cmOK(t, b, cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")}, tok))
	if resp.User.Name != "new" || resp.User.DisplayName != "" {
		t.Fatalf("user after restart %+v", resp.User)
	}
	ga, ad := getAssertion(t, b, protectGA(silent(gaRequest("a.example", made.id)), tok))
	if err := made.key.Verify(concat(ga.AuthData, hashOf("ga a.example")), ga.Signature); err != nil || ad.Flags&ctap2.FlagUV == 0 {
		t.Fatalf("assertion after update: %v (flags %v)", err, ad.Flags)
	}

	// A plain credential reports credProtect 1 and no largeBlobKey (key 0x0B absent).
	plain := makeCredential(t, b, protectMC(residentRequest("b.example", []byte("p")), hb.mustToken("1234", permMC, "b.example")))
	tok = hb.mustToken("1234", permCM, "")
	_, body := call(t, b, ctap2.CmdCredentialManagement, cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("b.example")}, tok))
	m := rawMap[int](t, body)
	if _, ok := m[0x0B]; ok {
		t.Error("largeBlobKey (0x0B) present for a credential without one")
	}
	for _, k := range []int{6, 7, 8, 9, 10} {
		if _, ok := m[k]; !ok {
			t.Errorf("enumerateCredentialsBegin reply lacks key %d", k)
		}
	}
	var r ctap2.CredMgmtResponse
	if err := ctap2.Unmarshal(body, &r); err != nil || r.CredProtect != 1 || !bytes.Equal(r.CredentialID.ID, plain.id) {
		t.Fatalf("plain credential: %+v, %v", r, err)
	}
}

// TestCredMgmtGoAPI: CredentialManagement for Go callers keeps the same state as
// HandleCBOR: a GetNext directly after a Begin works, after Info it does not.
func TestCredMgmtGoAPI(t *testing.T) {
	f := newCMFixture(t, 2, Config{})
	ctx := context.Background()
	tok := f.h.mustToken("1234", permCM, "")
	msg := ctap2.CredMgmtAuthMessage(ctap2.CredMgmtEnumerateRPsBegin, nil)
	begin := &ctap2.CredMgmtRequest{SubCommand: ctap2.CredMgmtEnumerateRPsBegin, PinUvAuthProtocol: 2, PinUvAuthParam: tok.Param(msg)}
	resp, err := f.a.CredentialManagement(ctx, begin)
	if err != nil || resp.TotalRPs != 2 {
		t.Fatalf("enumerateRPsBegin: %+v, %v", resp, err)
	}
	next := &ctap2.CredMgmtRequest{SubCommand: ctap2.CredMgmtEnumerateRPsGetNextRP}
	if resp, err = f.a.CredentialManagement(ctx, next); err != nil || resp.RP.ID != "b.example" {
		t.Fatalf("GetNextRP: %+v, %v", resp, err)
	}
	if _, err := f.a.CredentialManagement(ctx, begin); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.Info(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.a.CredentialManagement(ctx, next); !errors.Is(err, ctap2.ErrNotAllowed) {
		t.Fatalf("GetNextRP after Info: %v, want NOT_ALLOWED", err)
	}
	if _, err := f.a.CredentialManagement(ctx, nil); !errors.Is(err, ctap2.ErrMissingParameter) {
		t.Fatalf("nil request: %v", err)
	}
	del := &ctap2.CredMgmtRequest{SubCommand: ctap2.CredMgmtDeleteCredential, PinUvAuthProtocol: 2,
		SubCommandParams: mustMarshal(t, credParams(f.made["b1"].id, nil))}
	del.PinUvAuthParam = tok.Param(ctap2.CredMgmtAuthMessage(del.SubCommand, del.SubCommandParams))
	if resp, err := f.a.CredentialManagement(ctx, del); err != nil || resp == nil {
		t.Fatalf("deleteCredential: %+v, %v", resp, err)
	}
}
