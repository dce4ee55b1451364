package softkey

import (
	"io"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// Optional CTAP 2.1 commands. Each constant gates both what getInfo advertises and
// which pinUvAuthToken permission the softkey grants (anything else is
// UNAUTHORIZED_PERMISSION, CTAP 2.1 §6.5.5.7): set it to true in the change that
// adds the command, and getInfo and the permission follow.
const (
	// supportsCredMgmt: authenticatorCredentialManagement (0x0A, and the 0x41
	// prototype); options credMgmt and credentialMgmtPreview; permission cm.
	supportsCredMgmt = true
	// supportsAuthnrCfg: authenticatorConfig (0x0D); options authnrCfg,
	// alwaysUv and ep (always listed, with their state), setMinPINLength, and
	// uvAcfg when built-in UV is configured; getInfo maxRPIDsForSetMinPINLength;
	// permission acfg (also through built-in UV).
	supportsAuthnrCfg = true
	// supportsLargeBlobs: authenticatorLargeBlobs (0x0C); option largeBlobs and
	// getInfo maxSerializedLargeBlobArray; permission lbw.
	supportsLargeBlobs = true
)

// grantable reports whether the softkey may issue a token with perms (the known
// bits; unknown ones are ignored by the caller), through the PIN or built-in UV
// alike (uvAcfg is advertised whenever acfg is supported and UV configured). This
// is the one place permissions are gated. There is no bio enrollment (be) and no
// persistent read-only credential management token (pcmr).
func grantable(perms ctap2.Permission) bool {
	switch {
	case perms&ctap2.PermCredentialManagement != 0 && !supportsCredMgmt,
		perms&ctap2.PermLargeBlobWrite != 0 && !supportsLargeBlobs,
		perms&ctap2.PermAuthenticatorConfig != 0 && !supportsAuthnrCfg,
		perms&ctap2.PermBioEnrollment != 0,
		perms&ctap2.PermPersistentCredMgmtRO != 0:
		return false
	}
	return true
}

// grantablePermissions are the permission bits a token can carry; other bits of a
// request are ignored (CTAP 2.1 §6.5.5.7: unknown permissions are ignored).
const grantablePermissions = ctap2.PermMakeCredential | ctap2.PermGetAssertion |
	ctap2.PermCredentialManagement | ctap2.PermBioEnrollment | ctap2.PermLargeBlobWrite |
	ctap2.PermAuthenticatorConfig | ctap2.PermPersistentCredMgmtRO

// Token lifetime (CTAP 2.1 §6.5.2.1): a new token must be used within
// tokenInitialUse, it lives at most tokenMaxUsage, and its userPresent flag (set
// when built-in UV issued it) lasts tokenUserPresent.
const (
	tokenInitialUse  = 30 * time.Second
	tokenMaxUsage    = 10 * time.Minute
	tokenUserPresent = 30 * time.Second
	tokenSize        = 32
)

// pinUvAuthToken is the authenticator's one pinUvAuthToken and its state. A new
// token request replaces it wholesale, so any earlier token stops verifying.
type pinUvAuthToken struct {
	value    []byte // nil: no token in use
	protocol uint   // the pinUvAuthProtocol it was issued under; only that one verifies it
	perms    ctap2.Permission
	rpID     string // permissions RP ID; meaningful when rpBound
	rpBound  bool
	verified bool // userVerified flag
	present  bool // userPresent flag
	issued   time.Time
	used     bool // verified at least once (the initial usage limit no longer applies)
}

// inUse reports whether the token is live at now, and forgets it when a timer ran
// out.
func (t *pinUvAuthToken) inUse(now time.Time) bool {
	if t.value == nil {
		return false
	}
	age := now.Sub(t.issued)
	if age < 0 || age > tokenMaxUsage || (!t.used && age > tokenInitialUse) {
		t.stop()
		return false
	}
	return true
}

// userPresent is the userPresent flag, which expires on its own.
func (t *pinUvAuthToken) userPresent(now time.Time) bool {
	return t.present && now.Sub(t.issued) <= tokenUserPresent
}

// stop is stopUsingPinUvAuthToken: no token until the next request.
func (t *pinUvAuthToken) stop() { *t = pinUvAuthToken{} }

// clearAfterPresence is what a makeCredential or getAssertion that collected user
// presence does (CTAP 2.1 §6.1.2 step 14, §6.2.2 step 9): clear userPresent and
// userVerified and every permission but lbw, so the token cannot sign again
// without a new request.
func (t *pinUvAuthToken) clearAfterPresence() {
	t.present = false
	t.verified = false
	t.perms &= ctap2.PermLargeBlobWrite
}

// verifyPinUvAuthParam checks the pinUvAuthParam of a request that needs a
// pinUvAuthToken (makeCredential and getAssertion over clientDataHash;
// credentialManagement, authenticatorConfig and largeBlobs over the messages of
// CTAP 2.1 §6.8, §6.11, §6.10). It is the only way a command should accept a
// token. In order:
//
//   - param nil: PUAT_REQUIRED (callers that allow an unprotected authenticator to
//     skip authentication check protected() first);
//   - protocol 0 (absent): MISSING_PARAMETER; not 1 or 2: INVALID_PARAMETER;
//   - no token in use (none issued, expired, replaced, reset, PIN changed), a token
//     of another protocol, or a wrong MAC: PIN_AUTH_INVALID;
//   - the token lacks any bit of perm: PIN_AUTH_INVALID;
//   - rpID != "" and the token is bound to another RP ID: PIN_AUTH_INVALID;
//   - perm has mc or ga and the token's userVerified flag is clear: PIN_AUTH_INVALID.
//
// On success an mc/ga token without a permissions RP ID is bound to rpID, and the
// token counts as used (its 10-minute limit applies from now on instead of the
// 30 s to first use). rpID "" means the command is not about one RP (e.g.
// credentialManagement's getCredsMetadata): no RP check, no binding — such a
// command must refuse an RP-bound token itself where the spec says so, using
// tokenRPID. It never returns UNAUTHORIZED_PERMISSION: that belongs to token
// requests, where grantable decides.
func (a *Authenticator) verifyPinUvAuthParam(protocol uint, param, msg []byte, perm ctap2.Permission, rpID string) error {
	if param == nil {
		return ctap2.ErrPUATRequired
	}
	if protocol == 0 {
		return ctap2.ErrMissingParameter
	}
	p := a.pinProtocol(protocol)
	if p == nil {
		return ctap2.ErrInvalidParameter
	}
	t := &a.pin.token
	if !t.inUse(a.cfg.Now()) || t.protocol != protocol || !p.Verify(t.value, msg, param) {
		return ctap2.ErrPINAuthInvalid
	}
	if t.perms&perm != perm && !a.cfg.Faults.ignorePermissions() {
		return ctap2.ErrPINAuthInvalid
	}
	if rpID != "" && t.rpBound && t.rpID != rpID && !a.cfg.Faults.ignorePermissions() {
		return ctap2.ErrPINAuthInvalid
	}
	mcga := perm&(ctap2.PermMakeCredential|ctap2.PermGetAssertion) != 0
	if mcga && !t.verified {
		return ctap2.ErrPINAuthInvalid
	}
	if mcga && rpID != "" && !t.rpBound {
		t.rpID, t.rpBound = rpID, true
	}
	t.used = true
	return nil
}

// tokenRPID is the current token's permissions RP ID; bound is false when it has
// none (or no token is in use).
func (a *Authenticator) tokenRPID() (rpID string, bound bool) {
	t := &a.pin.token
	if !t.inUse(a.cfg.Now()) || a.cfg.Faults.ignorePermissions() {
		return "", false
	}
	return t.rpID, t.rpBound
}

// protected reports whether commands other than makeCredential/getAssertion
// (credentialManagement, authenticatorConfig, largeBlobs writes) must carry a
// pinUvAuthParam: a PIN is set, built-in UV is configured, or alwaysUv is on. When
// it is false such a command may go ahead without one (CTAP 2.1 §6.11: config on
// an unprotected authenticator; §6.10: largeBlobs writes). A store that cannot be
// read counts as protected, so a failure never opens anything.
func (a *Authenticator) protected() bool {
	s, err := a.settings()
	return err != nil || uvProtected(a, s) || s.AlwaysUV
}

// uvProtected is the spec's "protected by some form of user verification": a PIN is
// set or built-in UV is configured.
func uvProtected(a *Authenticator, s store.Settings) bool {
	return s.PINHash != nil || a.uvConfigured()
}

// issueToken makes a new token (invalidating the previous one) with the given
// state, for protocol; it returns the token value.
func (a *Authenticator) issueToken(protocol uint, perms ctap2.Permission, rpID string, userPresent bool) ([]byte, error) {
	a.pin.token.stop()
	value := make([]byte, tokenSize)
	if _, err := io.ReadFull(a.pin.rnd, value); err != nil {
		return nil, ctap2.ErrOther
	}
	a.pin.token = pinUvAuthToken{
		value:    value,
		protocol: protocol,
		perms:    perms & grantablePermissions,
		rpID:     rpID,
		rpBound:  rpID != "",
		verified: true,
		present:  userPresent,
		issued:   a.cfg.Now(),
	}
	return value, nil
}
