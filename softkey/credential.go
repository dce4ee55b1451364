package softkey

import (
	"crypto"
	"crypto/x509"
	"errors"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// credential is a credential of this authenticator found for a request: a sealed
// (non-resident) one carries its raw key, a resident one its store record.
type credential struct {
	id     []byte
	alg    ctap2.COSEAlgorithm
	raw    []byte            // sealed credentials
	stored *store.Credential // resident credentials
	// sealed is the extension data of a sealed credential (resident credentials
	// keep theirs in stored: CredProtect and Extra).
	sealed sealedExtensions
	// cacheKey names the credential in the signer cache: rpIdHash || ID for sealed
	// credentials (an ID opens only for its RP), the ID for resident ones.
	cacheKey string
}

// lookup resolves a descriptor from an allow or exclude list for rpIDHash. It
// returns nil (and no error) for anything that is not a credential of this
// authenticator for that RP: other types, foreign IDs, IDs sealed for another RP,
// deleted resident credentials.
func (a *Authenticator) lookup(rpIDHash [32]byte, d ctap2.CredentialDescriptor) (*credential, error) {
	if d.Type != ctap2.CredentialType || len(d.ID) == 0 || len(d.ID) > maxCredentialIDLength {
		return nil, nil
	}
	switch d.ID[0] {
	case credIDSealed, credIDSealedExt:
		cacheKey := string(rpIDHash[:]) + string(d.ID)
		if e, ok := a.signers.get(cacheKey); ok {
			return &credential{id: d.ID, alg: e.alg, sealed: e.sealed, cacheKey: cacheKey}, nil
		}
		alg, raw, ext, ok := a.sealer.open(rpIDHash, d.ID)
		if !ok || !canGenerate(alg) {
			return nil, nil
		}
		return &credential{id: d.ID, alg: alg, raw: raw, sealed: ext, cacheKey: cacheKey}, nil
	case credIDResident:
		c, err := a.st.Credential(d.ID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, ctap2.ErrOther
		}
		if c.RPIDHash != rpIDHash {
			return nil, nil
		}
		return residentCredential(c), nil
	}
	return nil, nil
}

func residentCredential(c *store.Credential) *credential {
	return &credential{id: c.ID, alg: c.Alg, stored: c, cacheKey: string(c.ID)}
}

// signer returns the credential's private key, parsed once and then kept in the
// signer cache: parsing a key computes its public point, which costs about half a
// signature, and RPs assert with the same few credentials again and again.
func (a *Authenticator) signer(c *credential) (crypto.Signer, error) {
	if e, ok := a.signers.get(c.cacheKey); ok {
		return e.key, nil
	}
	key, err := parseCredentialKey(c)
	if err != nil {
		return nil, err
	}
	a.signers.put(c.cacheKey, signerEntry{alg: c.alg, key: key, sealed: c.sealed})
	return key, nil
}

func parseCredentialKey(c *credential) (crypto.Signer, error) {
	if c.stored == nil {
		return signerFromRaw(c.alg, c.raw)
	}
	k, err := x509.ParsePKCS8PrivateKey(c.stored.PrivateKey)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("stored key cannot sign")
	}
	return s, nil
}

// signerCacheSize bounds the parsed keys kept in memory.
const signerCacheSize = 256

type signerEntry struct {
	alg ctap2.COSEAlgorithm
	key crypto.Signer
	// sealed is what the sealed ID carries besides the key, so a cached sealed
	// credential keeps its credProtect level, hmac-secret and credBlob.
	sealed sealedExtensions
}

// signerCache holds recently used parsed keys, evicting the oldest insertion. It is
// used under the authenticator's command lock and emptied by reset. Resident
// credentials are still looked up in the store first, so a deleted one is never
// served from the cache.
type signerCache struct {
	m     map[string]signerEntry
	order []string
}

func (s *signerCache) get(k string) (signerEntry, bool) {
	e, ok := s.m[k]
	return e, ok
}

func (s *signerCache) put(k string, e signerEntry) {
	if s.m == nil {
		s.m = make(map[string]signerEntry, signerCacheSize)
	}
	if _, ok := s.m[k]; ok {
		return
	}
	if len(s.order) == signerCacheSize {
		delete(s.m, s.order[0])
		s.order = s.order[1:]
	}
	s.m[k] = e
	s.order = append(s.order, k)
}

func (s *signerCache) clear() { *s = signerCache{} }
