package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/manifoldco/promptui"
	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
)

const resetWarning = "reset erases every credential (passkey) on the key, its PIN and its settings; this cannot be undone"

func (a *app) resetCommand() *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "reset",
		Short: "Erase all credentials, the PIN and settings of a key",
		Long: `Reset the key to factory state: ` + resetWarning + `.

Keys accept a reset only within a few seconds of being plugged in, and only with a touch.
When a USB or NFC key refuses because it has been in for longer, ctapkit asks you to
remove it and insert it again, waits for that same key to come back (at least 60 s,
or --timeout if longer), and sends the reset at once. Another key that appears
instead is not reset.`,
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
			return a.reset(cmd.Context(), replugOptions{})
		},
	}
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return c
}

// reset resets the selected key; a key that refuses with NOT_ALLOWED and can be
// re-plugged gets the re-plug flow of replug.go.
func (a *app) reset(parent context.Context, opts replugOptions) error {
	ctx, cancel := a.withTimeout(parent)
	defer cancel()
	s, err := a.openSession(ctx)
	if err != nil {
		return err
	}
	uri := s.dev.Info().URI
	err = s.client.Reset(ctx)
	switch {
	case err == nil:
		s.Close()
	case errors.Is(err, ctap2.ErrNotAllowed) && canReplug(uri):
		s.notice.stop()
		if uri, err = a.resetAfterReplug(parent, s, opts); err != nil {
			return err
		}
	case errors.Is(err, ctap2.ErrNotAllowed):
		s.Close()
		return withHint(fmt.Errorf("reset: %w", err), notAllowedHint(uri))
	default:
		s.Close()
		return fmt.Errorf("reset: %w", err)
	}
	if !a.json {
		fmt.Fprintf(a.io.Out, "%s has been reset\n", uri)
		return nil
	}
	return writeJSON(a.io.Out, map[string]any{"device": uri, "reset": true})
}
