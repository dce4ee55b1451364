package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/webauthn"
)

type makeCredentialOptions struct {
	rp, rpName   string
	user, userID string
	rk, uv       bool
	algs         []string
	exclude      []string
	clientData   clientDataFlags
	attestation  string
	pin          pinFlag
	ext          makeCredentialExtFlags
}

// makeCredentialExtFlags are the extension flags of make-credential.
type makeCredentialExtFlags struct {
	hmacSecret   bool
	credProtect  uint
	credBlob     string
	largeBlobKey bool
	minPINLength bool
}

func (a *app) makeCredentialCommand() *cobra.Command {
	var o makeCredentialOptions
	c := &cobra.Command{
		Use:   "make-credential --rp ID --user NAME",
		Short: "Register a new credential (authenticatorMakeCredential)",
		Long: `Register a new credential for a relying party and print the verified result.

The user ID defaults to the first 16 bytes of SHA-256(NAME), so registering the same
user again with --rk replaces the resident credential, as it would for one account.`,
		Example: `  ctapkit -d soft:mem make-credential --rp example.com --user alice --rk
  ctapkit make-credential --rp example.com --user bob --alg eddsa,es256 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runMakeCredential(cmd, &o) },
	}
	f := c.Flags()
	f.StringVar(&o.rp, "rp", "", "relying party ID, e.g. example.com (required)")
	f.StringVar(&o.rpName, "rp-name", "", "relying party display name (default: the RP ID)")
	f.StringVar(&o.user, "user", "", "user name (required)")
	f.StringVar(&o.userID, "user-id", "", "user handle as hex, 1-64 bytes")
	f.BoolVar(&o.rk, "rk", false, "make a discoverable (resident) credential")
	f.BoolVar(&o.uv, "uv", false, "ask for built-in user verification")
	f.StringSliceVar(&o.algs, "alg", []string{"es256", "eddsa"}, "algorithms in order of preference: es256, eddsa, es384, rs256")
	f.StringArrayVar(&o.exclude, "exclude", nil, "credential ID (base64url) that must not be on the key already; repeatable")
	f.StringVar(&o.clientData.hashHex, "client-data-hash", "", "clientDataHash as 64 hex digits")
	f.StringVar(&o.clientData.challenge, "challenge", "", "challenge (base64url) for a browser-style clientDataJSON")
	f.StringVar(&o.attestation, "attestation", "direct", "attestation conveyance: direct, none or enterprise")
	o.pin.register(f)
	f.BoolVar(&o.ext.hmacSecret, "hmac-secret", false, "extension hmac-secret: give the credential a PRF secret")
	f.UintVar(&o.ext.credProtect, "cred-protect", 0, "extension credProtect: 1 (UV optional), 2 (UV or credential ID needed), 3 (UV required)")
	f.StringVar(&o.ext.credBlob, "cred-blob", "", "extension credBlob: bytes (hex) stored with the credential")
	f.BoolVar(&o.ext.largeBlobKey, "large-blob-key", false, "extension largeBlobKey: a key for this credential's large blob (needs --rk)")
	f.BoolVar(&o.ext.minPINLength, "min-pin-length", false, "extension minPinLength: ask for the key's minimum PIN length (if this RP may read it)")
	_ = c.MarkFlagRequired("rp")
	_ = c.MarkFlagRequired("user")
	return c
}

// buildRequest turns the flags into a makeCredential request, or a usage error.
func (o *makeCredentialOptions) buildRequest() (*ctap2.MakeCredentialRequest, []byte, error) {
	if o.rp == "" || o.user == "" {
		return nil, nil, usageErrorf("--rp and --user must not be empty")
	}
	userID := sha256.Sum256([]byte(o.user))
	uid := userID[:16]
	if o.userID != "" {
		var err error
		if uid, err = hex.DecodeString(o.userID); err != nil || len(uid) == 0 || len(uid) > ctap2.MaxUserIDLength {
			return nil, nil, usageErrorf("--user-id: want 1 to 64 bytes as hex, got %q", o.userID)
		}
	}
	var params []ctap2.CredentialParam
	for _, name := range o.algs {
		alg, err := ctap2.ParseAlgorithm(strings.TrimSpace(name))
		if err != nil {
			return nil, nil, &usageError{fmt.Errorf("--alg: %w", err)}
		}
		params = append(params, ctap2.CredentialParam{Type: ctap2.CredentialType, Alg: alg})
	}
	if len(params) == 0 {
		return nil, nil, usageErrorf("--alg: give at least one algorithm")
	}
	exclude, err := parseCredentialIDs("--exclude", o.exclude)
	if err != nil {
		return nil, nil, err
	}
	hash, cdJSON, err := o.clientData.resolve(webauthn.TypeCreate, o.rp)
	if err != nil {
		return nil, nil, err
	}
	rpName := o.rpName
	if rpName == "" {
		rpName = o.rp
	}
	req := &ctap2.MakeCredentialRequest{
		ClientDataHash:   hash,
		RP:               &ctap2.RPEntity{ID: o.rp, Name: rpName},
		User:             &ctap2.UserEntity{ID: uid, Name: o.user, DisplayName: o.user},
		PubKeyCredParams: params,
		ExcludeList:      exclude,
	}
	// "up" is never sent: CTAP 2.0 keys reject the key even when true.
	if o.rk || o.uv {
		req.Options = &ctap2.Options{}
		if o.rk {
			req.Options.RK = ctap2.Bool(true)
		}
		if o.uv {
			req.Options.UV = ctap2.Bool(true)
		}
	}
	ext := ctap2.MakeCredentialExtensions{
		CredProtect:  o.ext.credProtect,
		HMACSecret:   o.ext.hmacSecret,
		LargeBlobKey: o.ext.largeBlobKey,
		MinPINLength: o.ext.minPINLength,
	}
	if o.ext.credProtect > 3 {
		return nil, nil, usageErrorf("--cred-protect: want 1, 2 or 3, got %d", o.ext.credProtect)
	}
	if o.ext.largeBlobKey && !o.rk {
		return nil, nil, usageErrorf("--large-blob-key needs --rk: only discoverable credentials have large blobs")
	}
	if o.ext.credBlob != "" {
		if ext.CredBlob, err = hex.DecodeString(o.ext.credBlob); err != nil || len(ext.CredBlob) == 0 {
			return nil, nil, usageErrorf("--cred-blob: want hex bytes, got %q", o.ext.credBlob)
		}
	}
	if req.Extensions, err = ext.Map(); err != nil {
		return nil, nil, &usageError{err}
	}
	switch o.attestation {
	case "direct", "none":
	case "enterprise":
		req.EnterpriseAttestation = 1
	default:
		return nil, nil, usageErrorf("--attestation: want direct, none or enterprise, got %q", o.attestation)
	}
	return req, cdJSON, nil
}

func parseCredentialIDs(flag string, ids []string) ([]ctap2.CredentialDescriptor, error) {
	var out []ctap2.CredentialDescriptor
	for _, s := range ids {
		id, err := decodeB64URL(s)
		if err != nil || len(id) == 0 {
			return nil, usageErrorf("%s: %q is not a base64url credential ID", flag, s)
		}
		out = append(out, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id})
	}
	return out, nil
}

// makeCredentialJSON is the contract's --json shape of make-credential.
type makeCredentialJSON struct {
	CredentialID        string    `json:"credentialId"`
	PublicKeyCOSE       string    `json:"publicKeyCose"`
	PublicKeyPEM        string    `json:"publicKeyPem"`
	Alg                 int       `json:"alg"`
	AAGUID              string    `json:"aaguid"`
	Fmt                 string    `json:"fmt"`
	AttStmt             any       `json:"attStmt"`
	AuthData            string    `json:"authData"`
	ClientDataHash      string    `json:"clientDataHash"`
	ClientDataJSON      string    `json:"clientDataJSON,omitempty"`
	SignCount           uint32    `json:"signCount"`
	Flags               flagsJSON `json:"flags"`
	Extensions          any       `json:"extensions"`
	LargeBlobKey        string    `json:"largeBlobKey,omitempty"`
	AttestationType     string    `json:"attestationType"`
	AttestationVerified bool      `json:"attestationVerified"`
	// EpAtt: the key says its attestation is an enterprise one (CTAP 2.1 epAtt);
	// omitted otherwise, so the usual shape is unchanged.
	EpAtt     bool   `json:"epAtt,omitempty"`
	Transport string `json:"transport"`
	Device    string `json:"device"`

	extensions string // human summary
}

func (a *app) runMakeCredential(cmd *cobra.Command, o *makeCredentialOptions) error {
	req, cdJSON, err := o.buildRequest()
	if err != nil {
		return err
	}
	ctx, s, done, err := a.beginSession(cmd.Context())
	if err != nil {
		return err
	}
	defer done()
	var resp *ctap2.MakeCredentialResponse
	err = a.runVerified(ctx, s, verified{
		perm: ctap2.PermMakeCredential, rpID: req.RP.ID, cdh: req.ClientDataHash, wantUV: o.uv, pin: &o.pin,
		options:  &req.Options,
		setParam: func(p []byte, v uint) { req.PinUvAuthParam, req.PinUvAuthProtocol = p, v },
	}, func() (err error) {
		resp, err = s.client.MakeCredential(ctx, req)
		return err
	})
	s.notice.stop()
	if err != nil {
		return fmt.Errorf("make-credential: %w", err)
	}
	credID, key, err := resp.CredentialKey()
	if err != nil {
		return fmt.Errorf("make-credential: %w", err)
	}
	ad, _ := resp.ParseAuthData() // CredentialKey parsed it already
	pemKey, err := key.PEM()
	if err != nil {
		return fmt.Errorf("make-credential: encoding public key: %w", err)
	}
	att, attErr := resp.VerifyAttestation(req.ClientDataHash)
	out := makeCredentialJSON{
		CredentialID:        b64(credID),
		PublicKeyCOSE:       b64(ad.Attested.PublicKey),
		PublicKeyPEM:        pemKey,
		Alg:                 int(key.Alg),
		AAGUID:              uuid(ad.Attested.AAGUID[:]),
		Fmt:                 resp.Fmt,
		AttStmt:             cborJSON(resp.AttStmt),
		AuthData:            b64(resp.AuthData),
		ClientDataHash:      b64(req.ClientDataHash),
		SignCount:           ad.SignCount,
		Flags:               newFlagsJSON(ad.Flags),
		Extensions:          extensionsJSON(ad.Extensions),
		extensions:          extensionSummary(ad.Extensions),
		AttestationVerified: attErr == nil,
		EpAtt:               resp.EpAtt,
		Transport:           s.dev.Info().Transport,
		Device:              s.dev.Info().URI,
	}
	if cdJSON != nil {
		out.ClientDataJSON = b64(cdJSON)
	}
	if len(resp.LargeBlobKey) > 0 {
		out.LargeBlobKey = b64(resp.LargeBlobKey)
	}
	if att != nil {
		out.AttestationType = string(att.Type)
	}
	if o.attestation == "none" && attErr == nil {
		// As a WebAuthn client does for conveyance "none": drop the statement, keep the AAGUID (L3).
		out.Fmt, out.AttStmt, out.AttestationType = ctap2.FormatNone, map[string]any{}, string(ctap2.AttestationNone)
	}
	if a.json {
		err = writeJSON(a.io.Out, out)
	} else {
		err = writeMakeCredentialHuman(a.io.Out, &out, key.Alg, ad.Flags, attErr)
	}
	if err != nil {
		return err
	}
	if attErr != nil {
		return fmt.Errorf("make-credential: the key's attestation does not verify: %w", attErr)
	}
	return nil
}

func writeMakeCredentialHuman(w io.Writer, o *makeCredentialJSON, alg ctap2.COSEAlgorithm, flags ctap2.AuthFlags, attErr error) error {
	att := o.Fmt
	if o.AttestationType != "" && o.AttestationType != o.Fmt {
		att += " (" + o.AttestationType + ")"
	}
	if o.EpAtt {
		att += ", enterprise"
	}
	switch {
	case attErr != nil:
		att += ", DOES NOT VERIFY"
	case o.Fmt != ctap2.FormatNone:
		att += ", verified"
	}
	rows := []row{
		{"Credential ID", o.CredentialID},
		{"Algorithm", alg.String()},
		{"AAGUID", o.AAGUID},
		{"Attestation", att},
		{"Sign count", fmt.Sprint(o.SignCount)},
		{"Flags", flags.String()},
	}
	if o.extensions != "" {
		rows = append(rows, row{"Extensions", o.extensions})
	}
	if o.LargeBlobKey != "" {
		rows = append(rows, row{"Large blob key", o.LargeBlobKey})
	}
	rows = append(rows, row{"Device", o.Device}, row{"Public key", o.PublicKeyPEM})
	return writeTable(w, rows)
}
