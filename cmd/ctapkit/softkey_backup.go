package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/softkey/store"
)

func (a *app) softkeyExportCommand() *cobra.Command {
	var state, passFile, output, backupFile string
	c := &cobra.Command{
		Use:   "export --output FILE",
		Short: "Write a passphrase-protected backup of a softkey",
		Long: `Write everything of a softkey — identity, keys, passkeys, counter, PIN and
settings, large blobs — to a backup file sealed with its own passphrase (argon2id and
AES-256-GCM, independent of the state file's). The backup passphrase comes from
--backup-passphrase-file, ` + envBackupPassphrase + ` or a prompt (asked twice).
Restore it with softkey import. The output file is never overwritten.`,
		Example: "  ctapkit softkey export --state ./sk.db --output sk.backup",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if output == "" {
				return usageErrorf("softkey export: name the backup file with --output FILE")
			}
			if _, err := os.Lstat(output); err == nil {
				return fmt.Errorf("%s: file already exists; not overwriting it", output)
			}
			db, err := openStateFile(a.io, state, passFile)
			if err != nil {
				return err
			}
			defer db.Close()
			src := &passphraseSource{file: backupFile, flag: "backup-passphrase-file", env: envBackupPassphrase,
				label: "Passphrase for the backup " + output}
			if !src.fixed() && !a.io.CanPrompt() {
				return src.needed("a backup passphrase")
			}
			pass, err := src.getNew(a.io)
			if err != nil {
				return err
			}
			defer clear(pass)
			var buf bytes.Buffer
			if err := db.Export(&buf, pass, nil); err != nil {
				return err
			}
			if err := writeNewFile(output, buf.Bytes()); err != nil {
				return err
			}
			n, err := db.CountCredentials()
			if err != nil {
				return err
			}
			counter, err := db.CounterCeiling()
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"state": state, "output": output,
					"residentCredentials": n, "counterCeiling": counter})
			}
			fmt.Fprintf(a.io.Out, "exported %s (%d %s) to %s\nrestore it with: ctapkit softkey import --state NEW --input %s\n",
				state, n, plural(n, "passkey"), output, output)
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the state file's passphrase from `FILE`")
	c.Flags().StringVarP(&output, "output", "o", "", "backup `FILE` to create")
	c.Flags().StringVar(&backupFile, "backup-passphrase-file", "", "read the backup passphrase from `FILE`")
	return c
}

// writeNewFile writes data to a new file at path, mode 0600: built under a temporary
// name, synced, then linked into place so that it never replaces a file and never
// shows half-written.
func writeNewFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp, path)
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: file already exists; not overwriting it", path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func (a *app) softkeyImportCommand() *cobra.Command {
	var state, passFile, input, backupFile string
	var noPassphrase bool
	c := &cobra.Command{
		Use:   "import --state NEW --input FILE",
		Short: "Make a new softkey state file from a backup",
		Long: `Make a new state file from a backup written by softkey export: the same identity,
keys and passkeys (they keep working with the relying parties), PIN and settings, and
a signature counter that continues above the exported one. An existing state file is
never overwritten. The backup passphrase comes from --backup-passphrase-file,
` + envBackupPassphrase + ` or a prompt; the new state file is encrypted like softkey
init's (--passphrase-file, ` + envPassphrase + `, a prompt, or --no-passphrase).`,
		Example: "  ctapkit softkey import --state ./restored.db --input sk.backup",
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if input == "" {
				return usageErrorf("softkey import: name the backup file with --input FILE")
			}
			if _, err := os.Lstat(state); err == nil {
				return fmt.Errorf("%s: file already exists; not overwriting it", state)
			}
			data, err := os.ReadFile(input)
			if err != nil {
				return fmt.Errorf("softkey import: %w", err)
			}
			b, err := a.readBackup(input, data, backupFile)
			if err != nil {
				return err
			}
			pass, err := newStatePassphrase(a.io, state, passFile, noPassphrase)
			if err != nil {
				return err
			}
			defer clear(pass)
			db, err := store.Import(state, b, store.CreateOptions{NoPassphrase: noPassphrase, Passphrase: pass})
			if err != nil {
				return fmt.Errorf("softkey import: %w", err)
			}
			enc := encryptionText(db)
			if err := db.Close(); err != nil {
				return fmt.Errorf("softkey import: %w", err)
			}
			meta := b.Meta()
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"state": state, "aaguid": uuid(meta.AAGUID[:]),
					"residentCredentials": b.Credentials(), "counterCeiling": b.CounterCeiling(), "encrypted": !noPassphrase})
			}
			fmt.Fprintf(a.io.Out, "imported %d %s into %s (AAGUID %s, encryption: %s)\n",
				b.Credentials(), plural(b.Credentials(), "passkey"), state, uuid(meta.AAGUID[:]), enc)
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file to create")
	c.Flags().StringVarP(&input, "input", "i", "", "backup `FILE` to read")
	c.Flags().StringVar(&backupFile, "backup-passphrase-file", "", "read the backup passphrase from `FILE`")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the new state file's passphrase from `FILE`")
	c.Flags().BoolVar(&noPassphrase, "no-passphrase", false, "store the new state unencrypted")
	return c
}

// readBackup decrypts a backup, asking again at the prompt after a wrong passphrase.
func (a *app) readBackup(name string, data []byte, passFile string) (*store.Backup, error) {
	src := &passphraseSource{file: passFile, flag: "backup-passphrase-file", env: envBackupPassphrase,
		label: "Passphrase of the backup " + name}
	for attempt := 1; ; attempt++ {
		pass, err := src.get(a.io)
		if err != nil {
			return nil, err
		}
		b, err := store.ReadBackup(name, data, pass)
		clear(pass)
		if err == nil {
			return b, nil
		}
		if errors.Is(err, store.ErrWrongPassphrase) {
			if src.prompt && attempt < promptAttempts {
				fmt.Fprintln(a.io.ErrOut, "wrong passphrase; try again")
				continue
			}
			return nil, withHint(err, "the backup passphrase is the one given to softkey export; it comes from "+
				envBackupPassphrase+", --backup-passphrase-file or the prompt")
		}
		return nil, err
	}
}
