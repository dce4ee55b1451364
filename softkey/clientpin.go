package softkey

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"maps"
	mrand "math/rand/v2"
	"unicode/utf8"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// pinState is the clientPIN state that lives in memory only: it is lost at power
// down, which here means when the Authenticator goes away.
type pinState struct {
	// rnd feeds key agreement keys, tokens and protocol 2 IVs: crypto/rand, or in
	// seed mode a stream of its own, so that PIN traffic does not shift the
	// credential keys of golden tests.
	rnd io.Reader
	// key is the authenticator's key agreement key, made at power-up and after
	// every PIN mismatch (CTAP 2.1 §6.5.4 regenerate). Both protocols use it.
	key *ecdh.PrivateKey
	// mismatches counts consecutive wrong PINs since power-up; at 3, PIN
	// checks answer PIN_AUTH_BLOCKED until a power cycle (a new Authenticator).
	mismatches int
	token      pinUvAuthToken
}

// maxConsecutiveMismatches is the CTAP 2.1 §6.5.2.2 limit per power cycle.
const maxConsecutiveMismatches = 3

// initPIN checks Config.UV and sets up the power-up PIN state; New calls it.
func (a *Authenticator) initPIN() error {
	uv, err := checkUVMode(a.cfg.UV)
	if err != nil {
		return err
	}
	a.cfg.UV = uv
	a.pin.rnd = rand.Reader
	if a.cfg.Seed != nil {
		a.pin.rnd = mrand.NewChaCha8(sha256.Sum256(append([]byte("ctapkit softkey clientPIN\x00"), a.cfg.Seed...)))
	}
	return a.regenerateKeyAgreement()
}

// regenerateKeyAgreement replaces the key agreement key. ecdh.GenerateKey ignores
// custom readers, so the scalar is drawn from pin.rnd (rejection sampling: a value
// outside [1, n-1] is drawn again).
func (a *Authenticator) regenerateKeyAgreement() error {
	var raw [32]byte
	for range 64 {
		if _, err := io.ReadFull(a.pin.rnd, raw[:]); err != nil {
			return err
		}
		if k, err := ecdh.P256().NewPrivateKey(raw[:]); err == nil {
			a.pin.key = k
			return nil
		}
	}
	return errors.New("cannot draw a P-256 key agreement key")
}

// resetPIN is authenticatorReset's part: no PIN, default settings, no token, a
// new key agreement key and a clean mismatch count.
func (a *Authenticator) resetPIN() error {
	if err := a.setSettings(store.DefaultSettings()); err != nil {
		return err
	}
	a.pin.token.stop()
	a.pin.mismatches = 0
	if err := a.regenerateKeyAgreement(); err != nil {
		return ctap2.ErrOther
	}
	return nil
}

// pinProtocol returns protocol 1 or 2 (protocol 2 drawing IVs from pin.rnd), or
// nil for any other value.
func (a *Authenticator) pinProtocol(v uint) ctap2.PINProtocol {
	switch v {
	case 1:
		return ctap2.PINProtocolOne{}
	case 2:
		return ctap2.PINProtocolTwo{Rand: a.pin.rnd}
	}
	return nil
}

// settings reads the persistent PIN state and configuration; a store failure is
// CTAP1_ERR_OTHER.
func (a *Authenticator) settings() (store.Settings, error) {
	s, err := a.st.Settings()
	if err != nil {
		return store.Settings{}, ctap2.ErrOther
	}
	return s, nil
}

// setSettings writes them durably; a store failure is CTAP1_ERR_OTHER.
func (a *Authenticator) setSettings(s store.Settings) error {
	if err := a.st.SetSettings(s); err != nil {
		return ctap2.ErrOther
	}
	return nil
}

// minPINLength is the current minimum in code points (never below 4).
func minPINLength(s store.Settings) int { return max(ctap2.DefaultMinPINLength, s.MinPINLength) }

// fillPINInfo adds the parts of getInfo that follow the settings.
func (a *Authenticator) fillPINInfo(info *ctap2.Info) error {
	s, err := a.settings()
	if err != nil {
		return err
	}
	info.Options = maps.Clone(info.Options)
	info.Options["clientPin"] = s.PINHash != nil
	if supportsAuthnrCfg || s.AlwaysUV {
		info.Options["alwaysUv"] = s.AlwaysUV
	}
	if supportsAuthnrCfg {
		info.Options["ep"] = s.EnterpriseAttestation
	}
	info.ForcePINChange = s.ForcePINChange
	info.MinPINLength = uint(minPINLength(s))
	if !s.AlwaysUV {
		// U2F cannot verify the user, so it is off while alwaysUv is on (u2f.go).
		info.Versions = append([]string{"U2F_V2"}, info.Versions...)
	}
	return nil
}

// staticPINInfo adds the parts of getInfo that never change while a softkey runs.
func (a *Authenticator) staticPINInfo(info *ctap2.Info) {
	info.Versions = append(info.Versions, "FIDO_2_1")
	info.Options["pinUvAuthToken"] = true
	info.Options["makeCredUvNotRqd"] = true
	if a.uvConfigured() {
		info.Options["uv"] = true
	}
	if supportsCredMgmt {
		info.Options["credMgmt"] = true
		info.Options["credentialMgmtPreview"] = true
	}
	if supportsAuthnrCfg {
		info.Options["authnrCfg"] = true
		info.Options["setMinPINLength"] = true
		if a.uvConfigured() {
			info.Options["uvAcfg"] = true
		}
		info.MaxRPIDsForSetMinPINLength = maxRPIDsForSetMinPINLength
	}
	if supportsLargeBlobs {
		info.Options["largeBlobs"] = true
		info.MaxSerializedLargeBlobArray = maxSerializedLargeBlobArray
	}
	info.PinUvAuthProtocols = []uint{2, 1}
	info.MaxPINLength = ctap2.MaxPINLength
}

// clientPINParams is the wire form of ctap2.ClientPINRequest, with pointers where
// CTAP tells "absent" (MISSING_PARAMETER) from a zero value (INVALID_PARAMETER or
// INVALID_SUBCOMMAND).
type clientPINParams struct {
	PinUvAuthProtocol *uint                `cbor:"1,keyasint"`
	SubCommand        *ctap2.PINSubcommand `cbor:"2,keyasint"`
	KeyAgreement      ctap2.RawMessage     `cbor:"3,keyasint"`
	PinUvAuthParam    []byte               `cbor:"4,keyasint"`
	NewPinEnc         []byte               `cbor:"5,keyasint"`
	PinHashEnc        []byte               `cbor:"6,keyasint"`
	Permissions       *ctap2.Permission    `cbor:"9,keyasint"`
	RPID              *string              `cbor:"10,keyasint"`
}

func paramsOf(req *ctap2.ClientPINRequest) *clientPINParams {
	p := &clientPINParams{
		KeyAgreement:   req.KeyAgreement,
		PinUvAuthParam: req.PinUvAuthParam,
		NewPinEnc:      req.NewPinEnc,
		PinHashEnc:     req.PinHashEnc,
	}
	if req.PinUvAuthProtocol != 0 {
		p.PinUvAuthProtocol = &req.PinUvAuthProtocol
	}
	if req.SubCommand != 0 {
		p.SubCommand = &req.SubCommand
	}
	if req.Permissions != 0 {
		p.Permissions = &req.Permissions
	}
	if req.RPID != "" {
		p.RPID = &req.RPID
	}
	return p
}

// ClientPIN answers authenticatorClientPIN for Go callers. Zero fields of req are
// absent parameters. setPIN and changePIN answer an empty response.
func (a *Authenticator) ClientPIN(ctx context.Context, req *ctap2.ClientPINRequest) (*ctap2.ClientPINResponse, error) {
	if req == nil {
		req = &ctap2.ClientPINRequest{}
	}
	resp, err := locked(a, ctx, ctap2.CmdClientPIN, a.clientPIN, paramsOf(req))
	if err == nil && resp == nil {
		resp = &ctap2.ClientPINResponse{}
	}
	return resp, err
}

// clientPIN dispatches authenticatorClientPIN (CTAP 2.1 §6.5.5). Each subcommand
// first checks that its mandatory parameters are present (MISSING_PARAMETER), then
// the protocol (INVALID_PARAMETER), then follows the spec's steps in order.
func (a *Authenticator) clientPIN(_ context.Context, req *clientPINParams, _ func(byte)) (*ctap2.ClientPINResponse, error) {
	if req.SubCommand == nil {
		return nil, ctap2.ErrMissingParameter
	}
	switch *req.SubCommand {
	case ctap2.PINGetRetries:
		return a.getPINRetries()
	case ctap2.PINGetKeyAgreement:
		return a.getKeyAgreement(req)
	case ctap2.PINSetPIN:
		return nil, a.setPIN(req)
	case ctap2.PINChangePIN:
		return nil, a.changePIN(req)
	case ctap2.PINGetPINToken:
		return a.getPINToken(req)
	case ctap2.PINGetPINUvAuthTokenUsingPinWithPerms:
		return a.getTokenUsingPIN(req)
	case ctap2.PINGetPINUvAuthTokenUsingUvWithPerms:
		return a.getTokenUsingUV(req)
	case ctap2.PINGetUVRetries:
		return a.getUVRetries()
	}
	return nil, ctap2.ErrInvalidSubcommand
}

// requestProtocol is the protocol check every subcommand that uses one makes after
// its mandatory-parameter check.
func (a *Authenticator) requestProtocol(req *clientPINParams) (ctap2.PINProtocol, error) {
	if req.PinUvAuthProtocol == nil {
		return nil, ctap2.ErrMissingParameter
	}
	p := a.pinProtocol(*req.PinUvAuthProtocol)
	if p == nil {
		return nil, ctap2.ErrInvalidParameter
	}
	return p, nil
}

// decapsulate derives the shared secret with the platform's key agreement key; a
// key that is not a P-256 point is INVALID_PARAMETER.
func (a *Authenticator) decapsulate(p ctap2.PINProtocol, platformKey ctap2.RawMessage) ([]byte, error) {
	peer, err := ctap2.ParseKeyAgreementKey(platformKey)
	if err != nil {
		return nil, ctap2.ErrInvalidParameter
	}
	ss, err := ctap2.SharedSecret(p, a.pin.key, peer)
	if err != nil {
		return nil, ctap2.ErrInvalidParameter
	}
	return ss, nil
}

func (a *Authenticator) getPINRetries() (*ctap2.ClientPINResponse, error) {
	s, err := a.settings()
	if err != nil {
		return nil, err
	}
	retries := uint(s.PINRetries)
	blocked := a.pin.mismatches >= maxConsecutiveMismatches
	return &ctap2.ClientPINResponse{PinRetries: &retries, PowerCycleState: &blocked}, nil
}

func (a *Authenticator) getUVRetries() (*ctap2.ClientPINResponse, error) {
	if !a.uvConfigured() {
		return nil, ctap2.ErrNotAllowed
	}
	s, err := a.settings()
	if err != nil {
		return nil, err
	}
	retries := uint(s.UVRetries)
	return &ctap2.ClientPINResponse{UVRetries: &retries}, nil
}

func (a *Authenticator) getKeyAgreement(req *clientPINParams) (*ctap2.ClientPINResponse, error) {
	if _, err := a.requestProtocol(req); err != nil {
		return nil, err
	}
	key, err := ctap2.KeyAgreementKey(a.pin.key.PublicKey())
	if err != nil {
		return nil, ctap2.ErrOther
	}
	return &ctap2.ClientPINResponse{KeyAgreement: key}, nil
}

// setPIN follows CTAP 2.1 §6.5.5.5.
func (a *Authenticator) setPIN(req *clientPINParams) error {
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.PinUvAuthParam == nil || req.NewPinEnc == nil {
		return ctap2.ErrMissingParameter
	}
	p, err := a.requestProtocol(req)
	if err != nil {
		return err
	}
	s, err := a.settings()
	if err != nil {
		return err
	}
	if s.PINHash != nil {
		return ctap2.ErrPINAuthInvalid
	}
	ss, err := a.decapsulate(p, req.KeyAgreement)
	if err != nil {
		return err
	}
	if !p.Verify(ss, req.NewPinEnc, req.PinUvAuthParam) {
		return ctap2.ErrPINAuthInvalid
	}
	hash, codePoints, err := a.newPIN(p, ss, req.NewPinEnc, s)
	if err != nil {
		return err
	}
	s.PINHash, s.PINCodePoints = hash, codePoints
	s.PINRetries = store.DefaultPINRetries
	s.ForcePINChange = false
	return a.setSettings(s)
}

// changePIN follows CTAP 2.1 §6.5.5.6. A PIN that is not set cannot be changed
// (PIN_NOT_SET). Success clears forcePINChange and ends the current token.
func (a *Authenticator) changePIN(req *clientPINParams) error {
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.PinUvAuthParam == nil ||
		req.NewPinEnc == nil || req.PinHashEnc == nil {
		return ctap2.ErrMissingParameter
	}
	p, err := a.requestProtocol(req)
	if err != nil {
		return err
	}
	s, err := a.pinCheckable()
	if err != nil {
		return err
	}
	ss, err := a.decapsulate(p, req.KeyAgreement)
	if err != nil {
		return err
	}
	if !p.Verify(ss, concat(req.NewPinEnc, req.PinHashEnc), req.PinUvAuthParam) {
		return ctap2.ErrPINAuthInvalid
	}
	if s, err = a.checkPIN(p, ss, req.PinHashEnc, s); err != nil {
		return err
	}
	hash, codePoints, err := a.newPIN(p, ss, req.NewPinEnc, s)
	if err != nil {
		return err
	}
	if s.ForcePINChange && subtle.ConstantTimeCompare(hash, s.PINHash) == 1 {
		return ctap2.ErrPINPolicyViolation
	}
	s.PINHash, s.PINCodePoints = hash, codePoints
	s.ForcePINChange = false
	if err := a.setSettings(s); err != nil {
		return err
	}
	a.pin.token.stop()
	return nil
}

// getPINToken is the CTAP 2.0 getPinToken (CTAP 2.1 §6.5.5.7.1): permissions and
// rpId must be absent, and the token gets mc and ga with no RP ID.
func (a *Authenticator) getPINToken(req *clientPINParams) (*ctap2.ClientPINResponse, error) {
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.PinHashEnc == nil {
		return nil, ctap2.ErrMissingParameter
	}
	p, err := a.requestProtocol(req)
	if err != nil {
		return nil, err
	}
	if req.Permissions != nil || req.RPID != nil {
		return nil, ctap2.ErrInvalidParameter
	}
	return a.tokenUsingPIN(p, req, ctap2.PermMakeCredential|ctap2.PermGetAssertion, "", ctap2.ErrPINInvalid)
}

// getTokenUsingPIN is getPinUvAuthTokenUsingPinWithPermissions (CTAP 2.1
// §6.5.5.7.2).
func (a *Authenticator) getTokenUsingPIN(req *clientPINParams) (*ctap2.ClientPINResponse, error) {
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.PinHashEnc == nil || req.Permissions == nil {
		return nil, ctap2.ErrMissingParameter
	}
	p, err := a.requestProtocol(req)
	if err != nil {
		return nil, err
	}
	perms, rpID, err := checkPermissions(req)
	if err != nil {
		return nil, err
	}
	return a.tokenUsingPIN(p, req, perms, rpID, ctap2.ErrPINPolicyViolation)
}

// tokenUsingPIN is the common tail of the two PIN token requests; forced is the
// answer while forcePINChange is set (the PIN was right, but must change first).
func (a *Authenticator) tokenUsingPIN(p ctap2.PINProtocol, req *clientPINParams, perms ctap2.Permission, rpID string, forced error) (*ctap2.ClientPINResponse, error) {
	s, err := a.pinCheckable()
	if err != nil {
		return nil, err
	}
	ss, err := a.decapsulate(p, req.KeyAgreement)
	if err != nil {
		return nil, err
	}
	if s, err = a.checkPIN(p, ss, req.PinHashEnc, s); err != nil {
		return nil, err
	}
	if s.ForcePINChange {
		return nil, forced
	}
	return a.sendToken(p, ss, perms, rpID, false)
}

// getTokenUsingUV is getPinUvAuthTokenUsingUvWithPermissions (CTAP 2.1
// §6.5.5.7.3): the token is issued after built-in UV, which also counts as user
// presence (userPresent flag set).
func (a *Authenticator) getTokenUsingUV(req *clientPINParams) (*ctap2.ClientPINResponse, error) {
	if req.PinUvAuthProtocol == nil || req.KeyAgreement == nil || req.Permissions == nil {
		return nil, ctap2.ErrMissingParameter
	}
	p, err := a.requestProtocol(req)
	if err != nil {
		return nil, err
	}
	perms, rpID, err := checkPermissions(req)
	if err != nil {
		return nil, err
	}
	if !a.uvConfigured() {
		return nil, ctap2.ErrNotAllowed
	}
	// The key is checked before UV, so that a malformed request costs no attempt.
	ss, err := a.decapsulate(p, req.KeyAgreement)
	if err != nil {
		return nil, err
	}
	if err := a.builtInUV(); err != nil {
		return nil, err
	}
	return a.sendToken(p, ss, perms, rpID, true)
}

// checkPermissions validates the permissions and rpId of a token request:
// permissions 0 or an empty rpId is INVALID_PARAMETER; a permission the softkey
// does not grant is UNAUTHORIZED_PERMISSION; unknown bits are ignored.
func checkPermissions(req *clientPINParams) (ctap2.Permission, string, error) {
	perms := *req.Permissions
	if perms == 0 {
		return 0, "", ctap2.ErrInvalidParameter
	}
	var rpID string
	if req.RPID != nil {
		if *req.RPID == "" {
			return 0, "", ctap2.ErrInvalidParameter
		}
		rpID = *req.RPID
	}
	if !grantable(perms & grantablePermissions) {
		return 0, "", ctap2.ErrUnauthorizedPermission
	}
	return perms & grantablePermissions, rpID, nil
}

// sendToken issues a new token and encrypts it for the platform.
func (a *Authenticator) sendToken(p ctap2.PINProtocol, ss []byte, perms ctap2.Permission, rpID string, userPresent bool) (*ctap2.ClientPINResponse, error) {
	token, err := a.issueToken(p.Version(), perms, rpID, userPresent)
	if err != nil {
		return nil, err
	}
	enc, err := p.Encrypt(ss, token)
	if err != nil {
		a.pin.token.stop()
		return nil, ctap2.ErrOther
	}
	return &ctap2.ClientPINResponse{PinUvAuthToken: enc}, nil
}

// pinCheckable returns the settings if a PIN check may be attempted at all: a PIN
// is set (else PIN_NOT_SET), retries are left (else PIN_BLOCKED, until reset) and
// this power cycle has not seen three mismatches in a row (else PIN_AUTH_BLOCKED).
func (a *Authenticator) pinCheckable() (store.Settings, error) {
	s, err := a.settings()
	if err != nil {
		return s, err
	}
	switch {
	case s.PINHash == nil:
		return s, ctap2.ErrPINNotSet
	case s.PINRetries <= 0:
		return s, ctap2.ErrPINBlocked
	case a.pin.mismatches >= maxConsecutiveMismatches:
		return s, ctap2.ErrPINAuthBlocked
	}
	return s, nil
}

// checkPIN compares pinHashEnc with the stored PIN hash (CTAP 2.1 §6.5.5.6 steps
// 6-8). The retry counter is decremented and durably stored BEFORE the comparison,
// so no outcome of the comparison (nor a crash or kill during it) can give an
// attempt back. A mismatch regenerates the key agreement key, so the platform must
// start over, and answers PIN_BLOCKED at zero retries, PIN_AUTH_BLOCKED at the
// third mismatch in a row, else PIN_INVALID. A match restores the retries.
func (a *Authenticator) checkPIN(p ctap2.PINProtocol, ss, pinHashEnc []byte, s store.Settings) (store.Settings, error) {
	s.PINRetries--
	if err := a.setSettings(s); err != nil {
		return s, err
	}
	got, err := p.Decrypt(ss, pinHashEnc)
	if err != nil || len(got) != len(s.PINHash) || subtle.ConstantTimeCompare(got, s.PINHash) != 1 {
		if err := a.regenerateKeyAgreement(); err != nil {
			return s, ctap2.ErrOther
		}
		a.pin.mismatches++
		switch {
		case s.PINRetries <= 0:
			return s, ctap2.ErrPINBlocked
		case a.pin.mismatches >= maxConsecutiveMismatches:
			return s, ctap2.ErrPINAuthBlocked
		}
		return s, ctap2.ErrPINInvalid
	}
	a.pin.mismatches = 0
	s.PINRetries = store.DefaultPINRetries
	if err := a.setSettings(s); err != nil {
		return s, err
	}
	return s, nil
}

// newPIN decrypts newPinEnc and applies the PIN policy: the padded PIN must be 64
// bytes (else INVALID_PARAMETER); the PIN is what precedes its trailing zeros and
// must be at most 63 bytes of valid UTF-8 without NUL, of at least
// max(4, minPINLength) code points (else PIN_POLICY_VIOLATION). It returns
// LEFT(SHA-256(PIN), 16) and the length in code points.
func (a *Authenticator) newPIN(p ctap2.PINProtocol, ss, newPinEnc []byte, s store.Settings) ([]byte, int, error) {
	padded, err := p.Decrypt(ss, newPinEnc)
	if err != nil || len(padded) != ctap2.PaddedPINLength {
		return nil, 0, ctap2.ErrInvalidParameter
	}
	pin := bytes.TrimRight(padded, "\x00")
	n := utf8.RuneCount(pin)
	if len(pin) > ctap2.MaxPINLength || bytes.IndexByte(pin, 0) >= 0 || !utf8.Valid(pin) || n < minPINLength(s) {
		return nil, 0, ctap2.ErrPINPolicyViolation
	}
	h := sha256.Sum256(pin)
	return h[:16], n, nil
}
