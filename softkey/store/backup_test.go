package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
)

const backupPass = "backup passphrase"

func exportBackup(t *testing.T, d *DB) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := d.Export(&buf, []byte(backupPass), testKDF); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestExportImport: a backup of a full state, imported as an encrypted and as a plain
// state file, gives the same softkey: identity, keys, credentials in their order,
// counter, PIN state, settings, large blob.
func TestExportImport(t *testing.T) {
	for _, srcEnc := range []bool{false, true} {
		for _, dstEnc := range []bool{false, true} {
			t.Run(fmt.Sprintf("from encrypted=%v to encrypted=%v", srcEnc, dstEnc), func(t *testing.T) {
				dir := t.TempDir()
				src := filepath.Join(dir, "src.db")
				var d *DB
				if srcEnc {
					d = createEncDB(t, src)
				} else {
					d = createDB(t, src)
				}
				w := fillState(t, d)
				meta := d.Meta()
				d.Close()
				snap := takeSnapshot(t, src)
				if srcEnc {
					d = openEncDB(t, src)
				} else {
					d = openDB(t, src)
				}
				data := exportBackup(t, d)
				d.Close()
				snap.check(t, src) // exporting only reads

				for _, needle := range []string{"rp1.example", "user3@rp0.example", "private key of cred1"} {
					if bytes.Contains(data, []byte(needle)) {
						t.Errorf("the backup contains %q", needle)
					}
				}
				b, err := ReadBackup("b", data, []byte(backupPass))
				if err != nil {
					t.Fatal(err)
				}
				if b.Credentials() != len(w.creds) || b.CounterCeiling() != w.counter || b.Meta().AAGUID != meta.AAGUID {
					t.Errorf("backup: %d credentials, counter %d, AAGUID %x", b.Credentials(), b.CounterCeiling(), b.Meta().AAGUID)
				}
				dst := filepath.Join(dir, "dst.db")
				opts := CreateOptions{NoPassphrase: true}
				if dstEnc {
					opts = CreateOptions{Passphrase: []byte("new state passphrase"), KDF: testKDF}
				}
				d2, err := Import(dst, b, opts)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { d2.Close() })
				if d2.Encrypted() != dstEnc {
					t.Errorf("Encrypted() = %v", d2.Encrypted())
				}
				got := d2.Meta()
				if got.AAGUID != meta.AAGUID || !got.Created.Equal(meta.Created) || got.Attestation != meta.Attestation {
					t.Errorf("imported Meta = %+v, want the identity of %+v", got, meta)
				}
				w.check(t, d2)
				w.checkSeqContinues(t, d2)
				if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("imported file mode %v, %v", fi.Mode(), err)
				}
				// Never over an existing file.
				d2.Close()
				snap = takeSnapshot(t, dst)
				if _, err := Import(dst, b, CreateOptions{NoPassphrase: true}); !errors.Is(err, fs.ErrExist) {
					t.Errorf("Import over an existing file = %v, want fs.ErrExist", err)
				}
				snap.check(t, dst)
			})
		}
	}
}

// TestExportEmpty: a fresh state with no credentials, settings or large blob makes
// a backup that imports as such (never-written stays never-written).
func TestExportEmpty(t *testing.T) {
	dir := t.TempDir()
	d := createEncDB(t, filepath.Join(dir, "src.db"))
	if err := d.SetLargeBlobArray([]byte{}); err != nil {
		t.Fatal(err)
	}
	data := exportBackup(t, d)
	b, err := ReadBackup("b", data, []byte(backupPass))
	if err != nil {
		t.Fatal(err)
	}
	d2, err := Import(filepath.Join(dir, "dst.db"), b, CreateOptions{NoPassphrase: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	wantCount(t, d2, 0)
	wantSettings(t, d2, DefaultSettings())
	if blob, err := d2.LargeBlobArray(); err != nil || blob == nil || len(blob) != 0 {
		t.Errorf("LargeBlobArray = %x (nil: %v), %v; want empty, not nil", blob, blob == nil, err)
	}
}

func TestReadBackupErrors(t *testing.T) {
	d := createEncDB(t, filepath.Join(t.TempDir(), "src.db"))
	fillState(t, d)
	data := exportBackup(t, d)

	if _, err := ReadBackup("sk.backup", data, []byte("wrong")); !errors.Is(err, ErrWrongPassphrase) ||
		err.Error() != "wrong passphrase for backup sk.backup" {
		t.Errorf("wrong passphrase: %v", err)
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x10
	truncated := data[:len(data)-100]
	for name, bad := range map[string][]byte{"flipped": flipped, "truncated": truncated, "checksum only": data[len(data)-sha256.Size:]} {
		if _, err := ReadBackup("sk.backup", bad, []byte(backupPass)); !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrNotBackup) {
			t.Errorf("%s: %v, want ErrDamaged", name, err)
		} else if name != "checksum only" && !strings.HasPrefix(err.Error(), "backup sk.backup is damaged: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, other := range map[string][]byte{"empty": nil, "text": []byte("hello\n"), "state file": []byte("ctapkit-softkey-state")} {
		if _, err := ReadBackup("x", other, []byte(backupPass)); !errors.Is(err, ErrNotBackup) || err.Error() != "x: not a ctapkit softkey backup" {
			t.Errorf("%s: %v, want ErrNotBackup", name, err)
		}
	}

	// A newer backup format, with a valid checksum.
	var env backupEnvelope
	if err := ctap2.Unmarshal(data[:len(data)-sha256.Size], &env); err != nil {
		t.Fatal(err)
	}
	env.Version = 9
	body, err := ctap2.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if _, err := ReadBackup("sk.backup", append(body, sum[:]...), []byte(backupPass)); !errors.Is(err, ErrNewerVersion) ||
		err.Error() != "backup sk.backup was made by a newer ctapkit (backup format 9); this one reads up to 1" {
		t.Errorf("newer backup: %v", err)
	}
	// Parameters out of range are refused before any key derivation.
	env.Version, env.MemoryKiB = 1, 1<<31
	body, _ = ctap2.Marshal(&env)
	sum = sha256.Sum256(body)
	if _, err := ReadBackup("sk.backup", append(body, sum[:]...), []byte(backupPass)); !errors.Is(err, ErrDamaged) {
		t.Errorf("hostile parameters: %v", err)
	}
	if err := d.Export(&bytes.Buffer{}, nil, testKDF); err == nil {
		t.Error("Export accepted an empty passphrase")
	}
}
