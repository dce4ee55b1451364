package store

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// testAttestationKey makes a P-256 key (PKCS #8) with a leaf certificate named cn
// and the CA's, as softkey.NewBatchAttestation does (the store cannot import
// softkey). scalar is the private key's secret, for the raw-bytes test.
func testAttestationKey(t testing.TB, cn string) (key []byte, certs [][]byte, scalar []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now, NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: now, NotAfter: now.Add(time.Hour), BasicConstraintsValid: true}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	if key, err = x509.MarshalPKCS8PrivateKey(leafKey); err != nil {
		t.Fatal(err)
	}
	scalar, err = leafKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return key, [][]byte{leafDER, caDER}, scalar
}

func wantAttestationKey(t *testing.T, s Store, key []byte, certs [][]byte) {
	t.Helper()
	as, ok := s.(AttestationStore)
	if !ok {
		t.Fatalf("%T is not an AttestationStore", s)
	}
	k, c, err := as.AttestationKey()
	if err != nil || !bytes.Equal(k, key) || !slices.EqualFunc(c, certs, bytes.Equal) || (key == nil) != (k == nil) {
		t.Errorf("AttestationKey = %d bytes, %d certificates, %v; want %d bytes, %d certificates", len(k), len(c), err, len(key), len(certs))
	}
}

// testAttestation is the AttestationStore behaviour DB and Memory share.
func testAttestation(t *testing.T, open func(t *testing.T) Store) {
	t.Run("AttestationKey", func(t *testing.T) {
		s := open(t)
		as := s.(AttestationStore)
		wantAttestationKey(t, s, nil, nil)
		key, certs, _ := testAttestationKey(t, "a")
		if err := as.SetAttestationKey(key, certs); err != nil {
			t.Fatal(err)
		}
		want, wantCerts := bytes.Clone(key), cloneCerts(certs)
		// The store keeps its own copies, and hands out copies.
		key[10]++
		certs[0][10]++
		wantAttestationKey(t, s, want, wantCerts)
		k, c, _ := as.AttestationKey()
		k[10]++
		c[1][10]++
		wantAttestationKey(t, s, want, wantCerts)

		// A reset keeps it, as a security key keeps its attestation key.
		if err := s.DeleteAllCredentials(); err != nil {
			t.Fatal(err)
		}
		if err := s.SetMasterSecret(bytes.Repeat([]byte{1}, MasterSecretSize)); err != nil {
			t.Fatal(err)
		}
		mustSetSettings(t, s, DefaultSettings())
		wantAttestationKey(t, s, want, wantCerts)

		// What does not go together is refused, and nothing changes.
		otherKey, otherCerts, _ := testAttestationKey(t, "b")
		for name, kc := range map[string]struct {
			k []byte
			c [][]byte
		}{
			"another key's certificate": {want, otherCerts},
			"no certificates":           {otherKey, nil},
			"no key":                    {nil, otherCerts},
			"not PKCS #8":               {[]byte("key"), otherCerts},
			"not a certificate":         {otherKey, [][]byte{[]byte("cert")}},
			"too many certificates":     {otherKey, slices.Repeat(otherCerts, 5)},
		} {
			if err := as.SetAttestationKey(kc.k, kc.c); err == nil {
				t.Errorf("SetAttestationKey(%s) succeeded", name)
			}
		}
		wantAttestationKey(t, s, want, wantCerts)

		if err := as.SetAttestationKey(otherKey, otherCerts[:1]); err != nil {
			t.Fatal(err)
		}
		wantAttestationKey(t, s, otherKey, otherCerts[:1])
		if err := as.SetAttestationKey(nil, nil); err != nil {
			t.Fatal(err)
		}
		wantAttestationKey(t, s, nil, nil)
	})
}

func TestAttestationStores(t *testing.T) {
	t.Run("Memory", func(t *testing.T) {
		testAttestation(t, func(t *testing.T) Store {
			s := NewMemory(Meta{})
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("DB", func(t *testing.T) {
		testAttestation(t, func(t *testing.T) Store { return createDB(t, filepath.Join(t.TempDir(), "softkey.db")) })
	})
	t.Run("DB encrypted", func(t *testing.T) {
		testAttestation(t, func(t *testing.T) Store { return createEncDB(t, filepath.Join(t.TempDir(), "softkey.db")) })
	})
}

// TestCreateWithAttestationKey: a key given to Create is in the new file, plain or
// encrypted, and still there after reopening; the raw file holds its secret only
// when unencrypted, the user's choice.
func TestCreateWithAttestationKey(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprint("encrypted=", enc), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "softkey.db")
			key, certs, scalar := testAttestationKey(t, "batch")
			opts := CreateOptions{NoPassphrase: true}
			if enc {
				opts = CreateOptions{Passphrase: []byte(testPass), KDF: testKDF}
			}
			opts.Attestation, opts.AttestationKey, opts.AttestationCerts = "batch", key, certs
			d, err := Create(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			wantAttestationKey(t, d, key, certs)
			if d.Meta().Attestation != "batch" {
				t.Errorf("Attestation = %q", d.Meta().Attestation)
			}
			d.Close()

			if enc {
				d = openEncDB(t, path)
			} else {
				d = openDB(t, path)
			}
			wantAttestationKey(t, d, key, certs)
			if err := d.Check(); err != nil {
				t.Error(err)
			}
			d.Close()
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw, scalar[:8]) != !enc {
				t.Errorf("the file holds the private key: %v, want %v", enc, !enc)
			}
		})
	}
}

func TestCreateAttestationErrors(t *testing.T) {
	dir := t.TempDir()
	key, certs, _ := testAttestationKey(t, "batch")
	_, otherCerts, _ := testAttestationKey(t, "other")
	for name, opts := range map[string]CreateOptions{
		"batch without a key":        {Attestation: "batch"},
		"a key without certificates": {AttestationKey: key},
		"another key's certificate":  {AttestationKey: key, AttestationCerts: otherCerts},
	} {
		opts.NoPassphrase = true
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".db")
		if d, err := Create(path, opts); err == nil {
			d.Close()
			t.Errorf("Create(%s) succeeded", name)
		}
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("Create(%s) left a file", name)
		}
	}
	// A key with another mode serves enterprise attestation.
	d, err := Create(filepath.Join(dir, "self.db"), CreateOptions{NoPassphrase: true, Attestation: "self",
		AttestationKey: key, AttestationCerts: certs})
	if err != nil {
		t.Fatal(err)
	}
	wantAttestationKey(t, d, key, certs)
	d.Close()
}

// TestOpenDamagedAttestation: an unencrypted file whose attestation record does not
// decode, or holds a key and certificate that do not go together, is refused at
// open, untouched; the sealed one of an encrypted file fails authentication (see
// TestEncryptedBitFlips).
func TestOpenDamagedAttestation(t *testing.T) {
	key, certs, _ := testAttestationKey(t, "batch")
	_, otherCerts, _ := testAttestationKey(t, "other")
	mismatched, err := encodeAttestationUnchecked(key, otherCerts)
	if err != nil {
		t.Fatal(err)
	}
	good, err := encodeAttestation(key, certs)
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{
		"empty":      {},
		"bad CBOR":   {0xff},
		"truncated":  good[:len(good)-1],
		"mismatched": mismatched,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "softkey.db")
			createDB(t, path).Close()
			editDB(t, path, func(m *bolt.Bucket) error { return m.Put(keyAttestation, raw) })
			snap := takeSnapshot(t, path)
			d, err := Open(path)
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrNotSoftkey) || !strings.Contains(err.Error(), "attestation key record is damaged") {
				t.Errorf("Open = %v", err)
			}
			snap.check(t, path)
		})
	}
}

func encodeAttestationUnchecked(key []byte, certs [][]byte) ([]byte, error) {
	return ctap2.Marshal(&attestationRecord{Key: key, Certs: certs})
}
