package softkey

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
)

// faultCall sends cmd || CBOR(params) through HandleCBOR without call's checks (a
// faulty softkey's replies break them on purpose).
func faultCall(t testing.TB, ctx context.Context, a *Authenticator, cmd ctap2.Command, params any) (ctap2.StatusError, []byte) {
	t.Helper()
	msg := []byte{byte(cmd)}
	if params != nil {
		msg = append(msg, mustMarshal(t, params)...)
	}
	reply := a.HandleCBOR(ctx, msg, nil)
	if len(reply) == 0 {
		t.Fatalf("%v: empty reply", cmd)
	}
	return ctap2.StatusError(reply[0]), reply[1:]
}

func TestFaultsZeroValue(t *testing.T) {
	a := newSoftkey(t, Config{Faults: &Faults{}})
	c := makeCredential(t, a, mcRequest("z.example", []byte("u")))
	resp, _ := getAssertion(t, a, gaRequest("z.example", c.id))
	if err := resp.Verify(c.key, hashOf("ga z.example")); err != nil {
		t.Fatalf("assertion of a softkey with zero faults: %v", err)
	}
	if a, b := signCountOf(t, a, "z.example", c.id), signCountOf(t, a, "z.example", c.id); b <= a {
		t.Fatalf("counter %d then %d with zero faults", a, b)
	}
}

func TestFaultForceStatus(t *testing.T) {
	a := newSoftkey(t, Config{Faults: &Faults{ForceStatus: map[ctap2.Command]ctap2.StatusError{
		ctap2.CmdMakeCredential: ctap2.ErrOperationDenied,
	}}})
	st, body := faultCall(t, t.Context(), a, ctap2.CmdMakeCredential, residentRequest("f.example", []byte("u")))
	if st != ctap2.ErrOperationDenied || len(body) != 0 {
		t.Fatalf("forced makeCredential: %v %x", st, body)
	}
	if n, _ := a.st.CountCredentials(); n != 0 {
		t.Fatalf("a forced status ran the command: %d credentials stored", n)
	}
	info(t, a) // other commands are untouched
}

func TestFaultWrongStatus(t *testing.T) {
	a := newSoftkey(t, Config{Faults: &Faults{WrongStatus: map[ctap2.StatusError]ctap2.StatusError{
		ctap2.ErrUnsupportedOption: ctap2.ErrInvalidOption,
	}}})
	req := gaRequest("w.example")
	req.Options = &ctap2.Options{RK: ctap2.Bool(true)}
	st, _ := faultCall(t, t.Context(), a, ctap2.CmdGetAssertion, req)
	wantStatus(t, "getAssertion with rk, wrong status", st, ctap2.ErrInvalidOption)
	st, _ = faultCall(t, t.Context(), a, ctap2.CmdGetAssertion, gaRequest("w.example"))
	wantStatus(t, "an unmapped status", st, ctap2.ErrNoCredentials)
}

func TestFaultDropResponse(t *testing.T) {
	a := newSoftkey(t, Config{Faults: &Faults{DropResponse: map[ctap2.Command]bool{ctap2.CmdMakeCredential: true}}})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	st, _ := faultCall(t, ctx, a, ctap2.CmdMakeCredential, residentRequest("d.example", []byte("u")))
	wantStatus(t, "dropped makeCredential after the host gave up", st, ctap2.ErrKeepaliveCancel)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("the dropped reply came after %v, before the host gave up", d)
	}
	if n, _ := a.st.CountCredentials(); n != 1 {
		t.Fatalf("%d credentials stored, want 1: a dropped reply still runs the command", n)
	}
	info(t, a)
}

func TestFaultDelay(t *testing.T) {
	const delay = 50 * time.Millisecond
	a := newSoftkey(t, Config{Faults: &Faults{Delay: delay}})
	start := time.Now()
	info(t, a)
	if d := time.Since(start); d < delay {
		t.Fatalf("getInfo answered after %v, want at least %v", d, delay)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	st, _ := faultCall(t, ctx, a, ctap2.CmdGetInfo, nil)
	wantStatus(t, "cancelled during the delay", st, ctap2.ErrKeepaliveCancel)
}

func TestFaultNonCanonicalCBOR(t *testing.T) {
	faults := &Faults{NonCanonicalCBOR: true}
	a := newSoftkey(t, Config{Faults: faults})
	st, body := faultCall(t, t.Context(), a, ctap2.CmdGetInfo, nil)
	wantStatus(t, "getInfo", st, ctap2.StatusOK)
	var nc *ctap2.NonCanonicalError
	if err := ctap2.CheckCanonical(body); !errors.As(err, &nc) {
		t.Fatalf("getInfo reply %x: CheckCanonical %v, want a NonCanonicalError", body, err)
	}
	faults.NonCanonicalCBOR = false
	if _, want := faultCall(t, t.Context(), a, ctap2.CmdGetInfo, nil); !bytes.Equal(nc.Canonical, want) {
		t.Fatalf("the non-canonical getInfo means %x, want %x", nc.Canonical, want)
	}
	// Every shape: one entry, two, none; something that is not a map is left alone.
	for _, v := range []any{map[int]int{1: 2}, map[int]string{1: "a", 2: "b", 3: "c"}, map[int]int{}} {
		canon := mustMarshal(t, v)
		re := nonCanonical(canon)
		if !errors.Is(ctap2.CheckCanonical(re), ctap2.ErrNonCanonical) {
			t.Errorf("%x re-encoded as %x: still canonical", canon, re)
		}
		var back map[int]any
		if err := ctap2.Unmarshal(re, &back); err != nil || len(back) != reflect.ValueOf(v).Len() {
			t.Errorf("%x re-encoded as %x: decodes to %v, %v", canon, re, back, err)
		}
	}
	if b := []byte{0x82, 1, 2}; !bytes.Equal(nonCanonical(b), b) {
		t.Errorf("an array was changed")
	}
}

func TestFaultCorruptSignature(t *testing.T) {
	a := newSoftkey(t, Config{Faults: &Faults{CorruptSignature: true}})
	for _, alg := range []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA, ctap2.AlgES384} {
		c := makeCredential(t, a, mcRequest("s.example", []byte("u"), alg)) // attestation untouched
		resp, _ := getAssertion(t, a, gaRequest("s.example", c.id))
		if err := resp.Verify(c.key, hashOf("ga s.example")); err == nil {
			t.Errorf("%v: the corrupted assertion signature verifies", alg)
		}
	}
	reg := u2fRegister(t, a, "u2f.example")
	req := ctap1.AuthenticateRequest{Control: ctap1.EnforcePresence, Challenge: [32]byte(hashOf("c")), Application: ctap2.RPIDHash("u2f.example"), KeyHandle: reg.resp.KeyHandle}
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	data, sw := msg(t, a, hidAPDU(ctap1.InsAuthenticate, byte(req.Control), b))
	wantSW(t, "authenticate", sw, ctap1.SWNoError)
	resp, err := ctap1.ParseAuthenticateResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	if reg.key.Verify(ctap1.AuthenticateSignedData(req.Application, resp.UserPresence, resp.Counter, req.Challenge), resp.Signature) == nil {
		t.Error("the corrupted U2F authenticate signature verifies")
	}
}

func TestFaultCorruptAttestation(t *testing.T) {
	a := newSoftkey(t, Config{Faults: &Faults{CorruptAttestation: true}})
	req := mcRequest("att.example", []byte("u"))
	st, body := faultCall(t, t.Context(), a, ctap2.CmdMakeCredential, req)
	wantStatus(t, "makeCredential", st, ctap2.StatusOK)
	var resp ctap2.MakeCredentialResponse
	if err := ctap2.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	if _, err := resp.VerifyAttestation(req.ClientDataHash); err == nil {
		t.Fatal("the corrupted attestation verifies")
	}
	// Assertions are untouched.
	id, key, err := resp.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	ga, _ := getAssertion(t, a, gaRequest("att.example", id))
	if err := ga.Verify(key, hashOf("ga att.example")); err != nil {
		t.Fatalf("assertion: %v", err)
	}
	ureq := &ctap1.RegisterRequest{Challenge: [32]byte(hashOf("r")), Application: ctap2.RPIDHash("u2f.example")}
	data, sw := msg(t, a, hidAPDU(ctap1.InsRegister, 0, ureq.Marshal()))
	wantSW(t, "register", sw, ctap1.SWNoError)
	ureg, err := ctap1.ParseRegisterResponse(data)
	if err != nil {
		t.Fatal(err)
	}
	if ureg.Verify(ureq) == nil {
		t.Fatal("the corrupted U2F register signature verifies")
	}
}

func TestFaultFrozenCounter(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{Faults: &Faults{FrozenCounter: true}})
	c := makeCredential(t, a, mcRequest("c.example", []byte("u")))
	first := signCountOf(t, a, "c.example", c.id)
	if first == 0 {
		t.Fatal("a frozen counter at 0 is a key without a counter, which is allowed")
	}
	for range 3 {
		if n := signCountOf(t, a, "c.example", c.id); n != first {
			t.Fatalf("frozen counter moved from %d to %d", first, n)
		}
	}
	a.Close()
	b := newSoftkeyOn(t, st, Config{Faults: &Faults{FrozenCounter: true}})
	if n := signCountOf(t, b, "c.example", c.id); n != first {
		t.Fatalf("after a restart the frozen counter is %d, want %d", n, first)
	}
}

func TestFaultIgnoreCredProtect(t *testing.T) {
	a := credProtectSoftkey(t, Config{Faults: &Faults{IgnoreCredProtect: true}})
	c := makeCredential(t, a, withExt(uvMC(residentRequest("p3.example", []byte("u"))), extMap(t, "credProtect", 3)))
	resp, ad := getAssertion(t, a, gaRequest("p3.example"))
	if !bytes.Equal(resp.Credential.ID, c.id) || ad.Flags.Has(ctap2.FlagUV) {
		t.Fatalf("discovery without UV: credential %x, flags %v; want the level-3 one without UV", resp.Credential.ID, ad.Flags)
	}
	getAssertion(t, a, gaRequest("p3.example", c.id))
	ex := mcRequest("p3.example", []byte("v"))
	ex.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: c.id}}
	st, _ := call(t, a, ctap2.CmdMakeCredential, ex)
	wantStatus(t, "excludeList without UV", st, ctap2.ErrCredentialExcluded)
}

func TestFaultIgnorePermissions(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		f := newPINFixture(t, v, Config{Faults: &Faults{IgnorePermissions: true}})
		ga := f.h.mustToken("1234", permGA, "a.example")
		wantStatus(t, "makeCredential with a ga token", f.mc(t, "a.example", ga), ctap2.StatusOK)
		ga = f.h.mustToken("1234", permGA, "a.example")
		wantStatus(t, "getAssertion for another RP", f.ga(t, "b.example", ga, false), ctap2.StatusOK)
		st, _ := cmSend(t, f.a, cmReq(t, ctap2.CredMgmtGetCredsMetadata, nil, f.h.mustToken("1234", permGA, "")))
		wantStatus(t, "credential metadata with a ga token", st, ctap2.StatusOK)
		// A wrong MAC is still refused: the token itself is checked.
		bad := f.h.mustToken("1234", permGA, "a.example")
		bad.Token = flip(bad.Token, 0)
		wantStatus(t, "a wrong token", f.ga(t, "a.example", bad, false), ctap2.ErrPINAuthInvalid)
	})
}

func TestFaultSlowCancel(t *testing.T) {
	const late = 150 * time.Millisecond
	for _, slow := range []time.Duration{0, late} {
		rec := &presenceRecorder{started: make(chan struct{}), answer: func(ctx context.Context) (bool, error) {
			<-ctx.Done()
			return false, ctx.Err()
		}}
		a := newSoftkey(t, Config{PresenceFunc: rec.ask, Faults: &Faults{SlowCancel: slow}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan ctap2.StatusError, 1)
		go func() {
			st, _ := faultCall(t, ctx, a, ctap2.CmdMakeCredential, mcRequest("c.example", []byte("u")))
			done <- st
		}()
		<-rec.started
		start := time.Now()
		cancel()
		st := <-done
		d := time.Since(start)
		wantStatus(t, "cancelled makeCredential", st, ctap2.ErrKeepaliveCancel)
		if slow == 0 && d >= late {
			t.Errorf("without the fault, cancel took %v", d)
		}
		if slow > 0 && d < slow {
			t.Errorf("SlowCancel %v: cancel took only %v", slow, d)
		}
	}
}
