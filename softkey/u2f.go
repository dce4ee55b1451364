package softkey

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
)

// The softkey's U2F side (CTAP1, FIDO U2F Raw Message Formats; CTAP 2.1 §11.2.9.1.1
// CTAPHID_MSG). U2F and CTAP2 credentials are interchangeable, as CTAP 2.1 asks of
// keys that speak both: a REGISTER key handle is exactly the sealed credential ID a
// non-resident ES256 makeCredential returns for rpIdHash = application, so it works in
// a getAssertion allowList, and AUTHENTICATE accepts any ES256 credential of the
// softkey for that rpIdHash. Signatures share the global counter.

// handleMsg answers one U2F command APDU with response data || SW1 SW2. It runs under
// the command lock like HandleCBOR and, like every command other than
// getNextAssertion, ends a getAssertion sequence. It never waits for the user (see
// u2fPresence), so it needs neither the host's context nor keepalives.
func (a *Authenticator) handleMsg(apdu []byte) []byte {
	if err := a.begin(); err != nil {
		return ctap1.SWUnknown.Bytes()
	}
	defer a.mu.Unlock()
	a.next = nil
	data, sw := a.u2f(apdu)
	if sw != ctap1.SWNoError {
		data = nil
	}
	return ctap1.Response(data, sw)
}

// u2f dispatches on the instruction: the class byte and instruction are checked
// before the length fields, as U2F keys do. While alwaysUv is on, U2F is switched
// off (it cannot verify the user; OpenSK does the same) and every instruction is
// 0x6D00, as on a CTAP2-only applet.
func (a *Authenticator) u2f(apdu []byte) ([]byte, ctap1.StatusWord) {
	switch {
	case len(apdu) < 4:
		return nil, ctap1.SWWrongLength
	case apdu[0] != 0:
		return nil, ctap1.SWClaNotSupported
	}
	s, err := a.settings()
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	if s.AlwaysUV {
		return nil, ctap1.SWInsNotSupported
	}
	switch apdu[1] {
	case ctap1.InsRegister, ctap1.InsAuthenticate, ctap1.InsVersion:
	default:
		return nil, ctap1.SWInsNotSupported
	}
	cmd, err := ctap1.ParseAPDU(apdu)
	if err != nil {
		return nil, ctap1.SWWrongLength
	}
	switch cmd.INS {
	case ctap1.InsRegister:
		return a.u2fRegister(cmd.Data)
	case ctap1.InsAuthenticate:
		return a.u2fAuthenticate(cmd.P1, cmd.Data)
	}
	if len(cmd.Data) != 0 {
		return nil, ctap1.SWWrongLength
	}
	return []byte(ctap1.Version), ctap1.SWNoError
}

// u2fRegister makes a non-resident ES256 credential for the application (P1 is
// ignored, as hosts send 0x00 or 0x03) and attests it with u2fAttestation.
func (a *Authenticator) u2fRegister(data []byte) ([]byte, ctap1.StatusWord) {
	req, err := ctap1.ParseRegisterRequest(data)
	if err != nil {
		return nil, ctap1.SWWrongLength
	}
	if sw := a.u2fPresence(); sw != ctap1.SWNoError {
		return nil, sw
	}
	key, err := ctap2.GenerateKey(ctap2.AlgES256, a.rnd)
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	kh, err := a.sealKey(req.Application, ctap2.AlgES256, key)
	if err != nil || len(kh) > ctap1.MaxKeyHandleSize {
		return nil, ctap1.SWUnknown
	}
	pub, err := key.Public().(*ecdsa.PublicKey).Bytes()
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	attKey, cert, err := a.u2fAttestation()
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	sig, err := ctap2.Sign(ctap2.AlgES256, attKey, ctap1.RegisterSignedData(req.Application, req.Challenge, kh, pub), a.signRand)
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	out, err := (&ctap1.RegisterResponse{PublicKey: pub, KeyHandle: kh, Certificate: cert, Signature: a.cfg.Faults.attestationSig(sig)}).Marshal()
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	return out, ctap1.SWNoError
}

// u2fAuthenticate answers the three control bytes: check-only tells whether the key
// handle is ours for the application (0x6985 yes, 0x6A80 no) without a touch or a
// signature; enforce-presence signs after a touch with UP 0x01; don't-enforce signs
// at once with UP 0x00. Any other P1 is 0x6A80, as on solo keys.
func (a *Authenticator) u2fAuthenticate(p1 byte, data []byte) ([]byte, ctap1.StatusWord) {
	req, err := ctap1.ParseAuthenticateRequest(p1, data)
	if err != nil {
		return nil, ctap1.SWWrongLength
	}
	switch req.Control {
	case ctap1.CheckOnly, ctap1.EnforcePresence, ctap1.DontEnforcePresence:
	default:
		return nil, ctap1.SWWrongData
	}
	c, err := a.u2fCredential(req.Application, req.KeyHandle)
	switch {
	case err != nil:
		return nil, ctap1.SWUnknown
	case c == nil:
		return nil, ctap1.SWWrongData
	case req.Control == ctap1.CheckOnly:
		return nil, ctap1.SWConditionsNotSatisfied
	}
	var up byte
	if req.Control == ctap1.EnforcePresence {
		if sw := a.u2fPresence(); sw != ctap1.SWNoError {
			return nil, sw
		}
		up = byte(ctap2.FlagUP)
	}
	key, err := a.signer(c)
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	count, err := a.counter.next()
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	sig, err := ctap2.Sign(ctap2.AlgES256, key, ctap1.AuthenticateSignedData(req.Application, up, count, req.Challenge), a.signRand)
	if err != nil {
		return nil, ctap1.SWUnknown
	}
	return (&ctap1.AuthenticateResponse{UserPresence: up, Counter: count, Signature: a.cfg.Faults.assertionSig(sig)}).Marshal(), ctap1.SWNoError
}

// u2fCredential finds the credential a key handle names for an application: any
// ES256 credential of this softkey for rpIdHash = application, sealed or resident.
// Credentials of other algorithms cannot answer U2F; those with credProtect level 3
// (resident or sealed) need user verification, which U2F cannot give, so they stay
// invisible (not even check-only reveals them).
func (a *Authenticator) u2fCredential(app [32]byte, keyHandle []byte) (*credential, error) {
	c, err := a.lookup(app, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: keyHandle})
	if err != nil || c == nil {
		return nil, err
	}
	if c.alg != ctap2.AlgES256 || !c.usable(false, true) {
		return nil, nil
	}
	return c, nil
}

// u2fPresence is the test of user presence of REGISTER and AUTHENTICATE. U2F keys
// answer at once: 0x6985 while no touch has been given, and the host repeats the
// request until one has. With PresenceAuto every request is granted; with
// PresenceDeny the answer is always 0x6985. With a PresenceFunc the first request
// starts a presence request in the background (rpID "": U2F names no RP) and gets
// 0x6985; a repeat after the user consented consumes the touch and succeeds. An
// answer, yes or no, stands for u2fTouchWindow; a "no" keeps the answer 0x6985 until
// then, and a later request asks again.
func (a *Authenticator) u2fPresence() ctap1.StatusWord {
	if a.cfg.PresenceFunc == nil {
		if a.cfg.Presence == PresenceDeny {
			return ctap1.SWConditionsNotSatisfied
		}
		return ctap1.SWNoError
	}
	a.u2fState.mu.Lock()
	defer a.u2fState.mu.Unlock()
	t := a.u2fState.touch
	switch {
	case t == nil || (t.answered && time.Since(t.at) > a.u2fState.window):
		t = &u2fTouch{}
		a.u2fState.touch = t
		go a.askU2FPresence(t)
	case t.answered && t.granted:
		a.u2fState.touch = nil
		return ctap1.SWNoError
	}
	return ctap1.SWConditionsNotSatisfied
}

// u2fTouchWindow is how long a presence answer given while U2F requests were
// repeated stays usable; hosts repeat every 100-250 ms.
const u2fTouchWindow = 10 * time.Second

// u2fTouch is a background presence request started by a U2F request.
type u2fTouch struct {
	answered, granted bool
	at                time.Time // when answered
}

// u2fState is the softkey's U2F state outside the command lock: the presence
// request repeated U2F requests share, and the derived attestation.
type u2fState struct {
	mu     sync.Mutex
	touch  *u2fTouch
	window time.Duration // u2fTouchWindow; tests shorten it

	certSecret []byte // the master secret certKey and cert were derived from
	certKey    *ecdsa.PrivateKey
	cert       []byte
}

// askU2FPresence runs one presence request outside the command lock (userPresence
// reads only the configuration) and records its answer.
func (a *Authenticator) askU2FPresence(t *u2fTouch) {
	err := a.userPresence(context.Background(), "", nil)
	a.u2fState.mu.Lock()
	defer a.u2fState.mu.Unlock()
	t.answered, t.granted, t.at = true, err == nil, time.Now()
}

// u2fAttestation returns the key and certificate that sign REGISTER responses: the
// batch key and leaf certificate when batch attestation uses a P-256 key; otherwise a
// per-softkey self-signed P-256 certificate. That one is derived from the master
// secret (HKDF), so it is stable across restarts and replaced by authenticatorReset,
// and it proves nothing beyond "this softkey": RPs that check U2F attestation against
// vendor roots will not trust it.
func (a *Authenticator) u2fAttestation() (crypto.Signer, []byte, error) {
	if a.cfg.Attestation == AttestationBatch {
		if alg, ok := algorithmOf(a.cfg.BatchKey); ok && alg == ctap2.AlgES256 {
			return a.cfg.BatchKey, a.cfg.BatchCerts[0], nil
		}
	}
	a.u2fState.mu.Lock()
	defer a.u2fState.mu.Unlock()
	if a.u2fState.certKey == nil || !bytes.Equal(a.u2fState.certSecret, a.meta.MasterSecret) {
		key, cert, err := u2fSelfSigned(a.meta.MasterSecret)
		if err != nil {
			return nil, nil, err
		}
		a.u2fState.certSecret, a.u2fState.certKey, a.u2fState.cert = bytes.Clone(a.meta.MasterSecret), key, cert
	}
	return a.u2fState.certKey, a.u2fState.cert, nil
}

const u2fAttestationInfo = "ctapkit softkey U2F attestation key v1"

// u2fSelfSigned derives the self-signed U2F attestation key and certificate from a
// master secret. Everything in the certificate, including its serial number and its
// (RFC 6979) signature, is a function of the secret.
func u2fSelfSigned(secret []byte) (*ecdsa.PrivateKey, []byte, error) {
	okm, err := hkdf.Key(sha256.New, secret, nil, u2fAttestationInfo, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving the U2F attestation key: %w", err)
	}
	scalar, serial := okm[:32], okm[32:48]
	var key *ecdsa.PrivateKey
	for i := 0; key == nil; i++ { // a scalar out of range has probability ~2^-32
		if key, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), scalar); err != nil {
			if i == 8 {
				return nil, nil, fmt.Errorf("deriving the U2F attestation key: %w", err)
			}
			h := sha256.Sum256(scalar)
			scalar = h[:]
		}
	}
	name := pkix.Name{
		CommonName:         "ctapkit softkey U2F attestation",
		Organization:       []string{"ctapkit"},
		OrganizationalUnit: []string{"Authenticator Attestation"},
		Country:            []string{"ZZ"},
	}
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(append([]byte{0x01}, serial...)),
		Subject:               name,
		Issuer:                name,
		NotBefore:             time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), // RFC 5280 §4.1.2.5: no expiry
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	// A nil random source makes the ECDSA signature deterministic (RFC 6979).
	cert, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the U2F attestation certificate: %w", err)
	}
	return key, cert, nil
}
