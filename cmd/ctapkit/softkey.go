package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
)

func (a *app) softkeyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "softkey",
		Short: "Create and inspect the software authenticator",
		Long: `The softkey is ctapkit's software FIDO2 authenticator. Its state (keys, resident
credentials, counters) lives in one file; use it with -d soft:PATH.

The state file is encrypted at rest with a passphrase unless it was created with
--no-passphrase. The passphrase comes from --passphrase-file, ` + envPassphrase + `,
or a prompt on the terminal; -d soft:PATH and softkey serve read the variable or ask.

A state file that cannot be used is left untouched and named in a one-line error:
a wrong passphrase exits 1 (with a hint), a missing one without a terminal 2; a
damaged or truncated file, one of a newer format, one owned by another user or open
to others (the fix is chmod 600) exit 1; a missing file exits 3.`,
	}
	c.AddCommand(a.softkeyInitCommand(), a.softkeyInfoCommand(), a.softkeyServeCommand(),
		a.softkeyPassphraseCommand(), a.softkeyExportCommand(), a.softkeyImportCommand())
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
	var state, passFile string
	var noPassphrase bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a new softkey state file",
		Long: `Create a new softkey state file (mode 0600), encrypted at rest: a passphrase from
--passphrase-file, ` + envPassphrase + ` or a prompt (asked twice) protects its keys,
relying parties and users. --no-passphrase stores it unencrypted, for throwaway keys
in CI.`,
		Example: "  ctapkit softkey init --state ./sk.db\n" +
			"  ctapkit softkey init --state ./ci.db --no-passphrase\n  ctapkit -d soft:./sk.db info",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, err := os.Lstat(state); err == nil {
				return fmt.Errorf("%s: file already exists; not overwriting it", state)
			}
			pass, err := newStatePassphrase(a.io, state, passFile, noPassphrase)
			if err != nil {
				return err
			}
			defer clear(pass)
			db, err := store.Create(state, store.CreateOptions{NoPassphrase: noPassphrase, Passphrase: pass})
			if err != nil {
				return fmt.Errorf("softkey init: %w", err)
			}
			meta := db.Meta()
			enc := encryptionText(db)
			if err := db.Close(); err != nil {
				return fmt.Errorf("softkey init: %w", err)
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"state": state, "aaguid": uuid(meta.AAGUID[:]),
					"encrypted": !noPassphrase, "formatVersion": meta.FormatVersion})
			}
			what := "unencrypted"
			if !noPassphrase {
				what = "encrypted: " + enc
			}
			fmt.Fprintf(a.io.Out, "created softkey %s (AAGUID %s, %s)\nuse it with: ctapkit -d soft:%s info\n",
				state, uuid(meta.AAGUID[:]), what, state)
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file to create")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from `FILE` (one trailing newline is dropped)")
	c.Flags().BoolVar(&noPassphrase, "no-passphrase", false, "store the state unencrypted")
	return c
}

// encryptionText is the Encryption line of softkey info.
func encryptionText(db *store.DB) string {
	e, ok := db.Encryption()
	if !ok {
		return "none (created with --no-passphrase)"
	}
	return fmt.Sprintf("%s, passphrase (%s)", e.Cipher, e.KDF)
}

func (a *app) softkeyInfoCommand() *cobra.Command {
	var state, passFile string
	c := &cobra.Command{
		Use:   "info",
		Short: "Describe a softkey state file",
		Long: `Describe a softkey state file: identity, passkeys, PIN and options, encryption and
format version. Every record is read and authenticated, so a damaged file shows here.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			db, err := openStateFile(a.io, state, passFile)
			if err != nil {
				return err
			}
			defer db.Close()
			return a.writeSoftkeyInfo(state, db)
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from `FILE`")
	return c
}

func (a *app) writeSoftkeyInfo(state string, db *store.DB) error {
	if err := db.Check(); err != nil {
		return err
	}
	meta := db.Meta()
	n, err := db.CountCredentials()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	rps, err := db.RelyingParties()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	s, err := db.Settings()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	blob, err := db.LargeBlobArray()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	counter, err := db.CounterCeiling()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	minPIN := max(s.MinPINLength, ctap2.DefaultMinPINLength)
	enc, encrypted := db.Encryption()
	if a.json {
		var encJSON any
		if encrypted {
			encJSON = map[string]any{"cipher": enc.Cipher, "kdf": "argon2id", "time": enc.KDF.Time,
				"memoryKiB": enc.KDF.MemoryKiB, "threads": enc.KDF.Threads}
		}
		return writeJSON(a.io.Out, map[string]any{
			"state": state, "aaguid": uuid(meta.AAGUID[:]), "formatVersion": meta.FormatVersion,
			"created": meta.Created, "residentCredentials": n, "relyingParties": len(rps),
			"encrypted": encrypted, "encryption": encJSON,
			"attestation": attestationName(meta.Attestation), "counterCeiling": counter,
			"largeBlobBytes": len(blob),
			"options": map[string]any{
				"clientPin": len(s.PINHash) > 0, "pinRetries": s.PINRetries, "uvRetries": s.UVRetries,
				"forcePinChange": s.ForcePINChange, "alwaysUv": s.AlwaysUV, "minPinLength": minPIN,
				"ep": s.EnterpriseAttestation,
			},
		})
	}
	pin := "not set"
	if len(s.PINHash) > 0 {
		pin = fmt.Sprintf("set (%d retries left)", s.PINRetries)
		if s.ForcePINChange {
			pin += ", must be changed"
		}
	}
	return writeTable(a.io.Out, []row{
		{"State", state},
		{"Format version", fmt.Sprint(meta.FormatVersion)},
		{"Encryption", encryptionText(db)},
		{"AAGUID", uuid(meta.AAGUID[:])},
		{"Created", meta.Created.Format("2006-01-02 15:04:05 MST")},
		{"Passkeys", fmt.Sprint(n)},
		{"Relying parties", fmt.Sprint(len(rps))},
		{"Attestation", attestationName(meta.Attestation)},
		{"PIN", pin},
		{"Always UV", onOff(s.AlwaysUV)},
		{"Min PIN length", fmt.Sprint(minPIN)},
		{"Enterprise attestation", onOff(s.EnterpriseAttestation)},
		{"Large blobs", fmt.Sprintf("%d bytes", len(blob))},
		{"Signature counter", fmt.Sprintf("at most %d", counter)},
	})
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// attestationName is the attestation mode recorded in a state file; older files and
// the default leave it empty, which means self attestation.
func attestationName(mode string) string {
	if mode == "" {
		return string(softkey.AttestationSelf)
	}
	return mode
}

func (a *app) softkeyPassphraseCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "passphrase",
		Short: "Encrypt a softkey state file or change its passphrase",
	}
	c.AddCommand(a.softkeyPassphraseSetCommand(), a.softkeyPassphraseChangeCommand())
	return c
}

// errAlreadyEncrypted stops passphrase set from asking for the passphrase of a file
// that has one.
var errAlreadyEncrypted = errors.New("already encrypted")

func (a *app) softkeyPassphraseSetCommand() *cobra.Command {
	var state, passFile string
	c := &cobra.Command{
		Use:   "set",
		Short: "Encrypt an unencrypted state file with a passphrase",
		Long: `Encrypt a state file made with --no-passphrase, in place: the encrypted file is built
beside it, synced, and renamed over it, so the path always holds a complete state.
Passkeys, counter, PIN, settings and large blobs are kept. The new passphrase comes
from --passphrase-file, ` + envPassphrase + ` or a prompt (asked twice).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			db, err := store.OpenWith(state, store.OpenOptions{Passphrase: func() ([]byte, error) {
				return nil, errAlreadyEncrypted
			}})
			if errors.Is(err, errAlreadyEncrypted) {
				return withHint(fmt.Errorf("%s is encrypted already", state),
					"change its passphrase with: ctapkit softkey passphrase change --state "+state)
			}
			if err != nil {
				return softkeyOpenError(state, err)
			}
			defer db.Close()
			pass, err := newPassphraseFor(a.io, state, passFile, false, false)
			if err != nil {
				return err
			}
			defer clear(pass)
			if err := db.Encrypt(pass, nil); err != nil {
				return err
			}
			n, err := db.CountCredentials()
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"state": state, "encrypted": true,
					"formatVersion": db.Meta().FormatVersion, "residentCredentials": n})
			}
			fmt.Fprintf(a.io.Out, "encrypted %s (%s); %d %s kept\n", state, encryptionText(db), n, plural(n, "passkey"))
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the new passphrase from `FILE`")
	return c
}

func (a *app) softkeyPassphraseChangeCommand() *cobra.Command {
	var state, passFile, newFile string
	c := &cobra.Command{
		Use:   "change",
		Short: "Change the passphrase of an encrypted state file",
		Long: `Change the passphrase of an encrypted state file. Only the wrapped master key is
rewritten, in one transaction: the file has the old passphrase or the new one, never
neither. The current passphrase comes from --passphrase-file, ` + envPassphrase + ` or
a prompt; the new one from --new-passphrase-file, ` + envNewPassphrase + ` or a prompt
(asked twice).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			db, err := openStateFile(a.io, state, passFile)
			if err != nil {
				return err
			}
			defer db.Close()
			if !db.Encrypted() {
				return withHint(fmt.Errorf("%s is not encrypted", state),
					"encrypt it with: ctapkit softkey passphrase set --state "+state)
			}
			src := &passphraseSource{file: newFile, flag: "new-passphrase-file", env: envNewPassphrase,
				label: "New passphrase for " + state}
			if !src.fixed() && !a.io.CanPrompt() {
				return src.needed("a new passphrase")
			}
			pass, err := src.getNew(a.io)
			if err != nil {
				return err
			}
			defer clear(pass)
			if err := db.ChangePassphrase(pass, nil); err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"state": state, "changed": true})
			}
			fmt.Fprintf(a.io.Out, "changed the passphrase of %s (%s)\n", state, encryptionText(db))
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the current passphrase from `FILE`")
	c.Flags().StringVar(&newFile, "new-passphrase-file", "", "read the new passphrase from `FILE`")
	return c
}
