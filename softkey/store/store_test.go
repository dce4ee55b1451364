package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

func rpHash(rp string) [32]byte { return sha256.Sum256([]byte(rp)) }

var baseTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// testCred is a complete credential; fields derive from its arguments.
func testCred(rp, user, id string) *Credential {
	return &Credential{
		ID:          []byte(id),
		RPID:        rp,
		RPName:      "The " + rp,
		RPIDHash:    rpHash(rp),
		User:        ctap2.UserEntity{ID: []byte(user), Name: user + "@" + rp, DisplayName: "Üser " + user},
		Alg:         ctap2.AlgES256,
		PrivateKey:  []byte("private key of " + id),
		Created:     baseTime,
		CredProtect: 2,
		Extra:       map[string][]byte{"credBlob": []byte("blob " + id), "empty": {}},
	}
}

// credEqual compares credentials as a store must preserve them: times by instant,
// nil and empty byte slices and maps alike.
func credEqual(a, b *Credential) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !bytes.Equal(a.ID, b.ID) || a.RPID != b.RPID || a.RPName != b.RPName || a.RPIDHash != b.RPIDHash ||
		!bytes.Equal(a.User.ID, b.User.ID) || a.User.Name != b.User.Name || a.User.DisplayName != b.User.DisplayName ||
		a.Alg != b.Alg || !bytes.Equal(a.PrivateKey, b.PrivateKey) || !a.Created.Equal(b.Created) ||
		a.CredProtect != b.CredProtect || len(a.Extra) != len(b.Extra) {
		return false
	}
	for k, v := range a.Extra {
		w, ok := b.Extra[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func mustPut(t testing.TB, s Store, c *Credential) {
	t.Helper()
	if err := s.PutCredential(c); err != nil {
		t.Fatalf("PutCredential(%q): %v", c.ID, err)
	}
}

func wantCount(t *testing.T, s Store, want int) {
	t.Helper()
	n, err := s.CountCredentials()
	if err != nil || n != want {
		t.Fatalf("CountCredentials = %d, %v; want %d", n, err, want)
	}
}

func ids(cs []*Credential) string {
	var s []string
	for _, c := range cs {
		s = append(s, string(c.ID))
	}
	return strings.Join(s, ",")
}

func wantByRP(t *testing.T, s Store, rp string, want string) []*Credential {
	t.Helper()
	cs, err := s.CredentialsByRP(rpHash(rp))
	if err != nil {
		t.Fatalf("CredentialsByRP(%s): %v", rp, err)
	}
	if got := ids(cs); got != want {
		t.Fatalf("CredentialsByRP(%s) = [%s], want [%s]", rp, got, want)
	}
	return cs
}

// putMany stores many credentials quickly: in one transaction for a DB.
func putMany(t testing.TB, s Store, cs []*Credential) {
	t.Helper()
	if d, ok := s.(*DB); ok {
		if err := d.update(func(b buckets) error {
			for _, c := range cs {
				if err := putTx(b, c); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, c := range cs {
		mustPut(t, s, c)
	}
}

func TestMemory(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		s := NewMemory(Meta{})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestNewMemoryFillsMeta(t *testing.T) {
	m := NewMemory(Meta{}).Meta()
	if len(m.MasterSecret) != MasterSecretSize || m.AAGUID == [16]byte{} || m.FormatVersion != FormatVersion || m.Created.IsZero() {
		t.Errorf("NewMemory(Meta{}).Meta() = %+v, want a complete identity", m)
	}
	seeded, err := NewMeta(bytes.NewReader(make([]byte, 64)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := NewMemory(seeded).Meta(); got.AAGUID != seeded.AAGUID || !bytes.Equal(got.MasterSecret, seeded.MasterSecret) {
		t.Errorf("NewMemory did not keep the given identity")
	}
	if seeded.AAGUID[6]>>4 != 4 || seeded.AAGUID[8]>>6 != 2 {
		t.Errorf("AAGUID %x is not a version 4 UUID", seeded.AAGUID)
	}
	if _, err := NewMeta(bytes.NewReader(make([]byte, 10)), nil); err == nil {
		t.Error("NewMeta with a short random source succeeded")
	}
}

// testStore is the behaviour every Store shares.
func testStore(t *testing.T, open func(t *testing.T) Store) {
	testSettings(t, open)
	testLargeBlob(t, open)
	testRelyingParties(t, open)
	t.Run("PutGet", func(t *testing.T) {
		s := open(t)
		c := testCred("example.com", "alice", "cred-1")
		mustPut(t, s, c)
		got, err := s.Credential([]byte("cred-1"))
		if err != nil {
			t.Fatal(err)
		}
		if !credEqual(got, c) {
			t.Errorf("Credential = %+v, want %+v", got, c)
		}
		wantCount(t, s, 1)
		// A zero creation time and no extras survive too.
		z := testCred("example.com", "bob", "cred-2")
		z.Created, z.Extra, z.RPName, z.User.Name, z.User.DisplayName = time.Time{}, nil, "", "", ""
		mustPut(t, s, z)
		got, err = s.Credential(z.ID)
		if err != nil || !credEqual(got, z) || !got.Created.IsZero() {
			t.Errorf("Credential = %+v, %v; want %+v", got, err, z)
		}
	})

	t.Run("CloneIsolation", func(t *testing.T) {
		s := open(t)
		c := testCred("example.com", "alice", "cred-1")
		want := c.Clone()
		mustPut(t, s, c)
		c.ID[0], c.User.ID[0], c.PrivateKey[0] = 'X', 'X', 'X'
		c.Extra["credBlob"][0] = 'X'
		c.Extra["new"] = []byte("x")
		got, err := s.Credential(want.ID)
		if err != nil || !credEqual(got, want) {
			t.Fatalf("stored credential changed with the caller's copy: %+v, %v", got, err)
		}
		got.ID[0], got.PrivateKey[0], got.User.ID[0] = 'Y', 'Y', 'Y'
		got.Extra["credBlob"][0] = 'Y'
		cs := wantByRP(t, s, "example.com", "cred-1")
		cs[0].PrivateKey[0] = 'Z'
		again, err := s.Credential(want.ID)
		if err != nil || !credEqual(again, want) {
			t.Fatalf("stored credential changed with a returned copy: %+v, %v", again, err)
		}
	})

	t.Run("ReplaceByID", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, testCred("example.com", "alice", "cred-1"))
		c := testCred("example.com", "alice2", "cred-1")
		c.PrivateKey = []byte("new key")
		mustPut(t, s, c)
		wantCount(t, s, 1)
		got, err := s.Credential([]byte("cred-1"))
		if err != nil || !credEqual(got, c) {
			t.Fatalf("Credential = %+v, %v; want the replacement", got, err)
		}
		// The old account's slot is free: a new credential for alice replaces nothing.
		mustPut(t, s, testCred("example.com", "alice", "cred-2"))
		wantCount(t, s, 2)
		// The same ID moved to another RP leaves the first RP.
		mustPut(t, s, testCred("other.example", "carol", "cred-1"))
		wantCount(t, s, 2)
		wantByRP(t, s, "example.com", "cred-2")
		wantByRP(t, s, "other.example", "cred-1")
	})

	t.Run("ReplaceByUser", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, testCred("example.com", "alice", "cred-1"))
		mustPut(t, s, testCred("example.com", "bob", "cred-2"))
		mustPut(t, s, testCred("other.example", "alice", "cred-3")) // same user ID, other RP
		mustPut(t, s, testCred("example.com", "alice", "cred-4"))
		wantCount(t, s, 3)
		if _, err := s.Credential([]byte("cred-1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("replaced credential: err = %v, want ErrNotFound", err)
		}
		wantByRP(t, s, "example.com", "cred-4,cred-2")
		wantByRP(t, s, "other.example", "cred-3")
		// Deleting the replaced credential's ID finds nothing.
		if err := s.DeleteCredential([]byte("cred-1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteCredential(replaced) = %v, want ErrNotFound", err)
		}
	})

	t.Run("ByRPOrder", func(t *testing.T) {
		s := open(t)
		at := func(id, user string, d time.Duration) *Credential {
			c := testCred("example.com", user, id)
			c.Created = baseTime.Add(d)
			return c
		}
		mustPut(t, s, at("old", "u1", -time.Hour))
		mustPut(t, s, at("tie-a", "u2", 0))
		mustPut(t, s, at("new", "u3", time.Hour))
		mustPut(t, s, at("tie-b", "u4", 0)) // same time as tie-a, inserted later
		mustPut(t, s, at("ns", "u5", time.Nanosecond))
		mustPut(t, s, testCred("other.example", "u1", "elsewhere"))
		mustPut(t, s, testCred("example.co", "u1", "prefix-neighbour"))
		wantByRP(t, s, "example.com", "new,ns,tie-b,tie-a,old")
		if cs, err := s.CredentialsByRP(rpHash("nobody.example")); err != nil || len(cs) != 0 {
			t.Errorf("CredentialsByRP(unknown) = %d, %v; want none", len(cs), err)
		}
		// Replacing an account re-inserts it: with equal times it becomes the newest.
		mustPut(t, s, at("tie-a2", "u2", 0))
		wantByRP(t, s, "example.com", "new,ns,tie-a2,tie-b,old")
	})

	t.Run("Delete", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, testCred("example.com", "alice", "cred-1"))
		mustPut(t, s, testCred("example.com", "bob", "cred-2"))
		if err := s.DeleteCredential([]byte("cred-1")); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteCredential([]byte("cred-1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete = %v, want ErrNotFound", err)
		}
		if _, err := s.Credential([]byte("cred-1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted credential: err = %v, want ErrNotFound", err)
		}
		wantCount(t, s, 1)
		wantByRP(t, s, "example.com", "cred-2")
		// alice's slot is free again.
		mustPut(t, s, testCred("example.com", "alice", "cred-3"))
		wantCount(t, s, 2)
		wantByRP(t, s, "example.com", "cred-3,cred-2")
	})

	t.Run("NotFound", func(t *testing.T) {
		s := open(t)
		if _, err := s.Credential([]byte("nope")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Credential(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := s.Credential(nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("Credential(nil) = %v, want ErrNotFound", err)
		}
		if err := s.DeleteCredential([]byte("nope")); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteCredential(unknown) = %v, want ErrNotFound", err)
		}
	})

	t.Run("DeleteAll", func(t *testing.T) {
		s := open(t)
		for i := range 5 {
			mustPut(t, s, testCred(fmt.Sprintf("rp%d.example", i%2), fmt.Sprint("u", i), fmt.Sprint("c", i)))
		}
		wantCount(t, s, 5)
		if err := s.DeleteAllCredentials(); err != nil {
			t.Fatal(err)
		}
		wantCount(t, s, 0)
		wantByRP(t, s, "rp0.example", "")
		if _, err := s.Credential([]byte("c1")); !errors.Is(err, ErrNotFound) {
			t.Errorf("after DeleteAll: err = %v, want ErrNotFound", err)
		}
		mustPut(t, s, testCred("rp0.example", "u0", "c9"))
		wantCount(t, s, 1)
		wantByRP(t, s, "rp0.example", "c9")
	})

	t.Run("CounterCeiling", func(t *testing.T) {
		s := open(t)
		if v, err := s.CounterCeiling(); err != nil || v != 0 {
			t.Errorf("initial CounterCeiling = %d, %v; want 0", v, err)
		}
		for _, want := range []uint32{1000, 1 << 31, ^uint32(0)} {
			if err := s.SetCounterCeiling(want); err != nil {
				t.Fatal(err)
			}
			if v, err := s.CounterCeiling(); err != nil || v != want {
				t.Errorf("CounterCeiling = %d, %v; want %d", v, err, want)
			}
		}
	})

	t.Run("MasterSecret", func(t *testing.T) {
		s := open(t)
		m := s.Meta()
		if len(m.MasterSecret) != MasterSecretSize || m.FormatVersion < FormatPlain || m.FormatVersion > FormatVersion ||
			m.AAGUID == [16]byte{} {
			t.Fatalf("Meta = %+v", m)
		}
		m.MasterSecret[0] ^= 1
		if bytes.Equal(s.Meta().MasterSecret, m.MasterSecret) {
			t.Error("Meta shares its master secret with the caller")
		}
		if err := s.SetMasterSecret(make([]byte, 16)); err == nil {
			t.Error("SetMasterSecret accepted 16 bytes")
		}
		secret := bytes.Repeat([]byte{7}, MasterSecretSize)
		if err := s.SetMasterSecret(secret); err != nil {
			t.Fatal(err)
		}
		secret[0] = 8
		if got := s.Meta().MasterSecret; !bytes.Equal(got, bytes.Repeat([]byte{7}, MasterSecretSize)) {
			t.Errorf("MasterSecret = %x", got)
		}
		if s.Meta().AAGUID != m.AAGUID {
			t.Error("SetMasterSecret changed the AAGUID")
		}
	})

	t.Run("Validate", func(t *testing.T) {
		s := open(t)
		for name, mod := range map[string]func(c *Credential){
			"no ID":          func(c *Credential) { c.ID = nil },
			"long ID":        func(c *Credential) { c.ID = make([]byte, ctap2.MaxCredentialIDLength+1) },
			"no user ID":     func(c *Credential) { c.User.ID = nil },
			"long user ID":   func(c *Credential) { c.User.ID = make([]byte, ctap2.MaxUserIDLength+1) },
			"no key":         func(c *Credential) { c.PrivateKey = nil },
			"bad UTF-8 name": func(c *Credential) { c.User.Name = "\xff" },
			"bad UTF-8 RP":   func(c *Credential) { c.RPID = "a\xc0" },
			"bad extra key":  func(c *Credential) { c.Extra = map[string][]byte{"\xfe": nil} },
		} {
			c := testCred("example.com", "alice", "cred-1")
			mod(c)
			if err := s.PutCredential(c); err == nil {
				t.Errorf("%s: PutCredential succeeded", name)
			}
		}
		wantCount(t, s, 0)
		max := testCred("example.com", "alice", string(bytes.Repeat([]byte{'i'}, ctap2.MaxCredentialIDLength)))
		max.User.ID = bytes.Repeat([]byte{'u'}, ctap2.MaxUserIDLength)
		mustPut(t, s, max)
		wantCount(t, s, 1)
	})

	t.Run("Closed", func(t *testing.T) {
		s := open(t)
		mustPut(t, s, testCred("example.com", "alice", "cred-1"))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		_ = s.Meta() // must not panic
		c := testCred("example.com", "bob", "cred-2")
		_, err1 := s.Credential([]byte("cred-1"))
		_, err2 := s.CredentialsByRP(rpHash("example.com"))
		_, err3 := s.CountCredentials()
		_, err4 := s.CounterCeiling()
		_, err5 := s.Settings()
		_, err6 := s.LargeBlobArray()
		_, err7 := s.RelyingParties()
		for i, err := range []error{
			s.PutCredential(c), err1, err2, err3, err4,
			s.DeleteCredential([]byte("cred-1")), s.DeleteAllCredentials(),
			s.SetCounterCeiling(5), s.SetMasterSecret(make([]byte, MasterSecretSize)),
			err5, err6, err7, s.SetSettings(DefaultSettings()), s.SetLargeBlobArray([]byte{0x80}),
			s.SetLargeBlobArray(nil),
		} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("call %d after Close: err = %v, want ErrClosed", i, err)
			}
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					id := fmt.Sprintf("w%d-%d", w, i)
					if err := s.PutCredential(testCred("example.com", id, id)); err != nil {
						t.Error(err)
						return
					}
					if _, err := s.Credential([]byte(id)); err != nil {
						t.Error(err)
					}
					if _, err := s.CredentialsByRP(rpHash("example.com")); err != nil {
						t.Error(err)
					}
					if i%5 == 0 {
						if err := s.DeleteCredential([]byte(id)); err != nil {
							t.Error(err)
						}
					}
				}
			}()
		}
		wg.Wait()
		wantCount(t, s, 4*20)
	})

	t.Run("Index", func(t *testing.T) {
		// 10,000 credentials of other RPs must not be visited when listing one RP.
		s := open(t)
		var other []*Credential
		for i := range 10_000 {
			id := fmt.Sprintf("other-%05d", i)
			c := testCred(fmt.Sprintf("rp%d.example", i%997), id, id)
			c.Extra = nil
			other = append(other, c)
		}
		putMany(t, s, other)
		for i := range 3 {
			mustPut(t, s, testCred("target.example", fmt.Sprint("u", i), fmt.Sprint("t", i)))
		}
		wantCount(t, s, 10_003)
		sc, ok := s.(interface{ scannedRecords() int64 })
		if !ok {
			t.Fatalf("%T does not count scanned records", s)
		}
		before := sc.scannedRecords()
		wantByRP(t, s, "target.example", "t2,t1,t0")
		if n := sc.scannedRecords() - before; n > 3 {
			t.Errorf("CredentialsByRP visited %d records for 3 credentials", n)
		}
		before = sc.scannedRecords()
		wantByRP(t, s, "absent.example", "")
		if n := sc.scannedRecords() - before; n != 0 {
			t.Errorf("CredentialsByRP of an absent RP visited %d records", n)
		}
	})
}
