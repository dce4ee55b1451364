package ctap2

import (
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
)

// pin_vectors.json is written by testdata/gen_pin_vectors.py: python-fido2's
// ClientPin and hmac-secret code run with fixed keys and IVs.

type pinVecHex []byte

func (h *pinVecHex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	*h = d
	return err
}

// pyExchange is one python-fido2 operation: the IVs it drew and every clientPIN
// request it sent with the reply it got (getInfo left out).
type pyExchange struct {
	IVs      []pinVecHex `json:"ivs"`
	Exchange []struct {
		Request pinVecHex `json:"request"`
		Reply   pinVecHex `json:"reply"`
	} `json:"exchange"`
}

type pinVectorFile struct {
	Comment                 string    `json:"comment"`
	PythonFido2             string    `json:"pythonFido2"`
	AuthenticatorPrivateKey pinVecHex `json:"authenticatorPrivateKey"`
	AuthenticatorKey        pinVecHex `json:"authenticatorKey"`
	PlatformPrivateKey      pinVecHex `json:"platformPrivateKey"`
	PlatformKey             pinVecHex `json:"platformKey"`
	Protocols               []struct {
		Version      uint      `json:"version"`
		Info         pinVecHex `json:"info"`
		LegacyInfo   pinVecHex `json:"legacyInfo"`
		SharedSecret pinVecHex `json:"sharedSecret"`
		SetPin       []struct {
			pyExchange
			Pin            string    `json:"pin"`
			PaddedPin      pinVecHex `json:"paddedPin"`
			NewPinEnc      pinVecHex `json:"newPinEnc"`
			PinUvAuthParam pinVecHex `json:"pinUvAuthParam"`
		} `json:"setPin"`
		ChangePin []struct {
			pyExchange
			CurrentPin     string    `json:"currentPin"`
			NewPin         string    `json:"newPin"`
			PinHash        pinVecHex `json:"pinHash"`
			PinHashEnc     pinVecHex `json:"pinHashEnc"`
			NewPinEnc      pinVecHex `json:"newPinEnc"`
			PinUvAuthParam pinVecHex `json:"pinUvAuthParam"`
		} `json:"changePin"`
		PinToken []struct {
			pyExchange
			Pin            string     `json:"pin"`
			Permissions    Permission `json:"permissions"`
			RPID           string     `json:"rpId"`
			Legacy         bool       `json:"legacy"`
			PinHashEnc     pinVecHex  `json:"pinHashEnc"`
			TokenEnc       pinVecHex  `json:"tokenEnc"`
			Token          pinVecHex  `json:"token"`
			ClientDataHash pinVecHex  `json:"clientDataHash"`
			Param          pinVecHex  `json:"param"`
		} `json:"pinToken"`
		UVToken []struct {
			pyExchange
			Permissions Permission `json:"permissions"`
			RPID        string     `json:"rpId"`
			TokenEnc    pinVecHex  `json:"tokenEnc"`
			Token       pinVecHex  `json:"token"`
		} `json:"uvToken"`
		PinRetries struct {
			pyExchange
			Retries    int  `json:"retries"`
			PowerCycle bool `json:"powerCycle"`
		} `json:"pinRetries"`
		UVRetries struct {
			pyExchange
			Retries int `json:"retries"`
		} `json:"uvRetries"`
		HMACSecret []struct {
			pyExchange
			Salts      []pinVecHex `json:"salts"`
			Input      pinVecHex   `json:"input"`
			SaltEnc    pinVecHex   `json:"saltEnc"`
			SaltAuth   pinVecHex   `json:"saltAuth"`
			CredRandom pinVecHex   `json:"credRandom"`
			OutputEnc  pinVecHex   `json:"outputEnc"`
			Outputs    []pinVecHex `json:"outputs"`
		} `json:"hmacSecret"`
	} `json:"protocols"`
	PRF []struct {
		Input pinVecHex `json:"input"`
		Salt  pinVecHex `json:"salt"`
	} `json:"prf"`
}

func loadPINVectors(t testing.TB) *pinVectorFile {
	t.Helper()
	raw, err := testdata.ReadFile("testdata/pin_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v pinVectorFile
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("pin_vectors.json: %v", err)
	}
	if len(v.Protocols) != 2 || v.Protocols[0].Version != 1 || v.Protocols[1].Version != 2 {
		t.Fatal("pin_vectors.json: want protocols 1 and 2")
	}
	return &v
}

func mustECDHKey(t testing.TB, scalar []byte) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixedProtocol is protocol v whose protocol 2 IVs come from ivs in order.
func fixedProtocol(v uint, ivs []pinVecHex) (PINProtocol, *bytes.Reader) {
	var all []byte
	for _, iv := range ivs {
		all = append(all, iv...)
	}
	r := bytes.NewReader(all)
	if v == 2 {
		return PINProtocolTwo{Rand: r}, r
	}
	return PINProtocolOne{}, r
}

func checkHex(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got  %x\n want %x", what, got, want)
	}
}

func TestPINVectorsKeys(t *testing.T) {
	v := loadPINVectors(t)
	auth := mustECDHKey(t, v.AuthenticatorPrivateKey)
	plat := mustECDHKey(t, v.PlatformPrivateKey)
	for _, tc := range []struct {
		name string
		key  *ecdh.PrivateKey
		want []byte
	}{{"authenticator", auth, v.AuthenticatorKey}, {"platform", plat, v.PlatformKey}} {
		got, err := KeyAgreementKey(tc.key.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		checkHex(t, tc.name+" COSE key", got, tc.want)
		pub, err := ParseKeyAgreementKey(tc.want)
		if err != nil || !pub.Equal(tc.key.PublicKey()) {
			t.Errorf("%s: ParseKeyAgreementKey = %v, %v", tc.name, pub, err)
		}
	}
	for _, pv := range v.Protocols {
		p := PINProtocolByVersion(pv.Version)
		platSide, err := SharedSecret(p, plat, auth.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		authSide, err := SharedSecret(p, auth, plat.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		checkHex(t, "platform's shared secret", platSide, pv.SharedSecret)
		checkHex(t, "authenticator's shared secret", authSide, pv.SharedSecret)
		platformKey, ss, err := Encapsulate(p, v.AuthenticatorKey, plat)
		if err != nil {
			t.Fatal(err)
		}
		checkHex(t, "Encapsulate key", platformKey, v.PlatformKey)
		checkHex(t, "Encapsulate secret", ss, pv.SharedSecret)
	}
}

// TestPINVectorsPrimitives recomputes every value python-fido2 produced with our
// Encrypt, Decrypt and Authenticate, on both the platform's and the authenticator's
// side of each exchange.
func TestPINVectorsPrimitives(t *testing.T) {
	v := loadPINVectors(t)
	for _, pv := range v.Protocols {
		ss := pv.SharedSecret
		for _, sp := range pv.SetPin {
			padded, err := PadPIN(sp.Pin, 4)
			if err != nil {
				t.Fatal(err)
			}
			checkHex(t, "padded PIN", padded, sp.PaddedPin)
			p, rest := fixedProtocol(pv.Version, sp.IVs)
			enc, err := p.Encrypt(ss, padded)
			if err != nil {
				t.Fatal(err)
			}
			checkHex(t, "newPinEnc", enc, sp.NewPinEnc)
			checkHex(t, "setPIN pinUvAuthParam", p.Authenticate(ss, enc), sp.PinUvAuthParam)
			if !p.Verify(ss, sp.NewPinEnc, sp.PinUvAuthParam) {
				t.Error("authenticator side: setPIN pinUvAuthParam does not verify")
			}
			dec, err := p.Decrypt(ss, sp.NewPinEnc)
			if err != nil {
				t.Fatal(err)
			}
			if pin, err := UnpadPIN(dec); err != nil || string(pin) != sp.Pin {
				t.Errorf("authenticator side: unpadded %q, %v; want %q", pin, err, sp.Pin)
			}
			if rest.Len() != 0 {
				t.Errorf("%d IV bytes left unused", rest.Len())
			}
		}
		for _, cp := range pv.ChangePin {
			checkHex(t, "PINHash", PINHash([]byte(cp.CurrentPin)), cp.PinHash)
			p, rest := fixedProtocol(pv.Version, cp.IVs)
			hashEnc, err := p.Encrypt(ss, cp.PinHash)
			if err != nil {
				t.Fatal(err)
			}
			padded, _ := PadPIN(cp.NewPin, 4)
			newEnc, err := p.Encrypt(ss, padded)
			if err != nil {
				t.Fatal(err)
			}
			checkHex(t, "pinHashEnc", hashEnc, cp.PinHashEnc)
			checkHex(t, "changePIN newPinEnc", newEnc, cp.NewPinEnc)
			checkHex(t, "changePIN pinUvAuthParam", p.Authenticate(ss, cat(newEnc, hashEnc)), cp.PinUvAuthParam)
			if got, err := p.Decrypt(ss, cp.PinHashEnc); err != nil || !bytes.Equal(got, cp.PinHash) {
				t.Errorf("authenticator side: pinHash %x, %v", got, err)
			}
			if rest.Len() != 0 {
				t.Errorf("%d IV bytes left unused", rest.Len())
			}
		}
		for _, pt := range pv.PinToken {
			p, _ := fixedProtocol(pv.Version, pt.IVs)
			enc, err := p.Encrypt(ss, PINHash([]byte(pt.Pin)))
			if err != nil {
				t.Fatal(err)
			}
			checkHex(t, "token request pinHashEnc", enc, pt.PinHashEnc)
			tok, err := p.Decrypt(ss, pt.TokenEnc)
			if err != nil {
				t.Fatal(err)
			}
			checkHex(t, "decrypted token", tok, pt.Token)
			checkHex(t, "token pinUvAuthParam", p.Authenticate(tok, pt.ClientDataHash), pt.Param)
			if !p.Verify(pt.Token, pt.ClientDataHash, pt.Param) {
				t.Error("token pinUvAuthParam does not verify")
			}
			tp := &PINToken{Protocol: p, Token: tok}
			param, proto := tp.Protect(pt.ClientDataHash)
			checkHex(t, "Protect", param, pt.Param)
			if proto != pv.Version {
				t.Errorf("Protect protocol %d", proto)
			}
		}
		for _, hs := range pv.HMACSecret {
			p, _ := fixedProtocol(pv.Version, hs.IVs)
			h := &HMACSecret{Protocol: p, PlatformKey: v.PlatformKey, SharedSecret: ss}
			var salt2 []byte
			if len(hs.Salts) == 2 {
				salt2 = hs.Salts[1]
			}
			in, err := h.Input(hs.Salts[0], salt2)
			if err != nil {
				t.Fatal(err)
			}
			checkHex(t, "saltEnc", in.SaltEnc, hs.SaltEnc)
			checkHex(t, "saltAuth", in.SaltAuth, hs.SaltAuth)
			// python-fido2 always sends key 4; we leave it out for protocol 1 as
			// libfido2 does. Everything else is the same map.
			var py HMACSecretInput
			if err := Unmarshal(hs.Input, &py); err != nil {
				t.Fatal(err)
			}
			if py.Protocol() != pv.Version || in.Protocol() != pv.Version {
				t.Errorf("protocol %d / %d", py.Protocol(), in.Protocol())
			}
			if pv.Version == 1 {
				py.PinUvAuthProtocol = 0
			}
			checkHex(t, "hmac-secret input", mustCBOR(t, in), mustCBOR(t, py))
			if pv.Version == 2 {
				checkHex(t, "hmac-secret input bytes", mustCBOR(t, in), hs.Input)
			}
			var want []byte
			for i, salt := range hs.Salts {
				checkHex(t, "authenticator side: output", hmacSHA256(hs.CredRandom, salt), hs.Outputs[i])
				want = append(want, hs.Outputs[i]...)
			}
			o1, o2, err := h.Outputs(hs.OutputEnc)
			if err != nil {
				t.Fatal(err)
			}
			checkHex(t, "hmac-secret outputs", cat(o1, o2), want)
			if (o2 != nil) != (len(hs.Salts) == 2) {
				t.Errorf("output2 = %x for %d salts", o2, len(hs.Salts))
			}
		}
	}
	for _, prf := range v.PRF {
		checkHex(t, "PRFSalt", PRFSalt(prf.Input), prf.Salt)
	}
}

func TestPINProtocolErrors(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 64)
	for _, p := range []PINProtocol{PINProtocolOne{}, PINProtocolTwo{}} {
		k := key
		if p.Version() == 1 {
			k = key[:32]
		}
		if _, err := p.Encrypt(k, make([]byte, 15)); !errors.Is(err, ErrPINProtocolInput) {
			t.Errorf("v%d Encrypt(15 bytes) = %v", p.Version(), err)
		}
		for _, n := range []int{1, 15, 17, 33} {
			if _, err := p.Decrypt(k, make([]byte, n)); !errors.Is(err, ErrPINProtocolInput) {
				t.Errorf("v%d Decrypt(%d bytes) = %v", p.Version(), n, err)
			}
		}
		if _, err := p.Encrypt(make([]byte, 5), make([]byte, 16)); !errors.Is(err, ErrPINProtocolInput) {
			t.Errorf("v%d Encrypt with a 5-byte key = %v", p.Version(), err)
		}
		msg := []byte("message")
		param := p.Authenticate(k, msg)
		if want := map[uint]int{1: 16, 2: 32}[p.Version()]; len(param) != want {
			t.Errorf("v%d param length %d", p.Version(), len(param))
		}
		if !p.Verify(k, msg, param) {
			t.Errorf("v%d: own param does not verify", p.Version())
		}
		bad := bytes.Clone(param)
		bad[len(bad)-1] ^= 1
		for name, prm := range map[string][]byte{"flipped": bad, "truncated": param[:len(param)-1],
			"extended": append(bytes.Clone(param), 0), "empty": nil} {
			if p.Verify(k, msg, prm) {
				t.Errorf("v%d: %s param verifies", p.Version(), name)
			}
		}
		if p.Verify(k, []byte("other"), param) {
			t.Errorf("v%d: param verifies another message", p.Version())
		}
	}
	// Protocol 2 IVs are fresh each time, and a failing IV source is an error.
	p := PINProtocolTwo{}
	a, _ := p.Encrypt(key, make([]byte, 16))
	b, _ := p.Encrypt(key, make([]byte, 16))
	if bytes.Equal(a, b) || len(a) != 32 {
		t.Errorf("two protocol 2 encryptions: %x %x", a, b)
	}
	if _, err := (PINProtocolTwo{Rand: bytes.NewReader(make([]byte, 8))}).Encrypt(key, make([]byte, 16)); err == nil {
		t.Error("Encrypt with a short IV source succeeded")
	}
	if PINProtocolByVersion(3) != nil || PINProtocolByVersion(0) != nil {
		t.Error("PINProtocolByVersion accepts an unknown version")
	}
}

func TestParseKeyAgreementKeyRejects(t *testing.T) {
	v := loadPINVectors(t)
	var good coseEC2
	if err := Unmarshal(v.AuthenticatorKey, &good); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(k *coseEC2)) []byte {
		k := good
		k.X, k.Y = bytes.Clone(good.X), bytes.Clone(good.Y)
		f(&k)
		return mustCBOR(t, k)
	}
	for name, data := range map[string][]byte{
		"empty":        nil,
		"not a map":    unhex("80"),
		"OKP":          mod(func(k *coseEC2) { k.Kty = ktyOKP }),
		"P-384":        mod(func(k *coseEC2) { k.Crv = crvP384 }),
		"short x":      mod(func(k *coseEC2) { k.X = k.X[1:] }),
		"off curve":    mod(func(k *coseEC2) { k.Y[31] ^= 1 }),
		"infinity":     mod(func(k *coseEC2) { k.X, k.Y = make([]byte, 32), make([]byte, 32) }),
		"trailing":     cat(v.AuthenticatorKey, []byte{0}),
		"y missing":    unhex("a4 01 02 03 38 18 20 01 21 58 20" + hex.EncodeToString(good.X)),
		"duplicate x":  cat(unhex("a6 01 02 03 38 18 20 01 21 58 20"), good.X, unhex("21 58 20"), good.X, unhex("22 58 20"), good.Y),
		"wrong x type": mod(func(k *coseEC2) { k.X = nil }),
	} {
		if _, err := ParseKeyAgreementKey(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseKeyAgreementKey(f *testing.F) {
	v := loadPINVectors(f)
	f.Add([]byte(v.AuthenticatorKey))
	f.Add([]byte(v.PlatformKey))
	f.Add(unhex("a5 01 02 03 26 20 01 21 40 22 40"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParseKeyAgreementKey(data)
		if err != nil {
			if pub != nil {
				t.Fatal("key with an error")
			}
			return
		}
		// Round trip: the canonical -25 encoding of the key parses to the same key,
		// and agreeing with it works.
		enc, err := KeyAgreementKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseKeyAgreementKey(enc)
		if err != nil || !again.Equal(pub) {
			t.Fatalf("re-parse of %x: %v", enc, err)
		}
		if _, _, err := Encapsulate(PINProtocolOne{}, enc, nil); err != nil {
			t.Fatalf("Encapsulate with a parsed key: %v", err)
		}
	})
}

func FuzzPINDecrypt(f *testing.F) {
	f.Add(uint8(1), bytes.Repeat([]byte{1}, 64), make([]byte, 32))
	f.Add(uint8(2), bytes.Repeat([]byte{2}, 64), make([]byte, 48))
	f.Add(uint8(2), bytes.Repeat([]byte{3}, 32), make([]byte, 15))
	f.Add(uint8(1), []byte{1}, make([]byte, 16))
	f.Fuzz(func(t *testing.T, version uint8, key, data []byte) {
		p := PINProtocolByVersion(uint(version%2) + 1)
		pt, err := p.Decrypt(key, data) // must not panic on any key or data
		if err == nil {
			overhead := map[uint]int{1: 0, 2: 16}[p.Version()]
			if len(pt) != len(data)-overhead {
				t.Fatalf("v%d: %d bytes decrypted from %d", p.Version(), len(pt), len(data))
			}
		}
		// decrypt(encrypt(x)) == x for whole blocks with a valid key.
		if len(key) < 32 {
			return
		}
		k := key[:32]
		if p.Version() == 2 && len(key) >= 64 {
			k = key[:64]
		}
		x := data[:len(data)/16*16]
		ct, err := p.Encrypt(k, x)
		if err != nil {
			t.Fatalf("v%d Encrypt(%d bytes): %v", p.Version(), len(x), err)
		}
		back, err := p.Decrypt(k, ct)
		if err != nil || !bytes.Equal(back, x) {
			t.Fatalf("v%d: decrypt(encrypt(%x)) = %x, %v", p.Version(), x, back, err)
		}
	})
}
