package softkey

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

func TestPresenceDeny(t *testing.T) {
	a := newSoftkey(t, Config{Presence: PresenceDeny})
	c := makeCredential(t, newSoftkeyOn(t, shared(a.st), Config{}), residentRequest("a.example", []byte("u")))

	st, _ := call(t, a, ctap2.CmdMakeCredential, mcRequest("a.example", []byte("v")))
	wantStatus(t, "makeCredential, touch declined", st, ctap2.ErrOperationDenied)
	st, _ = call(t, a, ctap2.CmdMakeCredential, residentRequest("a.example", []byte("v")))
	wantStatus(t, "resident makeCredential, touch declined", st, ctap2.ErrOperationDenied)
	if n, _ := a.st.CountCredentials(); n != 1 {
		t.Errorf("%d credentials stored, want 1: a declined makeCredential stored one", n)
	}
	for _, req := range []*ctap2.GetAssertionRequest{gaRequest("a.example", c.id), gaRequest("a.example")} {
		st, _ = call(t, a, ctap2.CmdGetAssertion, req)
		wantStatus(t, "getAssertion, touch declined", st, ctap2.ErrOperationDenied)
		req.Options = &ctap2.Options{UP: ctap2.Bool(true)}
		st, _ = call(t, a, ctap2.CmdGetAssertion, req)
		wantStatus(t, "getAssertion up=true, touch declined", st, ctap2.ErrOperationDenied)

		// up=false is the silent probe: no touch, UP clear, still a valid signature.
		req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
		resp, ad := getAssertion(t, a, req)
		if ad.Flags != 0 {
			t.Errorf("silent assertion flags %v, want none", ad.Flags)
		}
		if err := resp.Verify(c.key, req.ClientDataHash); err != nil {
			t.Errorf("silent assertion: %v", err)
		}
	}
	// Checks that come before the touch still win.
	st, _ = call(t, a, ctap2.CmdGetAssertion, gaRequest("b.example", c.id))
	wantStatus(t, "getAssertion without credentials, presence denied", st, ctap2.ErrNoCredentials)
	req := mcRequest("a.example", []byte("v"))
	req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
	st, _ = call(t, a, ctap2.CmdMakeCredential, req)
	wantStatus(t, "makeCredential up=false, presence denied", st, ctap2.ErrInvalidOption)
}

// presenceRecorder is a PresenceFunc that records what it was asked and answers
// from a channel (or at once with answer).
type presenceRecorder struct {
	mu       sync.Mutex
	rpIDs    []string
	statuses *[]byte // the status callback's log, as seen when the touch was asked
	seen     [][]byte
	started  chan struct{} // closed when the first touch is asked
	once     sync.Once
	answer   func(ctx context.Context) (bool, error)
}

func (p *presenceRecorder) ask(ctx context.Context, rpID string) (bool, error) {
	p.mu.Lock()
	p.rpIDs = append(p.rpIDs, rpID)
	if p.statuses != nil {
		p.seen = append(p.seen, append([]byte(nil), *p.statuses...))
	}
	p.mu.Unlock()
	if p.started != nil {
		p.once.Do(func() { close(p.started) })
	}
	return p.answer(ctx)
}

func TestPresenceFunc(t *testing.T) {
	var statuses []byte
	rec := &presenceRecorder{statuses: &statuses, answer: func(context.Context) (bool, error) { return true, nil }}
	a := newSoftkey(t, Config{PresenceFunc: rec.ask, Presence: "prompt"})
	status := func(b byte) { statuses = append(statuses, b) }
	msg := func(cmd ctap2.Command, v any) []byte {
		b, err := ctap2.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte{byte(cmd)}, b...)
	}

	st, body := callCtx(t, t.Context(), a, msg(ctap2.CmdMakeCredential, mcRequest("a.example", []byte("u"))), status)
	wantStatus(t, "makeCredential", st, ctap2.StatusOK)
	var resp ctap2.MakeCredentialResponse
	if err := ctap2.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	id, _, err := resp.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	st, _ = callCtx(t, t.Context(), a, msg(ctap2.CmdGetAssertion, gaRequest("a.example", id)), status)
	wantStatus(t, "getAssertion", st, ctap2.StatusOK)
	silent := gaRequest("a.example", id)
	silent.Options = &ctap2.Options{UP: ctap2.Bool(false)}
	st, _ = callCtx(t, t.Context(), a, msg(ctap2.CmdGetAssertion, silent), status)
	wantStatus(t, "getAssertion up=false", st, ctap2.StatusOK)

	if want := []string{"a.example", "a.example"}; len(rec.rpIDs) != 2 || rec.rpIDs[0] != want[0] || rec.rpIDs[1] != want[1] {
		t.Errorf("touches asked for %q, want %q (none for up=false)", rec.rpIDs, want)
	}
	for i, seen := range rec.seen {
		if len(seen) != i+1 || seen[i] != statusUPNeeded {
			t.Errorf("touch %d: status callback had reported %x before the wait, want a new 0x02", i, seen)
		}
	}
	if len(statuses) != 2 {
		t.Errorf("status callback reported %x, want one 0x02 per touch", statuses)
	}
}

func TestPresenceCancel(t *testing.T) {
	rec := &presenceRecorder{started: make(chan struct{}), answer: func(ctx context.Context) (bool, error) {
		<-ctx.Done()
		return false, ctx.Err()
	}}
	a := newSoftkey(t, Config{PresenceFunc: rec.ask})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := ctap2.Marshal(mcRequest("a.example", []byte("u")))
	msg := append([]byte{byte(ctap2.CmdMakeCredential)}, req...)
	done := make(chan []byte, 1)
	go func() { done <- a.HandleCBOR(ctx, msg, nil) }()
	<-rec.started
	start := time.Now()
	cancel()
	select {
	case reply := <-done:
		if len(reply) != 1 || ctap2.StatusError(reply[0]) != ctap2.ErrKeepaliveCancel {
			t.Errorf("cancelled makeCredential: reply %x, want 2d", reply)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("cancel took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("makeCredential still waiting 5 s after the host cancelled")
	}

	// A host that cancelled before the request arrived gets no touch prompt at all,
	// and the softkey is free for the next command.
	st, _ := callCtx(t, ctx, a, msg, nil)
	wantStatus(t, "makeCredential with a cancelled context", st, ctap2.ErrKeepaliveCancel)
	if len(rec.rpIDs) != 1 {
		t.Errorf("%d touch requests, want 1", len(rec.rpIDs))
	}
	b := newSoftkey(t, Config{})
	st, _ = callCtx(t, ctx, b, msg, nil)
	wantStatus(t, "auto presence with a cancelled context", st, ctap2.ErrKeepaliveCancel)
	callRaw(t, a, []byte{byte(ctap2.CmdGetInfo)})

	// Cancel beats EXCLUDED: the host is gone and gets no answer about the list.
	c := makeCredential(t, b, mcRequest("a.example", []byte("u")))
	ex := mcRequest("a.example", []byte("v"))
	ex.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: c.id}}
	st, _ = call(t, b, ctap2.CmdMakeCredential, ex)
	wantStatus(t, "excluded", st, ctap2.ErrCredentialExcluded)
	exMsg, _ := ctap2.Marshal(ex)
	st, _ = callCtx(t, ctx, b, append([]byte{byte(ctap2.CmdMakeCredential)}, exMsg...), nil)
	wantStatus(t, "excluded, host cancelled", st, ctap2.ErrKeepaliveCancel)
}

func TestPresenceTimeout(t *testing.T) {
	a := newSoftkey(t, Config{PresenceTimeout: 20 * time.Millisecond, PresenceFunc: func(ctx context.Context, _ string) (bool, error) {
		<-ctx.Done()
		return false, ctx.Err()
	}})
	start := time.Now()
	st, _ := call(t, a, ctap2.CmdMakeCredential, mcRequest("a.example", []byte("u")))
	wantStatus(t, "makeCredential, no touch", st, ctap2.ErrUserActionTimeout)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout of 20 ms took %v", d)
	}
	st, _ = call(t, a, ctap2.CmdSelection, nil)
	wantStatus(t, "selection, no touch", st, ctap2.ErrUserActionTimeout)
}

func TestPresenceFuncError(t *testing.T) {
	a := newSoftkey(t, Config{PresenceFunc: func(context.Context, string) (bool, error) {
		return true, errors.New("terminal went away")
	}})
	st, _ := call(t, a, ctap2.CmdMakeCredential, mcRequest("a.example", []byte("u")))
	wantStatus(t, "makeCredential, prompt failed", st, ctap2.ErrOperationDenied)
}

func TestNewConfig(t *testing.T) {
	p256Key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	// A batch key the softkey cannot sign statements with must fail New, not every
	// makeCredential with CTAP1_ERR_OTHER.
	p521Key, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"deny", Config{Presence: PresenceDeny}, true},
		{"unknown presence", Config{Presence: "prompt"}, false},
		{"unknown presence with a func", Config{Presence: "prompt", PresenceFunc: func(context.Context, string) (bool, error) { return true, nil }}, true},
		{"unknown attestation", Config{Attestation: "basic"}, false},
		{"batch without key", Config{Attestation: AttestationBatch}, false},
		{"batch with a P-256 key", Config{Attestation: AttestationBatch, BatchKey: p256Key, BatchCerts: [][]byte{{0x30}}}, true},
		{"batch with a P-521 key", Config{Attestation: AttestationBatch, BatchKey: p521Key, BatchCerts: [][]byte{{0x30}}}, false},
		{"no algorithms", Config{Algorithms: []ctap2.COSEAlgorithm{}}, true},
		{"RS256", Config{Algorithms: []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgRS256}}, false},
	} {
		a, err := New(store.NewMemory(store.Meta{}), tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: New error %v, want ok=%v", tc.name, err, tc.ok)
		}
		if a != nil {
			a.Close()
		}
	}
}
