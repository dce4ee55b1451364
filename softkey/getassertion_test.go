package softkey

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// TestCrossRP: a credential works only for the RP it was made for (CTAP 2.1
// §6.2.2 step 6), whether its ID is sealed or a resident handle.
func TestCrossRP(t *testing.T) {
	a := newSoftkey(t, Config{})
	sealed := makeCredential(t, a, mcRequest("a.example", []byte("u1")))
	resident := makeCredential(t, a, residentRequest("a.example", []byte("u2")))
	for _, c := range []struct {
		name string
		id   []byte
	}{{"sealed", sealed.id}, {"resident", resident.id}} {
		t.Run(c.name, func(t *testing.T) {
			signCountOf(t, a, "a.example", c.id) // usable where it belongs
			for _, rpID := range []string{"b.example", "A.example", "a.example.", "example"} {
				got, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest(rpID, c.id))
				wantStatus(t, "getAssertion for "+rpID, got, ctap2.ErrNoCredentials)
			}
		})
	}
	got, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("b.example"))
	wantStatus(t, "discoverable getAssertion for another RP", got, ctap2.ErrNoCredentials)
}

// TestTamperedCredentialID: every single-bit change of a credential ID makes it a
// stranger.
func TestTamperedCredentialID(t *testing.T) {
	a := newSoftkey(t, Config{})
	for _, alg := range []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA, ctap2.AlgES384} {
		for _, rk := range []bool{false, true} {
			req := mcRequest("a.example", []byte("u"+alg.String()), alg)
			if rk {
				req = residentRequest("a.example", []byte("u"+alg.String()), alg)
			}
			c := makeCredential(t, a, req)
			for bit := range len(c.id) * 8 {
				ga := gaRequest("a.example", flip(c.id, bit))
				ga.Options = &ctap2.Options{UP: ctap2.Bool(false)}
				if got, _ := call(t, a, ctap2.CmdGetAssertion, ga); got != ctap2.ErrNoCredentials {
					t.Fatalf("%v rk=%v ID with bit %d flipped: status %v, want %v", alg, rk, bit, got, ctap2.ErrNoCredentials)
				}
			}
			// Truncated and extended IDs are strangers too.
			for _, id := range [][]byte{c.id[:len(c.id)-1], append(bytes.Clone(c.id), 0), c.id[:1]} {
				if got, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("a.example", id)); got != ctap2.ErrNoCredentials {
					t.Fatalf("%v rk=%v ID of %d bytes: status %v, want %v", alg, rk, len(id), got, ctap2.ErrNoCredentials)
				}
			}
		}
	}
}

// TestAllowList: foreign IDs are ignored and a valid one is found wherever it
// stands in the list.
func TestAllowList(t *testing.T) {
	a := newSoftkey(t, Config{})
	other := newSoftkey(t, Config{}) // another authenticator's IDs are foreign too
	valid := makeCredential(t, a, mcRequest("a.example", []byte("u")))
	alien := makeCredential(t, other, mcRequest("a.example", []byte("u")))
	resident := makeCredential(t, a, residentRequest("a.example", []byte("r")))

	random := func(first byte, n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		b[0] = first
		return b
	}
	foreign := [][]byte{
		alien.id,
		random(credIDSealed, len(valid.id)),
		random(credIDResident, residentIDSize),
		random(0x00, 64),
		random(0xff, 16),
		{credIDSealed},
		random(credIDSealed, 129),
		random(credIDSealed, 1023),
	}
	got, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("a.example", foreign...))
	wantStatus(t, "only foreign IDs", got, ctap2.ErrNoCredentials)

	for _, want := range []*madeCredential{valid, resident} {
		for pos := 0; pos <= len(foreign); pos++ {
			ids := slices.Insert(slices.Clone(foreign), pos, want.id)
			req := gaRequest("a.example", ids...)
			resp, _ := getAssertion(t, a, req)
			if !bytes.Equal(resp.Credential.ID, want.id) {
				t.Fatalf("valid ID at %d: assertion by %x, want %x", pos, resp.Credential.ID, want.id)
			}
			if err := resp.Verify(want.key, req.ClientDataHash); err != nil {
				t.Fatalf("valid ID at %d: %v", pos, err)
			}
			if resp.NumberOfCredentials != 0 {
				t.Fatalf("numberOfCredentials %d with an allowList", resp.NumberOfCredentials)
			}
		}
	}

	// A descriptor of another type is not a public-key credential, whatever its ID.
	req := gaRequest("a.example")
	req.AllowList = []ctap2.CredentialDescriptor{{Type: "secret-key", ID: valid.id}}
	got, _ = call(t, a, ctap2.CmdGetAssertion, req)
	wantStatus(t, "valid ID as another type", got, ctap2.ErrNoCredentials)

	// With an allowList of several valid IDs there is no getNextAssertion.
	getAssertion(t, a, gaRequest("a.example", valid.id, resident.id))
	got, _ = call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion after an allowList", got, ctap2.ErrNotAllowed)
}

// makeAccounts makes n discoverable credentials for rpID, one second apart, and
// returns them oldest first.
func makeAccounts(t *testing.T, a *Authenticator, clock *fakeClock, rpID string, n int) []*madeCredential {
	t.Helper()
	var out []*madeCredential
	for i := range n {
		algs := []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA, ctap2.AlgES384}
		out = append(out, makeCredential(t, a, residentRequest(rpID, fmt.Appendf(nil, "user-%d", i), algs[i%3])))
		clock.Advance(time.Second)
	}
	return out
}

func TestDiscoverable(t *testing.T) {
	clock := newClock()
	a := newSoftkey(t, Config{Now: clock.Now})
	accounts := makeAccounts(t, a, clock, "a.example", 3)
	makeCredential(t, a, residentRequest("b.example", []byte("user-b")))
	makeCredential(t, a, mcRequest("a.example", []byte("user-sealed"))) // not discoverable

	req := gaRequest("a.example")
	st, body := call(t, a, ctap2.CmdGetAssertion, req)
	wantStatus(t, "getAssertion", st, ctap2.StatusOK)
	first, _ := decodeAssertion(t, body)
	if first.NumberOfCredentials != 3 {
		t.Fatalf("numberOfCredentials %d, want 3", first.NumberOfCredentials)
	}
	checkUserOnlyID(t, body)
	resps := []*ctap2.GetAssertionResponse{first}
	var counts []uint32
	for range 2 {
		st, body := call(t, a, ctap2.CmdGetNextAssertion, nil)
		wantStatus(t, "getNextAssertion", st, ctap2.StatusOK)
		resp, ad := decodeAssertion(t, body)
		if _, ok := rawMap[int](t, body)[5]; ok {
			t.Error("getNextAssertion reply has numberOfCredentials")
		}
		checkUserOnlyID(t, body)
		if !ad.Flags.Has(ctap2.FlagUP) {
			t.Error("getNextAssertion lost the UP flag of its getAssertion")
		}
		resps = append(resps, resp)
		counts = append(counts, ad.SignCount)
	}
	for i, resp := range resps {
		want := accounts[len(accounts)-1-i] // newest first
		if !bytes.Equal(resp.Credential.ID, want.id) {
			t.Errorf("assertion %d by %x, want %x (newest first)", i, resp.Credential.ID, want.id)
		}
		if resp.User == nil || !bytes.Equal(resp.User.ID, fmt.Appendf(nil, "user-%d", len(accounts)-1-i)) {
			t.Errorf("assertion %d user %+v", i, resp.User)
		}
		if err := resp.Verify(want.key, req.ClientDataHash); err != nil {
			t.Errorf("assertion %d: %v", i, err)
		}
	}
	if counts[1] <= counts[0] {
		t.Errorf("signCounts %v do not increase", counts)
	}
	st, _ = call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion past the last credential", st, ctap2.ErrNotAllowed)
	st, _ = call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion again", st, ctap2.ErrNotAllowed)
}

// checkUserOnlyID: without user verification the user entity carries the ID only
// (CTAP 2.1 §6.2.2 step 10).
func checkUserOnlyID(t *testing.T, body []byte) {
	t.Helper()
	user := rawMap[string](t, rawMap[int](t, body)[4])
	if len(user) != 1 || user["id"] == nil {
		t.Errorf("user entity has keys %v, want only id", slices.Sorted(maps.Keys(user)))
	}
}

func TestGetNextAssertionState(t *testing.T) {
	clock := newClock()
	a := newSoftkey(t, Config{Now: clock.Now})
	makeAccounts(t, a, clock, "a.example", 4)
	ga := func() {
		t.Helper()
		resp, _ := getAssertion(t, a, gaRequest("a.example"))
		if resp.NumberOfCredentials != 4 {
			t.Fatalf("numberOfCredentials %d, want 4", resp.NumberOfCredentials)
		}
	}

	st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion without getAssertion", st, ctap2.ErrNotAllowed)

	for _, other := range []struct {
		name string
		msg  []byte
	}{
		{"getInfo", []byte{byte(ctap2.CmdGetInfo)}},
		{"selection", []byte{byte(ctap2.CmdSelection)}},
		{"unknown command", []byte{0x55}},
		{"failed getAssertion", []byte{byte(ctap2.CmdGetAssertion), 0xa0}},
	} {
		ga()
		callRaw(t, a, other.msg)
		st, _ := call(t, a, ctap2.CmdGetNextAssertion, nil)
		wantStatus(t, "getNextAssertion after "+other.name, st, ctap2.ErrNotAllowed)
	}

	// The 30 s timer restarts with every getNextAssertion.
	ga()
	clock.Advance(29 * time.Second)
	getNextAssertion(t, a)
	clock.Advance(29 * time.Second)
	getNextAssertion(t, a)
	clock.Advance(31 * time.Second)
	st, _ = call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion after 31 s", st, ctap2.ErrNotAllowed)

	ga()
	clock.Advance(31 * time.Second)
	st, _ = call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "first getNextAssertion after 31 s", st, ctap2.ErrNotAllowed)
	clock.Advance(-31 * time.Second)
	st, _ = call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion once expired", st, ctap2.ErrNotAllowed)

	// The Go API keeps the same bookkeeping.
	ga()
	if _, err := a.Info(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetNextAssertion(t.Context()); err != ctap2.ErrNotAllowed {
		t.Errorf("GetNextAssertion after Info: %v, want %v", err, ctap2.ErrNotAllowed)
	}
}

func TestResidentReplace(t *testing.T) {
	a := newSoftkey(t, Config{})
	before := remaining(t, a)
	old := makeCredential(t, a, residentRequest("a.example", []byte("same")))
	req := residentRequest("a.example", []byte("same"), ctap2.AlgEdDSA)
	req.User.Name = "renamed"
	repl := makeCredential(t, a, req)
	makeCredential(t, a, residentRequest("b.example", []byte("same"))) // other RP: its own account

	if n, _ := a.st.CountCredentials(); n != 2 {
		t.Errorf("store holds %d credentials, want 2", n)
	}
	if got := remaining(t, a); got != before-2 {
		t.Errorf("remainingDiscoverableCredentials %d, want %d", got, before-2)
	}
	resp, _ := getAssertion(t, a, gaRequest("a.example"))
	if resp.NumberOfCredentials != 0 || !bytes.Equal(resp.Credential.ID, repl.id) {
		t.Errorf("discoverable assertion by %x (numberOfCredentials %d), want only %x", resp.Credential.ID, resp.NumberOfCredentials, repl.id)
	}
	st, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("a.example", old.id))
	wantStatus(t, "getAssertion with the replaced credential", st, ctap2.ErrNoCredentials)
}

func TestNoDiscoverableCredentials(t *testing.T) {
	a := newSoftkey(t, Config{})
	st, _ := call(t, a, ctap2.CmdGetAssertion, gaRequest("a.example"))
	wantStatus(t, "empty authenticator", st, ctap2.ErrNoCredentials)
	makeCredential(t, a, mcRequest("a.example", []byte("u")))
	st, _ = call(t, a, ctap2.CmdGetAssertion, gaRequest("a.example"))
	wantStatus(t, "only a non-resident credential", st, ctap2.ErrNoCredentials)
	// An empty allowList counts as absent.
	st, _ = call(t, a, ctap2.CmdGetAssertion, map[int]any{1: "a.example", 2: hashOf("x"), 3: []any{}})
	wantStatus(t, "empty allowList", st, ctap2.ErrNoCredentials)
}

func TestKeyStoreFull(t *testing.T) {
	a := newSoftkey(t, Config{MaxResidentCredentials: 2})
	if got := remaining(t, a); got != 2 {
		t.Errorf("remaining %d on an empty softkey, want 2", got)
	}
	makeCredential(t, a, residentRequest("a.example", []byte("u1")))
	if got := remaining(t, a); got != 1 {
		t.Errorf("remaining %d, want 1", got)
	}
	makeCredential(t, a, residentRequest("b.example", []byte("u2")))
	if got := remaining(t, a); got != 0 {
		t.Errorf("remaining %d, want 0", got)
	}
	st, _ := call(t, a, ctap2.CmdMakeCredential, residentRequest("a.example", []byte("u3")))
	wantStatus(t, "third discoverable credential", st, ctap2.ErrKeyStoreFull)
	st, _ = call(t, a, ctap2.CmdMakeCredential, residentRequest("c.example", []byte("u1")))
	wantStatus(t, "same user ID at another RP", st, ctap2.ErrKeyStoreFull)

	// Replacing an account needs no new slot; non-resident credentials need none.
	repl := makeCredential(t, a, residentRequest("a.example", []byte("u1")))
	makeCredential(t, a, mcRequest("a.example", []byte("u3")))
	if got := remaining(t, a); got != 0 {
		t.Errorf("remaining %d, want 0", got)
	}
	resp, _ := getAssertion(t, a, gaRequest("a.example"))
	if !bytes.Equal(resp.Credential.ID, repl.id) {
		t.Error("the replacing credential is not the RP's discoverable credential")
	}

	// A softkey configured below what its store holds reports 0, not a wrapped count.
	b := newSoftkeyOn(t, shared(a.st), Config{MaxResidentCredentials: 1})
	if got := remaining(t, b); got != 0 {
		t.Errorf("remaining %d with more credentials than the maximum, want 0", got)
	}
}

// TestFailedStoreWrite: a store failure is CTAP1_ERR_OTHER, and nothing is half done.
func TestFailedStoreWrite(t *testing.T) {
	st := &failingStore{Store: store.NewMemory(store.Meta{})}
	a := newSoftkeyOn(t, st, Config{})
	st.failPut = true
	got, _ := call(t, a, ctap2.CmdMakeCredential, residentRequest("a.example", []byte("u")))
	wantStatus(t, "makeCredential with a failing store", got, ctap2.ErrOther)
	st.failPut = false
	got, _ = call(t, a, ctap2.CmdGetAssertion, gaRequest("a.example"))
	wantStatus(t, "getAssertion after the failed write", got, ctap2.ErrNoCredentials)
}

type failingStore struct {
	store.Store
	failPut bool
}

func (s *failingStore) PutCredential(c *store.Credential) error {
	if s.failPut {
		return context.DeadlineExceeded // any error
	}
	return s.Store.PutCredential(c)
}
