package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

// capacityCreds makes n credentials spread over rps RPs (rp0.example …), shaped
// like the softkey's: 32-byte IDs, 8-byte user IDs, a PKCS #8 P-256 key's length.
func capacityCreds(n, rps int) []*Credential {
	key := make([]byte, 138)
	cs := make([]*Credential, n)
	for i := range n {
		rp := fmt.Sprintf("rp%d.example", i%rps)
		id := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("capacity"), uint64(i)))
		cs[i] = &Credential{
			ID:         id[:],
			RPID:       rp,
			RPName:     "The " + rp,
			RPIDHash:   rpHash(rp),
			User:       ctap2.UserEntity{ID: id[:8], Name: fmt.Sprintf("user%d@%s", i, rp), DisplayName: "User"},
			Alg:        ctap2.AlgES256,
			PrivateKey: key,
			Created:    baseTime.Add(time.Duration(i) * time.Second),
		}
	}
	return cs
}

// TestCapacity100k: 100,000 resident credentials in one bulk write, durable across a
// reopen; lookups by credential ID and by rpIdHash work through the indexes (the
// RP's records and nothing else are visited), and the counts agree.
func TestCapacity100k(t *testing.T) {
	const n, rps = 100_000, 20_000
	path := filepath.Join(t.TempDir(), "softkey.db")
	d := createDB(t, path)
	cs := capacityCreds(n, rps)
	start := time.Now()
	if err := d.PutCredentials(cs); err != nil {
		t.Fatal(err)
	}
	fill := time.Since(start)
	d.Close()
	start = time.Now()
	d = openDB(t, path)
	t.Logf("100,000 credentials stored in %v; reopened in %v", fill, time.Since(start))

	wantCount(t, d, n)
	for _, i := range []int{0, 1, n / 2, n - 1} {
		c, err := d.Credential(cs[i].ID)
		if err != nil || !credEqual(c, cs[i]) {
			t.Fatalf("Credential(#%d) = %+v, %v", i, c, err)
		}
	}
	if _, err := d.Credential([]byte("absent")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Credential(absent) = %v", err)
	}
	before := d.scannedRecords()
	got, err := d.CredentialsByRP(rpHash("rp7.example"))
	if err != nil || len(got) != n/rps {
		t.Fatalf("rp7.example: %d credentials, %v; want %d", len(got), err, n/rps)
	}
	if visited := d.scannedRecords() - before; visited != int64(n/rps) {
		t.Errorf("CredentialsByRP visited %d records for %d credentials", visited, n/rps)
	}
	list, err := d.RelyingParties()
	if err != nil || len(list) != rps {
		t.Fatalf("RelyingParties = %d, %v; want %d", len(list), err, rps)
	}
	total := 0
	for _, rp := range list {
		total += rp.Credentials
	}
	if total != n {
		t.Fatalf("RelyingParties count %d credentials, want %d", total, n)
	}

	// One more durable write and a delete on the full store.
	extra := testCred("rp7.example", "extra", "extra-id")
	mustPut(t, d, extra)
	if err := d.DeleteCredential(cs[3].ID); err != nil {
		t.Fatal(err)
	}
	wantCount(t, d, n)
}

// TestPutCredentialsAtomic: a bulk write with one invalid credential stores none;
// one that repeats an account keeps the last, as PutCredential would.
func TestPutCredentialsAtomic(t *testing.T) {
	for name, s := range map[string]Store{
		"DB":     createDB(t, filepath.Join(t.TempDir(), "softkey.db")),
		"Memory": NewMemory(Meta{}),
	} {
		t.Run(name, func(t *testing.T) {
			b := s.(BulkPutter)
			cs := capacityCreds(10, 2)
			bad := *cs[5]
			bad.PrivateKey = nil
			if err := b.PutCredentials(append(cs[:5:5], &bad)); err == nil {
				t.Fatal("PutCredentials with an invalid credential succeeded")
			}
			wantCount(t, s, 0)
			again := *cs[0]
			again.ID = []byte("same account, new ID")
			if err := b.PutCredentials(append(cs, &again)); err != nil {
				t.Fatal(err)
			}
			wantCount(t, s, 10)
			if _, err := s.Credential(cs[0].ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("replaced account's credential: %v", err)
			}
		})
	}
}
