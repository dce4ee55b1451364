package softkey

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// Capacity (issue 8): a state with 100,000 resident credentials, loaded through the
// store's bulk API, served by the engine.

// capacityBigRP holds many credentials of one RP in capacity states; the other
// credentials sit capacityPerRP to an RP (rp0.capacity.example, …).
const (
	capacityBigRP = "big.capacity.example"
	capacityPerRP = 3
)

func capacityRP(i int) string { return fmt.Sprintf("rp%d.capacity.example", i) }

// capacityCredentials makes n resident credentials that the engine can use: big of
// them for capacityBigRP, the rest capacityPerRP to an RP. IDs have the softkey's
// resident format; the keys come from a small pool (generating 100,000 keys would
// take longer than storing them), which keys returns by credential index.
func capacityCredentials(tb testing.TB, n, big int) (cs []*store.Credential, keys func(i int) crypto.Signer) {
	tb.Helper()
	pool := make([]crypto.Signer, 16)
	ders := make([][]byte, len(pool))
	for i := range pool {
		k, err := ctap2.GenerateKey(ctap2.AlgES256, nil)
		if err != nil {
			tb.Fatal(err)
		}
		if ders[i], err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			tb.Fatal(err)
		}
		pool[i] = k
	}
	cs = make([]*store.Credential, n)
	for i := range n {
		rp := capacityBigRP
		if i >= big {
			rp = capacityRP((i - big) / capacityPerRP)
		}
		sum := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		id := make([]byte, residentIDSize)
		id[0] = credIDResident
		copy(id[1:], sum[:])
		cs[i] = &store.Credential{
			ID:         id,
			RPID:       rp,
			RPIDHash:   ctap2.RPIDHash(rp),
			User:       ctap2.UserEntity{ID: binary.BigEndian.AppendUint64(nil, uint64(i)), Name: fmt.Sprintf("user%d", i)},
			Alg:        ctap2.AlgES256,
			PrivateKey: ders[i%len(ders)],
			Created:    epoch.Add(time.Duration(i) * time.Second), // later index, newer
		}
	}
	return cs, func(i int) crypto.Signer { return pool[i%len(pool)] }
}

// capacityState creates a state file in dir holding cs.
func capacityState(tb testing.TB, path string, cs []*store.Credential) store.Store {
	tb.Helper()
	st, err := store.Create(path, store.CreateOptions{NoPassphrase: true})
	if err != nil {
		tb.Fatal(err)
	}
	if err := st.PutCredentials(cs); err != nil {
		st.Close()
		tb.Fatal(err)
	}
	return st
}

// heapAlloc is the live heap after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestCapacity100k: a softkey on a bbolt state with 100,000 resident credentials
// (10,000 of one RP, the rest three to an RP) answers getAssertion by ID and
// discoverably, reports its capacity honestly in getInfo and credsMetadata (and
// makeCredential agrees: KEY_STORE_FULL exactly when getInfo says 0), and
// enumerates RPs and credentials keeping only their keys in memory between calls.
func TestCapacity100k(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 100,000-credential state")
	}
	const n, big = 100_000, 10_000
	start := time.Now()
	cs, keys := capacityCredentials(t, n, big)
	st := capacityState(t, filepath.Join(t.TempDir(), "softkey.db"), cs)
	t.Logf("100,000 credentials stored in %v", time.Since(start).Round(time.Millisecond))
	a := newSoftkeyOn(t, st, Config{})
	ctx := context.Background()
	c := hostClient(a)
	cdh := hashOf("capacity")

	// getAssertion by credential ID, anywhere in the store, verified with the key
	// the credential was stored with.
	for _, i := range []int{0, big - 1, big, n / 2, n - 1} {
		resp, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: cs[i].RPID, ClientDataHash: cdh,
			AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: cs[i].ID}}})
		if err != nil {
			t.Fatalf("getAssertion for credential #%d: %v", i, err)
		}
		if err := resp.Verify(&ctap2.COSEKey{Alg: ctap2.AlgES256, Public: keys(i).Public()}, cdh); err != nil {
			t.Fatalf("credential #%d: %v", i, err)
		}
	}
	// Discoverable: the RP's credentials, newest first.
	resp, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: capacityRP(7), ClientDataHash: cdh})
	if err != nil || resp.NumberOfCredentials != capacityPerRP {
		t.Fatalf("discoverable getAssertion for %s: %d credentials, %v", capacityRP(7), resp.NumberOfCredentials, err)
	}
	if newest := big + 7*capacityPerRP + capacityPerRP - 1; string(resp.Credential.ID) != string(cs[newest].ID) {
		t.Fatalf("discoverable getAssertion chose %x, want the newest %x", resp.Credential.ID, cs[newest].ID)
	}

	if err := c.SetPIN(ctx, "1234"); err != nil {
		t.Fatal(err)
	}
	// A new token ends the previous one, so each step gets its own.
	cmToken := func() *ctap2.PINToken {
		t.Helper()
		tok, err := c.PINToken(ctx, "1234", ctap2.PermCredentialManagement, "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	wantRemaining := func(want uint) {
		t.Helper()
		info, err := a.Info()
		if err != nil || info.RemainingDiscoverableCredentials == nil || *info.RemainingDiscoverableCredentials != want {
			t.Fatalf("getInfo remainingDiscoverableCredentials = %v, %v; want %d", info.RemainingDiscoverableCredentials, err, want)
		}
		md, err := c.CredsMetadata(ctx, cmToken())
		if err != nil || md.MaxRemaining != want || int(md.Existing) != a.cfg.MaxResidentCredentials-int(want) {
			t.Fatalf("credsMetadata = %+v, %v; want %d remaining", md, err, want)
		}
	}
	// makeCredential rk; it uses up the token's user presence, so each gets its own.
	mc := func(rp string, user []byte) error {
		t.Helper()
		tok, err := c.PINToken(ctx, "1234", ctap2.PermMakeCredential, rp)
		if err != nil {
			t.Fatal(err)
		}
		req := residentRequest(rp, user)
		req.User.Name, req.User.DisplayName = fmt.Sprintf("user-%x", user), "" // IDs here are binary
		tok.ProtectMakeCredential(req)
		_, err = c.MakeCredential(ctx, req)
		return err
	}
	wantRemaining(0)
	if err := mc("new.capacity.example", []byte("new")); !errors.Is(err, ctap2.ErrKeyStoreFull) {
		t.Fatalf("makeCredential rk on a full store = %v, want KEY_STORE_FULL", err)
	}
	if err := mc(cs[n-1].RPID, cs[n-1].User.ID); err != nil {
		t.Fatalf("makeCredential replacing an account on a full store: %v", err)
	}
	wantRemaining(0)
	tok := cmToken()
	for _, i := range []int{1, big + 1} {
		if err := c.DeleteCredential(ctx, tok, cs[i].ID); err != nil {
			t.Fatal(err)
		}
	}
	wantRemaining(2)
	for i := range 2 {
		if err := mc("new.capacity.example", []byte{byte(i)}); err != nil {
			t.Fatalf("makeCredential with %d remaining: %v", 2-i, err)
		}
	}
	wantRemaining(0)
	if err := mc("new.capacity.example", []byte("third")); !errors.Is(err, ctap2.ErrKeyStoreFull) {
		t.Fatalf("makeCredential rk after getInfo said 0 = %v, want KEY_STORE_FULL", err)
	}

	// Enumeration. What the engine keeps between Begin and GetNext is measured on
	// the live heap: it must be far less than the credentials themselves.
	tok = cmToken()
	start = time.Now()
	rps, err := c.EnumerateRPs(ctx, tok)
	rpTime := time.Since(start)
	if want := (n-big)/capacityPerRP + 2; err != nil || len(rps) != want {
		t.Fatalf("enumerateRPs: %d RPs, %v; want %d", len(rps), err, want)
	}
	bigHash := ctap2.RPIDHash(capacityBigRP)
	start = time.Now()
	creds, err := c.EnumerateCredentials(ctx, tok, bigHash[:])
	t.Logf("enumerateRPs of %d RPs took %v, enumerateCredentials of %d credentials %v",
		len(rps), rpTime.Round(time.Millisecond), len(creds), time.Since(start).Round(time.Millisecond))
	if err != nil || len(creds) != big-1 {
		t.Fatalf("enumerateCredentials(%s): %d, %v; want %d", capacityBigRP, len(creds), err, big-1)
	}
	var want []int // newest first; #1 was deleted
	for i := big - 1; i >= 0; i-- {
		if i != 1 {
			want = append(want, i)
		}
	}
	for j, cr := range creds {
		if string(cr.ID.ID) != string(cs[want[j]].ID) {
			t.Fatalf("enumerateCredentials #%d is %x, want credential #%d", j, cr.ID.ID, want[j])
		}
	}

	// held measures what the engine keeps after begin, until an unrelated command
	// (getInfo) ends the sequence.
	held := func(begin func()) uint64 {
		a.Info()
		before := heapAlloc()
		begin()
		after := heapAlloc()
		a.Info()
		return after - min(before, after)
	}
	var rp, cr *ctap2.CredMgmtResponse
	rpHeld := held(func() { rp = capacityEnumerateBegin(t, a, cmToken(), ctap2.CredMgmtEnumerateRPsBegin, nil) })
	credHeld := held(func() {
		cr = capacityEnumerateBegin(t, a, cmToken(), ctap2.CredMgmtEnumerateCredentialsBegin, bigHash[:])
	})
	var ga *ctap2.GetAssertionResponse
	gaHeld := held(func() {
		if ga, err = a.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: capacityBigRP, ClientDataHash: cdh}); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("held between Begin and GetNext: enumerateRPs %d B for %d RPs (%d B each), enumerateCredentials %d B for %d credentials (%d B each); "+
		"getAssertion for %d credentials until getNextAssertion: %d B (%d B each)",
		rpHeld, rp.TotalRPs, rpHeld/uint64(rp.TotalRPs), credHeld, cr.TotalCredentials, credHeld/uint64(cr.TotalCredentials),
		ga.NumberOfCredentials, gaHeld, gaHeld/uint64(ga.NumberOfCredentials))
	if per := credHeld / uint64(cr.TotalCredentials); per > 128 {
		t.Errorf("enumerateCredentials keeps %d B per credential until GetNext; want at most an ID's worth", per)
	}
	if per := rpHeld / uint64(rp.TotalRPs); per > 64 {
		t.Errorf("enumerateRPs keeps %d B per RP until GetNext; want at most an rpIdHash's worth", per)
	}
	runtime.KeepAlive(a)
}

// capacityEnumerateBegin sends an enumeration's Begin subcommand straight to the
// engine, leaving its sequence open.
func capacityEnumerateBegin(t *testing.T, a *Authenticator, tok *ctap2.PINToken, sub ctap2.CredMgmtSubcommand, rpIDHash []byte) *ctap2.CredMgmtResponse {
	t.Helper()
	req := &ctap2.CredMgmtRequest{SubCommand: sub, PinUvAuthProtocol: tok.Protocol.Version()}
	if rpIDHash != nil {
		p, err := ctap2.Marshal(&ctap2.CredMgmtParams{RPIDHash: rpIDHash})
		if err != nil {
			t.Fatal(err)
		}
		req.SubCommandParams = p
	}
	req.PinUvAuthParam = tok.Param(ctap2.CredMgmtAuthMessage(sub, req.SubCommandParams))
	resp, err := a.CredentialManagement(context.Background(), req)
	if err != nil {
		t.Fatalf("credMgmt %d: %v", sub, err)
	}
	return resp
}
