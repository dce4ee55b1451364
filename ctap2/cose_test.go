package ctap2

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// seeded returns a deterministic byte stream for key generation.
func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return mrand.NewChaCha8(s)
}

var (
	rsaOnce sync.Once
	rsaKey  crypto.Signer
	rsaErr  error
)

// testRSAKey generates one RS256 key per test binary; RSA generation is slow.
func testRSAKey(t testing.TB) crypto.Signer {
	t.Helper()
	rsaOnce.Do(func() { rsaKey, rsaErr = GenerateKey(AlgRS256, nil) })
	if rsaErr != nil {
		t.Fatal(rsaErr)
	}
	return rsaKey
}

func testKey(t testing.TB, alg COSEAlgorithm, seed byte) crypto.Signer {
	t.Helper()
	if alg == AlgRS256 {
		return testRSAKey(t)
	}
	k, err := GenerateKey(alg, seeded(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func coseBytes(t testing.TB, k *COSEKey) []byte {
	t.Helper()
	b, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type publicKey interface{ Equal(crypto.PublicKey) bool }

func TestCOSEKeyAlgorithms(t *testing.T) {
	for _, tc := range []struct {
		alg    COSEAlgorithm
		prefix string // the encoding up to the first key material
	}{
		{AlgES256, "a5 01 02 03 26 20 01 21 5820"},
		{AlgES384, "a5 01 02 03 3822 20 02 21 5830"},
		{AlgEdDSA, "a4 01 01 03 27 20 06 21 5820"},
		{AlgRS256, "a4 01 03 03 390100 20 590100"},
		{AlgECDHESHKDF256, "a5 01 02 03 3818 20 01 21 5820"},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			priv := testKey(t, tc.alg, 1)
			key := &COSEKey{Alg: tc.alg, Public: priv.Public()}
			enc := coseBytes(t, key)
			if !bytes.HasPrefix(enc, unhex(tc.prefix)) {
				t.Errorf("encoding %x does not start with %s", enc, tc.prefix)
			}
			if tc.alg == AlgRS256 && !bytes.HasSuffix(enc, unhex("21 43 010001")) {
				t.Errorf("RSA key %x does not end with e = 65537", enc)
			}
			if err := CheckCanonical(enc); err != nil {
				t.Error(err)
			}

			back, err := ParseCOSEKey(enc)
			if err != nil {
				t.Fatal(err)
			}
			if back.Alg != tc.alg || !back.Public.(publicKey).Equal(priv.Public()) {
				t.Fatalf("round trip gave %+v", back)
			}
			if again := coseBytes(t, back); !bytes.Equal(again, enc) {
				t.Errorf("second encoding differs: %x", again)
			}

			p, err := key.PEM()
			if err != nil {
				t.Fatal(err)
			}
			block, rest := pem.Decode([]byte(p))
			if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("PEM = %q", p)
			}
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !pub.(publicKey).Equal(priv.Public()) {
				t.Error("PEM holds a different key")
			}

			if tc.alg == AlgECDHESHKDF256 {
				if err := key.Verify([]byte("m"), []byte("s")); err == nil || errors.Is(err, ErrBadSignature) {
					t.Errorf("Verify with a key-agreement key = %v, want unsupported algorithm", err)
				}
				return
			}
			msg := []byte("authenticator data || client data hash")
			for _, rnd := range []io.Reader{rand.Reader, nil} {
				sig, err := Sign(tc.alg, priv, msg, rnd)
				if err != nil {
					t.Fatal(err)
				}
				if err := key.Verify(msg, sig); err != nil {
					t.Fatalf("Verify(own signature) = %v", err)
				}
				if err := back.Verify(msg, sig); err != nil {
					t.Fatalf("Verify with the parsed key = %v", err)
				}
				badMsg := append(bytes.Clone(msg), '!')
				badSig := bytes.Clone(sig)
				badSig[len(badSig)/2] ^= 0x01
				other := &COSEKey{Alg: tc.alg, Public: testKey(t, tc.alg, 2).Public()}
				for name, check := range map[string]error{
					"other message":     key.Verify(badMsg, sig),
					"flipped bit":       key.Verify(msg, badSig),
					"truncated":         key.Verify(msg, sig[:len(sig)-1]),
					"extended":          key.Verify(msg, append(bytes.Clone(sig), 0)),
					"empty":             key.Verify(msg, nil),
					"other key":         other.Verify(msg, sig),
					"signature as data": key.Verify(sig, msg),
				} {
					if tc.alg == AlgRS256 && name == "other key" {
						continue // one RSA key per run
					}
					if !errors.Is(check, ErrBadSignature) {
						t.Errorf("%s: Verify = %v, want ErrBadSignature", name, check)
					}
				}
			}
		})
	}
}

func TestSignDeterministicWithoutRandomness(t *testing.T) {
	msg := []byte("golden")
	for _, alg := range []COSEAlgorithm{AlgES256, AlgES384, AlgEdDSA} {
		priv := testKey(t, alg, 3)
		a, err1 := Sign(alg, priv, msg, nil)
		b, err2 := Sign(alg, priv, msg, nil)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%v: Sign with nil rnd is not deterministic (%v, %v)", alg, err1, err2)
		}
	}
	if _, err := Sign(AlgECDHESHKDF256, testKey(t, AlgES256, 1), msg, nil); err == nil {
		t.Error("Sign accepted a key-agreement algorithm")
	}
	if _, err := Sign(COSEAlgorithm(-36), testKey(t, AlgES256, 1), msg, nil); err == nil {
		t.Error("Sign accepted ES512")
	}
}

func TestEdDSAKnownAnswer(t *testing.T) {
	// RFC 8032 §7.1, TEST 1.
	seed := unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
	priv, err := GenerateKey(AlgEdDSA, bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	wantPub := unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	if !bytes.Equal(priv.Public().(ed25519.PublicKey), wantPub) {
		t.Fatalf("public key %x", priv.Public())
	}
	sig, err := Sign(AlgEdDSA, priv, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantSig := unhex(`e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555
		fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b`)
	if !bytes.Equal(sig, wantSig) {
		t.Errorf("signature %x", sig)
	}
	enc := coseBytes(t, &COSEKey{Alg: AlgEdDSA, Public: priv.Public()})
	if want := cat(unhex("a4 01 01 03 27 20 06 21 5820"), wantPub); !bytes.Equal(enc, want) {
		t.Errorf("COSE = %x\nwant   %x", enc, want)
	}
}

func TestGenerateKeyDeterministic(t *testing.T) {
	for _, alg := range []COSEAlgorithm{AlgES256, AlgES384, AlgEdDSA, AlgECDHESHKDF256} {
		a, b, c := testKey(t, alg, 7), testKey(t, alg, 7), testKey(t, alg, 8)
		if !a.Public().(publicKey).Equal(b.Public()) {
			t.Errorf("%v: same seed, different keys", alg)
		}
		if a.Public().(publicKey).Equal(c.Public()) {
			t.Errorf("%v: different seeds, same key", alg)
		}
		r1, r2 := testKey(t, alg, 0), testKey(t, alg, 0)
		if alg != AlgEdDSA && !r1.(*ecdsa.PrivateKey).Equal(r2) {
			t.Errorf("%v: private keys differ for the same seed", alg)
		}
	}

	// The scalar is the reader's bytes: 1 gives the generator point.
	for _, tc := range []struct {
		alg   COSEAlgorithm
		curve elliptic.Curve
	}{{AlgES256, elliptic.P256()}, {AlgES384, elliptic.P384()}} {
		size := (tc.curve.Params().BitSize + 7) / 8
		one := append(make([]byte, size-1), 1)
		k, err := GenerateKey(tc.alg, bytes.NewReader(one))
		if err != nil {
			t.Fatal(err)
		}
		pub := k.Public().(*ecdsa.PublicKey)
		gen := append(append([]byte{4}, tc.curve.Params().Gx.FillBytes(make([]byte, size))...), tc.curve.Params().Gy.FillBytes(make([]byte, size))...)
		if pub.Curve != tc.curve || !bytes.Equal(mustBytes(pub), gen) {
			t.Errorf("%v: scalar 1 did not give the generator", tc.alg)
		}
		// Scalars 0 and >= n are rejected and the next candidate is drawn.
		stream := cat(make([]byte, size), bytes.Repeat([]byte{0xff}, size), tc.curve.Params().N.FillBytes(make([]byte, size)), one)
		k, err = GenerateKey(tc.alg, bytes.NewReader(stream))
		if err != nil || !k.Public().(*ecdsa.PublicKey).Equal(pub) {
			t.Errorf("%v: rejection sampling: %v", tc.alg, err)
		}
	}

	// A source that only produces invalid scalars, or runs dry, is an error, not a hang.
	if _, err := GenerateKey(AlgES256, zeroReader{}); err == nil {
		t.Error("GenerateKey from an all-zero source succeeded")
	}
	for _, alg := range []COSEAlgorithm{AlgES256, AlgES384, AlgEdDSA} {
		if _, err := GenerateKey(alg, bytes.NewReader(make([]byte, 10))); err == nil {
			t.Errorf("%v: GenerateKey from a 10-byte source succeeded", alg)
		}
	}
	if _, err := GenerateKey(COSEAlgorithm(-36), nil); err == nil {
		t.Error("GenerateKey(ES512) succeeded")
	}
	// Without a reader, keys are random.
	a, _ := GenerateKey(AlgES256, nil)
	b, _ := GenerateKey(AlgES256, nil)
	if a.Public().(publicKey).Equal(b.Public()) {
		t.Error("two random keys are equal")
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestParseCOSEKeyRejects(t *testing.T) {
	p256 := elliptic.P256().Params()
	gx, gy := p256.Gx.FillBytes(make([]byte, 32)), p256.Gy.FillBytes(make([]byte, 32))
	gyPlus1 := new(big.Int).Add(p256.Gy, big.NewInt(1)).FillBytes(make([]byte, 32))
	ec2 := func(alg COSEAlgorithm, crv int, x, y []byte) []byte {
		return mustCBOR(t, coseEC2{Kty: ktyEC2, Alg: alg, Crv: crv, X: x, Y: y})
	}
	okp := func(alg COSEAlgorithm, crv int, x []byte) []byte {
		return mustCBOR(t, coseOKP{Kty: ktyOKP, Alg: alg, Crv: crv, X: x})
	}
	rsaKey := testRSAKey(t).Public().(*rsa.PublicKey)
	n := rsaKey.N.Bytes()
	rsaEnc := func(n, e []byte) []byte { return mustCBOR(t, coseRSA{Kty: ktyRSA, Alg: AlgRS256, N: n, E: e}) }
	odd := func(bits int) []byte { // 2^(bits-1) + 1
		v := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		return v.Add(v, big.NewInt(1)).Bytes()
	}
	even2048 := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 2047), big.NewInt(2)).Bytes()
	e65537 := []byte{1, 0, 1}
	p384 := elliptic.P384().Params()
	x384, y384 := p384.Gx.FillBytes(make([]byte, 48)), p384.Gy.FillBytes(make([]byte, 48))
	ed := make([]byte, 32)

	// Sanity: the valid forms of the inputs below parse.
	for name, enc := range map[string][]byte{
		"EC2 generator": ec2(AlgES256, crvP256, gx, gy), "ECDH generator": ec2(AlgECDHESHKDF256, crvP256, gx, gy),
		"P-384 generator": ec2(AlgES384, crvP384, x384, y384), "Ed25519": okp(AlgEdDSA, crvEd25519, ed),
		"RSA": rsaEnc(n, e65537), "RSA e=3": rsaEnc(n, []byte{3}), "RSA 8192 bits": rsaEnc(odd(8192), e65537),
		"unknown extra label": unhex("a6 01 02 03 26 20 01 21 5820" + strings.Repeat("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296", 1) +
			" 22 5820 4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5 0b 43 6b6964"),
	} {
		if _, err := ParseCOSEKey(enc); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	for _, tc := range []struct {
		name string
		enc  []byte
	}{
		{"point not on curve", ec2(AlgES256, crvP256, gx, gyPlus1)},
		{"point at infinity", ec2(AlgES256, crvP256, make([]byte, 32), make([]byte, 32))},
		{"coordinates too short", ec2(AlgES256, crvP256, gx[1:], gy[1:])},
		{"x with leading zero", ec2(AlgES256, crvP256, append([]byte{0}, gx...), gy)},
		{"y missing", ec2(AlgES256, crvP256, gx, nil)},
		{"P-384 coordinates for P-256", ec2(AlgES256, crvP256, x384, y384)},
		{"P-256 point labelled P-384", ec2(AlgES384, crvP384, gx, gy)},
		{"ES256 on P-384", ec2(AlgES256, crvP384, x384, y384)},
		{"ES384 on P-256", ec2(AlgES384, crvP256, gx, gy)},
		{"ES512", ec2(COSEAlgorithm(-36), 3, gx, gy)},
		{"EC2 with EdDSA", ec2(AlgEdDSA, crvP256, gx, gy)},
		{"EC2 with RS256", ec2(AlgRS256, crvP256, gx, gy)},
		{"EC2 without alg", ec2(0, crvP256, gx, gy)},
		{"X25519", okp(AlgEdDSA, 4, ed)},
		{"Ed448", okp(AlgEdDSA, 7, ed)},
		{"OKP with ES256", okp(AlgES256, crvEd25519, ed)},
		{"Ed25519 key of 31 bytes", okp(AlgEdDSA, crvEd25519, ed[:31])},
		{"Ed25519 key of 33 bytes", okp(AlgEdDSA, crvEd25519, append(ed, 0))},
		{"RSA 1024 bits", rsaEnc(odd(1024), e65537)},
		{"RSA 2047 bits", rsaEnc(odd(2047), e65537)},
		{"RSA 8200 bits", rsaEnc(odd(8200), e65537)},
		{"RSA even modulus", rsaEnc(even2048, e65537)},
		{"RSA modulus with leading zero", rsaEnc(append([]byte{0}, n...), e65537)},
		{"RSA empty modulus", rsaEnc(nil, e65537)},
		{"RSA e=1", rsaEnc(n, []byte{1})},
		{"RSA even e", rsaEnc(n, []byte{1, 0, 0})},
		{"RSA e missing", rsaEnc(n, nil)},
		{"RSA e too large", rsaEnc(n, []byte{0x80, 0, 0, 0})},
		{"RSA e of 9 bytes", rsaEnc(n, append([]byte{1}, make([]byte, 8)...))},
		{"RSA with ES256", mustCBOR(t, coseRSA{Kty: ktyRSA, Alg: AlgES256, N: n, E: e65537})},
		{"unknown kty 4 (symmetric)", unhex("a3 01 04 03 05 20 5820" + strings.Repeat("00", 32))},
		{"kty 0", unhex("a2 01 00 03 26")},
		{"no kty", unhex("a4 03 26 20 01 21 5820" + strings.Repeat("00", 32) + " 22 5820" + strings.Repeat("00", 32))},
		{"kty as text", unhex("a1 01 63 454332")},
		{"crv as text", unhex("a3 01 01 03 27 20 67 45643235353139")},
		{"not a map", unhex("84 01 02 03 26")},
		{"empty map", unhex("a0")},
		{"empty input", nil},
		{"trailing bytes", append(okp(AlgEdDSA, crvEd25519, ed), 0)},
		{"duplicate label", unhex("a5 01 01 03 27 20 06 21 5820" + strings.Repeat("00", 32) + " 21 5820" + strings.Repeat("11", 32))},
		{"indefinite map", unhex("bf 01 01 03 27 20 06 21 5820" + strings.Repeat("00", 32) + " ff")},
		{"tagged x", unhex("a4 01 01 03 27 20 06 21 d8 40 5820" + strings.Repeat("00", 32))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if k, err := ParseCOSEKey(tc.enc); err == nil {
				t.Errorf("ParseCOSEKey(%x) = %+v, want error", tc.enc, k)
			} else if !strings.HasPrefix(err.Error(), "cose") {
				t.Errorf("error %q does not say it is about a COSE key", err)
			}
		})
	}
}

func TestVerifyKeyMismatch(t *testing.T) {
	msg := []byte("m")
	ecKey := testKey(t, AlgES256, 1)
	sig, err := Sign(AlgES256, ecKey, msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]*COSEKey{
		"ES256 with an Ed25519 key": {Alg: AlgES256, Public: testKey(t, AlgEdDSA, 1).Public()},
		"ES256 with a P-384 key":    {Alg: AlgES256, Public: testKey(t, AlgES384, 1).Public()},
		"ES384 with a P-256 key":    {Alg: AlgES384, Public: ecKey.Public()},
		"EdDSA with a P-256 key":    {Alg: AlgEdDSA, Public: ecKey.Public()},
		"RS256 with a P-256 key":    {Alg: AlgRS256, Public: ecKey.Public()},
		"unknown algorithm":         {Alg: COSEAlgorithm(-36), Public: ecKey.Public()},
	} {
		err := k.Verify(msg, sig)
		if err == nil || errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: Verify = %v, want a key/algorithm error", name, err)
		}
	}
}

func TestCOSEKeyMarshalUnsupported(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string]crypto.PublicKey{
		"P-521":        &p521.PublicKey,
		"X25519":       x25519.PublicKey(),
		"raw bytes":    []byte{1, 2, 3},
		"nil":          nil,
		"ed25519 priv": ed25519.NewKeyFromSeed(make([]byte, 32)),
	} {
		if enc, err := (&COSEKey{Alg: AlgES256, Public: pub}).Marshal(); err == nil {
			t.Errorf("%s: Marshal = %x, want error", name, enc)
		}
	}
}

func TestAlgorithmNames(t *testing.T) {
	for name, want := range map[string]COSEAlgorithm{
		"es256": AlgES256, "ES256": AlgES256, "eddsa": AlgEdDSA, "EdDSA": AlgEdDSA, "es384": AlgES384, "RS256": AlgRS256,
	} {
		if got, err := ParseAlgorithm(name); err != nil || got != want {
			t.Errorf("ParseAlgorithm(%q) = %v, %v", name, got, err)
		}
	}
	for _, name := range []string{"", "es512", "ecdh-es-hkdf-256", "-7", "es 256"} {
		if got, err := ParseAlgorithm(name); err == nil {
			t.Errorf("ParseAlgorithm(%q) = %v, want error", name, got)
		}
	}
	for a, want := range map[COSEAlgorithm]string{AlgES256: "es256", AlgRS256: "rs256", AlgECDHESHKDF256: "ecdh-es-hkdf-256", -36: "-36", 0: "0"} {
		if got := a.String(); got != want {
			t.Errorf("COSEAlgorithm(%d).String() = %q, want %q", int(a), got, want)
		}
	}
}
