package store

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the ephemeral Store behind soft:mem and most tests. It keeps the same
// per-RP index as DB, so tests of the engine see the same ordering and costs.
type Memory struct {
	mu      sync.Mutex
	closed  bool
	meta    Meta
	counter uint32
	seq     uint64
	// settings is nil until first written.
	settings  *Settings
	largeBlob []byte
	// attKey and attCerts are the batch attestation key and chain; nil when none.
	attKey   []byte
	attCerts [][]byte
	byID     map[string]*memRecord
	byRP     map[[32]byte]map[string]*memRecord
	scanned  atomic.Int64 // records visited by CredentialsByRP, for the index test
}

type memRecord struct {
	cred *Credential
	seq  uint64
}

// NewMemory returns an empty in-memory store with the given identity. Zero fields are
// filled in: a missing master secret or AAGUID is drawn from crypto/rand, so
// NewMemory(Meta{}) is a fresh authenticator. Deterministic tests pass a complete Meta
// (for example from NewMeta with a seeded reader).
func NewMemory(meta Meta) Store {
	meta = meta.clone()
	if len(meta.MasterSecret) == 0 {
		meta.MasterSecret = make([]byte, MasterSecretSize)
		rand.Read(meta.MasterSecret) // never fails since Go 1.24
	}
	if meta.AAGUID == [16]byte{} {
		m, _ := NewMeta(nil, nil) // crypto/rand cannot fail
		meta.AAGUID = m.AAGUID
	}
	if meta.FormatVersion == 0 {
		meta.FormatVersion = FormatVersion
	}
	if meta.Created.IsZero() {
		meta.Created = time.Now().UTC().Truncate(time.Second)
	}
	return &Memory{
		meta: meta,
		byID: make(map[string]*memRecord),
		byRP: make(map[[32]byte]map[string]*memRecord),
	}
}

func (m *Memory) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Meta implements Store.
func (m *Memory) Meta() Meta {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.meta.clone()
}

// SetMasterSecret implements Store.
func (m *Memory) SetMasterSecret(secret []byte) error {
	if len(secret) != MasterSecretSize {
		return fmt.Errorf("master secret is %d bytes, want %d", len(secret), MasterSecretSize)
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.meta.MasterSecret = bytes.Clone(secret)
	return nil
}

// PutCredential implements Store.
func (m *Memory) PutCredential(c *Credential) error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("storing credential: %w", err)
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.deleteLocked(c.ID)
	for id, r := range m.byRP[c.RPIDHash] {
		if bytes.Equal(r.cred.User.ID, c.User.ID) {
			m.deleteLocked([]byte(id))
		}
	}
	m.seq++
	r := &memRecord{cred: c.Clone(), seq: m.seq}
	m.byID[string(c.ID)] = r
	idx := m.byRP[c.RPIDHash]
	if idx == nil {
		idx = make(map[string]*memRecord)
		m.byRP[c.RPIDHash] = idx
	}
	idx[string(c.ID)] = r
	return nil
}

func (m *Memory) deleteLocked(id []byte) bool {
	r, ok := m.byID[string(id)]
	if !ok {
		return false
	}
	delete(m.byID, string(id))
	idx := m.byRP[r.cred.RPIDHash]
	delete(idx, string(id))
	if len(idx) == 0 {
		delete(m.byRP, r.cred.RPIDHash)
	}
	return true
}

// Credential implements Store.
func (m *Memory) Credential(id []byte) (*Credential, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	r, ok := m.byID[string(id)]
	if !ok {
		return nil, ErrNotFound
	}
	return r.cred.Clone(), nil
}

// CredentialsByRP implements Store.
func (m *Memory) CredentialsByRP(rpIDHash [32]byte) ([]*Credential, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	idx := m.byRP[rpIDHash]
	recs := make([]*memRecord, 0, len(idx))
	for _, r := range idx {
		m.scanned.Add(1)
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b *memRecord) int {
		switch {
		case newerThan(a.cred, b.cred, a.seq, b.seq):
			return -1
		case newerThan(b.cred, a.cred, b.seq, a.seq):
			return 1
		}
		return 0
	})
	out := make([]*Credential, len(recs))
	for i, r := range recs {
		out[i] = r.cred.Clone()
	}
	return out, nil
}

// DeleteCredential implements Store.
func (m *Memory) DeleteCredential(id []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if !m.deleteLocked(id) {
		return ErrNotFound
	}
	return nil
}

// CountCredentials implements Store.
func (m *Memory) CountCredentials() (int, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	return len(m.byID), nil
}

// DeleteAllCredentials implements Store.
func (m *Memory) DeleteAllCredentials() error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	clear(m.byID)
	clear(m.byRP)
	return nil
}

// CounterCeiling implements Store.
func (m *Memory) CounterCeiling() (uint32, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	return m.counter, nil
}

// SetCounterCeiling implements Store.
func (m *Memory) SetCounterCeiling(v uint32) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.counter = v
	return nil
}

// Settings implements Store.
func (m *Memory) Settings() (Settings, error) {
	if err := m.lock(); err != nil {
		return Settings{}, err
	}
	defer m.mu.Unlock()
	if m.settings == nil {
		return DefaultSettings(), nil
	}
	return m.settings.clone(), nil
}

// SetSettings implements Store.
func (m *Memory) SetSettings(s Settings) error {
	c := s.clone()
	if err := c.validate(); err != nil {
		return err
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.settings = &c
	return nil
}

// LargeBlobArray implements Store.
func (m *Memory) LargeBlobArray() ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	return bytes.Clone(m.largeBlob), nil
}

// SetLargeBlobArray implements Store.
func (m *Memory) SetLargeBlobArray(b []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.largeBlob = bytes.Clone(b)
	return nil
}

// RelyingParties implements Store.
func (m *Memory) RelyingParties() ([]RPInfo, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	rps := make([]RPInfo, 0, len(m.byRP))
	for hash, recs := range m.byRP {
		var newest *memRecord
		for _, r := range recs {
			if newest == nil || newerThan(r.cred, newest.cred, r.seq, newest.seq) {
				newest = r
			}
		}
		if newest == nil {
			continue
		}
		rps = append(rps, RPInfo{ID: newest.cred.RPID, Name: newest.cred.RPName, IDHash: hash, Credentials: len(recs)})
	}
	slices.SortFunc(rps, compareRPs)
	return rps, nil
}

// Close implements Store; the contents are gone afterwards.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.byID, m.byRP = nil, nil
	m.settings, m.largeBlob = nil, nil
	m.attKey, m.attCerts = nil, nil
	return nil
}

// scannedRecords counts records visited by CredentialsByRP (index test).
func (m *Memory) scannedRecords() int64 { return m.scanned.Load() }
