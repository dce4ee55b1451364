package softkey

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// TestGetAssertionStateMemory: between a discoverable getAssertion on an RP with
// 1,000 credentials and its getNextAssertions the engine keeps the remaining
// credentials' IDs, not their records (private keys included), and the sequence
// still returns every credential, newest first, with a new counter each time.
func TestGetAssertionStateMemory(t *testing.T) {
	const n = 1000
	cs, keys := capacityCredentials(t, n, n) // all of capacityBigRP, later index newer
	st := store.NewMemory(store.Meta{})
	if err := st.(store.BulkPutter).PutCredentials(cs); err != nil {
		t.Fatal(err)
	}
	a := newSoftkeyOn(t, st, Config{})
	ctx := context.Background()
	cdh := hashOf("state")
	req := &ctap2.GetAssertionRequest{RPID: capacityBigRP, ClientDataHash: cdh}

	// The live heap with the sequence held, against the same once getInfo has
	// ended it (the heap before getAssertion lacks what it keeps for good, such as
	// the first credential's key in the signer cache).
	a.Info()
	before := heapAlloc()
	first, err := a.GetAssertion(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	after := heapAlloc()
	if a.next == nil {
		t.Fatal("no getNextAssertion state after a discoverable getAssertion on 1,000 credentials")
	}
	a.Info()
	if a.next != nil {
		t.Fatal("getInfo did not end the getAssertion sequence")
	}
	ended := heapAlloc()
	held := after - min(ended, after)
	per := held / (n - 1)
	t.Logf("getAssertion on %d credentials holds %d B until getNextAssertion (%d B per remaining credential; live heap %d B before, %d B held, %d B ended)",
		n, held, per, before, after, ended)
	if per > 128 {
		t.Errorf("getAssertion keeps %d B per remaining credential until getNextAssertion; want at most an ID's worth", per)
	}
	runtime.KeepAlive(first)

	// The whole sequence: newest first, numberOfCredentials only in the first
	// reply, signatures by each credential's key, counters increasing.
	resp, err := a.GetAssertion(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.NumberOfCredentials != n {
		t.Fatalf("numberOfCredentials %d, want %d", resp.NumberOfCredentials, n)
	}
	var last uint32
	for i := n - 1; i >= 0; i-- {
		if i != n-1 {
			if resp, err = a.GetNextAssertion(ctx); err != nil {
				t.Fatalf("getNextAssertion for credential #%d: %v", i, err)
			}
			if resp.NumberOfCredentials != 0 {
				t.Fatalf("getNextAssertion has numberOfCredentials %d", resp.NumberOfCredentials)
			}
		}
		if !bytes.Equal(resp.Credential.ID, cs[i].ID) {
			t.Fatalf("assertion %d by %x, want credential #%d %x", n-1-i, resp.Credential.ID, i, cs[i].ID)
		}
		if resp.User == nil || !bytes.Equal(resp.User.ID, cs[i].User.ID) {
			t.Fatalf("assertion by credential #%d has user %+v", i, resp.User)
		}
		if err := resp.Verify(&ctap2.COSEKey{Alg: ctap2.AlgES256, Public: keys(i).Public()}, cdh); err != nil {
			t.Fatalf("credential #%d: %v", i, err)
		}
		ad, err := resp.ParseAuthData()
		if err != nil {
			t.Fatal(err)
		}
		if ad.SignCount <= last {
			t.Fatalf("credential #%d: counter %d after %d", i, ad.SignCount, last)
		}
		last = ad.SignCount
	}
	if _, err := a.GetNextAssertion(ctx); !errors.Is(err, ctap2.ErrNotAllowed) {
		t.Fatalf("getNextAssertion after the last credential = %v, want NOT_ALLOWED", err)
	}
}

// TestGetNextAssertionDeleted: a credential deleted from the store between
// getAssertion and its getNextAssertion (nothing in CTAP can do that, as any other
// command ends the sequence, but the store is shared with Go callers) is skipped;
// when none of the remaining credentials is left, getNextAssertion answers
// NO_CREDENTIALS and ends the sequence.
func TestGetNextAssertionDeleted(t *testing.T) {
	clock := newClock()
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{Now: clock.Now})
	var made []*madeCredential // oldest first
	for _, u := range []string{"u0", "u1", "u2", "u3"} {
		made = append(made, makeCredential(t, a, residentRequest("del.example", []byte(u))))
		clock.Advance(time.Second)
	}
	req := gaRequest("del.example")

	// Newest first: u3, then u2 (deleted) is skipped for u1, then u0.
	resp, _ := getAssertion(t, a, req)
	if resp.NumberOfCredentials != 4 || !bytes.Equal(resp.Credential.ID, made[3].id) {
		t.Fatalf("first assertion by %x of %d, want %x of 4", resp.Credential.ID, resp.NumberOfCredentials, made[3].id)
	}
	if err := st.DeleteCredential(made[2].id); err != nil {
		t.Fatal(err)
	}
	for _, want := range []int{1, 0} {
		resp, _ := getNextAssertion(t, a)
		if !bytes.Equal(resp.Credential.ID, made[want].id) {
			t.Fatalf("getNextAssertion by %x, want u%d %x", resp.Credential.ID, want, made[want].id)
		}
		if err := resp.Verify(made[want].key, req.ClientDataHash); err != nil {
			t.Fatalf("u%d: %v", want, err)
		}
	}
	st2, _ := call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion after the last credential", st2, ctap2.ErrNotAllowed)

	// All the remaining ones deleted: NO_CREDENTIALS, then the sequence is over.
	resp, _ = getAssertion(t, a, req) // u3, u1, u0 left
	if resp.NumberOfCredentials != 3 || !bytes.Equal(resp.Credential.ID, made[3].id) {
		t.Fatalf("assertion by %x of %d, want %x of 3", resp.Credential.ID, resp.NumberOfCredentials, made[3].id)
	}
	for _, i := range []int{1, 0} {
		if err := st.DeleteCredential(made[i].id); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion with every remaining credential deleted", s, ctap2.ErrNoCredentials)
	s, _ = call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion after NO_CREDENTIALS", s, ctap2.ErrNotAllowed)

	// A deleted credential is not served from the signer cache either: u3 has
	// signed (its key is cached), is deleted, and the sequence skips it.
	made = append(made, makeCredential(t, a, residentRequest("del.example", []byte("u4"))))
	clock.Advance(time.Second)
	made = append(made, makeCredential(t, a, residentRequest("del.example", []byte("u5"))))
	resp, _ = getAssertion(t, a, req) // u5, u4, u3
	if resp.NumberOfCredentials != 3 || !bytes.Equal(resp.Credential.ID, made[5].id) {
		t.Fatalf("assertion by %x of %d, want %x of 3", resp.Credential.ID, resp.NumberOfCredentials, made[5].id)
	}
	if err := st.DeleteCredential(made[3].id); err != nil {
		t.Fatal(err)
	}
	resp, _ = getNextAssertion(t, a)
	if !bytes.Equal(resp.Credential.ID, made[4].id) {
		t.Fatalf("getNextAssertion by %x, want u4 %x", resp.Credential.ID, made[4].id)
	}
	s, _ = call(t, a, ctap2.CmdGetNextAssertion, nil)
	wantStatus(t, "getNextAssertion with u3 deleted", s, ctap2.ErrNoCredentials)
}
