package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/webauthn"
)

type getAssertionOptions struct {
	rp           string
	creds        []string
	uv, up       bool
	clientData   clientDataFlags
	pin          pinFlag
	hmacSalts    []string
	credBlob     bool
	largeBlobKey bool
}

func (a *app) getAssertionCommand() *cobra.Command {
	var o getAssertionOptions
	c := &cobra.Command{
		Use:   "get-assertion --rp ID [--cred ID]...",
		Short: "Sign in with a credential (authenticatorGetAssertion)",
		Long: `Ask the key to sign with a credential for a relying party. Without --cred the key
uses its discoverable credentials for the RP, and every one of them is returned (via
authenticatorGetNextAssertion). Each signature is over authData || clientDataHash.`,
		Example: `  ctapkit -d soft:mem get-assertion --rp example.com
  ctapkit get-assertion --rp example.com --cred CREDENTIAL_ID --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runGetAssertion(cmd, &o) },
	}
	f := c.Flags()
	f.StringVar(&o.rp, "rp", "", "relying party ID (required)")
	f.StringArrayVar(&o.creds, "cred", nil, "allowed credential ID (base64url); repeatable")
	f.BoolVar(&o.uv, "uv", false, "ask for built-in user verification")
	f.BoolVar(&o.up, "up", true, "require user presence (--up=false: silent assertion, no touch)")
	f.StringVar(&o.clientData.hashHex, "client-data-hash", "", "clientDataHash as 64 hex digits")
	f.StringVar(&o.clientData.challenge, "challenge", "", "challenge (base64url) for a browser-style clientDataJSON")
	o.pin.register(f)
	f.StringSliceVar(&o.hmacSalts, "hmac-salt", nil, "extension hmac-secret: one or two 32-byte salts as hex (SALT1[,SALT2])")
	f.BoolVar(&o.credBlob, "cred-blob", false, "extension credBlob: return the blob stored with the credential")
	f.BoolVar(&o.largeBlobKey, "large-blob-key", false, "extension largeBlobKey: return the credential's large-blob key")
	_ = c.MarkFlagRequired("rp")
	return c
}

func (o *getAssertionOptions) buildRequest() (*ctap2.GetAssertionRequest, []byte, error) {
	if o.rp == "" {
		return nil, nil, usageErrorf("--rp must not be empty")
	}
	allow, err := parseCredentialIDs("--cred", o.creds)
	if err != nil {
		return nil, nil, err
	}
	hash, cdJSON, err := o.clientData.resolve(webauthn.TypeGet, o.rp)
	if err != nil {
		return nil, nil, err
	}
	req := &ctap2.GetAssertionRequest{RPID: o.rp, ClientDataHash: hash, AllowList: allow}
	if len(o.hmacSalts) > 2 {
		return nil, nil, usageErrorf("--hmac-salt: at most two salts")
	}
	for _, salt := range o.hmacSalts {
		if b, err := hex.DecodeString(salt); err != nil || len(b) != 32 {
			return nil, nil, usageErrorf("--hmac-salt: want 64 hex digits (32 bytes), got %q", salt)
		}
	}
	if o.uv || !o.up {
		req.Options = &ctap2.Options{}
		if o.uv {
			req.Options.UV = ctap2.Bool(true)
		}
		if !o.up {
			req.Options.UP = ctap2.Bool(false)
		}
	}
	return req, cdJSON, nil
}

type userJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
}

type assertionJSON struct {
	CredentialID string    `json:"credentialId"`
	AuthData     string    `json:"authData"`
	Signature    string    `json:"signature"`
	SignCount    uint32    `json:"signCount"`
	Flags        flagsJSON `json:"flags"`
	User         *userJSON `json:"user"`
	Extensions   any       `json:"extensions"`
	// HMACSecret holds the decrypted hmac-secret outputs for --hmac-salt.
	HMACSecret   *hmacSecretJSON `json:"hmacSecret,omitempty"`
	LargeBlobKey string          `json:"largeBlobKey,omitempty"`

	flags      ctap2.AuthFlags
	extensions string // human summary
}

type getAssertionJSON struct {
	ClientDataHash string           `json:"clientDataHash"`
	ClientDataJSON string           `json:"clientDataJSON,omitempty"`
	Assertions     []*assertionJSON `json:"assertions"`
	Device         string           `json:"device"`
}

func (a *app) runGetAssertion(cmd *cobra.Command, o *getAssertionOptions) error {
	req, cdJSON, err := o.buildRequest()
	if err != nil {
		return err
	}
	ctx, s, done, err := a.beginSession(cmd.Context())
	if err != nil {
		return err
	}
	defer done()
	hmac, err := o.addExtensions(ctx, s, req)
	if err != nil {
		return err
	}
	var results []*ctap2.GetAssertionResponse
	var opErr error
	err = a.runVerified(ctx, s, verified{
		perm: ctap2.PermGetAssertion, rpID: req.RPID, cdh: req.ClientDataHash, wantUV: o.uv, pin: &o.pin,
		options:  &req.Options,
		setParam: func(p []byte, v uint) { req.PinUvAuthParam, req.PinUvAuthProtocol = p, v },
	}, func() error {
		results, opErr = s.client.GetAssertions(ctx, req)
		if len(results) == 0 {
			return opErr
		}
		return nil
	})
	s.notice.stop()
	if err != nil {
		return fmt.Errorf("get-assertion: %w", err)
	}
	if len(results) == 0 {
		return fmt.Errorf("get-assertion: %w", opErr)
	}
	out := getAssertionJSON{ClientDataHash: b64(req.ClientDataHash), Device: s.dev.Info().URI, Assertions: []*assertionJSON{}}
	if cdJSON != nil {
		out.ClientDataJSON = b64(cdJSON)
	}
	for _, r := range results {
		ad, err := r.ParseAuthData()
		if err != nil {
			return fmt.Errorf("get-assertion: %w", err)
		}
		aj := &assertionJSON{
			CredentialID: b64(r.Credential.ID),
			AuthData:     b64(r.AuthData),
			Signature:    b64(r.Signature),
			SignCount:    ad.SignCount,
			Flags:        newFlagsJSON(ad.Flags),
			Extensions:   extensionsJSON(ad.Extensions),
			flags:        ad.Flags,
			extensions:   extensionSummary(ad.Extensions),
		}
		if len(r.LargeBlobKey) > 0 {
			aj.LargeBlobKey = b64(r.LargeBlobKey)
		}
		if hmac != nil {
			if aj.HMACSecret, err = hmacOutputs(hmac, ad.Extensions); err != nil {
				return fmt.Errorf("get-assertion: %w", err)
			}
		}
		if r.User != nil {
			aj.User = &userJSON{ID: b64(r.User.ID), Name: r.User.Name, DisplayName: r.User.DisplayName}
		}
		out.Assertions = append(out.Assertions, aj)
	}
	if a.json {
		err = writeJSON(a.io.Out, out)
	} else {
		err = writeGetAssertionHuman(a.io.Out, &out)
	}
	if err != nil {
		return err
	}
	if opErr != nil {
		return fmt.Errorf("get-assertion: %w", opErr)
	}
	return nil
}

func writeGetAssertionHuman(w io.Writer, o *getAssertionJSON) error {
	for i, as := range o.Assertions {
		if i > 0 {
			fmt.Fprintln(w)
		}
		user := "-"
		if as.User != nil {
			user = as.User.ID + " (user handle)"
			if as.User.Name != "" {
				user = as.User.Name + ", handle " + as.User.ID
			}
		}
		rows := []row{
			{"Credential ID", as.CredentialID},
			{"User", user},
			{"Sign count", fmt.Sprint(as.SignCount)},
			{"Flags", as.flags.String()},
		}
		if as.extensions != "" {
			rows = append(rows, row{"Extensions", as.extensions})
		}
		if h := as.HMACSecret; h != nil {
			rows = append(rows, row{"hmac-secret", strings.TrimSuffix(h.Output1+" "+h.Output2, " ")})
		}
		if as.LargeBlobKey != "" {
			rows = append(rows, row{"Large blob key", as.LargeBlobKey})
		}
		rows = append(rows, row{"Signature", as.Signature})
		if len(o.Assertions) > 1 {
			fmt.Fprintf(w, "Assertion %d of %d\n", i+1, len(o.Assertions))
		}
		if err := writeTable(w, rows); err != nil {
			return err
		}
	}
	return nil
}

type hmacSecretJSON struct {
	Output1 string `json:"output1"`
	Output2 string `json:"output2,omitempty"`
}

// addExtensions puts the requested extensions into req. hmac-secret needs a key
// agreement with the key first; the returned HMACSecret decrypts its outputs.
func (o *getAssertionOptions) addExtensions(ctx context.Context, s *session, req *ctap2.GetAssertionRequest) (*ctap2.HMACSecret, error) {
	ext := ctap2.GetAssertionExtensions{CredBlob: o.credBlob, LargeBlobKey: o.largeBlobKey}
	var hmac *ctap2.HMACSecret
	if len(o.hmacSalts) > 0 {
		var salts [2][]byte
		for i, salt := range o.hmacSalts {
			salts[i], _ = hex.DecodeString(salt) // checked in buildRequest
		}
		var err error
		if hmac, err = s.client.NewHMACSecret(ctx); err != nil {
			return nil, fmt.Errorf("get-assertion: hmac-secret: %w", err)
		}
		if ext.HMACSecret, err = hmac.Input(salts[0], salts[1]); err != nil {
			return nil, fmt.Errorf("get-assertion: hmac-secret: %w", err)
		}
	}
	var err error
	if req.Extensions, err = ext.Map(); err != nil {
		return nil, &usageError{err}
	}
	return hmac, nil
}

// hmacOutputs decrypts the hmac-secret output of one assertion.
func hmacOutputs(h *ctap2.HMACSecret, ext []byte) (*hmacSecretJSON, error) {
	outs, err := ctap2.ParseExtensionOutputs(ext)
	if err != nil {
		return nil, err
	}
	if len(outs.HMACSecretOutput) == 0 {
		return nil, errors.New("the key returned no hmac-secret output (was the credential made with --hmac-secret?)")
	}
	o1, o2, err := h.Outputs(outs.HMACSecretOutput)
	if err != nil {
		return nil, fmt.Errorf("hmac-secret: %w", err)
	}
	out := &hmacSecretJSON{Output1: b64(o1)}
	if o2 != nil {
		out.Output2 = b64(o2)
	}
	return out, nil
}
