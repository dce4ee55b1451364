package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
)

func (a *app) selectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "select",
		Short: "Touch one of several keys to choose it; prints its device URI",
		Long: `Ask every attached key for a touch at once; the first key touched is chosen and
its URI printed (use it with -d), the others stop waiting.

CTAP 2.1 keys get authenticatorSelection. CTAP 2.0 keys have no such command and
get what libfido2 and browsers send them instead: a makeCredential for the dummy
RP ".dummy" with an empty pinUvAuthParam, which waits for a touch and then fails
(PIN not set, or PIN invalid) without creating anything; a 2.0 key without PIN
support makes a throwaway non-resident credential, which is stored nowhere. U2F
keys get a U2F registration for that dummy RP, stateless too.`,
		Example: "  ctapkit select\n  ctapkit -d \"$(ctapkit select)\" info",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			uris, err := a.selectCandidates(ctx)
			if err != nil {
				return err
			}
			uri, err := a.touchSelect(ctx, uris)
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]string{"uri": uri})
			}
			fmt.Fprintln(a.io.Out, uri)
			return nil
		},
	}
}

// selectCandidates are the keys select asks: the one -d or $CTAPKIT_DEVICE names,
// else every attached one.
func (a *app) selectCandidates(ctx context.Context) ([]string, error) {
	if uri := a.deviceURI; uri != "" {
		return []string{uri}, nil
	}
	if uri := os.Getenv("CTAPKIT_DEVICE"); uri != "" {
		return []string{uri}, nil
	}
	infos, err := a.registry.Enumerate(ctx)
	if len(infos) == 0 {
		return nil, noDeviceError(err)
	}
	uris := make([]string, len(infos))
	for i, info := range infos {
		uris[i] = info.URI
	}
	return uris, nil
}

// errNoTouchSelect: none of the keys could be asked for a touch (none opened).
var errNoTouchSelect = errors.New("no key can be selected by touch")

// touchSelect asks every key in uris for a touch at once and returns the URI of
// the first one touched (as its Info names it, so that -d opens it again). The
// others are cancelled, which sends them CTAPHID CANCEL, and all are closed
// before it returns. Keys that cannot be opened are skipped with a note; if
// none can, the error wraps errNoTouchSelect. A key that answers with an error
// (a touch declined, a timeout) drops out; if all do, the first error is returned.
func (a *app) touchSelect(ctx context.Context, uris []string) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var devs []transport.Device
	var skipped []string
	for _, uri := range uris {
		dev, err := a.registry.Open(ctx, uri)
		if err != nil {
			if ctx.Err() != nil {
				return "", err
			}
			fmt.Fprintf(a.io.ErrOut, "note: skipping %s: %v\n", uri, err)
			skipped = append(skipped, uri)
			continue
		}
		devs = append(devs, guardedDevice{dev})
	}
	defer func() {
		for _, d := range devs {
			d.Close()
		}
	}()
	if len(devs) == 0 {
		return "", fmt.Errorf("%w: could not open %s", errNoTouchSelect, strings.Join(skipped, ", "))
	}

	if len(devs) == 1 {
		fmt.Fprintln(a.io.ErrOut, "Touch your security key to select it…")
	} else {
		fmt.Fprintf(a.io.ErrOut, "Touch the security key you want to use (%d attached)…\n", len(devs))
	}
	type outcome struct {
		uri string
		err error
	}
	results := make(chan outcome, len(devs))
	for _, d := range devs {
		go func() { results <- outcome{d.Info().URI, touchKey(ctx, d)} }()
	}
	var chosen string
	var firstErr error
	for range devs {
		r := <-results
		switch {
		case r.err == nil && chosen == "":
			chosen = r.uri
			a.debugf("%s was touched; cancelling the others", r.uri)
			cancel() // the others get CTAPHID CANCEL; wait for them below
		case r.err != nil && chosen == "":
			a.debugf("%s: %v", r.uri, r.err)
			if firstErr == nil || errors.Is(firstErr, context.Canceled) {
				firstErr = fmt.Errorf("%s: %w", r.uri, r.err)
			}
		}
	}
	if chosen == "" {
		return "", fmt.Errorf("select: %w", firstErr)
	}
	return chosen, nil
}

// touchKey waits for a touch on dev: authenticatorSelection on a CTAP 2.1 key,
// the makeCredential probe libfido2 and browsers use on older ones (see the
// select command's help).
func touchKey(ctx context.Context, dev transport.Device) error {
	c := newClient(dev, nil)
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	if info.HasVersion("FIDO_2_1") || info.HasVersion("FIDO_2_1_PRE") {
		return c.Selection(ctx)
	}
	req := &ctap2.MakeCredentialRequest{
		ClientDataHash:   make([]byte, 32),
		RP:               &ctap2.RPEntity{ID: ".dummy"},
		User:             &ctap2.UserEntity{ID: []byte("dummy"), Name: "dummy"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
	}
	if _, clientPIN := info.Option("clientPin"); clientPIN {
		// Zero-length pinUvAuthParam: touch, then PIN_NOT_SET or PIN_INVALID,
		// and no credential is made.
		req.PinUvAuthParam, req.PinUvAuthProtocol = []byte{}, 1
	}
	_, err = c.MakeCredential(ctx, req)
	if errors.Is(err, ctap2.ErrPINNotSet) || errors.Is(err, ctap2.ErrPINInvalid) {
		return nil
	}
	return err
}
