package ctap1

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
)

// fakeKey is a minimal U2F key behind transport.Device: key handles are random
// indexes into a map, a touch arrives after a set number of 0x6985 answers.
type fakeKey struct {
	t       testing.TB
	attKey  *ecdsa.PrivateKey
	cert    []byte
	waits   int // 0x6985 answers before each presence-needing request succeeds
	pending int // remaining 0x6985 answers of the current request

	mu      sync.Mutex
	keys    map[string]fakeCred
	counter uint32
	sent    []*APDU
	raw     [][]byte
	answer  func(a *APDU) []byte // overrides the key when it returns non-nil
}

type fakeCred struct {
	app [32]byte
	key *ecdsa.PrivateKey
}

func newFakeKey(t testing.TB) *fakeKey {
	att, cert := selfSignedU2F(t)
	return &fakeKey{t: t, attKey: att, cert: cert, keys: map[string]fakeCred{}, pending: -1}
}

func (f *fakeKey) Info() transport.DeviceInfo { return transport.DeviceInfo{URI: "fake:u2f"} }
func (f *fakeKey) Close() error               { return nil }

func (f *fakeKey) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	if cmd != transport.CmdMsg {
		f.t.Errorf("command %v, want MSG", cmd)
		return nil, errors.New("not MSG")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raw = append(f.raw, bytes.Clone(data))
	a, err := ParseAPDU(data)
	if err != nil {
		return SWWrongLength.Bytes(), nil
	}
	f.sent = append(f.sent, a)
	if f.answer != nil {
		if r := f.answer(a); r != nil {
			return r, nil
		}
	}
	switch a.INS {
	case InsVersion:
		return Response([]byte(Version), SWNoError), nil
	case InsRegister:
		req, err := ParseRegisterRequest(a.Data)
		if err != nil {
			return SWWrongLength.Bytes(), nil
		}
		if !f.touched() {
			return SWConditionsNotSatisfied.Bytes(), nil
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		kh := make([]byte, 48)
		rand.Read(kh)
		f.keys[string(kh)] = fakeCred{app: req.Application, key: key}
		pub, _ := key.PublicKey.Bytes()
		sig, _ := ctap2.Sign(ctap2.AlgES256, f.attKey, RegisterSignedData(req.Application, req.Challenge, kh, pub), rand.Reader)
		out, _ := (&RegisterResponse{PublicKey: pub, KeyHandle: kh, Certificate: f.cert, Signature: sig}).Marshal()
		return Response(out, SWNoError), nil
	case InsAuthenticate:
		req, err := ParseAuthenticateRequest(a.P1, a.Data)
		if err != nil {
			return SWWrongLength.Bytes(), nil
		}
		c, ok := f.keys[string(req.KeyHandle)]
		if !ok || c.app != req.Application {
			return SWWrongData.Bytes(), nil
		}
		var up byte
		switch req.Control {
		case CheckOnly:
			return SWConditionsNotSatisfied.Bytes(), nil
		case EnforcePresence:
			if !f.touched() {
				return SWConditionsNotSatisfied.Bytes(), nil
			}
			up = 1
		case DontEnforcePresence:
		default:
			return SWWrongData.Bytes(), nil
		}
		f.counter++
		r := signedAuthentication(f.t, c.key, req.Application, req.Challenge, up, f.counter)
		return Response(r.Marshal(), SWNoError), nil
	}
	return SWInsNotSupported.Bytes(), nil
}

// touched counts down the 0x6985 answers of a request; waits < 0 never touches.
func (f *fakeKey) touched() bool {
	if f.waits < 0 {
		return false
	}
	if f.pending < 0 {
		f.pending = f.waits
	}
	if f.pending > 0 {
		f.pending--
		return false
	}
	f.pending = -1
	return true
}

func (f *fakeKey) sentINS() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []byte
	for _, a := range f.sent {
		out = append(out, a.INS)
	}
	return out
}

func (f *fakeKey) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent, f.raw = nil, nil
}

func fastClient(dev transport.Device, opts ...ClientOption) *Client {
	return NewClient(dev, append([]ClientOption{WithPollInterval(time.Millisecond)}, opts...)...)
}

func TestClientVersionUsesHIDFraming(t *testing.T) {
	k := newFakeKey(t)
	v, err := NewClient(k).Version(context.Background())
	if err != nil || v != "U2F_V2" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	if !bytes.Equal(k.raw[0], unhex("00 03 00 00 00 00 00 00 00")) {
		t.Errorf("sent %x", k.raw[0])
	}
	k.reset()
	if _, err := NewClient(k, WithShortAPDUs()).Version(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.raw[0], unhex("00 03 00 00 00")) {
		t.Errorf("short VERSION %x", k.raw[0])
	}
}

func TestClientRegisterPollsUntilTouched(t *testing.T) {
	k := newFakeKey(t)
	k.waits = 3
	var notes []byte
	c := fastClient(k, WithKeepaliveFunc(func(s byte) { notes = append(notes, s) }))
	req := &RegisterRequest{Challenge: [32]byte{1}, Application: ctap2.RPIDHash("example.com")}
	reg, err := c.Register(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.sentINS(); len(got) != 4 {
		t.Errorf("sent %d REGISTERs, want 4 (three answered 0x6985)", len(got))
	}
	if !bytes.Equal(notes, []byte{transport.StatusUPNeeded}) {
		t.Errorf("keepalive notes %x, want one UP needed", notes)
	}
	if err := reg.Verify(req); err != nil {
		t.Fatal(err)
	}
	mc, err := reg.MakeCredentialResponse(req.Application)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctap2.VerifyAttestation(mc.Fmt, mc.AttStmt, mc.AuthData, req.Challenge[:]); err != nil {
		t.Errorf("fido-u2f attestation: %v", err)
	}
}

func TestClientPollingPace(t *testing.T) {
	k := newFakeKey(t)
	k.waits = 2
	start := time.Now()
	if _, err := NewClient(k).Register(context.Background(), &RegisterRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 2*DefaultPollInterval {
		t.Errorf("two polls took %v, want at least %v", d, 2*DefaultPollInterval)
	}
}

func TestClientRegisterStopsWithContext(t *testing.T) {
	k := newFakeKey(t)
	k.waits = -1
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := fastClient(k).Register(ctx, &RegisterRequest{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
	if n := len(k.sentINS()); n < 3 {
		t.Errorf("only %d polls before the deadline", n)
	}
}

func TestClientAuthenticate(t *testing.T) {
	k := newFakeKey(t)
	c := fastClient(k)
	ctx := context.Background()
	app := ctap2.RPIDHash("example.com")
	reg, err := c.Register(ctx, &RegisterRequest{Application: app})
	if err != nil {
		t.Fatal(err)
	}
	mc, _ := reg.MakeCredentialResponse(app)
	_, key, _ := mc.CredentialKey()

	found, err := c.CheckKeyHandle(ctx, app, reg.KeyHandle)
	if err != nil || !found {
		t.Errorf("check-only own handle: %v %v", found, err)
	}
	found, err = c.CheckKeyHandle(ctx, ctap2.RPIDHash("other.example"), reg.KeyHandle)
	if err != nil || found {
		t.Errorf("check-only other application: %v %v", found, err)
	}

	k.waits = 2
	var last uint32
	for _, control := range []Control{EnforcePresence, DontEnforcePresence} {
		challenge := [32]byte{byte(control)}
		r, err := c.Authenticate(ctx, &AuthenticateRequest{Control: control, Challenge: challenge, Application: app, KeyHandle: reg.KeyHandle})
		if err != nil {
			t.Fatalf("%v: %v", control, err)
		}
		if want := byte(0); control == EnforcePresence {
			want = 1
			if r.UserPresence != want {
				t.Errorf("%v: UP %d", control, r.UserPresence)
			}
		} else if r.UserPresence != want {
			t.Errorf("%v: UP %d", control, r.UserPresence)
		}
		if r.Counter <= last {
			t.Errorf("counter %d after %d", r.Counter, last)
		}
		last = r.Counter
		if err := r.GetAssertionResponse(app, reg.KeyHandle).Verify(key, challenge[:]); err != nil {
			t.Errorf("%v: %v", control, err)
		}
	}
	_, err = c.Authenticate(ctx, &AuthenticateRequest{Control: EnforcePresence, Application: ctap2.RPIDHash("other.example"), KeyHandle: reg.KeyHandle})
	if !errors.Is(err, SWWrongData) || !errors.Is(err, ctap2.ErrInvalidCredential) {
		t.Errorf("wrong application: %v", err)
	}
	if _, err := c.Authenticate(ctx, &AuthenticateRequest{Control: CheckOnly}); err == nil {
		t.Error("Authenticate with check-only succeeded")
	}
}

func TestClientStatusWordsAreNotPolled(t *testing.T) {
	k := newFakeKey(t)
	k.answer = func(*APDU) []byte { return SWInsNotSupported.Bytes() }
	_, err := fastClient(k).Register(context.Background(), &RegisterRequest{})
	if !errors.Is(err, SWInsNotSupported) || !errors.Is(err, ctap2.ErrInvalidCommand) {
		t.Errorf("err %v", err)
	}
	if n := len(k.sentINS()); n != 1 {
		t.Errorf("%d requests", n)
	}
	k.answer = func(*APDU) []byte { return []byte{0x90} }
	if _, err := fastClient(k).Version(context.Background()); err == nil {
		t.Error("one-byte reply accepted")
	}
	// A key that signs without presence when presence was enforced is refused.
	k.answer = func(a *APDU) []byte {
		if a.INS == InsAuthenticate {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return Response(signedAuthentication(t, key, [32]byte{}, [32]byte{}, 0, 1).Marshal(), SWNoError)
		}
		return nil
	}
	if _, err := fastClient(k).Authenticate(context.Background(), &AuthenticateRequest{Control: EnforcePresence, KeyHandle: []byte{1}}); err == nil {
		t.Error("signature without user presence accepted")
	}
}

func mcRequest(rpID string, exclude ...[]byte) *ctap2.MakeCredentialRequest {
	req := &ctap2.MakeCredentialRequest{
		ClientDataHash:   bytes.Repeat([]byte{7}, 32),
		RP:               &ctap2.RPEntity{ID: rpID},
		User:             &ctap2.UserEntity{ID: []byte("u"), Name: "u"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgEdDSA}, {Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
	}
	for _, id := range exclude {
		req.ExcludeList = append(req.ExcludeList, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id})
	}
	return req
}

func TestClientMakeCredentialEmulation(t *testing.T) {
	k := newFakeKey(t)
	c := fastClient(k)
	ctx := context.Background()
	mc, err := c.MakeCredential(ctx, mcRequest("example.com", bytes.Repeat([]byte{1}, 300), []byte("foreign")))
	if err != nil {
		t.Fatal(err)
	}
	if got := k.sentINS(); !bytes.Equal(got, []byte{InsAuthenticate, InsRegister}) {
		t.Errorf("sent INS %x: want one check-only (the 300-byte ID skipped), then REGISTER", got)
	}
	if k.sent[0].P1 != byte(CheckOnly) {
		t.Errorf("exclude check P1 %02x", k.sent[0].P1)
	}
	if _, err := mc.VerifyAttestation(bytes.Repeat([]byte{7}, 32)); err != nil {
		t.Fatal(err)
	}
	id, _, _ := mc.CredentialKey()

	k.reset()
	_, err = c.MakeCredential(ctx, mcRequest("example.com", []byte("foreign"), id))
	if !errors.Is(err, ctap2.ErrCredentialExcluded) {
		t.Fatalf("excluded: %v", err)
	}
	sent := k.sent
	if len(sent) != 3 || sent[2].INS != InsRegister || !bytes.Equal(sent[2].Data, bytes.Repeat([]byte{0xff}, 64)) {
		t.Errorf("excluded credential: want two checks and a dummy REGISTER, sent %d", len(sent))
	}
	// The same ID for another RP is not excluded.
	if _, err := c.MakeCredential(ctx, mcRequest("other.example", id)); err != nil {
		t.Errorf("other RP: %v", err)
	}

	for name, mutate := range map[string]func(*ctap2.MakeCredentialRequest){
		"rk":           func(r *ctap2.MakeCredentialRequest) { r.Options = &ctap2.Options{RK: ctap2.Bool(true)} },
		"uv":           func(r *ctap2.MakeCredentialRequest) { r.Options = &ctap2.Options{UV: ctap2.Bool(true)} },
		"pinUvAuth":    func(r *ctap2.MakeCredentialRequest) { r.PinUvAuthParam = []byte{1}; r.PinUvAuthProtocol = 1 },
		"no ES256":     func(r *ctap2.MakeCredentialRequest) { r.PubKeyCredParams = r.PubKeyCredParams[:1] },
		"short hash":   func(r *ctap2.MakeCredentialRequest) { r.ClientDataHash = r.ClientDataHash[:31] },
		"missing user": func(r *ctap2.MakeCredentialRequest) { r.User = nil },
	} {
		req := mcRequest("example.com")
		mutate(req)
		k.reset()
		if _, err := c.MakeCredential(ctx, req); err == nil {
			t.Errorf("%s: accepted", name)
		} else if _, ok := ctap2.StatusOf(err); !ok {
			t.Errorf("%s: %v carries no CTAP status", name, err)
		}
		if n := len(k.sentINS()); n != 0 {
			t.Errorf("%s: %d messages sent", name, n)
		}
	}
}

func TestClientGetAssertionEmulation(t *testing.T) {
	k := newFakeKey(t)
	c := fastClient(k)
	ctx := context.Background()
	mc, err := c.MakeCredential(ctx, mcRequest("example.com"))
	if err != nil {
		t.Fatal(err)
	}
	id, key, _ := mc.CredentialKey()
	cdh := bytes.Repeat([]byte{9}, 32)
	allow := func(ids ...[]byte) []ctap2.CredentialDescriptor {
		var out []ctap2.CredentialDescriptor
		for _, id := range ids {
			out = append(out, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id})
		}
		return out
	}

	k.reset()
	ga, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh, AllowList: allow([]byte("foreign"), id)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ga.Credential.ID, id) {
		t.Errorf("credential %x", ga.Credential.ID)
	}
	if err := ga.Verify(key, cdh); err != nil {
		t.Error(err)
	}
	ad, _ := ga.ParseAuthData()
	if ad.Flags != ctap2.FlagUP || ad.SignCount == 0 {
		t.Errorf("authData %+v", ad)
	}

	// up=false signs with don't-enforce.
	k.reset()
	ga, err = c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh, AllowList: allow(id), Options: &ctap2.Options{UP: ctap2.Bool(false)}})
	if err != nil {
		t.Fatal(err)
	}
	if k.sent[0].P1 != byte(DontEnforcePresence) {
		t.Errorf("up=false sent P1 %02x", k.sent[0].P1)
	}
	if ad, _ := ga.ParseAuthData(); ad.Flags != 0 {
		t.Errorf("up=false flags %v", ad.Flags)
	}

	// Nothing matches: a dummy REGISTER collects a touch, then NO_CREDENTIALS.
	k.reset()
	_, err = c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "other.example", ClientDataHash: cdh, AllowList: allow(id)})
	if !errors.Is(err, ctap2.ErrNoCredentials) {
		t.Errorf("other RP: %v", err)
	}
	if got := k.sentINS(); !bytes.Equal(got, []byte{InsAuthenticate, InsRegister}) {
		t.Errorf("no match sent %x", got)
	}
	k.reset()
	_, err = c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "other.example", ClientDataHash: cdh, AllowList: allow(id), Options: &ctap2.Options{UP: ctap2.Bool(false)}})
	if !errors.Is(err, ctap2.ErrNoCredentials) || len(k.sentINS()) != 1 {
		t.Errorf("silent no match: %v, sent %x", err, k.sentINS())
	}
	_, err = c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh})
	if !errors.Is(err, ctap2.ErrNoCredentials) {
		t.Errorf("no allowList: %v", err)
	}
	_, err = c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: cdh, AllowList: allow(id), Options: &ctap2.Options{UV: ctap2.Bool(true)}})
	if !errors.Is(err, ctap2.ErrUnsupportedOption) {
		t.Errorf("uv: %v", err)
	}
}
