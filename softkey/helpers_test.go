package softkey

import (
	"bytes"
	"context"
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// epoch is the fake clock's start; any fixed instant will do.
var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock is Config.Now for tests of the reset window, the getNextAssertion timer
// and creation order.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// spyStore wraps a Store: it counts ceiling writes and, with keepOnClose, survives
// Close (store.Memory forgets everything on Close), so a test can open a second
// Authenticator on the same state as a restart would.
type spyStore struct {
	store.Store
	keepOnClose   bool
	ceilingWrites atomic.Int64
}

func (s *spyStore) SetCounterCeiling(v uint32) error {
	s.ceilingWrites.Add(1)
	return s.Store.SetCounterCeiling(v)
}

func (s *spyStore) Close() error {
	if s.keepOnClose {
		return nil
	}
	return s.Store.Close()
}

// persistentStore is a fresh memory store that outlives the Authenticators using it.
func persistentStore() *spyStore {
	return &spyStore{Store: store.NewMemory(store.Meta{}), keepOnClose: true}
}

// shared lets another Authenticator use st without closing it.
func shared(st store.Store) *spyStore { return &spyStore{Store: st, keepOnClose: true} }

// newSoftkey starts an authenticator on a fresh memory store and closes it at the
// end of the test.
func newSoftkey(t testing.TB, cfg Config) *Authenticator {
	t.Helper()
	return newSoftkeyOn(t, store.NewMemory(store.Meta{}), cfg)
}

func newSoftkeyOn(t testing.TB, st store.Store, cfg Config) *Authenticator {
	t.Helper()
	a, err := New(st, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// hashOf is a clientDataHash for tests.
func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// call sends cmd || CBOR(params) (no parameters when params is nil) through
// HandleCBOR and splits the reply. Every successful reply must be canonical CBOR,
// which call checks for every test.
func call(t testing.TB, a *Authenticator, cmd ctap2.Command, params any) (ctap2.StatusError, []byte) {
	t.Helper()
	msg := []byte{byte(cmd)}
	if params != nil {
		b, err := ctap2.Marshal(params)
		if err != nil {
			t.Fatalf("encoding %v request: %v", cmd, err)
		}
		msg = append(msg, b...)
	}
	return callRaw(t, a, msg)
}

// callRaw sends a raw message and checks the reply's framing.
func callRaw(t testing.TB, a *Authenticator, msg []byte) (ctap2.StatusError, []byte) {
	t.Helper()
	return callCtx(t, context.Background(), a, msg, nil)
}

func callCtx(t testing.TB, ctx context.Context, a *Authenticator, msg []byte, status func(byte)) (ctap2.StatusError, []byte) {
	t.Helper()
	reply := a.HandleCBOR(ctx, msg, status)
	if len(reply) == 0 {
		t.Fatalf("%x: empty reply", msg)
	}
	st, body := ctap2.StatusError(reply[0]), reply[1:]
	if st != ctap2.StatusOK && len(body) != 0 {
		t.Fatalf("%x: error %v with a body %x", msg, st, body)
	}
	if len(body) > 0 {
		if err := ctap2.CheckCanonical(body); err != nil {
			t.Fatalf("%x: reply is not canonical: %v", msg, err)
		}
	}
	return st, body
}

// wantStatus fails unless got is want.
func wantStatus(t testing.TB, what string, got, want ctap2.StatusError) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %v (0x%02x), want %v (0x%02x)", what, got, byte(got), want, byte(want))
	}
}

// mcRequest is a valid makeCredential request for rpID and userID with the given
// algorithms in preference order (ES256 when none).
func mcRequest(rpID string, userID []byte, algs ...ctap2.COSEAlgorithm) *ctap2.MakeCredentialRequest {
	if len(algs) == 0 {
		algs = []ctap2.COSEAlgorithm{ctap2.AlgES256}
	}
	req := &ctap2.MakeCredentialRequest{
		ClientDataHash: hashOf("mc " + rpID + " " + string(userID)),
		RP:             &ctap2.RPEntity{ID: rpID, Name: "RP " + rpID},
		User:           &ctap2.UserEntity{ID: userID, Name: "user-" + string(userID), DisplayName: "User " + string(userID)},
	}
	for _, alg := range algs {
		req.PubKeyCredParams = append(req.PubKeyCredParams, ctap2.CredentialParam{Type: ctap2.CredentialType, Alg: alg})
	}
	return req
}

// residentRequest is mcRequest with rk=true.
func residentRequest(rpID string, userID []byte, algs ...ctap2.COSEAlgorithm) *ctap2.MakeCredentialRequest {
	req := mcRequest(rpID, userID, algs...)
	req.Options = &ctap2.Options{RK: ctap2.Bool(true)}
	return req
}

// madeCredential is what a test keeps of a makeCredential success.
type madeCredential struct {
	resp *ctap2.MakeCredentialResponse
	auth *ctap2.AuthData
	id   []byte
	key  *ctap2.COSEKey
}

// makeCredential runs a makeCredential that must succeed and verifies its
// attestation statement.
func makeCredential(t testing.TB, a *Authenticator, req *ctap2.MakeCredentialRequest) *madeCredential {
	t.Helper()
	st, body := call(t, a, ctap2.CmdMakeCredential, req)
	wantStatus(t, "makeCredential", st, ctap2.StatusOK)
	var resp ctap2.MakeCredentialResponse
	if err := ctap2.Unmarshal(body, &resp); err != nil {
		t.Fatalf("decoding makeCredential response: %v", err)
	}
	ad, err := resp.ParseAuthData()
	if err != nil {
		t.Fatalf("makeCredential authData: %v", err)
	}
	id, key, err := resp.CredentialKey()
	if err != nil {
		t.Fatalf("makeCredential credential key: %v", err)
	}
	if _, err := resp.VerifyAttestation(req.ClientDataHash); err != nil {
		t.Fatalf("makeCredential attestation: %v", err)
	}
	return &madeCredential{resp: &resp, auth: ad, id: id, key: key}
}

// gaRequest is a getAssertion request for rpID allowing ids (none: discoverable).
func gaRequest(rpID string, ids ...[]byte) *ctap2.GetAssertionRequest {
	req := &ctap2.GetAssertionRequest{RPID: rpID, ClientDataHash: hashOf("ga " + rpID)}
	for _, id := range ids {
		req.AllowList = append(req.AllowList, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id})
	}
	return req
}

// getAssertion runs a getAssertion that must succeed and decodes the reply.
func getAssertion(t testing.TB, a *Authenticator, req *ctap2.GetAssertionRequest) (*ctap2.GetAssertionResponse, *ctap2.AuthData) {
	t.Helper()
	st, body := call(t, a, ctap2.CmdGetAssertion, req)
	wantStatus(t, "getAssertion", st, ctap2.StatusOK)
	return decodeAssertion(t, body)
}

// getNextAssertion runs a getNextAssertion that must succeed.
func getNextAssertion(t testing.TB, a *Authenticator) (*ctap2.GetAssertionResponse, *ctap2.AuthData) {
	t.Helper()
	st, body := call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion", st, ctap2.StatusOK)
	return decodeAssertion(t, body)
}

func decodeAssertion(t testing.TB, body []byte) (*ctap2.GetAssertionResponse, *ctap2.AuthData) {
	t.Helper()
	var resp ctap2.GetAssertionResponse
	if err := ctap2.Unmarshal(body, &resp); err != nil {
		t.Fatalf("decoding getAssertion response: %v", err)
	}
	ad, err := resp.ParseAuthData()
	if err != nil {
		t.Fatalf("getAssertion authData: %v", err)
	}
	if ad.Attested != nil || ad.Extensions != nil {
		t.Fatalf("getAssertion authData has flags %v, want neither AT nor ED", ad.Flags)
	}
	if resp.Credential == nil || resp.Credential.Type != ctap2.CredentialType {
		t.Fatalf("getAssertion credential %+v, want a public-key descriptor", resp.Credential)
	}
	return &resp, ad
}

// signCountOf asserts with the sealed or resident credential id (silently, up=false)
// and returns the signature counter.
func signCountOf(t testing.TB, a *Authenticator, rpID string, id []byte) uint32 {
	t.Helper()
	req := gaRequest(rpID, id)
	req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
	_, ad := getAssertion(t, a, req)
	return ad.SignCount
}

// info runs getInfo through HandleCBOR.
func info(t testing.TB, a *Authenticator) *ctap2.Info {
	t.Helper()
	st, body := call(t, a, ctap2.CmdGetInfo, nil)
	wantStatus(t, "getInfo", st, ctap2.StatusOK)
	var i ctap2.Info
	if err := ctap2.Unmarshal(body, &i); err != nil {
		t.Fatalf("decoding getInfo: %v", err)
	}
	return &i
}

// remaining is getInfo's remainingDiscoverableCredentials.
func remaining(t testing.TB, a *Authenticator) uint {
	t.Helper()
	i := info(t, a)
	if i.RemainingDiscoverableCredentials == nil {
		t.Fatal("getInfo has no remainingDiscoverableCredentials")
	}
	return *i.RemainingDiscoverableCredentials
}

// flip returns b with bit i flipped.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i/8] ^= 1 << (i % 8)
	return c
}

// rawMap decodes a CBOR map generically, for checks of exactly which keys a reply has.
func rawMap[K comparable](t testing.TB, b []byte) map[K]ctap2.RawMessage {
	t.Helper()
	var m map[K]ctap2.RawMessage
	if err := ctap2.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding %x as a map: %v", b, err)
	}
	return m
}
