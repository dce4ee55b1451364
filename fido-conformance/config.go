package conformance

import (
	"github.com/ctapkit/ctapkit/ctap2"
)

// authenticatorConfig cases (CTAP 2.1 §6.11). Each one that could change a
// setting leaves it as it found it; none raises the minimum PIN length, which
// only a reset could lower again.

// requireConfig skips the case unless the key has authenticatorConfig.
func requireConfig(t *T) {
	if v, _ := t.Info().Option("authnrCfg"); !v {
		t.Skipf("the key does not support authenticatorConfig (no authnrCfg option)")
	}
}

// configRaw sends one authenticatorConfig subcommand with the raw parameters
// (nil: none), authenticated with tok unless nil.
func configRaw(t *T, tok *ctap2.PINToken, sub ctap2.ConfigSubcommand, params []byte) error {
	req := ctap2.ConfigRequest{SubCommand: sub, SubCommandParams: params}
	if tok != nil {
		req.PinUvAuthProtocol = tok.Protocol.Version()
		req.PinUvAuthParam = tok.Param(ctap2.ConfigAuthMessage(sub, params))
	}
	return t.Client().Call(t.Context(), ctap2.CmdConfig, &req, nil)
}

// alwaysUVNow reads alwaysUv from a fresh getInfo.
func alwaysUVNow(t *T) bool {
	v, _ := refreshInfo(t).Option("alwaysUv")
	return v
}

// keepAlwaysUV restores alwaysUv to want when the case ends.
func keepAlwaysUV(t *T, want bool) {
	t.Cleanup(func() {
		if info, err := t.Client().GetInfo(t.Context()); err != nil || info.Options["alwaysUv"] == want {
			return
		}
		tok, err := t.Client().PINToken(t.Context(), t.Target().PIN, ctap2.PermAuthenticatorConfig, "")
		if err == nil {
			err = t.Client().ToggleAlwaysUV(t.Context(), tok)
		}
		if err != nil {
			t.Errorf("cleanup: restoring alwaysUv %v: %s", want, statusName(err))
		}
	})
}

func init() {
	register(
		Case{ID: "CF-1", Area: AreaConfig, Destructive: true, Requirement: "CTAP 2.1 §6.11.2 (toggleAlwaysUv), §6.4 (alwaysUv option)",
			Description: "toggleAlwaysUv flips getInfo's alwaysUv, and a second toggle restores it",
			Run: func(t *T) {
				requireConfig(t)
				t.EnsurePIN()
				if _, ok := t.Info().Option("alwaysUv"); !ok {
					t.Skipf("the key does not list the alwaysUv option")
				}
				orig := alwaysUVNow(t)
				keepAlwaysUV(t, orig)
				tok := t.PINToken(ctap2.PermAuthenticatorConfig, "")
				for i, want := range []bool{!orig, orig} {
					err := configRaw(t, tok, ctap2.ConfigToggleAlwaysUV, nil)
					if !t.ExpectStatus("toggleAlwaysUv", err, ctap2.StatusOK) {
						return
					}
					if got := alwaysUVNow(t); got != want {
						t.Errorf("getInfo alwaysUv after toggle %d: observed %v, expected %v", i+1, got, want)
					}
				}
			}},
		Case{ID: "CF-2", Area: AreaConfig, Destructive: true, Requirement: "CTAP 2.1 §6.11.4 (setMinPINLength only grows)",
			Description: "setMinPINLength below the current minimum is refused with PIN_POLICY_VIOLATION",
			Run: func(t *T) {
				requireConfig(t)
				t.RequireOption("setMinPINLength")
				t.EnsurePIN()
				current := max(t.Info().MinPINLength, ctap2.DefaultMinPINLength)
				params, err := ctap2.Marshal(&ctap2.SetMinPINLengthParams{NewMinPINLength: current - 1})
				t.Must("encoding setMinPINLength parameters", err)
				err = configRaw(t, t.PINToken(ctap2.PermAuthenticatorConfig, ""), ctap2.ConfigSetMinPINLength, params)
				t.ExpectStatus("setMinPINLength one below the current minimum", err, ctap2.ErrPINPolicyViolation)
				if got := max(refreshInfo(t).MinPINLength, ctap2.DefaultMinPINLength); got != current {
					t.Errorf("getInfo minPINLength after the refused change: observed %d, expected %d", got, current)
				}
			}},
		Case{ID: "CF-3", Area: AreaConfig, Destructive: true, Requirement: "CTAP 2.1 §6.11 (protected authenticator: pinUvAuthParam required)",
			Description: "toggleAlwaysUv without pinUvAuthParam on a key with a PIN is refused with PUAT_REQUIRED",
			Run: func(t *T) {
				requireConfig(t)
				t.EnsurePIN()
				orig := alwaysUVNow(t)
				keepAlwaysUV(t, orig)
				err := configRaw(t, nil, ctap2.ConfigToggleAlwaysUV, nil)
				t.ExpectStatus("toggleAlwaysUv without pinUvAuthParam", err, ctap2.ErrPUATRequired)
				if got := alwaysUVNow(t); got != orig {
					t.Errorf("getInfo alwaysUv after the refused toggle: observed %v, expected %v", got, orig)
				}
			}},
		Case{ID: "CF-4", Area: AreaConfig, Requirement: "CTAP 2.1 §6.11 (unknown subCommand), ctap-reference §8.2",
			Description: "an unknown authenticatorConfig subcommand is refused with INVALID_SUBCOMMAND (or INVALID_PARAMETER)",
			Run: func(t *T) {
				requireConfig(t)
				var tok *ctap2.PINToken
				if set, _ := t.Info().Option("clientPin"); set {
					tok = t.PINToken(ctap2.PermAuthenticatorConfig, "")
				}
				err := configRaw(t, tok, 0x7E, nil)
				t.ExpectOneOf("authenticatorConfig subcommand 0x7E", err, ctap2.ErrInvalidSubcommand, ctap2.ErrInvalidParameter)
			}},
		Case{ID: "CF-5", Area: AreaConfig, Destructive: true, Requirement: "CTAP 2.1 §6.11 (pinUvAuthProtocol required with pinUvAuthParam)",
			Description: "setMinPINLength with a pinUvAuthParam but no pinUvAuthProtocol is refused with MISSING_PARAMETER",
			Run: func(t *T) {
				requireConfig(t)
				t.RequireOption("setMinPINLength")
				t.EnsurePIN()
				tok := t.PINToken(ctap2.PermAuthenticatorConfig, "")
				// No parameters: even a key that took it would change nothing.
				req := ctap2.ConfigRequest{
					SubCommand:     ctap2.ConfigSetMinPINLength,
					PinUvAuthParam: tok.Param(ctap2.ConfigAuthMessage(ctap2.ConfigSetMinPINLength, nil)),
				}
				err := t.Client().Call(t.Context(), ctap2.CmdConfig, &req, nil)
				t.ExpectStatus("setMinPINLength without pinUvAuthProtocol", err, ctap2.ErrMissingParameter)
			}},
	)
}
