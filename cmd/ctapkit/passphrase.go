package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/manifoldco/promptui"

	"github.com/ctapkit/ctapkit/softkey/store"
)

// Softkey passphrase sources, in order: a --passphrase-file, the environment, a
// masked prompt on a terminal. Never a flag value (other users see argv), never
// written anywhere, never logged. Without a source and a terminal, a usage error says
// how to pass one.
const (
	envPassphrase = "CTAPKIT_SOFTKEY_PASSPHRASE"
	// envNewPassphrase is the new passphrase of `softkey passphrase change`.
	envNewPassphrase = "CTAPKIT_SOFTKEY_NEW_PASSPHRASE"
	// envBackupPassphrase protects export and import backups.
	envBackupPassphrase = "CTAPKIT_SOFTKEY_BACKUP_PASSPHRASE"
)

// promptAttempts is how often a prompt asks again after a wrong passphrase.
const promptAttempts = 3

// passphraseSource is where one passphrase comes from: a file flag, then an
// environment variable, then a prompt.
type passphraseSource struct {
	file   string // --passphrase-file and the like; "" when not given
	flag   string // that flag's name for hints; "" means passphrase-file
	env    string
	label  string // the prompt's label, e.g. "Passphrase for sk.db"
	prompt bool   // whether the value came from a prompt (so a wrong one may be asked again)
}

// fixed reports whether the passphrase comes from a file or the environment, so
// that asking again would give the same answer.
func (p *passphraseSource) fixed() bool { return p.file != "" || os.Getenv(p.env) != "" }

// hint says how to pass the passphrase without a terminal.
func (p *passphraseSource) hint() string {
	flag := p.flag
	if flag == "" {
		flag = "passphrase-file"
	}
	return "set " + p.env + " or pass --" + flag + " FILE"
}

// needed is the usage error of a passphrase that no source gives.
func (p *passphraseSource) needed(what string) error {
	return withHint(usageErrorf("%s is needed and no terminal is attached to ask for it", what), p.hint())
}

// get returns the passphrase. A file's content is taken as it is, less one trailing
// newline (what echo and editors add).
func (p *passphraseSource) get(ios *IOStreams) ([]byte, error) {
	p.prompt = false
	if p.file != "" {
		b, err := os.ReadFile(p.file)
		if err != nil {
			return nil, fmt.Errorf("reading the passphrase: %w", err)
		}
		b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
		if len(b) == 0 {
			return nil, usageErrorf("the passphrase file %s is empty", p.file)
		}
		return b, nil
	}
	if v := os.Getenv(p.env); v != "" {
		return []byte(v), nil
	}
	if !ios.CanPrompt() {
		return nil, p.needed("a " + strings.ToLower(p.label[:1]) + p.label[1:])
	}
	p.prompt = true
	return promptPassphrase(ios, p.label)
}

// getNew returns a new passphrase: from the file or the environment as it is, on a
// terminal asked twice.
func (p *passphraseSource) getNew(ios *IOStreams) ([]byte, error) {
	if p.fixed() || !ios.CanPrompt() {
		return p.get(ios)
	}
	for {
		pass, err := promptPassphrase(ios, p.label)
		if err != nil {
			return nil, err
		}
		again, err := promptPassphrase(ios, p.label+" again")
		if err != nil {
			return nil, err
		}
		if bytes.Equal(pass, again) {
			return pass, nil
		}
		fmt.Fprintln(ios.ErrOut, "the two passphrases differ; try again")
	}
}

func promptPassphrase(ios *IOStreams, label string) ([]byte, error) {
	p := promptui.Prompt{Label: label, Mask: '*', Stdin: readCloser{ios.In}, Stdout: writeCloser{ios.ErrOut},
		Validate: func(s string) error {
			if s == "" {
				return errors.New("the passphrase must not be empty")
			}
			return nil
		}}
	s, err := p.Run()
	if errors.Is(err, promptui.ErrInterrupt) || errors.Is(err, promptui.ErrEOF) {
		return nil, fmt.Errorf("no passphrase entered: %w", errCancelled)
	}
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// openStateFile opens a softkey state file, asking for the passphrase only if it is
// encrypted (from passFile, CTAPKIT_SOFTKEY_PASSPHRASE or a prompt on ios). A wrong
// passphrase typed at the prompt is asked again, up to promptAttempts times.
func openStateFile(ios *IOStreams, path, passFile string) (*store.DB, error) {
	src := &passphraseSource{file: passFile, env: envPassphrase, label: "Passphrase for " + path}
	for attempt := 1; ; attempt++ {
		db, err := store.OpenWith(path, store.OpenOptions{Passphrase: func() ([]byte, error) { return src.get(ios) }})
		if err == nil {
			return db, nil
		}
		if errors.Is(err, store.ErrWrongPassphrase) && src.prompt && attempt < promptAttempts {
			fmt.Fprintln(ios.ErrOut, "wrong passphrase; try again")
			continue
		}
		return nil, softkeyOpenError(path, err)
	}
}

// newStatePassphrase returns the passphrase for a new state file: nil with
// noPassphrase, else from --passphrase-file, CTAPKIT_SOFTKEY_PASSPHRASE or a prompt
// asked twice. Without any, a usage error names --no-passphrase too.
func newStatePassphrase(ios *IOStreams, path, passFile string, noPassphrase bool) ([]byte, error) {
	return newPassphraseFor(ios, path, passFile, noPassphrase, true)
}

// newPassphraseFor is newStatePassphrase; offerNone says whether --no-passphrase is
// an option to mention.
func newPassphraseFor(ios *IOStreams, path, passFile string, noPassphrase, offerNone bool) ([]byte, error) {
	if noPassphrase {
		if passFile != "" {
			return nil, usageErrorf("--no-passphrase and --passphrase-file contradict each other")
		}
		return nil, nil
	}
	src := &passphraseSource{file: passFile, env: envPassphrase, label: "New passphrase for " + path}
	if !src.fixed() && !ios.CanPrompt() {
		hint := src.hint()
		if offerNone {
			hint += ", or pass --no-passphrase to store it unencrypted"
		}
		return nil, withHint(usageErrorf("a passphrase to encrypt %s is needed and no terminal is attached to ask for it", path), hint)
	}
	return src.getNew(ios)
}
