package softkey

import (
	"context"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// UVMode simulates built-in user verification (a fingerprint reader, say).
type UVMode string

const (
	// UVNone: no built-in UV; getInfo has no "uv" option and the uv option of
	// makeCredential and getAssertion is INVALID_OPTION. The default.
	UVNone UVMode = "none"
	// UVPass: built-in UV is configured and every attempt succeeds (and resets
	// uvRetries).
	UVPass UVMode = "pass"
	// UVFail: built-in UV is configured and every attempt fails: UV_INVALID,
	// uvRetries decremented (persisted), UV_BLOCKED once they reach 0.
	UVFail UVMode = "fail"
)

// checkUVMode normalizes Config.UV.
func checkUVMode(m UVMode) (UVMode, error) {
	switch m {
	case "", UVNone:
		return UVNone, nil
	case UVPass, UVFail:
		return m, nil
	}
	return "", fmt.Errorf("unknown built-in UV mode %q (want none, pass or fail)", m)
}

// uvConfigured reports whether built-in UV exists and is enrolled (getInfo "uv":
// true). The simulated reader has no enrollment step: pass and fail are both
// configured.
func (a *Authenticator) uvConfigured() bool { return a.cfg.UV == UVPass || a.cfg.UV == UVFail }

// builtInUV performs one simulated built-in user verification (CTAP 2.1
// performBuiltInUv). Like a fingerprint touch it also counts as user presence. The
// decremented uvRetries is durable before the verdict, so killing the softkey
// between attempts gains nothing; success restores them to the maximum.
func (a *Authenticator) builtInUV() error {
	if !a.uvConfigured() {
		return ctap2.ErrNotAllowed
	}
	s, err := a.settings()
	if err != nil {
		return err
	}
	if s.UVRetries <= 0 {
		return ctap2.ErrUVBlocked
	}
	if a.cfg.UV == UVPass {
		if s.UVRetries != store.DefaultUVRetries {
			s.UVRetries = store.DefaultUVRetries
			return a.setSettings(s)
		}
		return nil
	}
	s.UVRetries--
	if err := a.setSettings(s); err != nil {
		return err
	}
	if s.UVRetries == 0 {
		return ctap2.ErrUVBlocked
	}
	return ctap2.ErrUVInvalid
}

// pinUvAuthProbe is steps 1-2 of makeCredential and getAssertion. A zero-length
// pinUvAuthParam is the CTAP 2.0 "touch to select" probe: a touch, then
// PIN_NOT_SET or, with a PIN set, PIN_INVALID. Otherwise a pinUvAuthParam needs a
// pinUvAuthProtocol (MISSING_PARAMETER) of 1 or 2 (INVALID_PARAMETER).
func (a *Authenticator) pinUvAuthProbe(ctx context.Context, param []byte, protocol uint, rpID string, status func(byte)) error {
	switch {
	case param == nil:
		return nil
	case len(param) == 0:
		if err := a.userPresence(ctx, rpID, status); err != nil {
			return err
		}
		s, err := a.settings()
		if err != nil {
			return err
		}
		if s.PINHash != nil {
			return ctap2.ErrPINInvalid
		}
		return ctap2.ErrPINNotSet
	case protocol == 0:
		return ctap2.ErrMissingParameter
	case a.pinProtocol(protocol) == nil:
		return ctap2.ErrInvalidParameter
	}
	return nil
}

// alwaysUV applies alwaysUv to a makeCredential or a user-present getAssertion
// and returns the uv to use: an authenticator without PIN or built-in UV answers
// PUAT_REQUIRED (the platform must set a PIN first); a request with neither
// pinUvAuthParam nor uv gets built-in UV when it is configured, else
// PUAT_REQUIRED.
func (a *Authenticator) alwaysUV(protected bool, param []byte, uv bool) (bool, error) {
	if !protected {
		return false, ctap2.ErrPUATRequired
	}
	if param == nil && !uv {
		if !a.uvConfigured() {
			return false, ctap2.ErrPUATRequired
		}
		return true, nil
	}
	return uv, nil
}

// verifyUser verifies the user of a makeCredential or getAssertion (steps 8 and 5)
// by the request's pinUvAuthParam (perm over clientDataHash, RP bound) or, with
// uv, by built-in UV. It returns FlagUV when the user was verified and whether
// presence is already established (built-in UV, or a token issued through it).
// A pinUvAuthParam sent to an authenticator without PIN or built-in UV is
// PIN_NOT_SET: no token can exist.
func (a *Authenticator) verifyUser(protected bool, param []byte, protocol uint, clientDataHash []byte, perm ctap2.Permission, rpID string, uv bool) (ctap2.AuthFlags, bool, error) {
	switch {
	case param != nil:
		if !protected {
			return 0, false, ctap2.ErrPINNotSet
		}
		if err := a.verifyPinUvAuthParam(protocol, param, clientDataHash, perm, rpID); err != nil {
			return 0, false, err
		}
		return ctap2.FlagUV, a.pin.token.userPresent(a.cfg.Now()), nil
	case uv:
		if err := a.builtInUV(); err != nil {
			return 0, false, err
		}
		return ctap2.FlagUV, true, nil
	}
	return 0, false, nil
}
