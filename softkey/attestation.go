package softkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"

	"github.com/ctapkit/ctapkit/ctap2"
)

// emptyAttStmt is the attStmt of the "none" format: an empty CBOR map.
var emptyAttStmt = ctap2.RawMessage{0xa0}

// attest signs authData || clientDataHash per the attestation mode and returns the
// format and statement (WebAuthn §8.2 packed, §8.7 none).
func (a *Authenticator) attest(alg ctap2.COSEAlgorithm, credKey crypto.Signer, authData, clientDataHash []byte) (string, ctap2.RawMessage, error) {
	if a.cfg.Attestation == AttestationNone {
		return ctap2.FormatNone, emptyAttStmt, nil
	}
	stmt := ctap2.AttStmt{Alg: alg}
	key := credKey
	if a.cfg.Attestation == AttestationBatch {
		key = a.cfg.BatchKey
		stmt.X5C = a.cfg.BatchCerts
		var ok bool
		if stmt.Alg, ok = algorithmOf(key); !ok {
			return "", nil, ctap2.ErrOther
		}
	}
	sig, err := ctap2.Sign(stmt.Alg, key, concat(authData, clientDataHash), a.signRand)
	if err != nil {
		return "", nil, ctap2.ErrOther
	}
	stmt.Sig = a.cfg.Faults.attestationSig(sig)
	out, err := ctap2.Marshal(stmt)
	if err != nil {
		return "", nil, ctap2.ErrOther
	}
	return ctap2.FormatPacked, out, nil
}

// algorithmOf is the COSE algorithm an attestation key signs with.
func algorithmOf(key crypto.Signer) (ctap2.COSEAlgorithm, bool) {
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			return ctap2.AlgES256, true
		case elliptic.P384():
			return ctap2.AlgES384, true
		}
	case ed25519.PublicKey:
		return ctap2.AlgEdDSA, true
	}
	return 0, false
}

// concat returns a || b in a fresh slice: the message every CTAP signature covers.
func concat(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}
