package store

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// testKDF keeps argon2id cheap in tests; DefaultKDF's cost is measured by
// BenchmarkOpenEncrypted.
var testKDF = &KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

const testPass = "correct horse battery staple"

func passphrase(p string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(p), nil }
}

func createEncDB(t testing.TB, path string) *DB {
	t.Helper()
	d, err := Create(path, CreateOptions{Passphrase: []byte(testPass), KDF: testKDF})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func openEncDB(t testing.TB, path string) *DB {
	t.Helper()
	d, err := OpenWith(path, OpenOptions{Passphrase: passphrase(testPass)})
	if err != nil {
		t.Fatalf("OpenWith: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDBEncrypted(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		return createEncDB(t, filepath.Join(t.TempDir(), "softkey.db"))
	})
}

func TestDBEncryptedReopened(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		path := filepath.Join(t.TempDir(), "softkey.db")
		if err := createEncDB(t, path).Close(); err != nil {
			t.Fatal(err)
		}
		return openEncDB(t, path)
	})
}

// fullState fills a store with everything a state holds: credentials of several RPs
// (with tied creation times, so that order depends on the insertion sequence), a
// deleted one, a counter, the PIN state and settings, a large blob and a new master
// secret. It returns what a reader must find.
type wantState struct {
	creds    []*Credential
	byRP     map[string]string
	rps      []RPInfo
	counter  uint32
	settings Settings
	blob     []byte
	secret   []byte
	attKey   []byte
	attCerts [][]byte
}

var fullRPs = []string{"rp0.example", "rp1.example", "rp2.example"}

func fillState(t *testing.T, s Store) wantState {
	t.Helper()
	var w wantState
	for i := range 20 {
		c := testCred(fullRPs[i%3], fmt.Sprint("user", i), fmt.Sprint("cred", i))
		c.Created = baseTime.Add(time.Duration(i%4) * time.Second)
		mustPut(t, s, c)
		w.creds = append(w.creds, c)
	}
	if err := s.DeleteCredential([]byte("cred7")); err != nil {
		t.Fatal(err)
	}
	w.creds = append(w.creds[:7], w.creds[8:]...)
	w.byRP = map[string]string{}
	for _, rp := range fullRPs {
		cs, err := s.CredentialsByRP(rpHash(rp))
		if err != nil {
			t.Fatal(err)
		}
		w.byRP[rp] = ids(cs)
	}
	var err error
	if w.rps, err = s.RelyingParties(); err != nil {
		t.Fatal(err)
	}
	w.counter = 123456
	if err := s.SetCounterCeiling(w.counter); err != nil {
		t.Fatal(err)
	}
	w.settings = fullSettings()
	mustSetSettings(t, s, w.settings)
	w.blob = bytes.Repeat([]byte("large blob "), 300)
	if err := s.SetLargeBlobArray(w.blob); err != nil {
		t.Fatal(err)
	}
	w.secret = bytes.Repeat([]byte{0x5e}, MasterSecretSize)
	if err := s.SetMasterSecret(w.secret); err != nil {
		t.Fatal(err)
	}
	w.attKey, w.attCerts, _ = testAttestationKey(t, "full state")
	if err := s.(AttestationStore).SetAttestationKey(w.attKey, w.attCerts); err != nil {
		t.Fatal(err)
	}
	return w
}

// check compares s with w, and that the insertion sequence carries on.
func (w wantState) check(t *testing.T, s Store) {
	t.Helper()
	if m := s.Meta(); !bytes.Equal(m.MasterSecret, w.secret) {
		t.Errorf("master secret %x, want %x", m.MasterSecret, w.secret)
	}
	wantCount(t, s, len(w.creds))
	for _, c := range w.creds {
		g, err := s.Credential(c.ID)
		if err != nil || !credEqual(g, c) {
			t.Errorf("Credential(%s) = %+v, %v; want %+v", c.ID, g, err, c)
		}
	}
	if _, err := s.Credential([]byte("cred7")); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted credential: %v", err)
	}
	for rp, want := range w.byRP {
		wantByRP(t, s, rp, want)
	}
	wantRPs(t, s, w.rps...)
	if v, err := s.CounterCeiling(); err != nil || v != w.counter {
		t.Errorf("CounterCeiling = %d, %v; want %d", v, err, w.counter)
	}
	wantSettings(t, s, w.settings)
	if b, err := s.LargeBlobArray(); err != nil || !bytes.Equal(b, w.blob) {
		t.Errorf("LargeBlobArray = %d bytes, %v; want %d", len(b), err, len(w.blob))
	}
	wantAttestationKey(t, s, w.attKey, w.attCerts)
	if d, ok := s.(*DB); ok {
		if err := d.Check(); err != nil {
			t.Errorf("Check: %v", err)
		}
	}
}

// checkSeqContinues puts a credential tied in time with rp1's newest: it must come
// first, so the insertion sequence went on from where it was.
func (w wantState) checkSeqContinues(t *testing.T, s Store) {
	t.Helper()
	cs, err := s.CredentialsByRP(rpHash("rp1.example"))
	if err != nil {
		t.Fatal(err)
	}
	c := testCred("rp1.example", "late", "late")
	c.Created = cs[0].Created
	mustPut(t, s, c)
	wantByRP(t, s, "rp1.example", "late,"+w.byRP["rp1.example"])
}

func TestEncryptedPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	aaguid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	d, err := Create(path, CreateOptions{Passphrase: []byte(testPass), KDF: testKDF, AAGUID: &aaguid, Attestation: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Encrypted() {
		t.Error("Encrypted() = false")
	}
	if e, ok := d.Encryption(); !ok || e.Cipher != "AES-256-GCM" || e.KDF != *testKDF {
		t.Errorf("Encryption() = %+v, %v", e, ok)
	}
	meta := d.Meta()
	if meta.FormatVersion != FormatEncrypted || meta.AAGUID != aaguid || meta.Attestation != "none" {
		t.Errorf("Meta = %+v", meta)
	}
	w := fillState(t, d)
	d.Close()

	d = openEncDB(t, path)
	got := d.Meta()
	if got.AAGUID != aaguid || got.Attestation != "none" || got.FormatVersion != FormatEncrypted || !got.Created.Equal(meta.Created) {
		t.Errorf("reopened Meta = %+v, want %+v", got, meta)
	}
	w.check(t, d)
	w.checkSeqContinues(t, d)
	checkCount(t, d)
}

// TestEncryptedRevealsNothing: the bytes of an encrypted state file hold none of
// its secrets nor its metadata — no RP ID or name, user, credential ID, key, PIN
// hash, large blob, AAGUID or master secret, and no rpIdHash (an RP ID's hash names
// the site as well as the ID does).
func TestEncryptedRevealsNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	aaguid := [16]byte{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0x47, 0xa8, 0x89, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0}
	d, err := Create(path, CreateOptions{Passphrase: []byte(testPass), KDF: testKDF, AAGUID: &aaguid})
	if err != nil {
		t.Fatal(err)
	}
	var needles [][]byte
	secret := func(n int) []byte {
		b := make([]byte, n)
		crand.Read(b)
		needles = append(needles, b)
		return b
	}
	for i, rp := range []string{"bank-of-secrets.example", "my-doctor.example", "dating.example"} {
		h := rpHash(rp)
		c := &Credential{ID: secret(32), RPID: rp, RPName: "Name of " + rp, RPIDHash: h,
			User: ctap2.UserEntity{ID: secret(16), Name: fmt.Sprintf("alice%d.hidden", i), DisplayName: "Alice Hidden"},
			Alg:  ctap2.AlgES256, PrivateKey: secret(138), Created: baseTime,
			Extra: map[string][]byte{"credBlob": secret(32), "credRandom": secret(32)}}
		mustPut(t, d, c)
		needles = append(needles, []byte(rp), []byte("Name of "+rp), []byte(c.User.Name), []byte("Alice Hidden"), h[:])
	}
	s := fullSettings()
	s.PINHash = secret(PINHashSize)
	s.MinPINLengthRPIDs = []string{"pin-policy.example"}
	needles = append(needles, []byte("pin-policy.example"))
	mustSetSettings(t, d, s)
	if err := d.SetLargeBlobArray(secret(600)); err != nil {
		t.Fatal(err)
	}
	if err := d.SetMasterSecret(secret(MasterSecretSize)); err != nil {
		t.Fatal(err)
	}
	// The attestation key: its private scalar, and the certificates (which name
	// the softkey's maker, like an AAGUID does).
	attKey, attCerts, scalar := testAttestationKey(t, "hidden attestation subject")
	if err := d.SetAttestationKey(attKey, attCerts); err != nil {
		t.Fatal(err)
	}
	needles = append(needles, scalar, []byte("hidden attestation subject"), attCerts[0][len(attCerts[0])-16:],
		attCerts[1][len(attCerts[1])-16:])
	needles = append(needles, aaguid[:], d.enc.masterKey)
	d.Close()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range needles {
		// Eight bytes of a random value, or a whole string: neither occurs by chance.
		probe := n
		if !isText(n) && len(n) > 8 {
			probe = n[:8]
		}
		if bytes.Contains(raw, probe) {
			t.Errorf("the state file contains %q", n)
		}
	}

	// Index keys are keyed hashes: 32 bytes per identifier, none an rpIdHash.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		for name, want := range map[string]int{"creds": 64, "credids": 32, "users": 64} {
			n := 0
			tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
				n++
				if len(k) != want {
					t.Errorf("%s key %x is %d bytes, want %d", name, k, len(k), want)
				}
				return nil
			})
			if n != 3 {
				t.Errorf("%s has %d keys", name, n)
			}
		}
		// The meta bucket holds the plaintext header and sealed values only.
		tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
			switch string(k) {
			case "magic", "version", "header", "check":
			default:
				if len(v) < sealOverhead {
					t.Errorf("meta %q = %x is not sealed", k, v)
				}
			}
			return nil
		})
		return nil
	})
}

func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func TestOpenWrongPassphrase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	d := createEncDB(t, path)
	mustPut(t, d, testCred("example.com", "alice", "cred-1"))
	d.Close()
	snap := takeSnapshot(t, path)
	_, err := OpenWith(path, OpenOptions{Passphrase: passphrase("Correct horse battery staple")})
	if !errors.Is(err, ErrWrongPassphrase) || err.Error() != "wrong passphrase for "+path {
		t.Errorf("OpenWith(wrong) = %v, want ErrWrongPassphrase: wrong passphrase for %s", err, path)
	}
	snap.check(t, path)
	// No passphrase at all: asked for, not guessed.
	if _, err := Open(path); !errors.Is(err, ErrPassphraseRequired) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open(encrypted) = %v, want ErrPassphraseRequired", err)
	}
	// The callback's own error is returned as it is.
	errTyped := errors.New("no terminal")
	if _, err := OpenWith(path, OpenOptions{Passphrase: func() ([]byte, error) { return nil, errTyped }}); !errors.Is(err, errTyped) {
		t.Errorf("OpenWith(failing callback) = %v", err)
	}
	snap.check(t, path)
	// The right one still opens: nothing was changed.
	openEncDB(t, path)
}

// TestPassphraseNotAskedForPlain: an unencrypted file never calls the callback.
func TestPassphraseNotAskedForPlain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	createDB(t, path).Close()
	d, err := OpenWith(path, OpenOptions{Passphrase: func() ([]byte, error) {
		t.Error("asked for a passphrase of an unencrypted file")
		return nil, errors.New("no")
	}})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
}

// sealedValues lists every value of a state file as bucket, key and raw bytes.
type sealedValue struct {
	bucket, key, value []byte
}

func rawValues(t *testing.T, path string) []sealedValue {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out []sealedValue
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				out = append(out, sealedValue{bytes.Clone(name), bytes.Clone(k), bytes.Clone(v)})
				return nil
			})
		})
	})
	return out
}

// openAndCheck opens path with the test passphrase and checks every record.
func openAndCheck(path string) error {
	d, err := OpenWith(path, OpenOptions{Passphrase: passphrase(testPass)})
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Check()
}

// TestEncryptedBitFlips flips one bit of each stored value in turn — every sealed
// value (meta, records, both indexes) and the header and its checksum: opening and
// checking the file reports it damaged, naming the file, and leaves it as it was.
func TestEncryptedBitFlips(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "good.db")
	d := createEncDB(t, src)
	fillState(t, d)
	d.Close()
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := openAndCheck(src); err != nil {
		t.Fatalf("the good file: %v", err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	n := 0
	for _, v := range rawValues(t, src) {
		if bytes.Equal(v.bucket, bucketMeta) && (string(v.key) == "magic" || string(v.key) == "version") {
			continue // the plaintext type marker and version: TestOpenForeign, TestOpenNewerVersion
		}
		// bbolt copies pages on write: the live value is one of its occurrences.
		var offs []int
		for off := 0; ; {
			i := bytes.Index(good[off:], v.value)
			if i < 0 {
				break
			}
			offs = append(offs, off+i)
			off += i + 1
		}
		if len(offs) == 0 {
			t.Fatalf("%s/%x not found in the file", v.bucket, v.key)
		}
		bit := r.IntN(8 * len(v.value))
		b := bytes.Clone(good)
		for _, off := range offs {
			b[off+bit/8] ^= 1 << (bit % 8)
		}
		path := filepath.Join(dir, fmt.Sprint("flip", n))
		n++
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		snap := takeSnapshot(t, path)
		err := openAndCheck(path)
		prefix := "state file " + path + " is damaged: "
		if !errors.Is(err, ErrDamaged) || !strings.HasPrefix(err.Error(), prefix) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %s, bit %d flipped: %v; want %s…", v.bucket, describeKey(v.key), bit, err, prefix)
		}
		snap.check(t, path)
	}
	t.Logf("%d values flipped", n)
}

// TestEncryptedSwaps moves sealed values between records, in ways that keep every
// value authentic on its own: each is refused, since a value is bound to its bucket,
// key and format.
func TestEncryptedSwaps(t *testing.T) {
	type edit func(t *testing.T, tx *bolt.Tx)
	swap := func(b *bolt.Bucket, k1, k2 []byte) {
		v1, v2 := bytes.Clone(b.Get(k1)), bytes.Clone(b.Get(k2))
		b.Put(k1, v2)
		b.Put(k2, v1)
	}
	firstKeys := func(b *bolt.Bucket, n int) [][]byte {
		var ks [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(ks) < n; k, _ = c.Next() {
			ks = append(ks, bytes.Clone(k))
		}
		return ks
	}
	for name, e := range map[string]edit{
		"two credential records": func(t *testing.T, tx *bolt.Tx) {
			ks := firstKeys(tx.Bucket(bucketCreds), 2)
			swap(tx.Bucket(bucketCreds), ks[0], ks[1])
		},
		"two credential ID index entries": func(t *testing.T, tx *bolt.Tx) {
			ks := firstKeys(tx.Bucket(bucketCredIDs), 2)
			swap(tx.Bucket(bucketCredIDs), ks[0], ks[1])
		},
		"two account index entries": func(t *testing.T, tx *bolt.Tx) {
			ks := firstKeys(tx.Bucket(bucketUsers), 2)
			swap(tx.Bucket(bucketUsers), ks[0], ks[1])
		},
		"seq and count": func(t *testing.T, tx *bolt.Tx) { swap(tx.Bucket(bucketMeta), keySeq, keyCount) },
		"an index entry as a record": func(t *testing.T, tx *bolt.Tx) {
			k := firstKeys(tx.Bucket(bucketUsers), 1)[0]
			tx.Bucket(bucketCreds).Put(k, bytes.Clone(tx.Bucket(bucketUsers).Get(k)))
		},
		"settings as large blob": func(t *testing.T, tx *bolt.Tx) {
			m := tx.Bucket(bucketMeta)
			m.Put(keyLargeBlob, bytes.Clone(m.Get(keySettings)))
		},
		"large blob as attestation key": func(t *testing.T, tx *bolt.Tx) {
			m := tx.Bucket(bucketMeta)
			m.Put(keyAttestation, bytes.Clone(m.Get(keyLargeBlob)))
		},
		"a record under a new key": func(t *testing.T, tx *bolt.Tx) {
			c := tx.Bucket(bucketCreds)
			k := firstKeys(c, 1)[0]
			k2 := bytes.Clone(k)
			k2[40] ^= 1
			c.Put(k2, bytes.Clone(c.Get(k)))
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "softkey.db")
			d := createEncDB(t, path)
			fillState(t, d)
			d.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error { e(t, tx); return nil })
			db.Close()
			if err := openAndCheck(path); !errors.Is(err, ErrDamaged) {
				t.Errorf("open and check = %v, want ErrDamaged", err)
			}
		})
	}
}

// TestEncryptedFromAnotherFile: a value copied from another state file, even one
// with the same passphrase, does not open: each file has its own master key.
func TestEncryptedFromAnotherFile(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	createEncDB(t, a).Close()
	createEncDB(t, b).Close()
	var v []byte
	for _, sv := range rawValues(t, a) {
		if string(sv.key) == "secret" {
			v = sv.value
		}
	}
	editDB(t, b, func(m *bolt.Bucket) error { return m.Put(keySecret, v) })
	if _, err := OpenWith(b, OpenOptions{Passphrase: passphrase(testPass)}); !errors.Is(err, ErrDamaged) {
		t.Errorf("Open = %v, want ErrDamaged", err)
	}
}

func TestEncryptedTruncated(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "good.db")
	d := createEncDB(t, src)
	fillState(t, d)
	d.Close()
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{len(good) / 2, 3 * os.Getpagesize(), 200} {
		path := filepath.Join(dir, fmt.Sprint("cut", n))
		if err := os.WriteFile(path, good[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		snap := takeSnapshot(t, path)
		_, err := OpenWith(path, OpenOptions{Passphrase: passphrase(testPass)})
		if !errors.Is(err, ErrDamaged) || !strings.HasPrefix(err.Error(), "state file "+path+" is damaged: it is truncated (") {
			t.Errorf("Open(%d bytes) = %v, want truncated", n, err)
		}
		snap.check(t, path)
	}
}

func TestEncryptedNewerVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	createEncDB(t, path).Close()
	editDB(t, path, func(m *bolt.Bucket) error {
		return m.Put(keyVersion, binary.BigEndian.AppendUint32(nil, 7))
	})
	snap := takeSnapshot(t, path)
	_, err := OpenWith(path, OpenOptions{Passphrase: func() ([]byte, error) {
		t.Error("asked for the passphrase of a file it cannot read")
		return nil, errors.New("no")
	}})
	want := fmt.Sprintf("state file %s was made by a newer ctapkit (format 7); this one reads up to format %d", path, FormatVersion)
	if !errors.Is(err, ErrNewerVersion) || err == nil || err.Error() != want {
		t.Errorf("Open = %v, want %s", err, want)
	}
	snap.check(t, path)
}

// TestEncryptedHostileHeader: argon2id parameters beyond the bounds (a header made to
// exhaust memory) are refused before any key derivation, even with a valid checksum.
func TestEncryptedHostileHeader(t *testing.T) {
	for name, edit := range map[string]func(h *cryptoHeader){
		"memory":  func(h *cryptoHeader) { h.MemoryKiB = 1 << 31 },
		"time":    func(h *cryptoHeader) { h.Time = 1 << 20 },
		"threads": func(h *cryptoHeader) { h.Threads = 0 },
		"cipher":  func(h *cryptoHeader) { h.Cipher = "ROT13" },
		"salt":    func(h *cryptoHeader) { h.Salt = h.Salt[:4] },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "softkey.db")
			d := createEncDB(t, path)
			h := d.enc.hdr
			d.Close()
			edit(&h)
			hb, err := ctap2.Marshal(&h)
			if err != nil {
				t.Fatal(err)
			}
			editDB(t, path, func(m *bolt.Bucket) error {
				if err := m.Put(keyHeader, hb); err != nil {
					return err
				}
				return m.Put(keyCheck, headerCheck(hb))
			})
			_, err = OpenWith(path, OpenOptions{Passphrase: func() ([]byte, error) {
				t.Error("asked for a passphrase")
				return nil, errors.New("no")
			}})
			if !errors.Is(err, ErrDamaged) {
				t.Errorf("Open = %v, want ErrDamaged", err)
			}
		})
	}
}

func TestOpenUnsafeFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes and owners are Unix notions")
	}
	for _, enc := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "softkey.db")
		if enc {
			createEncDB(t, path).Close()
		} else {
			createDB(t, path).Close()
		}
		for _, mode := range []fs.FileMode{0o640, 0o604, 0o660, 0o602, 0o644} {
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			snap := takeSnapshot(t, path)
			_, err := OpenWith(path, OpenOptions{Passphrase: passphrase(testPass)})
			want := fmt.Sprintf("state file %s is open to other users (mode %04o); refusing to use it: run chmod 600 %s", path, mode, path)
			if !errors.Is(err, ErrUnsafeFile) || err.Error() != want {
				t.Errorf("Open(mode %v) = %v, want %s", mode, err, want)
			}
			snap.check(t, path)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() != 0 {
			continue // only root can give a file away
		}
		const nobody = 65534
		if err := os.Chown(path, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		snap := takeSnapshot(t, path)
		_, err := OpenWith(path, OpenOptions{Passphrase: passphrase(testPass)})
		want := fmt.Sprintf("state file %s belongs to another user (uid %d, you are uid 0); refusing to use it", path, nobody)
		if !errors.Is(err, ErrUnsafeFile) || err.Error() != want {
			t.Errorf("Open(owned by nobody) = %v, want %s", err, want)
		}
		snap.check(t, path)
		if err := os.Chown(path, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/sk.db":        "/tmp/sk.db",
		"my state.db":       "'my state.db'",
		"it's.db":           `'it'\''s.db'`,
		"a/b-c_d+e@f:g.db":  "a/b-c_d+e@f:g.db",
		"$HOME/softkey.db":  "'$HOME/softkey.db'",
		"~/softkey.db":      "'~/softkey.db'",
		"/x/softkey.db;rm ": "'/x/softkey.db;rm '",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestChangePassphrase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	d := createEncDB(t, path)
	w := fillState(t, d)
	d.Close()
	before := rawValues(t, path)
	d = openEncDB(t, path)
	newKDF := &KDFParams{Time: 2, MemoryKiB: 128, Threads: 2}
	if err := d.ChangePassphrase([]byte("a new passphrase"), newKDF); err != nil {
		t.Fatal(err)
	}
	// The open store carries on, with the same keys.
	w.check(t, d)
	if e, _ := d.Encryption(); e.KDF != *newKDF {
		t.Errorf("Encryption().KDF = %+v, want %+v", e.KDF, *newKDF)
	}
	d.Close()
	// Only the header and its checksum changed: no record was rewritten.
	after := rawValues(t, path)
	changed := map[string]bool{}
	for i := range before {
		if !bytes.Equal(before[i].key, after[i].key) {
			t.Fatalf("the keys changed")
		}
		if !bytes.Equal(before[i].value, after[i].value) {
			changed[string(before[i].bucket)+"/"+string(before[i].key)] = true
		}
	}
	if len(before) != len(after) || len(changed) != 2 || !changed["meta/header"] || !changed["meta/check"] {
		t.Errorf("ChangePassphrase changed %v", changed)
	}
	if _, err := OpenWith(path, OpenOptions{Passphrase: passphrase(testPass)}); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("old passphrase: %v", err)
	}
	d, err := OpenWith(path, OpenOptions{Passphrase: passphrase("a new passphrase")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	w.check(t, d)
	if err := d.ChangePassphrase(nil, nil); err == nil {
		t.Error("ChangePassphrase accepted an empty passphrase")
	}
	if err := d.ChangePassphrase([]byte("x"), &KDFParams{Time: 1, MemoryKiB: 1, Threads: 1}); err == nil {
		t.Error("ChangePassphrase accepted argon2id parameters out of range")
	}

	plain := createDB(t, filepath.Join(t.TempDir(), "plain.db"))
	if err := plain.ChangePassphrase([]byte("x"), testKDF); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("ChangePassphrase(plain) = %v, want ErrNotEncrypted", err)
	}
}

// TestEncryptMigration: a plain state file, with everything in it, becomes an
// encrypted one in place, keeping everything; nothing is left beside it.
func TestEncryptMigration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "softkey.db")
	aaguid := [16]byte{9, 8, 7, 6, 5, 4, 3, 2, 1}
	d, err := Create(path, CreateOptions{NoPassphrase: true, AAGUID: &aaguid, Attestation: "self"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	w := fillState(t, d)
	meta := d.Meta()
	if err := d.Encrypt([]byte(testPass), testKDF); err != nil {
		t.Fatal(err)
	}
	if !d.Encrypted() || d.Meta().FormatVersion != FormatEncrypted {
		t.Errorf("after Encrypt: Encrypted() = %v, format %d", d.Encrypted(), d.Meta().FormatVersion)
	}
	w.check(t, d)
	// The new file is locked as the old one was.
	if _, err := OpenWith(path, OpenOptions{Passphrase: passphrase(testPass)}); !errors.Is(err, ErrInUse) {
		t.Errorf("Open during use = %v, want ErrInUse", err)
	}
	if err := d.Encrypt([]byte(testPass), testKDF); !errors.Is(err, ErrEncrypted) {
		t.Errorf("Encrypt twice = %v, want ErrEncrypted", err)
	}
	d.Close()

	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the state file alone", len(entries))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, %v", fi.Mode(), err)
	}
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte("rp1.example")) {
		t.Error("the migrated file still names an RP")
	}
	if _, err := Open(path); !errors.Is(err, ErrPassphraseRequired) {
		t.Errorf("Open without a passphrase = %v", err)
	}
	d2 := openEncDB(t, path)
	got := d2.Meta()
	if got.AAGUID != aaguid || got.Attestation != "self" || !got.Created.Equal(meta.Created) || got.FormatVersion != FormatEncrypted {
		t.Errorf("Meta = %+v, want the identity of %+v", got, meta)
	}
	w.check(t, d2)
	w.checkSeqContinues(t, d2)
	checkCount(t, d2)
}

// TestEncryptKeepsSymlink: a symlinked state file stays a symlink; its target is
// encrypted.
func TestEncryptKeepsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.db")
	link := filepath.Join(dir, "link.db")
	createDB(t, target).Close()
	if err := os.Symlink(target, link); err != nil {
		t.Skip(err)
	}
	d := openDB(t, link)
	mustPut(t, d, testCred("example.com", "alice", "cred-1"))
	if err := d.Encrypt([]byte(testPass), testKDF); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link is gone: %v, %v", fi, err)
	}
	d = openEncDB(t, target)
	if _, err := d.Credential([]byte("cred-1")); err != nil {
		t.Error(err)
	}
}

func TestKDFParams(t *testing.T) {
	if s := DefaultKDF.String(); s != "argon2id t=4 m=64 MiB p=4" {
		t.Errorf("DefaultKDF = %s", s)
	}
	if s := (KDFParams{Time: 1, MemoryKiB: 100, Threads: 1}).String(); s != "argon2id t=1 m=100 KiB p=1" {
		t.Errorf("String = %s", s)
	}
	if err := DefaultKDF.validate(); err != nil {
		t.Error(err)
	}
	for _, p := range []KDFParams{{0, 64, 1}, {1, 7, 1}, {1, 64, 0}, {1, 1<<20 + 1, 1}, {65, 64, 1}, {1, 64, 9}} {
		if p.validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if _, err := Create(filepath.Join(t.TempDir(), "x.db"), CreateOptions{Passphrase: []byte("x"), KDF: &KDFParams{}}); err == nil {
		t.Error("Create accepted zero argon2id parameters")
	}
}

// TestCheck: a consistent file passes in both formats; index entries that do not
// match the records are found.
func TestCheck(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprint("encrypted=", enc), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "softkey.db")
			var d *DB
			if enc {
				d = createEncDB(t, path)
			} else {
				d = createDB(t, path)
			}
			fillState(t, d)
			if err := d.Check(); err != nil {
				t.Fatal(err)
			}
			// An extra account index entry, sealed correctly, pointing nowhere.
			if err := d.update(func(b buckets) error {
				key := cat(b.s.rpTag(make([]byte, 32)), b.s.userTag(make([]byte, 32), []byte("ghost")))
				return b.put(b.users, bucketUsers, key, b.s.idTag([]byte("ghost")))
			}); err != nil {
				t.Fatal(err)
			}
			if err := d.Check(); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "users index has 20 entries for 19 credentials") {
				t.Errorf("Check = %v", err)
			}
		})
	}
}
