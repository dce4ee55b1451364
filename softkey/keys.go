package softkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// canGenerate reports whether the softkey makes credentials of alg. RS256 keys are
// verified by the host side but not generated: a sealed 2048-bit key would not fit a
// credential ID, and RSA key generation takes long enough to time out hosts.
func canGenerate(alg ctap2.COSEAlgorithm) bool {
	switch alg {
	case ctap2.AlgES256, ctap2.AlgEdDSA, ctap2.AlgES384:
		return true
	}
	return false
}

// rawPrivateKey is the compact form sealed into credential IDs: the scalar of an EC
// key, the seed of an Ed25519 key.
func rawPrivateKey(key crypto.Signer) ([]byte, error) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k.Bytes()
	case ed25519.PrivateKey:
		return k.Seed(), nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", key)
}

// signerFromRaw is the inverse of rawPrivateKey.
func signerFromRaw(alg ctap2.COSEAlgorithm, raw []byte) (crypto.Signer, error) {
	switch alg {
	case ctap2.AlgES256:
		return ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
	case ctap2.AlgES384:
		return ecdsa.ParseRawPrivateKey(elliptic.P384(), raw)
	case ctap2.AlgEdDSA:
		if len(raw) != ed25519.SeedSize {
			return nil, fmt.Errorf("ed25519 seed of %d bytes", len(raw))
		}
		return ed25519.NewKeyFromSeed(raw), nil
	}
	return nil, fmt.Errorf("unsupported algorithm %v", alg)
}
