package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// errNoPIN: the command needs user verification but the key has neither a PIN
// nor built-in UV.
var errNoPIN = errors.New("this key has no PIN: set one first with 'ctapkit pin set'")

// authorize gets a pinUvAuthToken with perms (bound to rpID when given): by
// built-in UV when the key offers it for tokens, else with the PIN from --pin,
// CTAPKIT_PIN or a prompt. It returns nil when the key has no PIN and no UV, in
// which case callers that can go on without a token do so and the others fail
// with errNoPIN.
func (a *app) authorize(ctx context.Context, s *session, perms ctap2.Permission, rpID string, pf *pinFlag) (*ctap2.PINToken, error) {
	info, err := s.client.Info(ctx)
	if err != nil {
		return nil, err
	}
	uv, _ := info.Option("uv")
	uvTokens, _ := info.Option("pinUvAuthToken")
	if uv && uvTokens && (pf == nil || pf.value == "") {
		tok, err := s.client.UVToken(ctx, perms, rpID)
		if err == nil || !errors.Is(err, ctap2.ErrUVBlocked) {
			return tok, wrapAuth(err)
		}
		// UV is blocked: fall back to the PIN, as platforms do.
	}
	if pinSet, _ := info.Option("clientPin"); !pinSet {
		return nil, nil
	}
	pin, err := a.currentPIN(pf)
	if err != nil {
		return nil, err
	}
	tok, err := s.client.PINToken(ctx, pin, perms, rpID)
	return tok, wrapAuth(err)
}

func wrapAuth(err error) error {
	if err == nil {
		return nil
	}
	return pinChangeHint(fmt.Errorf("verifying the user: %w", err))
}

// pinChangeHint tells the user what to do when the key refuses a token because it
// wants a new PIN first (forcePINChange, or a PIN below a raised minimum length).
func pinChangeHint(err error) error {
	if errors.Is(err, ctap2.ErrPINPolicyViolation) {
		return withHint(err, "the key wants a new PIN first: ctapkit pin change")
	}
	return err
}

// requireToken is authorize for commands that cannot run without a token.
func (a *app) requireToken(ctx context.Context, s *session, perms ctap2.Permission, rpID string, pf *pinFlag) (*ctap2.PINToken, error) {
	tok, err := a.authorize(ctx, s, perms, rpID, pf)
	if err == nil && tok == nil {
		err = errNoPIN
	}
	return tok, err
}

// verified runs a makeCredential or getAssertion with the user verification the
// flags and the key ask for. With --uv a pinUvAuthToken (PIN or built-in UV)
// protects the request, or, on a key that has built-in UV but no tokens (CTAP
// 2.0), the uv option does. Without --uv the request goes as it is, and is
// repeated with a token when the key answers PUAT_REQUIRED: a key with a PIN wants
// one for discoverable credentials and under alwaysUv.
type verified struct {
	perm     ctap2.Permission
	rpID     string
	cdh      []byte
	wantUV   bool
	pin      *pinFlag
	options  **ctap2.Options
	setParam func(param []byte, protocol uint)
}

func (a *app) runVerified(ctx context.Context, s *session, v verified, call func() error) error {
	protect := func() error {
		tok, err := a.authorize(ctx, s, v.perm, v.rpID, v.pin)
		if err != nil {
			return err
		}
		if tok == nil {
			if v.wantUV {
				return usageErrorf("--uv: this key has no PIN and no built-in user verification")
			}
			return errNoPIN
		}
		v.setParam(tok.Param(v.cdh), tok.Protocol.Version())
		if *v.options != nil {
			(*v.options).UV = nil // the token carries the verification
		}
		return nil
	}
	if v.wantUV {
		info, err := s.client.Info(ctx)
		if err != nil {
			return err
		}
		uv, _ := info.Option("uv")
		tokens, _ := info.Option("pinUvAuthToken")
		pinSet, _ := info.Option("clientPin")
		if !(uv && !tokens && !pinSet) {
			if err := protect(); err != nil {
				return err
			}
		}
	}
	err := call()
	if !v.wantUV && errors.Is(err, ctap2.ErrPUATRequired) {
		if perr := protect(); perr != nil {
			return perr
		}
		err = call()
	}
	return err
}
