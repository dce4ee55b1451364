package main

import (
	"errors"
	"fmt"
	"os"
	"unicode/utf8"

	"github.com/manifoldco/promptui"
	"github.com/spf13/pflag"
)

// PIN sources, in order: the --pin flag (visible to other users in ps, so it
// warns), the environment, a masked prompt on a terminal. Without any, a clear
// error says how to pass one.
const (
	envPIN    = "CTAPKIT_PIN"
	envNewPIN = "CTAPKIT_NEW_PIN"
)

// pinFlag is the shared --pin flag of commands that may need a PIN.
type pinFlag struct{ value string }

func (f *pinFlag) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.value, "pin", "", "PIN (visible to other users; prefer $"+envPIN+")")
}

// currentPIN returns the key's current PIN.
func (a *app) currentPIN(f *pinFlag) (string, error) {
	if f != nil && f.value != "" {
		fmt.Fprintln(a.io.ErrOut, "warning: --pin is visible to other users of this machine; prefer "+envPIN+" or the prompt")
		return f.value, nil
	}
	if pin := os.Getenv(envPIN); pin != "" {
		return pin, nil
	}
	if !a.io.CanPrompt() {
		return "", withHint(usageErrorf("this key has a PIN and no terminal is attached to ask for it"),
			"set "+envPIN+" (or pass --pin, which other users can see)")
	}
	return a.promptPIN("PIN")
}

// newPIN returns a PIN to set. From the environment it is taken as is (env is
// the variable: CTAPKIT_PIN for `pin set`, CTAPKIT_NEW_PIN for `pin change`); on a
// terminal it is asked twice.
func (a *app) newPIN(env string, minLength int) (string, error) {
	if pin := os.Getenv(env); pin != "" {
		return pin, checkPINFormat(pin, minLength)
	}
	if !a.io.CanPrompt() {
		return "", withHint(usageErrorf("a new PIN is needed and no terminal is attached to ask for it"), "set "+env)
	}
	for {
		pin, err := a.promptPIN("New PIN")
		if err != nil {
			return "", err
		}
		if err := checkPINFormat(pin, minLength); err != nil {
			fmt.Fprintln(a.io.ErrOut, err)
			continue
		}
		again, err := a.promptPIN("New PIN again")
		if err != nil {
			return "", err
		}
		if again == pin {
			return pin, nil
		}
		fmt.Fprintln(a.io.ErrOut, "the two PINs differ; try again")
	}
}

func (a *app) promptPIN(label string) (string, error) {
	p := promptui.Prompt{Label: label, Mask: '*', Stdin: readCloser{a.io.In}, Stdout: writeCloser{a.io.ErrOut}}
	pin, err := p.Run()
	if errors.Is(err, promptui.ErrInterrupt) || errors.Is(err, promptui.ErrEOF) {
		return "", fmt.Errorf("no PIN entered: %w", errCancelled)
	}
	return pin, err
}

// checkPINFormat applies the CTAP 2.1 rules a key would, before anything is sent:
// UTF-8, at least minLength code points (the key's minPINLength, default 4), at
// most 63 bytes.
func checkPINFormat(pin string, minLength int) error {
	minLength = max(minLength, 4)
	switch n := utf8.RuneCountInString(pin); {
	case !utf8.ValidString(pin):
		return usageErrorf("the PIN is not valid UTF-8")
	case n < minLength:
		return usageErrorf("the PIN must have at least %d characters, this one has %d", minLength, n)
	case len(pin) > 63:
		return usageErrorf("the PIN must be at most 63 bytes long, this one has %d", len(pin))
	}
	return nil
}
