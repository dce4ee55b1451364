package store

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func createDB(t testing.TB, path string) *DB {
	t.Helper()
	d, err := Create(path, CreateOptions{NoPassphrase: true})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func openDB(t testing.TB, path string) *DB {
	t.Helper()
	d, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDB(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		return createDB(t, filepath.Join(t.TempDir(), "softkey.db"))
	})
}

// TestDBReopened runs the suite on a state file that was closed and opened again.
func TestDBReopened(t *testing.T) {
	testStore(t, func(t *testing.T) Store {
		path := filepath.Join(t.TempDir(), "softkey.db")
		if err := createDB(t, path).Close(); err != nil {
			t.Fatal(err)
		}
		return openDB(t, path)
	})
}

func TestDBPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	aaguid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	d, err := Create(path, CreateOptions{NoPassphrase: true, AAGUID: &aaguid, Attestation: "self",
		Rand: bytes.NewReader(bytes.Repeat([]byte{0x42}, 64))})
	if err != nil {
		t.Fatal(err)
	}
	if d.Path() != path || d.Encrypted() {
		t.Errorf("Path() = %q, Encrypted() = %v", d.Path(), d.Encrypted())
	}
	meta := d.Meta()
	if meta.AAGUID != aaguid || !bytes.Equal(meta.MasterSecret, bytes.Repeat([]byte{0x42}, 32)) ||
		meta.Attestation != "self" || meta.FormatVersion != FormatPlain || meta.Created.IsZero() {
		t.Fatalf("Meta = %+v", meta)
	}
	var want []*Credential
	for i := range 20 {
		c := testCred(fmt.Sprintf("rp%d.example", i%3), fmt.Sprint("user", i), fmt.Sprint("cred", i))
		c.Created = baseTime.Add(time.Duration(i%4) * time.Second)
		mustPut(t, d, c)
		want = append(want, c)
	}
	if err := d.DeleteCredential([]byte("cred7")); err != nil {
		t.Fatal(err)
	}
	want = append(want[:7], want[8:]...)
	byRP, err := d.CredentialsByRP(rpHash("rp1.example"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetCounterCeiling(123456); err != nil {
		t.Fatal(err)
	}
	secret := bytes.Repeat([]byte{9}, MasterSecretSize)
	if err := d.SetMasterSecret(secret); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openDB(t, path)
	got := d.Meta()
	if got.AAGUID != aaguid || !bytes.Equal(got.MasterSecret, secret) || got.Attestation != "self" ||
		got.FormatVersion != FormatPlain || !got.Created.Equal(meta.Created) {
		t.Errorf("reopened Meta = %+v, want %+v with the new secret", got, meta)
	}
	if v, err := d.CounterCeiling(); err != nil || v != 123456 {
		t.Errorf("CounterCeiling = %d, %v", v, err)
	}
	wantCount(t, d, len(want))
	for _, c := range want {
		g, err := d.Credential(c.ID)
		if err != nil || !credEqual(g, c) {
			t.Errorf("Credential(%s) = %+v, %v; want %+v", c.ID, g, err, c)
		}
	}
	if _, err := d.Credential([]byte("cred7")); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted credential after reopen: %v", err)
	}
	// Ordering, including the insertion-order tie-break, survives the reopen.
	wantByRP(t, d, "rp1.example", ids(byRP))
	// The insertion sequence carries on: a new credential with a tied time is newest.
	c := testCred("rp1.example", "late", "late")
	c.Created = byRP[0].Created
	mustPut(t, d, c)
	wantByRP(t, d, "rp1.example", "late,"+ids(byRP))
	checkCount(t, d)
}

// checkCount compares the maintained count with the indexes' real sizes.
func checkCount(t *testing.T, d *DB) {
	t.Helper()
	n, err := d.CountCredentials()
	if err != nil {
		t.Fatal(err)
	}
	d.view(func(b buckets) error {
		for name, bk := range map[string]*bolt.Bucket{"creds": b.creds, "credids": b.credIDs, "users": b.users} {
			if k := bk.Stats().KeyN; k != n {
				t.Errorf("bucket %s has %d keys, count says %d", name, k, n)
			}
		}
		return nil
	})
}

func TestDBCountConsistent(t *testing.T) {
	d := createDB(t, filepath.Join(t.TempDir(), "softkey.db"))
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		id := fmt.Sprint("c", r.IntN(40))
		switch r.IntN(4) {
		case 0:
			d.DeleteCredential([]byte(id))
		default:
			mustPut(t, d, testCred(fmt.Sprint("rp", r.IntN(3)), fmt.Sprint("u", r.IntN(15)), id))
		}
	}
	checkCount(t, d)
	if err := d.DeleteAllCredentials(); err != nil {
		t.Fatal(err)
	}
	checkCount(t, d)
}

func TestCreateFileMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "softkey.db")
	createDB(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode %v, want 0700", di.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the state file (no temporary files)", len(entries))
	}
}

func TestCreateNeedsPassphraseChoice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	_, err := Create(path, CreateOptions{})
	if !errors.Is(err, ErrPassphraseRequired) || !strings.Contains(err.Error(), "--no-passphrase") {
		t.Errorf("Create without a passphrase or NoPassphrase: %v", err)
	}
	if _, err := Create(path, CreateOptions{NoPassphrase: true, Passphrase: []byte("x")}); err == nil {
		t.Error("Create accepted both a passphrase and NoPassphrase")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused Create left a file: %v", err)
	}
	if _, err := Create(path, CreateOptions{NoPassphrase: true, Attestation: "packed"}); err == nil {
		t.Error("Create accepted attestation mode \"packed\"")
	}
}

// snapshot records a file's content and modification time; the time is first set
// into the past so that any write would show.
type snapshot struct {
	sum   [32]byte
	mtime time.Time
	mode  fs.FileMode
}

func takeSnapshot(t *testing.T, path string) snapshot {
	t.Helper()
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	return readSnapshot(t, path)
}

func readSnapshot(t *testing.T, path string) snapshot {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	var s snapshot
	if !fi.IsDir() {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s.sum = sha256.Sum256(b)
	}
	s.mtime, s.mode = fi.ModTime(), fi.Mode()
	return s
}

func (s snapshot) check(t *testing.T, path string) {
	t.Helper()
	if got := readSnapshot(t, path); got != s {
		t.Errorf("%s changed: %+v, was %+v", path, got, s)
	}
}

func TestCreateExisting(t *testing.T) {
	dir := t.TempDir()
	for name, make := range map[string]func(path string){
		"text": func(path string) { os.WriteFile(path, []byte("precious\n"), 0o644) },
		"softkey": func(path string) {
			if err := createDB(t, path).Close(); err != nil {
				t.Fatal(err)
			}
		},
		"dangling symlink": func(path string) { os.Symlink(filepath.Join(dir, "nowhere"), path) },
	} {
		path := filepath.Join(dir, name)
		make(path)
		var snap snapshot
		if name != "dangling symlink" {
			snap = takeSnapshot(t, path)
		}
		_, err := Create(path, CreateOptions{NoPassphrase: true})
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("%s: Create = %v, want fs.ErrExist", name, err)
		}
		if name != "dangling symlink" {
			snap.check(t, path)
		} else if _, err := os.Stat(filepath.Join(dir, "nowhere")); err == nil {
			t.Errorf("Create followed a dangling symlink")
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("directory holds %d entries, want 3 (no temporary files)", len(entries))
	}
}

func TestOpenMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	_, err := Open(path)
	if !errors.Is(err, ErrNotExist) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want ErrNotExist and fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) created the file")
	}
}

// foreignFiles makes files that are not softkey state files, each in its own way.
func foreignFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	write := func(name string, b []byte) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		files[name] = path
	}
	write("empty", nil)
	write("text", []byte("[core]\n\trepositoryformatversion = 0\n"))
	r := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	write("random", random)
	write("short", []byte{0xed, 0xda, 0x0c, 0xed})

	bolted := func(name string, fn func(tx *bolt.Tx) error) {
		path := filepath.Join(dir, name)
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		files[name] = path
	}
	bolted("bbolt-other", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("widgets"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	bolted("bbolt-empty", func(tx *bolt.Tx) error { return nil })
	bolted("bbolt-meta-no-magic", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("magic"), []byte("something else"))
	})

	// Our own files, damaged.
	ours := func() []byte {
		path := filepath.Join(t.TempDir(), "softkey.db")
		d := createDB(t, path)
		var cs []*Credential
		for i := range 300 {
			cs = append(cs, testCred("example.com", fmt.Sprint("u", i), fmt.Sprint("c", i)))
		}
		putMany(t, d, cs)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	page := os.Getpagesize()
	m0, _ := parseBoltMeta(ours)
	m1, _ := parseBoltMeta(ours[page:])
	used := int(max(m0.pgid, m1.pgid)) * page // bbolt's high-water mark; the file has slack after it
	if used < 8*page || used > len(ours) {
		t.Fatalf("state file uses %d of %d bytes", used, len(ours))
	}
	write("truncated-half", ours[:used/2])
	write("truncated-2-pages", ours[:2*page])
	write("truncated-100", ours[:100])
	write("truncated-last-page", ours[:used-page])
	noMeta := bytes.Clone(ours)
	clear(noMeta[:2*page])
	write("meta-pages-zeroed", noMeta)
	dirPath := filepath.Join(dir, "directory")
	if err := os.Mkdir(dirPath, 0o700); err != nil {
		t.Fatal(err)
	}
	files["directory"] = dirPath
	return files
}

func TestOpenForeign(t *testing.T) {
	for name, path := range foreignFiles(t, t.TempDir()) {
		t.Run(name, func(t *testing.T) {
			snap := takeSnapshot(t, path)
			d, err := Open(path)
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			// Our own file cut short is damaged; anything else is not a state file.
			if strings.HasPrefix(name, "truncated-") {
				if !errors.Is(err, ErrDamaged) || !strings.HasPrefix(err.Error(), "state file "+path+" is damaged: it is truncated (") {
					t.Errorf("Open = %v, want ErrDamaged: state file %s is damaged: it is truncated (…)", err, path)
				}
			} else if !errors.Is(err, ErrNotSoftkey) {
				t.Errorf("Open = %v, want ErrNotSoftkey", err)
			} else if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a ctapkit softkey state file (") {
				t.Errorf("error %q does not name the file and the reason", err)
			}
			t.Log(err)
			snap.check(t, path)
		})
	}
}

// editDB changes a closed state file behind the store's back.
func editDB(t *testing.T, path string, fn func(meta *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket(bucketMeta)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenNewerVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	if err := createDB(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	editDB(t, path, func(m *bolt.Bucket) error {
		return m.Put(keyVersion, binary.BigEndian.AppendUint32(nil, FormatVersion+1))
	})
	snap := takeSnapshot(t, path)
	_, err := Open(path)
	want := fmt.Sprintf("state file %s was made by a newer ctapkit (format %d); this one reads up to format %d",
		path, FormatVersion+1, FormatVersion)
	if !errors.Is(err, ErrNewerVersion) || errors.Is(err, ErrNotSoftkey) || err.Error() != want {
		t.Errorf("Open(newer) = %v, want ErrNewerVersion: %s", err, want)
	}
	snap.check(t, path)
}

func TestOpenDamagedMeta(t *testing.T) {
	for name, edit := range map[string]func(m *bolt.Bucket) error{
		"version 0":     func(m *bolt.Bucket) error { return m.Put(keyVersion, []byte{0, 0, 0, 0}) },
		"short version": func(m *bolt.Bucket) error { return m.Put(keyVersion, []byte{1}) },
		"bad header":    func(m *bolt.Bucket) error { return m.Put(keyHeader, []byte{0xff}) },
		"no secret":     func(m *bolt.Bucket) error { return m.Delete(keySecret) },
		"no counter":    func(m *bolt.Bucket) error { return m.Delete(keyCounter) },
		"no creds": func(m *bolt.Bucket) error {
			return m.Tx().DeleteBucket(bucketCreds)
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "softkey.db")
			if err := createDB(t, path).Close(); err != nil {
				t.Fatal(err)
			}
			editDB(t, path, edit)
			snap := takeSnapshot(t, path)
			if _, err := Open(path); !errors.Is(err, ErrNotSoftkey) {
				t.Errorf("Open = %v, want ErrNotSoftkey", err)
			}
			snap.check(t, path)
		})
	}
}

// TestOpenPlainClaimingEncryption: a format 1 header that says "encrypted" was never
// written by any ctapkit; it is refused as damaged, untouched.
func TestOpenPlainClaimingEncryption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	d := createDB(t, path)
	m := d.Meta()
	d.Close()
	hdr := header{Encrypted: true, CreatedSec: m.Created.Unix(), AAGUID: m.AAGUID[:]}
	editDB(t, path, func(m *bolt.Bucket) error {
		b, err := encodeHeader(hdr)
		if err != nil {
			return err
		}
		return m.Put(keyHeader, b)
	})
	snap := takeSnapshot(t, path)
	if _, err := Open(path); !errors.Is(err, ErrNotSoftkey) {
		t.Errorf("Open = %v, want ErrNotSoftkey", err)
	}
	snap.check(t, path)
}

func TestOpenInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	d := createDB(t, path)
	mustPut(t, d, testCred("example.com", "alice", "cred-1"))
	for range 2 {
		start := time.Now()
		_, err := Open(path)
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "in use") {
			t.Errorf("second Open = %v, want ErrInUse", err)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("second Open took %v", el)
		}
	}
	// The first opener is unaffected.
	if _, err := d.Credential([]byte("cred-1")); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2 := openDB(t, path)
	if _, err := Open(path); !errors.Is(err, ErrInUse) {
		t.Errorf("Open while reopened = %v, want ErrInUse", err)
	}
	d2.Close()
	openDB(t, path)
}

// TestOpenInUseOtherProcess holds the lock in a child process.
func TestOpenInUseOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	if err := createDB(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolder$")
	cmd.Env = append(os.Environ(), "STORE_TEST_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "holding\n" {
		t.Fatalf("child said %q, %v", line, err)
	}
	start := time.Now()
	if _, err := Open(path); !errors.Is(err, ErrInUse) {
		t.Errorf("Open while a child holds the file = %v, want ErrInUse", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Open took %v", el)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	openDB(t, path)
}

// TestLockHolder is the child of TestOpenInUseOtherProcess: it opens the state file
// and holds it until its stdin closes.
func TestLockHolder(t *testing.T) {
	path := os.Getenv("STORE_TEST_HOLD")
	if path == "" {
		t.Skip("helper process")
	}
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin)
	d.Close()
}

func TestDBDamagedRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	d := createDB(t, path)
	mustPut(t, d, testCred("example.com", "alice", "cred-1"))
	d.Close()
	h := rpHash("example.com")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCreds).Put(cat(h[:], []byte("cred-1")), []byte{0xa1, 0x01})
	})
	db.Close()
	d = openDB(t, path)
	if _, err := d.Credential([]byte("cred-1")); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Credential(damaged) = %v, want a damage error", err)
	}
	if _, err := d.CredentialsByRP(h); err == nil {
		t.Errorf("CredentialsByRP(damaged) succeeded")
	}
}

// TestOpenReadsOnly: opening and reading a good state file does not write to it.
func TestOpenReadsOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	d := createDB(t, path)
	mustPut(t, d, testCred("example.com", "alice", "cred-1"))
	mustSetSettings(t, d, fullSettings())
	if err := d.SetLargeBlobArray([]byte{0x80}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	snap := takeSnapshot(t, path)
	d = openDB(t, path)
	if _, err := d.CredentialsByRP(rpHash("example.com")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CountCredentials(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Settings(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LargeBlobArray(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RelyingParties(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	snap.check(t, path)
}
