package ctap2

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
)

// COSEAlgorithm is a COSE algorithm identifier (RFC 9053; IANA COSE registry).
type COSEAlgorithm int

// The signature algorithms ctapkit speaks, and the PIN protocols' key agreement.
const (
	AlgES256         COSEAlgorithm = -7
	AlgEdDSA         COSEAlgorithm = -8
	AlgES384         COSEAlgorithm = -35
	AlgRS256         COSEAlgorithm = -257
	AlgECDHESHKDF256 COSEAlgorithm = -25
)

var algNames = map[COSEAlgorithm]string{
	AlgES256: "es256", AlgEdDSA: "eddsa", AlgES384: "es384", AlgRS256: "rs256",
	AlgECDHESHKDF256: "ecdh-es-hkdf-256",
}

// String returns the lower-case name used on the command line ("es256"), or the number.
func (a COSEAlgorithm) String() string {
	if n, ok := algNames[a]; ok {
		return n
	}
	return fmt.Sprintf("%d", int(a))
}

// ParseAlgorithm maps a command-line name (es256, eddsa, es384, rs256; any case) to its
// COSE identifier.
func ParseAlgorithm(name string) (COSEAlgorithm, error) {
	for a, n := range algNames {
		if a != AlgECDHESHKDF256 && strings.EqualFold(n, name) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("unknown algorithm %q (want es256, eddsa, es384 or rs256)", name)
}

// COSE key parameters (RFC 9052 §7, RFC 9053 §7).
const (
	coseKty    = 1
	coseAlg    = 3
	coseCrv    = -1 // EC2/OKP; for RSA the same label is n
	coseX      = -2 // EC2/OKP; for RSA the same label is e
	coseY      = -3
	ktyOKP     = 1
	ktyEC2     = 2
	ktyRSA     = 3
	crvP256    = 1
	crvP384    = 2
	crvEd25519 = 6
)

// COSEKey is a credential public key as carried in attested credential data.
type COSEKey struct {
	Alg    COSEAlgorithm
	Public crypto.PublicKey // *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey
}

// coseEC2 and friends are the wire forms; the labels are negative so the canonical
// order is 1, 3, -1, -2, -3.
type coseEC2 struct {
	Kty int           `cbor:"1,keyasint"`
	Alg COSEAlgorithm `cbor:"3,keyasint"`
	Crv int           `cbor:"-1,keyasint"`
	X   []byte        `cbor:"-2,keyasint"`
	Y   []byte        `cbor:"-3,keyasint"`
}

type coseOKP struct {
	Kty int           `cbor:"1,keyasint"`
	Alg COSEAlgorithm `cbor:"3,keyasint"`
	Crv int           `cbor:"-1,keyasint"`
	X   []byte        `cbor:"-2,keyasint"`
}

type coseRSA struct {
	Kty int           `cbor:"1,keyasint"`
	Alg COSEAlgorithm `cbor:"3,keyasint"`
	N   []byte        `cbor:"-1,keyasint"`
	E   []byte        `cbor:"-2,keyasint"`
}

// ParseCOSEKey decodes a COSE_Key for ES256, ES384, EdDSA or RS256 (and the -25 ECDH key
// of the PIN protocols), checking that kty, alg, curve and point agree.
func ParseCOSEKey(data []byte) (*COSEKey, error) {
	var hdr struct {
		Kty int           `cbor:"1,keyasint"`
		Alg COSEAlgorithm `cbor:"3,keyasint"`
	}
	if err := Unmarshal(data, &hdr); err != nil {
		return nil, fmt.Errorf("cose key: %w", err)
	}
	switch hdr.Kty {
	case ktyEC2:
		var k coseEC2
		if err := Unmarshal(data, &k); err != nil {
			return nil, fmt.Errorf("cose EC2 key: %w", err)
		}
		var curve elliptic.Curve
		switch {
		case k.Crv == crvP256 && (k.Alg == AlgES256 || k.Alg == AlgECDHESHKDF256):
			curve = elliptic.P256()
		case k.Crv == crvP384 && k.Alg == AlgES384:
			curve = elliptic.P384()
		default:
			return nil, fmt.Errorf("cose EC2 key: unsupported alg %d with curve %d", k.Alg, k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(k.X) != size || len(k.Y) != size {
			return nil, fmt.Errorf("cose EC2 key: coordinates are %d and %d bytes, want %d", len(k.X), len(k.Y), size)
		}
		pub, err := ecdhCheckedPoint(curve, k.X, k.Y)
		if err != nil {
			return nil, err
		}
		return &COSEKey{Alg: k.Alg, Public: pub}, nil
	case ktyOKP:
		var k coseOKP
		if err := Unmarshal(data, &k); err != nil {
			return nil, fmt.Errorf("cose OKP key: %w", err)
		}
		if k.Alg != AlgEdDSA || k.Crv != crvEd25519 {
			return nil, fmt.Errorf("cose OKP key: unsupported alg %d with curve %d", k.Alg, k.Crv)
		}
		if len(k.X) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("cose OKP key: x is %d bytes, want 32", len(k.X))
		}
		return &COSEKey{Alg: k.Alg, Public: ed25519.PublicKey(k.X)}, nil
	case ktyRSA:
		var k coseRSA
		if err := Unmarshal(data, &k); err != nil {
			return nil, fmt.Errorf("cose RSA key: %w", err)
		}
		if k.Alg != AlgRS256 {
			return nil, fmt.Errorf("cose RSA key: unsupported alg %d", k.Alg)
		}
		n := new(big.Int).SetBytes(k.N)
		e := new(big.Int).SetBytes(k.E)
		if n.BitLen() < 2048 || n.BitLen() > 8192 || len(k.N) != (n.BitLen()+7)/8 {
			return nil, fmt.Errorf("cose RSA key: modulus of %d bits is not acceptable", n.BitLen())
		}
		if n.Bit(0) == 0 {
			return nil, errors.New("cose RSA key: modulus is even")
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return nil, errors.New("cose RSA key: bad public exponent")
		}
		return &COSEKey{Alg: k.Alg, Public: &rsa.PublicKey{N: n, E: int(e.Int64())}}, nil
	}
	return nil, fmt.Errorf("cose key: unsupported key type %d", hdr.Kty)
}

// ecdhCheckedPoint builds an ECDSA public key after checking the point is on the curve
// (crypto/ecdh does the check and rejects the point at infinity).
func ecdhCheckedPoint(curve elliptic.Curve, x, y []byte) (*ecdsa.PublicKey, error) {
	uncompressed := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, uncompressed)
	if err != nil {
		return nil, fmt.Errorf("cose EC2 key: %w", err)
	}
	return pub, nil
}

// Marshal encodes the key as a canonical COSE_Key.
func (k *COSEKey) Marshal() ([]byte, error) {
	switch pub := k.Public.(type) {
	case *ecdsa.PublicKey:
		raw, err := pub.Bytes()
		if err != nil {
			return nil, fmt.Errorf("cose key: %w", err)
		}
		size := (len(raw) - 1) / 2
		var crv int
		switch pub.Curve {
		case elliptic.P256():
			crv = crvP256
		case elliptic.P384():
			crv = crvP384
		default:
			return nil, fmt.Errorf("cose key: unsupported curve %s", pub.Curve.Params().Name)
		}
		return Marshal(coseEC2{Kty: ktyEC2, Alg: k.Alg, Crv: crv, X: raw[1 : 1+size], Y: raw[1+size:]})
	case ed25519.PublicKey:
		return Marshal(coseOKP{Kty: ktyOKP, Alg: k.Alg, Crv: crvEd25519, X: []byte(pub)})
	case *rsa.PublicKey:
		return Marshal(coseRSA{Kty: ktyRSA, Alg: k.Alg, N: pub.N.Bytes(), E: big.NewInt(int64(pub.E)).Bytes()})
	}
	return nil, fmt.Errorf("cose key: unsupported public key type %T", k.Public)
}

// PEM returns the key as a PEM "PUBLIC KEY" (SubjectPublicKeyInfo), for openssl.
func (k *COSEKey) PEM() (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// ErrBadSignature is returned when a signature does not verify.
var ErrBadSignature = errors.New("signature does not verify")

// Verify checks sig over msg with the key's algorithm. ECDSA signatures are ASN.1 DER,
// EdDSA raw 64 bytes, RS256 PKCS #1 v1.5 (CTAP 2.1 §6.5.6; WebAuthn §6.5.5).
func (k *COSEKey) Verify(msg, sig []byte) error {
	return verifySignature(k.Alg, k.Public, msg, sig)
}

func verifySignature(alg COSEAlgorithm, pub crypto.PublicKey, msg, sig []byte) error {
	ok := false
	switch alg {
	case AlgES256:
		p, isEC := pub.(*ecdsa.PublicKey)
		if !isEC || p.Curve != elliptic.P256() {
			return fmt.Errorf("es256 needs a P-256 key, have %T", pub)
		}
		h := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(p, h[:], sig)
	case AlgES384:
		p, isEC := pub.(*ecdsa.PublicKey)
		if !isEC || p.Curve != elliptic.P384() {
			return fmt.Errorf("es384 needs a P-384 key, have %T", pub)
		}
		h := sha512.Sum384(msg)
		ok = ecdsa.VerifyASN1(p, h[:], sig)
	case AlgEdDSA:
		p, isEd := pub.(ed25519.PublicKey)
		if !isEd {
			return fmt.Errorf("eddsa needs an Ed25519 key, have %T", pub)
		}
		ok = len(sig) == ed25519.SignatureSize && ed25519.Verify(p, msg, sig)
	case AlgRS256:
		p, isRSA := pub.(*rsa.PublicKey)
		if !isRSA {
			return fmt.Errorf("rs256 needs an RSA key, have %T", pub)
		}
		h := sha256.Sum256(msg)
		ok = rsa.VerifyPKCS1v15(p, crypto.SHA256, h[:], sig) == nil
	default:
		return fmt.Errorf("unsupported signature algorithm %v", alg)
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// Sign produces a signature over msg in the encoding alg calls for. With rnd nil,
// ECDSA signatures are deterministic (RFC 6979), which the softkey's seed mode uses
// for golden tests; otherwise they are randomized from a secure source.
func Sign(alg COSEAlgorithm, priv crypto.Signer, msg []byte, rnd io.Reader) ([]byte, error) {
	switch alg {
	case AlgES256:
		h := sha256.Sum256(msg)
		return priv.Sign(rnd, h[:], crypto.SHA256)
	case AlgES384:
		h := sha512.Sum384(msg)
		return priv.Sign(rnd, h[:], crypto.SHA384)
	case AlgRS256:
		h := sha256.Sum256(msg)
		return priv.Sign(rnd, h[:], crypto.SHA256)
	case AlgEdDSA:
		return priv.Sign(rnd, msg, crypto.Hash(0))
	}
	return nil, fmt.Errorf("unsupported signature algorithm %v", alg)
}

// GenerateKey makes a new private key for alg from the bytes of rnd (nil: crypto/rand).
// EC and Ed25519 keys are derived from rnd's output alone, so a seeded reader gives the
// same key every time; RSA keys always come from the system's secure source.
func GenerateKey(alg COSEAlgorithm, rnd io.Reader) (crypto.Signer, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	switch alg {
	case AlgES256, AlgECDHESHKDF256:
		return generateECDSA(elliptic.P256(), rnd)
	case AlgES384:
		return generateECDSA(elliptic.P384(), rnd)
	case AlgEdDSA:
		seed := make([]byte, ed25519.SeedSize)
		if _, err := io.ReadFull(rnd, seed); err != nil {
			return nil, err
		}
		return ed25519.NewKeyFromSeed(seed), nil
	case AlgRS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unsupported signature algorithm %v", alg)
}

// generateECDSA draws scalars until one is in [1, n-1]: rejection sampling, uniform.
func generateECDSA(curve elliptic.Curve, rnd io.Reader) (*ecdsa.PrivateKey, error) {
	buf := make([]byte, (curve.Params().BitSize+7)/8)
	for range 100 {
		if _, err := io.ReadFull(rnd, buf); err != nil {
			return nil, err
		}
		if k, err := ecdsa.ParseRawPrivateKey(curve, buf); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("generating EC key: random source keeps producing invalid scalars")
}
