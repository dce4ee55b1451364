package main

import (
	"errors"
	"fmt"

	"github.com/manifoldco/promptui"
	"github.com/spf13/cobra"
)

const resetWarning = "reset erases every credential (passkey) on the key, its PIN and its settings; this cannot be undone"

func (a *app) resetCommand() *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "reset",
		Short: "Erase all credentials, the PIN and settings of a key",
		Long: `Reset the key to factory state: ` + resetWarning + `.

Keys accept a reset only within a few seconds of being plugged in, and only with a touch.`,
		Example: "  ctapkit -d soft:./sk.db reset --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !yes {
				if !a.io.CanPrompt() {
					return usageErrorf("%s; pass --yes to confirm without a terminal", resetWarning)
				}
				p := promptui.Prompt{Label: "This " + resetWarning + ". Reset", IsConfirm: true,
					Stdin: readCloser{a.io.In}, Stdout: writeCloser{a.io.ErrOut}}
				if _, err := p.Run(); err != nil {
					if errors.Is(err, promptui.ErrAbort) {
						return fmt.Errorf("reset: not confirmed, nothing changed")
					}
					return fmt.Errorf("reset: %w", err)
				}
			}
			ctx, s, done, err := a.beginSession(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if err := s.client.Reset(ctx); err != nil {
				return fmt.Errorf("reset: %w", err)
			}
			s.notice.stop()
			if !a.json {
				fmt.Fprintf(a.io.Out, "%s has been reset\n", s.dev.Info().URI)
				return nil
			}
			return writeJSON(a.io.Out, map[string]any{"device": s.dev.Info().URI, "reset": true})
		},
	}
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return c
}
