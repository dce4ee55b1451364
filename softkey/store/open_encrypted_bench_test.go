package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/internal/benchratio"
)

// BenchmarkOpenEncrypted opens (and closes) an encrypted state file with the default
// argon2id parameters. x-argon2id is the ratio to one argon2id derivation measured
// in the same run: everything but the key derivation is noise.
//
//	go test -run '^$' -bench OpenEncrypted ./softkey/store/
func BenchmarkOpenEncrypted(b *testing.B) {
	path := filepath.Join(b.TempDir(), "softkey.db")
	d, err := Create(path, CreateOptions{Passphrase: []byte(testPass)})
	if err != nil {
		b.Fatal(err)
	}
	fillBench(b, d)
	d.Close()
	// Three derivations before and three after the loop, like benchratio's baseline.
	kdf := func() time.Duration {
		start := time.Now()
		for range 3 {
			DefaultKDF.key([]byte(testPass), make([]byte, saltSize))
		}
		return time.Since(start) / 3
	}
	before := kdf()
	b.ResetTimer()
	for b.Loop() {
		d, err := OpenWith(path, OpenOptions{Passphrase: passphrase(testPass)})
		if err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
	b.StopTimer()
	base := float64(before+kdf()) / 2
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/base, "x-argon2id")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/open")
}

// BenchmarkCredentialEncrypted reads one credential by ID: from an encrypted file
// (a keyed hash, two index reads, two AES-GCM opens, the decode) and, as x-plain,
// relative to the same read of an unencrypted file, alternating.
func BenchmarkCredentialEncrypted(b *testing.B) {
	dir := b.TempDir()
	enc, err := Create(filepath.Join(dir, "enc.db"), CreateOptions{Passphrase: []byte(testPass)})
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	plain := createDB(b, filepath.Join(dir, "plain.db"))
	fillBench(b, enc)
	fillBench(b, plain)
	id := []byte("cred-500")
	read := func(d *DB) func() {
		return func() {
			if _, err := d.Credential(id); err != nil {
				b.Fatal(err)
			}
		}
	}
	onEnc, onPlain := read(enc), read(plain)
	benchratio.Compare(b, onEnc, onPlain).Report(b, "x-plain", "encrypted", "plain")
}

// BenchmarkUnsealRecord is the AES-256-GCM open of one stored credential record
// (about 330 bytes), as a multiple of one P-256 signature.
func BenchmarkUnsealRecord(b *testing.B) {
	d, err := Create(filepath.Join(b.TempDir(), "enc.db"), CreateOptions{Passphrase: []byte(testPass), KDF: testKDF})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	c := testCred("example.com", "alice", "cred-1")
	c.PrivateKey = make([]byte, 138) // PKCS #8 P-256
	rec, err := encodeCredential(c, 1)
	if err != nil {
		b.Fatal(err)
	}
	key := make([]byte, 64)
	sealed := d.enc.s.seal(bucketCreds, key, rec)
	benchratio.Run(b, func() {
		if _, err := d.enc.s.open(bucketCreds, key, sealed); err != nil {
			b.Fatal(err)
		}
	})
}

// fillBench stores 1,000 credentials over 100 RPs.
func fillBench(b *testing.B, d *DB) {
	var cs []*Credential
	for i := range 1000 {
		id := fmt.Sprint("cred-", i)
		cs = append(cs, testCred(fmt.Sprintf("rp%d.example", i%100), id, id))
	}
	putMany(b, d, cs)
}
