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
	case credIDSealed:
		alg, raw, ok := a.sealer.open(rpIDHash, d.ID)
		if !ok || !canGenerate(alg) {
			return nil, nil
		}
		return &credential{id: d.ID, alg: alg, raw: raw}, nil
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
	return &credential{id: c.ID, alg: c.Alg, stored: c}
}

// signer returns the credential's private key.
func (c *credential) signer() (crypto.Signer, error) {
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
