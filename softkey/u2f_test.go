package softkey

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// msg sends one APDU through HandleMsg and splits the reply; every reply must end in a
// status word, and an error status carries no data.
func msg(t testing.TB, a *Authenticator, apdu []byte) ([]byte, ctap1.StatusWord) {
	t.Helper()
	reply := a.HandleMsg(context.Background(), apdu, nil)
	data, sw, err := ctap1.ParseResponse(reply)
	if err != nil {
		t.Fatalf("%x: %v", apdu, err)
	}
	if sw != ctap1.SWNoError && len(data) != 0 {
		t.Fatalf("%x: status %v with data %x", apdu, sw, data)
	}
	return data, sw
}

func wantSW(t testing.TB, what string, got, want ctap1.StatusWord) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

func hidAPDU(ins, p1 byte, data []byte) []byte {
	b, err := ctap1.HIDCommand(ins, p1, 0, data)
	if err != nil {
		panic(err)
	}
	return b
}

// u2fRegistration is what a test keeps of a REGISTER success.
type u2fRegistration struct {
	req  *ctap1.RegisterRequest
	resp *ctap1.RegisterResponse
	key  *ctap2.COSEKey
}

// u2fRegister registers over HandleMsg for rpID and checks the answer: its signature,
// the fido-u2f attestation built from it, and that the key handle is a sealed ID.
func u2fRegister(t testing.TB, a *Authenticator, rpID string) *u2fRegistration {
	t.Helper()
	req := &ctap1.RegisterRequest{Challenge: [32]byte(hashOf("register " + rpID)), Application: ctap2.RPIDHash(rpID)}
	data, sw := msg(t, a, hidAPDU(ctap1.InsRegister, 0, req.Marshal()))
	wantSW(t, "register", sw, ctap1.SWNoError)
	resp, err := ctap1.ParseRegisterResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Verify(req); err != nil {
		t.Fatalf("register signature: %v", err)
	}
	mc, err := resp.MakeCredentialResponse(req.Application)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ctap2.VerifyAttestation(mc.Fmt, mc.AttStmt, mc.AuthData, req.Challenge[:])
	if err != nil {
		t.Fatalf("fido-u2f attestation: %v", err)
	}
	if res.Format != ctap2.FormatFIDOU2F || res.Type != ctap2.AttestationBasic {
		t.Errorf("attestation %+v", res)
	}
	if len(resp.KeyHandle) != 63 || resp.KeyHandle[0] != credIDSealed {
		t.Errorf("key handle %x: want a 63-byte sealed ES256 credential ID", resp.KeyHandle)
	}
	_, key, err := mc.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	return &u2fRegistration{req: req, resp: resp, key: key}
}

// u2fAuthenticate sends AUTHENTICATE and, on success, checks the signature with key.
func u2fAuthenticate(t testing.TB, a *Authenticator, control ctap1.Control, rpID string, kh []byte, key *ctap2.COSEKey) (*ctap1.AuthenticateResponse, ctap1.StatusWord) {
	t.Helper()
	req := ctap1.AuthenticateRequest{Control: control, Challenge: [32]byte(hashOf("authenticate")), Application: ctap2.RPIDHash(rpID), KeyHandle: kh}
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	data, sw := msg(t, a, hidAPDU(ctap1.InsAuthenticate, byte(control), b))
	if sw != ctap1.SWNoError {
		return nil, sw
	}
	resp, err := ctap1.ParseAuthenticateResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	signed := ctap1.AuthenticateSignedData(req.Application, resp.UserPresence, resp.Counter, req.Challenge)
	if err := key.Verify(signed, resp.Signature); err != nil {
		t.Fatalf("authenticate signature: %v", err)
	}
	return resp, sw
}

func TestU2FVersion(t *testing.T) {
	a := newSoftkey(t, Config{})
	for _, apdu := range [][]byte{
		hidAPDU(ctap1.InsVersion, 0, nil), // 00 03 00 00 00 00 00 00 00
		{0, 3, 0, 0},                      // case 1
		{0, 3, 0, 0, 0},                   // case 2S (NFC)
		{0, 3, 0, 0, 0, 0, 0},             // case 2E
	} {
		data, sw := msg(t, a, apdu)
		wantSW(t, "version", sw, ctap1.SWNoError)
		if string(data) != "U2F_V2" {
			t.Errorf("%x: version %q", apdu, data)
		}
	}
	_, sw := msg(t, a, hidAPDU(ctap1.InsVersion, 0, []byte{1}))
	wantSW(t, "version with data", sw, ctap1.SWWrongLength)
}

func TestU2FBadCommands(t *testing.T) {
	a := newSoftkey(t, Config{})
	reg := bytes.Repeat([]byte{1}, 64)
	for _, tc := range []struct {
		name string
		apdu []byte
		want ctap1.StatusWord
	}{
		{"empty", nil, ctap1.SWWrongLength},
		{"three bytes", []byte{0, 3, 0}, ctap1.SWWrongLength},
		{"CLA 0x80", []byte{0x80, 3, 0, 0}, ctap1.SWClaNotSupported},
		{"chained CLA", append([]byte{0x10}, hidAPDU(ctap1.InsVersion, 0, nil)[1:]...), ctap1.SWClaNotSupported},
		{"unknown INS", hidAPDU(0x04, 0, nil), ctap1.SWInsNotSupported},
		{"vendor INS", hidAPDU(0xc0, 0, nil), ctap1.SWInsNotSupported},
		{"CTAP2 over NFC INS", []byte{0x00, 0x10, 0, 0, 1, 4}, ctap1.SWInsNotSupported},
		{"register 63 bytes", hidAPDU(ctap1.InsRegister, 0, reg[:63]), ctap1.SWWrongLength},
		{"register 65 bytes", hidAPDU(ctap1.InsRegister, 0, append(reg, 0)), ctap1.SWWrongLength},
		{"register without data", hidAPDU(ctap1.InsRegister, 0, nil), ctap1.SWWrongLength},
		{"register Lc mismatch", append([]byte{0, 1, 0, 0, 0, 0, 65}, reg...), ctap1.SWWrongLength},
		{"short register Lc mismatch", append([]byte{0, 1, 0, 0, 63}, reg...), ctap1.SWWrongLength},
		{"authenticate too short", hidAPDU(ctap1.InsAuthenticate, 3, reg), ctap1.SWWrongLength},
		{"authenticate L past the end", hidAPDU(ctap1.InsAuthenticate, 3, append(append(bytes.Clone(reg), 5), 1, 2)), ctap1.SWWrongLength},
		{"authenticate L short of the end", hidAPDU(ctap1.InsAuthenticate, 3, append(append(bytes.Clone(reg), 1), 1, 2)), ctap1.SWWrongLength},
		{"authenticate empty key handle", hidAPDU(ctap1.InsAuthenticate, 3, append(bytes.Clone(reg), 0)), ctap1.SWWrongData},
		{"authenticate unknown P1", hidAPDU(ctap1.InsAuthenticate, 0x05, append(append(bytes.Clone(reg), 1), 1)), ctap1.SWWrongData},
	} {
		_, sw := msg(t, a, tc.apdu)
		if sw != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, sw, tc.want)
		}
	}
}

func TestU2FRegisterShortAPDU(t *testing.T) {
	a := newSoftkey(t, Config{})
	req := ctap1.RegisterRequest{Challenge: [32]byte{1}, Application: ctap2.RPIDHash("nfc.example")}
	apdu, err := ctap1.ShortCommand(ctap1.InsRegister, 0x03, 0, req.Marshal()) // P1 0x03 as Chrome sent it
	if err != nil {
		t.Fatal(err)
	}
	data, sw := msg(t, a, apdu)
	wantSW(t, "short register", sw, ctap1.SWNoError)
	resp, err := ctap1.ParseRegisterResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Verify(&req); err != nil {
		t.Fatal(err)
	}
}

// TestU2FRegisteredCredentialInCTAP2 registers over U2F and asserts over CTAP2 with
// the key handle in the allowList (rpIdHash = application).
func TestU2FRegisteredCredentialInCTAP2(t *testing.T) {
	a := newSoftkey(t, Config{})
	reg := u2fRegister(t, a, "u2f.example")
	ga, ad := getAssertion(t, a, gaRequest("u2f.example", []byte("foreign"), reg.resp.KeyHandle))
	if !bytes.Equal(ga.Credential.ID, reg.resp.KeyHandle) || ad.Flags != ctap2.FlagUP {
		t.Errorf("assertion credential %x flags %v", ga.Credential.ID, ad.Flags)
	}
	if err := ga.Verify(reg.key, hashOf("ga u2f.example")); err != nil {
		t.Fatalf("CTAP2 assertion with the U2F key: %v", err)
	}
	// The handle is bound to its application.
	st, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("other.example", reg.resp.KeyHandle))
	wantStatus(t, "getAssertion for another RP", st, ctap2.ErrNoCredentials)
	// makeCredential with the handle in the excludeList is excluded.
	mc := mcRequest("u2f.example", []byte("u"))
	mc.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: reg.resp.KeyHandle}}
	st, _ = call(t, a, ctap2.CmdMakeCredential, mc)
	wantStatus(t, "makeCredential excluding the U2F handle", st, ctap2.ErrCredentialExcluded)
}

// TestCTAP2CredentialOverU2F makes a non-resident ES256 credential over CTAP2 and
// uses it with every AUTHENTICATE control byte.
func TestCTAP2CredentialOverU2F(t *testing.T) {
	a := newSoftkey(t, Config{})
	c := makeCredential(t, a, mcRequest("ctap2.example", []byte("u")))

	_, sw := u2fAuthenticate(t, a, ctap1.CheckOnly, "ctap2.example", c.id, c.key)
	wantSW(t, "check-only, own handle", sw, ctap1.SWConditionsNotSatisfied)
	_, sw = u2fAuthenticate(t, a, ctap1.CheckOnly, "other.example", c.id, c.key)
	wantSW(t, "check-only, wrong application", sw, ctap1.SWWrongData)

	last := c.auth.SignCount
	r, sw := u2fAuthenticate(t, a, ctap1.EnforcePresence, "ctap2.example", c.id, c.key)
	wantSW(t, "enforce presence", sw, ctap1.SWNoError)
	if r.UserPresence != 1 || r.Counter <= last {
		t.Errorf("UP %d counter %d after %d", r.UserPresence, r.Counter, last)
	}
	last = r.Counter
	r, sw = u2fAuthenticate(t, a, ctap1.DontEnforcePresence, "ctap2.example", c.id, c.key)
	wantSW(t, "don't enforce presence", sw, ctap1.SWNoError)
	if r.UserPresence != 0 || r.Counter <= last {
		t.Errorf("UP %d counter %d after %d", r.UserPresence, r.Counter, last)
	}
	// The counter is global: CTAP2 assertions continue from it.
	if n := signCountOf(t, a, "ctap2.example", c.id); n <= r.Counter {
		t.Errorf("CTAP2 counter %d after U2F %d", n, r.Counter)
	}

	_, sw = u2fAuthenticate(t, a, ctap1.EnforcePresence, "other.example", c.id, c.key)
	wantSW(t, "wrong application", sw, ctap1.SWWrongData)
	for _, bit := range []int{0, 8, 100, 8*len(c.id) - 1} {
		_, sw = u2fAuthenticate(t, a, ctap1.EnforcePresence, "ctap2.example", flip(c.id, bit), c.key)
		wantSW(t, "tampered key handle", sw, ctap1.SWWrongData)
		_, sw = u2fAuthenticate(t, a, ctap1.CheckOnly, "ctap2.example", flip(c.id, bit), c.key)
		wantSW(t, "check-only, tampered key handle", sw, ctap1.SWWrongData)
	}
	_, sw = u2fAuthenticate(t, a, ctap1.EnforcePresence, "ctap2.example", c.id[:40], c.key)
	wantSW(t, "truncated key handle", sw, ctap1.SWWrongData)
}

func TestU2FCounterIncreases(t *testing.T) {
	a := newSoftkey(t, Config{})
	reg := u2fRegister(t, a, "count.example")
	var last uint32
	for i := range 5 {
		control := ctap1.EnforcePresence
		if i%2 == 1 {
			control = ctap1.DontEnforcePresence
		}
		r, sw := u2fAuthenticate(t, a, control, "count.example", reg.resp.KeyHandle, reg.key)
		wantSW(t, "authenticate", sw, ctap1.SWNoError)
		if r.Counter <= last {
			t.Fatalf("counter %d after %d", r.Counter, last)
		}
		last = r.Counter
	}
}

// TestU2FOnlyES256 keeps credentials U2F cannot use invisible to it: other algorithms,
// and resident credentials that need UV (credProtect 3). Resident ES256 ones work.
func TestU2FOnlyES256(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, st, Config{})
	for _, alg := range []ctap2.COSEAlgorithm{ctap2.AlgEdDSA, ctap2.AlgES384} {
		c := makeCredential(t, a, mcRequest("alg.example", []byte("u"), alg))
		_, sw := u2fAuthenticate(t, a, ctap1.CheckOnly, "alg.example", c.id, c.key)
		wantSW(t, alg.String()+" check-only", sw, ctap1.SWWrongData)
		_, sw = u2fAuthenticate(t, a, ctap1.EnforcePresence, "alg.example", c.id, c.key)
		wantSW(t, alg.String()+" authenticate", sw, ctap1.SWWrongData)
	}
	res := makeCredential(t, a, residentRequest("rk.example", []byte("u")))
	_, sw := u2fAuthenticate(t, a, ctap1.EnforcePresence, "rk.example", res.id, res.key)
	wantSW(t, "resident ES256", sw, ctap1.SWNoError)

	stored, err := st.Credential(res.id)
	if err != nil {
		t.Fatal(err)
	}
	stored.CredProtect = 3
	if err := st.PutCredential(stored); err != nil {
		t.Fatal(err)
	}
	for _, control := range []ctap1.Control{ctap1.CheckOnly, ctap1.EnforcePresence, ctap1.DontEnforcePresence} {
		_, sw = u2fAuthenticate(t, a, control, "rk.example", res.id, res.key)
		wantSW(t, "credProtect 3 "+control.String(), sw, ctap1.SWWrongData)
	}
}

func TestU2FPresenceDenied(t *testing.T) {
	a := newSoftkey(t, Config{Presence: PresenceDeny})
	req := ctap1.RegisterRequest{Application: ctap2.RPIDHash("deny.example")}
	_, sw := msg(t, a, hidAPDU(ctap1.InsRegister, 0, req.Marshal()))
	wantSW(t, "register", sw, ctap1.SWConditionsNotSatisfied)

	// A credential made while presence was granted: signing needs presence, checking
	// and don't-enforce do not.
	c := makeCredential(t, newSoftkeyOn(t, shared(a.st), Config{}), mcRequest("deny.example", []byte("u")))
	_, sw = u2fAuthenticate(t, a, ctap1.EnforcePresence, "deny.example", c.id, c.key)
	wantSW(t, "enforce presence", sw, ctap1.SWConditionsNotSatisfied)
	_, sw = u2fAuthenticate(t, a, ctap1.CheckOnly, "deny.example", c.id, c.key)
	wantSW(t, "check-only", sw, ctap1.SWConditionsNotSatisfied)
	_, sw = u2fAuthenticate(t, a, ctap1.DontEnforcePresence, "deny.example", c.id, c.key)
	wantSW(t, "don't enforce", sw, ctap1.SWNoError)
}

// TestU2FPresenceFunc: a U2F request is answered 0x6985 at once while the touch is
// asked for in the background; the repeat after consent succeeds and consumes it.
func TestU2FPresenceFunc(t *testing.T) {
	answers := make(chan bool)
	var asked atomic.Int32
	a := newSoftkey(t, Config{PresenceFunc: func(ctx context.Context, rpID string) (bool, error) {
		asked.Add(1)
		select {
		case ok := <-answers:
			return ok, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}})
	req := ctap1.RegisterRequest{Application: ctap2.RPIDHash("touch.example")}
	register := hidAPDU(ctap1.InsRegister, 0, req.Marshal())

	start := time.Now()
	for range 3 {
		_, sw := msg(t, a, register)
		wantSW(t, "register before the touch", sw, ctap1.SWConditionsNotSatisfied)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("waiting requests took %v: U2F must answer at once", d)
	}
	answers <- true
	waitSW(t, a, register, ctap1.SWNoError)
	if n := asked.Load(); n != 1 {
		t.Errorf("presence asked %d times, want once", n)
	}
	// The touch was used up: the next request asks again.
	_, sw := msg(t, a, register)
	wantSW(t, "register after the touch", sw, ctap1.SWConditionsNotSatisfied)
	answers <- false
	time.Sleep(50 * time.Millisecond)
	for range 3 {
		_, sw = msg(t, a, register)
		wantSW(t, "register after a refusal", sw, ctap1.SWConditionsNotSatisfied)
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("presence asked %d times, want twice (a refusal stands for a while)", n)
	}

	// Once the refusal has expired, a request asks again.
	a.u2fState.mu.Lock()
	a.u2fState.window = 200 * time.Millisecond
	a.u2fState.mu.Unlock()
	time.Sleep(250 * time.Millisecond)
	_, sw = msg(t, a, register)
	wantSW(t, "register after the refusal expired", sw, ctap1.SWConditionsNotSatisfied)
	answers <- true
	waitSW(t, a, register, ctap1.SWNoError)
}

// waitSW repeats apdu every 10 ms until it gets want, as a host polls.
func waitSW(t testing.TB, a *Authenticator, apdu []byte, want ctap1.StatusWord) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, sw := msg(t, a, apdu)
		if sw == want {
			return data
		}
		if sw != ctap1.SWConditionsNotSatisfied || time.Now().After(deadline) {
			t.Fatalf("%v, want %v", sw, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestU2FAttestationCertificate(t *testing.T) {
	st := persistentStore()
	now := epoch
	a := newSoftkeyOn(t, st, Config{Now: func() time.Time { return now }})
	r1 := u2fRegister(t, a, "att.example")
	r2 := u2fRegister(t, a, "att2.example")
	if !bytes.Equal(r1.resp.Certificate, r2.resp.Certificate) {
		t.Error("two registrations carry different certificates")
	}
	cert, err := x509.ParseCertificate(r1.resp.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("certificate key %T", cert.PublicKey)
	}
	if cert.IsCA || cert.Subject.CommonName != "ctapkit softkey U2F attestation" || cert.NotAfter.Year() != 9999 {
		t.Errorf("certificate %v, CA %v, not after %v", cert.Subject, cert.IsCA, cert.NotAfter)
	}

	// The same state after a restart: the same certificate, derived again.
	a.Close()
	b := newSoftkeyOn(t, st, Config{Now: func() time.Time { return now }})
	if r := u2fRegister(t, b, "att.example"); !bytes.Equal(r.resp.Certificate, r1.resp.Certificate) {
		t.Error("certificate changed across a restart")
	}
	// Another softkey has another certificate, and reset replaces it.
	other := u2fRegister(t, newSoftkey(t, Config{}), "att.example")
	if bytes.Equal(other.resp.Certificate, r1.resp.Certificate) {
		t.Error("two softkeys share a certificate")
	}
	if err := b.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := u2fRegister(t, b, "att.example"); bytes.Equal(r.resp.Certificate, r1.resp.Certificate) {
		t.Error("reset kept the certificate")
	}
	// Reset also invalidated the handles registered before.
	_, sw := u2fAuthenticate(t, b, ctap1.CheckOnly, "att.example", r1.resp.KeyHandle, r1.key)
	wantSW(t, "handle from before reset", sw, ctap1.SWWrongData)
}

func TestU2FBatchAttestation(t *testing.T) {
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory(store.Meta{})
	ca := newBatchCA(t, st.Meta().AAGUID, leafKey)
	a := newSoftkeyOn(t, st, Config{Attestation: AttestationBatch, BatchKey: leafKey, BatchCerts: [][]byte{ca.leafDER, ca.caDER}})
	if r := u2fRegister(t, a, "batch.example"); !bytes.Equal(r.resp.Certificate, ca.leafDER) {
		t.Error("U2F attestation does not use the P-256 batch certificate")
	}
}

// TestU2FEndsAssertionSequence: HandleMsg takes the command lock and, like any other
// command, ends a getNextAssertion sequence.
func TestU2FEndsAssertionSequence(t *testing.T) {
	a := newSoftkey(t, Config{})
	makeCredential(t, a, residentRequest("seq.example", []byte("u1")))
	makeCredential(t, a, residentRequest("seq.example", []byte("u2")))
	ga, _ := getAssertion(t, a, gaRequest("seq.example"))
	if ga.NumberOfCredentials != 2 {
		t.Fatalf("numberOfCredentials %d", ga.NumberOfCredentials)
	}
	_, sw := msg(t, a, hidAPDU(ctap1.InsVersion, 0, nil))
	wantSW(t, "version", sw, ctap1.SWNoError)
	st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion after a U2F message", st, ctap2.ErrNotAllowed)
}

// TestU2FOffWithAlwaysUV: U2F cannot verify the user, so alwaysUv switches it off.
func TestU2FOffWithAlwaysUV(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, st, Config{})
	c := makeCredential(t, a, mcRequest("uv.example", []byte("u")))
	s, err := st.Settings()
	if err != nil {
		t.Fatal(err)
	}
	s.AlwaysUV = true
	if err := st.SetSettings(s); err != nil {
		t.Fatal(err)
	}
	_, sw := msg(t, a, hidAPDU(ctap1.InsVersion, 0, nil))
	wantSW(t, "version with alwaysUv", sw, ctap1.SWInsNotSupported)
	_, sw = u2fAuthenticate(t, a, ctap1.EnforcePresence, "uv.example", c.id, c.key)
	wantSW(t, "authenticate with alwaysUv", sw, ctap1.SWInsNotSupported)
	req := ctap1.RegisterRequest{Application: ctap2.RPIDHash("uv.example")}
	_, sw = msg(t, a, hidAPDU(ctap1.InsRegister, 0, req.Marshal()))
	wantSW(t, "register with alwaysUv", sw, ctap1.SWInsNotSupported)
}

func TestU2FAfterClose(t *testing.T) {
	a := newSoftkey(t, Config{})
	a.Close()
	_, sw := msg(t, a, hidAPDU(ctap1.InsVersion, 0, nil))
	wantSW(t, "version after Close", sw, ctap1.SWUnknown)
}

// TestU2FSeedDeterministic: in seed mode the whole REGISTER answer is reproducible.
func TestU2FSeedDeterministic(t *testing.T) {
	meta, err := store.NewMeta(bytes.NewReader(bytes.Repeat([]byte{7}, 64)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var replies [][]byte
	for range 2 {
		a := newSoftkeyOn(t, store.NewMemory(meta), Config{Seed: []byte("u2f")})
		req := ctap1.RegisterRequest{Application: ctap2.RPIDHash("seed.example")}
		data, sw := msg(t, a, hidAPDU(ctap1.InsRegister, 0, req.Marshal()))
		wantSW(t, "register", sw, ctap1.SWNoError)
		replies = append(replies, data)
	}
	if !bytes.Equal(replies[0], replies[1]) {
		t.Error("seeded softkeys answer REGISTER differently")
	}
}

// FuzzHandleMsg feeds arbitrary APDUs to a softkey. Property: no panic; every reply
// is data || SW with data only for 0x9000; successes are genuine (VERSION is U2F_V2,
// REGISTER answers verify, AUTHENTICATE answers parse with UP matching P1).
func FuzzHandleMsg(f *testing.F) {
	a := newFuzzSoftkey(f)
	made, err := a.MakeCredential(context.Background(), mcRequest("a.example", []byte("seed")))
	if err != nil {
		f.Fatal(err)
	}
	sealedID, _, err := made.CredentialKey()
	if err != nil {
		f.Fatal(err)
	}
	a.Close()
	app := ctap2.RPIDHash("a.example")
	auth := func(p1 byte, kh []byte) []byte {
		b, _ := (&ctap1.AuthenticateRequest{Application: app, KeyHandle: kh}).Marshal()
		return hidAPDU(ctap1.InsAuthenticate, p1, b)
	}
	f.Add(hidAPDU(ctap1.InsVersion, 0, nil))
	f.Add([]byte{0, 3, 0, 0, 0})
	f.Add(hidAPDU(ctap1.InsRegister, 0, append(make([]byte, 32), app[:]...)))
	for _, p1 := range []byte{3, 7, 8, 5} {
		f.Add(auth(p1, sealedID))
	}
	f.Add(auth(3, fuzzFixture().residents[0].ID))
	f.Add(auth(3, fuzzFixture().residents[1].ID))
	f.Add([]byte{0x80, 1, 0, 0})
	f.Fuzz(func(t *testing.T, apdu []byte) {
		a := newFuzzSoftkey(t)
		defer a.Close()
		reply := a.HandleMsg(context.Background(), apdu, nil)
		data, sw, err := ctap1.ParseResponse(reply)
		if err != nil {
			t.Fatalf("%x: reply %x has no status word", apdu, reply)
		}
		if sw != ctap1.SWNoError {
			if len(data) != 0 {
				t.Fatalf("%x: %v with data", apdu, sw)
			}
			if !slices.Contains([]ctap1.StatusWord{ctap1.SWWrongLength, ctap1.SWClaNotSupported, ctap1.SWInsNotSupported,
				ctap1.SWWrongData, ctap1.SWConditionsNotSatisfied}, sw) {
				t.Fatalf("%x: unexpected %v", apdu, sw)
			}
			return
		}
		cmd, err := ctap1.ParseAPDU(apdu)
		if err != nil {
			t.Fatalf("%x: success for an APDU that does not parse", apdu)
		}
		switch cmd.INS {
		case ctap1.InsVersion:
			if string(data) != ctap1.Version {
				t.Fatalf("version %q", data)
			}
		case ctap1.InsRegister:
			req, err := ctap1.ParseRegisterRequest(cmd.Data)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ctap1.ParseRegisterResponse(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := resp.Verify(req); err != nil {
				t.Fatal(err)
			}
		case ctap1.InsAuthenticate:
			resp, err := ctap1.ParseAuthenticateResponse(data)
			if err != nil {
				t.Fatal(err)
			}
			if want := cmd.P1 == byte(ctap1.EnforcePresence); (resp.UserPresence == 1) != want {
				t.Fatalf("P1 %02x answered with UP %d", cmd.P1, resp.UserPresence)
			}
		default:
			t.Fatalf("success for INS %02x", cmd.INS)
		}
	})
}
