package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
)

func (a *app) softkeyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "softkey",
		Short: "Create and inspect the software authenticator",
		Long: `The softkey is ctapkit's software FIDO2 authenticator. Its state (keys, resident
credentials, counters) lives in one file; use it with -d soft:PATH.`,
	}
	c.AddCommand(a.softkeyInitCommand(), a.softkeyInfoCommand(), a.softkeyServeCommand())
	return c
}

// defaultStatePath is $XDG_DATA_HOME/ctapkit/softkey.db (~/.local/share by default).
func defaultStatePath() string {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "softkey.db"
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dir, "ctapkit", "softkey.db")
}

func (a *app) softkeyInitCommand() *cobra.Command {
	var state string
	var noPassphrase bool
	c := &cobra.Command{
		Use:     "init",
		Short:   "Create a new softkey state file",
		Example: "  ctapkit softkey init --state ./sk.db --no-passphrase\n  ctapkit -d soft:./sk.db info",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if !noPassphrase {
				return usageErrorf("passphrase protection of the state file is not available yet; pass --no-passphrase to store it unencrypted")
			}
			if err := os.MkdirAll(filepath.Dir(state), 0o700); err != nil {
				return fmt.Errorf("softkey init: %w", err)
			}
			db, err := store.Create(state, store.CreateOptions{NoPassphrase: true})
			if err != nil {
				return fmt.Errorf("softkey init: %w", err)
			}
			meta := db.Meta()
			if err := db.Close(); err != nil {
				return fmt.Errorf("softkey init: %w", err)
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"state": state, "aaguid": uuid(meta.AAGUID[:]), "encrypted": false})
			}
			fmt.Fprintf(a.io.Out, "created softkey %s (AAGUID %s, unencrypted)\nuse it with: ctapkit -d soft:%s info\n",
				state, uuid(meta.AAGUID[:]), state)
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file to create")
	c.Flags().BoolVar(&noPassphrase, "no-passphrase", false, "store the state unencrypted (required for now)")
	return c
}

func (a *app) softkeyInfoCommand() *cobra.Command {
	var state string
	c := &cobra.Command{
		Use:   "info",
		Short: "Describe a softkey state file",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			db, err := store.Open(state)
			if err != nil {
				return softkeyOpenError(state, err)
			}
			defer db.Close()
			meta := db.Meta()
			n, err := db.CountCredentials()
			if err != nil {
				return fmt.Errorf("softkey info: %w", err)
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{
					"state": state, "aaguid": uuid(meta.AAGUID[:]), "formatVersion": meta.FormatVersion,
					"created": meta.Created, "residentCredentials": n, "encrypted": db.Encrypted(),
					"attestation": attestationName(meta.Attestation),
				})
			}
			return writeTable(a.io.Out, []row{
				{"State", state},
				{"AAGUID", uuid(meta.AAGUID[:])},
				{"Format version", fmt.Sprint(meta.FormatVersion)},
				{"Created", meta.Created.Format("2006-01-02 15:04:05 MST")},
				{"Passkeys", fmt.Sprint(n)},
				{"Attestation", attestationName(meta.Attestation)},
				{"Encrypted", yesNo(db.Encrypted())},
			})
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	return c
}

// attestationName is the attestation mode recorded in a state file; older files and
// the default leave it empty, which means self attestation.
func attestationName(mode string) string {
	if mode == "" {
		return string(softkey.AttestationSelf)
	}
	return mode
}
