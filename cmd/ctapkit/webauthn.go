package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/manifoldco/promptui"
	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/webauthn"
)

// webauthnOptions are the flags of `ctapkit webauthn create|get`.
type webauthnOptions struct {
	origin string
	input  string
	output string
	pin    pinFlag
}

func (a *app) webauthnCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "webauthn",
		Short: "Act as a browser: turn a relying party's WebAuthn options JSON into response JSON",
		Long: `Act as the browser between a relying party (RP) and the key. The RP's server sends
options JSON (what its page would pass to navigator.credentials.create() or get()); ctapkit
checks the origin and RP ID as a browser does, talks CTAP to the key, and prints the
response JSON the page would post back (RegistrationResponseJSON or
AuthenticationResponseJSON, as PublicKeyCredential.toJSON() gives them).

Options are read from stdin or -i FILE, bare or wrapped as {"publicKey": …}; the response
goes to stdout or -o FILE. The origin is the page's, e.g. https://example.com, or
http://localhost:8080 for a local RP.`,
		Example: `  ctapkit webauthn create --origin https://example.com < create-options.json > registration.json
  ctapkit webauthn get --origin https://example.com -i get-options.json -o assertion.json`,
	}
	c.AddCommand(a.webauthnCreateCommand(), a.webauthnGetCommand())
	return c
}

func (o *webauthnOptions) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.origin, "origin", "", "the web origin of the RP's page, e.g. https://example.com (required)")
	f.StringVarP(&o.input, "input", "i", "", "read the options JSON from `FILE` (default stdin)")
	f.StringVarP(&o.output, "output", "o", "", "write the response JSON to `FILE` (default stdout)")
	o.pin.register(f)
	_ = c.MarkFlagRequired("origin")
}

func (a *app) webauthnCreateCommand() *cobra.Command {
	return a.webauthnCeremony("create", "Register: PublicKeyCredentialCreationOptionsJSON in, RegistrationResponseJSON out",
		func(data []byte) (string, ceremonyFunc, error) {
			opts, err := webauthn.ParseCreationOptions(data)
			if err != nil {
				return "", nil, err
			}
			return opts.RP.ID, func(ctx context.Context, c *webauthn.Client) (any, error) { return c.Create(ctx, opts) }, nil
		})
}

func (a *app) webauthnGetCommand() *cobra.Command {
	return a.webauthnCeremony("get", "Sign in: PublicKeyCredentialRequestOptionsJSON in, AuthenticationResponseJSON out",
		func(data []byte) (string, ceremonyFunc, error) {
			opts, err := webauthn.ParseRequestOptions(data)
			if err != nil {
				return "", nil, err
			}
			return opts.RPID, func(ctx context.Context, c *webauthn.Client) (any, error) { return c.Get(ctx, opts) }, nil
		})
}

// ceremonyFunc runs create() or get() with a client on the opened key.
type ceremonyFunc func(context.Context, *webauthn.Client) (any, error)

// webauthnCeremony is a create or get command: the options are parsed and the
// origin and RP ID checked before any key is opened, so bad input never
// touches one.
func (a *app) webauthnCeremony(use, short string, parse func([]byte) (rpID string, run ceremonyFunc, err error)) *cobra.Command {
	var o webauthnOptions
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := o.read(a)
			if err != nil {
				return err
			}
			rpID, run, err := parse(data)
			if err != nil {
				return err
			}
			origin, err := webauthn.ParseOrigin(o.origin)
			if err != nil {
				return err
			}
			if _, err := origin.RPID(rpID); err != nil {
				return err
			}
			return a.runWebAuthn(cmd.Context(), &o, run)
		},
	}
	o.register(c)
	return c
}

// maxOptionsSize bounds the options JSON read: real ones are a few kilobytes.
const maxOptionsSize = 1 << 20

// read reads the options JSON from -i or stdin.
func (o *webauthnOptions) read(a *app) ([]byte, error) {
	var r io.Reader = a.io.In
	name := "stdin"
	if o.input != "" && o.input != "-" {
		f, err := os.Open(o.input)
		if err != nil {
			return nil, fmt.Errorf("reading the options: %w", err)
		}
		defer f.Close()
		r, name = f, o.input
	} else if a.io.inTTY {
		fmt.Fprintln(a.io.ErrOut, "reading the options JSON from the terminal; end with Ctrl-D (or pass -i FILE)")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxOptionsSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading the options from %s: %w", name, err)
	}
	if len(data) > maxOptionsSize {
		return nil, fmt.Errorf("reading the options from %s: more than %d bytes", name, maxOptionsSize)
	}
	return data, nil
}

// runWebAuthn opens the device, runs op with a WebAuthn client on it and writes
// the response. The PIN comes from --pin, $CTAPKIT_PIN or a prompt, only when the
// key asks for user verification.
func (a *app) runWebAuthn(ctx context.Context, o *webauthnOptions, op ceremonyFunc) error {
	// The output file is created first, so that a bad path fails before the
	// key is touched.
	out := a.io.Out
	var file *os.File
	if o.output != "" && o.output != "-" {
		f, err := os.Create(o.output)
		if err != nil {
			return fmt.Errorf("creating the response file: %w", err)
		}
		defer f.Close()
		out, file = f, f
	}
	ctx, cancel := a.withTimeout(ctx)
	defer cancel()
	s, err := a.openSession(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	client := &webauthn.Client{
		CTAP:          s.client,
		Origin:        o.origin,
		PIN:           func(context.Context) (string, error) { return a.currentPIN(&o.pin) },
		SelectAccount: a.selectAccount,
	}
	resp, err := op(ctx, client)
	if err != nil {
		if file != nil {
			file.Close()
			os.Remove(o.output)
		}
		return pinChangeHint(err)
	}
	if err := writeJSON(out, resp); err != nil {
		return err
	}
	if file != nil {
		return file.Close()
	}
	return nil
}

// selectAccount is the account chooser of a discoverable sign-in: a prompt on a
// terminal, else the most recent account (and a note saying so).
func (a *app) selectAccount(accounts []webauthn.Account) (int, error) {
	labels := make([]string, len(accounts))
	for i, acc := range accounts {
		labels[i] = acc.Name
		if acc.DisplayName != "" && acc.DisplayName != acc.Name {
			labels[i] += " (" + acc.DisplayName + ")"
		}
		if labels[i] == "" {
			labels[i] = "user " + b64(acc.UserID)
		}
	}
	if !a.io.CanPrompt() {
		a.notef("%d accounts for this RP on the key; using the most recent, %s", len(accounts), labels[0])
		return 0, nil
	}
	sel := promptui.Select{Label: "Several accounts for this site are on the key; sign in as", Items: labels,
		Stdin: readCloser{a.io.In}, Stdout: writeCloser{a.io.ErrOut}}
	i, _, err := sel.Run()
	if err != nil {
		if errors.Is(err, promptui.ErrInterrupt) || errors.Is(err, promptui.ErrEOF) {
			return 0, &quietError{"webauthn: no account chosen", errCancelled}
		}
		return 0, fmt.Errorf("choosing an account: %w", err)
	}
	return i, nil
}
