package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
)

func (a *app) configCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Change the key's settings: always-uv, minimum PIN length, enterprise attestation",
		Long: `Change the key's settings (CTAP 2.1 authenticatorConfig).

On a key with a PIN every change needs it: $` + envPIN + `, else a masked prompt. A key
without a PIN accepts changes without one (unless alwaysUv is on).`,
	}
	c.AddCommand(a.configAlwaysUVCommand(), a.configMinPINLengthCommand(), a.configEnterpriseAttestationCommand())
	return c
}

// configSession opens the device, checks that it supports authenticatorConfig and
// gets a token with the acfg permission (nil for a key without a PIN).
func (a *app) configSession(ctx context.Context, s *session, pf *pinFlag) (*ctap2.Info, *ctap2.PINToken, error) {
	info, err := s.client.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	if v, _ := info.Option("authnrCfg"); !v {
		return nil, nil, errors.New("this key does not support configuration (no authnrCfg option in getInfo)")
	}
	tok, err := a.authorize(ctx, s, ctap2.PermAuthenticatorConfig, "", pf)
	return info, tok, err
}

// configHint explains the statuses a config change commonly gets.
func configHint(err error) error {
	switch st, _ := ctap2.StatusOf(err); st {
	case ctap2.ErrPUATRequired:
		return withHint(err, "the key wants user verification for this; set a PIN first with 'ctapkit pin set'")
	}
	return err
}

func (a *app) configAlwaysUVCommand() *cobra.Command {
	var pf pinFlag
	c := &cobra.Command{
		Use:   "always-uv on|off",
		Short: "Require user verification (PIN or built-in) for every credential operation",
		Long: `Turn the key's alwaysUv setting on or off. With it on the key asks for the PIN
(or built-in UV) for every registration and sign-in, and turns off U2F.

The key only offers a toggle: ctapkit reads the current value first and changes it only
when it differs.`,
		Example:   "  ctapkit config always-uv on",
		Args:      exactArgs(1, "give on or off"),
		ValidArgs: []string{"on", "off"},
		RunE: func(cmd *cobra.Command, args []string) error {
			var want bool
			switch strings.ToLower(args[0]) {
			case "on", "true", "1":
				want = true
			case "off", "false", "0":
			default:
				return usageErrorf("always-uv: want on or off, got %q", printable(args[0]))
			}
			ctx, s, info, done, err := a.beginSessionInfo(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			cur, present := info.Option("alwaysUv")
			if !present {
				return errors.New("this key has no alwaysUv setting (no alwaysUv option in getInfo)")
			}
			changed := false
			if cur != want {
				_, tok, err := a.configSession(ctx, s, &pf)
				if err != nil {
					return err
				}
				if err := s.client.ToggleAlwaysUV(ctx, tok); err != nil {
					return configHint(fmt.Errorf("config always-uv: %w", err))
				}
				info, err = s.client.Info(ctx)
				if err != nil {
					return err
				}
				if now, _ := info.Option("alwaysUv"); now != want {
					return fmt.Errorf("config always-uv: the key accepted the change but still reports alwaysUv=%v", now)
				}
				changed = true
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"device": s.dev.Info().URI, "alwaysUv": want, "changed": changed})
			}
			state := map[bool]string{true: "on", false: "off"}[want]
			if changed {
				fmt.Fprintf(a.io.Out, "alwaysUv is now %s\n", state)
			} else {
				fmt.Fprintf(a.io.Out, "alwaysUv is already %s\n", state)
			}
			return nil
		},
	}
	pf.register(c.Flags())
	return c
}

// maxPINLength is the longest PIN CTAP allows, in code points at best (63 bytes).
const maxPINLength = 63

func (a *app) configMinPINLengthCommand() *cobra.Command {
	var (
		rpIDs       []string
		forceChange bool
		pf          pinFlag
	)
	c := &cobra.Command{
		Use:   "min-pin-length [N] [--rp ID]... [--force-change]",
		Short: "Raise the minimum PIN length, and say which RPs may read it",
		Long: `Raise the key's minimum PIN length to N (setMinPINLength). The minimum can only
grow; only a reset lowers it again. If the current PIN is shorter than N, the key makes
the user change it before its next use, as --force-change does for any PIN.

--rp (repeatable) names relying parties allowed to read the minimum through the
minPinLength extension. N may be left out to change only those or to force a change.`,
		Example: "  ctapkit config min-pin-length 8\n  ctapkit config min-pin-length 6 --rp example.com --force-change",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var newMin uint
			if len(args) == 1 {
				n, err := strconv.ParseUint(args[0], 10, 8)
				if err != nil || n < ctap2.DefaultMinPINLength || n > maxPINLength {
					return usageErrorf("min-pin-length: want a number from %d to %d, got %q", ctap2.DefaultMinPINLength, maxPINLength, printable(args[0]))
				}
				newMin = uint(n)
			}
			for _, rp := range rpIDs {
				if rp == "" {
					return usageErrorf("--rp must not be empty")
				}
			}
			if newMin == 0 && len(rpIDs) == 0 && !forceChange {
				return usageErrorf("give a new minimum length, --rp or --force-change")
			}
			ctx, s, info, done, err := a.beginSessionInfo(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			cur := max(info.MinPINLength, ctap2.DefaultMinPINLength)
			if newMin != 0 && newMin < cur {
				return usageErrorf("min-pin-length: the minimum can only grow: it is %d, so %d is not possible (only a reset lowers it)", cur, newMin)
			}
			if len(rpIDs) > 0 && uint(len(rpIDs)) > info.MaxRPIDsForSetMinPINLength {
				if info.MaxRPIDsForSetMinPINLength == 0 {
					return usageErrorf("--rp: this key does not let relying parties read the minimum PIN length")
				}
				return usageErrorf("--rp: this key accepts at most %d relying parties, got %d", info.MaxRPIDsForSetMinPINLength, len(rpIDs))
			}
			if forceChange {
				if set, _ := info.Option("clientPin"); !set {
					return errors.New("config min-pin-length: --force-change needs a PIN, and this key has none")
				}
			}
			_, tok, err := a.configSession(ctx, s, &pf)
			if err != nil {
				return err
			}
			if err := s.client.SetMinPINLength(ctx, tok, newMin, rpIDs, forceChange); err != nil {
				return configHint(fmt.Errorf("config min-pin-length: %w", err))
			}
			if info, err = s.client.Info(ctx); err != nil {
				return err
			}
			now := max(info.MinPINLength, ctap2.DefaultMinPINLength)
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"device": s.dev.Info().URI, "minPinLength": now,
					"rpIds": nonNilStrings(rpIDs), "forcePinChange": info.ForcePINChange})
			}
			rows := []row{{"Minimum PIN length", fmt.Sprint(now)}}
			if len(rpIDs) > 0 {
				rows = append(rows, row{"Readable by", strings.Join(rpIDs, ", ")})
			}
			if info.ForcePINChange {
				rows = append(rows, row{"PIN change", "required before the PIN is used again ('ctapkit pin change')"})
			}
			return writeTable(a.io.Out, rows)
		},
	}
	c.Flags().StringArrayVar(&rpIDs, "rp", nil, "relying party ID that may read the minimum (minPinLength extension); repeatable")
	c.Flags().BoolVar(&forceChange, "force-change", false, "make the user change the PIN before its next use")
	pf.register(c.Flags())
	return c
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *app) configEnterpriseAttestationCommand() *cobra.Command {
	var pf pinFlag
	c := &cobra.Command{
		Use:   "enterprise-attestation",
		Short: "Enable enterprise attestation",
		Long: `Enable enterprise attestation (the ep option): relying parties the key's vendor
lists may then ask for an attestation that identifies this very key
(make-credential --attestation enterprise). Only a reset turns it off again.`,
		Example: "  ctapkit config enterprise-attestation",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, s, info, done, err := a.beginSessionInfo(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ep, present := info.Option("ep")
			if !present {
				return errors.New("this key does not support enterprise attestation (no ep option in getInfo)")
			}
			changed := false
			if !ep {
				_, tok, err := a.configSession(ctx, s, &pf)
				if err != nil {
					return err
				}
				if err := s.client.EnableEnterpriseAttestation(ctx, tok); err != nil {
					return configHint(fmt.Errorf("config enterprise-attestation: %w", err))
				}
				changed = true
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"device": s.dev.Info().URI, "enterpriseAttestation": true, "changed": changed})
			}
			if changed {
				fmt.Fprintln(a.io.Out, "Enterprise attestation is now enabled")
			} else {
				fmt.Fprintln(a.io.Out, "Enterprise attestation is already enabled")
			}
			return nil
		},
	}
	pf.register(c.Flags())
	return c
}
