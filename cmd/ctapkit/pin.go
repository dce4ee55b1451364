package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) pinCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "pin",
		Short: "Set, change and inspect the key's PIN",
		Long: `Set, change and inspect the key's PIN (CTAP2 clientPIN).

The current PIN comes from $` + envPIN + `, else a masked prompt on a terminal. Without a
terminal, 'pin set' takes the new PIN from $` + envPIN + ` and 'pin change' the new one from
$` + envNewPIN + `. A key allows 8 wrong PINs in a row, then only a reset helps; after 3
wrong in a row it must be unplugged first.`,
	}
	c.AddCommand(a.pinSetCommand(), a.pinChangeCommand(), a.pinRetriesCommand())
	return c
}

func (a *app) pinSetCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "set",
		Short:   "Set the first PIN of a key that has none",
		Example: "  ctapkit pin set\n  CTAPKIT_PIN=123456 ctapkit -d soft:./sk.db pin set",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, s, info, done, err := a.beginSessionInfo(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if set, supported := info.Option("clientPin"); !supported {
				return fmt.Errorf("pin set: this key does not support a PIN")
			} else if set {
				return fmt.Errorf("pin set: the key already has a PIN; use 'ctapkit pin change'")
			}
			pin, err := a.newPIN(envPIN, int(info.MinPINLength))
			if err != nil {
				return err
			}
			if err := s.client.SetPIN(ctx, pin); err != nil {
				return fmt.Errorf("pin set: %w", err)
			}
			return a.pinDone(s, "PIN set")
		},
	}
}

func (a *app) pinChangeCommand() *cobra.Command {
	var pf pinFlag
	c := &cobra.Command{
		Use:     "change",
		Short:   "Change the key's PIN",
		Example: "  ctapkit pin change\n  CTAPKIT_PIN=123456 CTAPKIT_NEW_PIN=654321 ctapkit pin change",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, s, info, done, err := a.beginSessionInfo(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if set, _ := info.Option("clientPin"); !set {
				return fmt.Errorf("pin change: the key has no PIN yet; use 'ctapkit pin set'")
			}
			cur, err := a.currentPIN(&pf)
			if err != nil {
				return err
			}
			next, err := a.newPIN(envNewPIN, int(info.MinPINLength))
			if err != nil {
				return err
			}
			if err := s.client.ChangePIN(ctx, cur, next); err != nil {
				return fmt.Errorf("pin change: %w", err)
			}
			return a.pinDone(s, "PIN changed")
		},
	}
	c.Flags().StringVar(&pf.value, "pin", "", "current PIN (visible to other users; prefer $"+envPIN+")")
	return c
}

func (a *app) pinDone(s *session, msg string) error {
	if a.json {
		return writeJSON(a.io.Out, map[string]any{"device": s.dev.Info().URI, "ok": true})
	}
	fmt.Fprintln(a.io.Out, msg)
	return nil
}

type pinRetriesJSON struct {
	PINRetries         int  `json:"pinRetries"`
	UVRetries          *int `json:"uvRetries"`
	PowerCycleRequired bool `json:"powerCycleRequired"`
}

func (a *app) pinRetriesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "retries",
		Short: "Show how many PIN (and built-in UV) attempts are left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, s, done, err := a.beginSession(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var out pinRetriesJSON
			if out.PINRetries, out.PowerCycleRequired, err = s.client.PINRetries(ctx); err != nil {
				return fmt.Errorf("pin retries: %w", err)
			}
			info, err := s.client.Info(ctx)
			if err != nil {
				return err
			}
			if uv, _ := info.Option("uv"); uv {
				n, err := s.client.UVRetries(ctx)
				if err != nil {
					return fmt.Errorf("pin retries: %w", err)
				}
				out.UVRetries = &n
			}
			if a.json {
				return writeJSON(a.io.Out, out)
			}
			pinSet, _ := info.Option("clientPin")
			rows := []row{{"PIN set", yesNo(pinSet)}, {"PIN retries", fmt.Sprint(out.PINRetries)}}
			if out.UVRetries != nil {
				rows = append(rows, row{"UV retries", fmt.Sprint(*out.UVRetries)})
			}
			if out.PowerCycleRequired {
				rows = append(rows, row{"Note", "3 wrong PINs in a row: unplug and replug the key before the next try"})
			}
			return writeTable(a.io.Out, rows)
		},
	}
}
