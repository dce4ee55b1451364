package store

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// AttestationStore is implemented by the stores that keep a batch attestation key
// (DB and Memory). It is apart from Store so that other Store implementations need
// not change; the engine never reads it, the program that builds softkey.Config does.
//
// The key outlives authenticatorReset, as a security key's attestation key does:
// only the credentials, the master secret and the settings are reset.
type AttestationStore interface {
	// AttestationKey returns the batch attestation key (PKCS #8 DER) and its
	// certificate chain (DER, leaf first); all nil when the state has none.
	AttestationKey() (key []byte, certs [][]byte, err error)
	// SetAttestationKey stores a key and its chain, durable when it returns; nil
	// and nil remove them. The key must be a signing key whose public key is the
	// leaf certificate's.
	SetAttestationKey(key []byte, certs [][]byte) error
}

var (
	_ AttestationStore = (*DB)(nil)
	_ AttestationStore = (*Memory)(nil)
)

// keyAttestation is the meta key of the attestation record: sealed in an encrypted
// file like every other value (it is a private key), plain in an unencrypted one.
var keyAttestation = []byte("attestation")

// maxAttestationCerts bounds the chain: a leaf and a few CAs, never more.
const maxAttestationCerts = 8

// attestationRecord is the stored form of a batch attestation key and its chain.
type attestationRecord struct {
	Key   []byte   `cbor:"1,keyasint"` // PKCS #8 DER
	Certs [][]byte `cbor:"2,keyasint"` // DER, leaf first
}

// checkAttestationKey checks that key and certs go together: a PKCS #8 signing key,
// 1 to maxAttestationCerts certificates that parse, and the leaf's public key is the
// key's. An unencrypted file has no authentication, so this is what finds a
// damaged record there.
func checkAttestationKey(key []byte, certs [][]byte) error {
	if len(key) == 0 || len(certs) == 0 || len(certs) > maxAttestationCerts {
		return fmt.Errorf("attestation key with %d bytes and %d certificates", len(key), len(certs))
	}
	k, err := x509.ParsePKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("attestation key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return fmt.Errorf("attestation key is a %T, not a signing key", k)
	}
	for i, der := range certs {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("attestation certificate %d: %w", i, err)
		}
		if i > 0 {
			continue
		}
		pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(c.PublicKey) {
			return errors.New("the attestation certificate is not the attestation key's")
		}
	}
	return nil
}

func encodeAttestation(key []byte, certs [][]byte) ([]byte, error) {
	if err := checkAttestationKey(key, certs); err != nil {
		return nil, err
	}
	return ctap2.Marshal(&attestationRecord{Key: key, Certs: certs})
}

func decodeAttestation(raw []byte) (*attestationRecord, error) {
	var r attestationRecord
	if err := ctap2.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("attestation record: %w", err)
	}
	if err := checkAttestationKey(r.Key, r.Certs); err != nil {
		return nil, err
	}
	return &r, nil
}

func cloneCerts(certs [][]byte) [][]byte {
	if certs == nil {
		return nil
	}
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = bytes.Clone(c)
	}
	return out
}

// AttestationKey implements AttestationStore.
func (d *DB) AttestationKey() (key []byte, certs [][]byte, err error) {
	err = d.view(func(b buckets) error {
		raw, err := b.getMeta(keyAttestation)
		if err != nil || raw == nil {
			return err
		}
		r, err := decodeAttestation(raw)
		if err != nil {
			return damagef("%v", err)
		}
		key, certs = r.Key, r.Certs
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return key, certs, nil
}

// SetAttestationKey implements AttestationStore: one fsynced transaction.
func (d *DB) SetAttestationKey(key []byte, certs [][]byte) error {
	if key == nil && certs == nil {
		if err := d.update(func(b buckets) error { return b.meta.Delete(keyAttestation) }); err != nil {
			return fmt.Errorf("removing attestation key: %w", err)
		}
		return nil
	}
	raw, err := encodeAttestation(key, certs)
	if err != nil {
		return err
	}
	if err := d.update(func(b buckets) error { return b.putMeta(keyAttestation, raw) }); err != nil {
		return fmt.Errorf("storing attestation key: %w", err)
	}
	return nil
}

// AttestationKey implements AttestationStore.
func (m *Memory) AttestationKey() (key []byte, certs [][]byte, err error) {
	if err := m.lock(); err != nil {
		return nil, nil, err
	}
	defer m.mu.Unlock()
	return bytes.Clone(m.attKey), cloneCerts(m.attCerts), nil
}

// SetAttestationKey implements AttestationStore.
func (m *Memory) SetAttestationKey(key []byte, certs [][]byte) error {
	if key != nil || certs != nil {
		if err := checkAttestationKey(key, certs); err != nil {
			return err
		}
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.attKey, m.attCerts = bytes.Clone(key), cloneCerts(certs)
	return nil
}
