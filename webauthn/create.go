package webauthn

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Create registers a credential, as navigator.credentials.create() does: it
// returns the RegistrationResponseJSON to post to the RP. Options that a browser
// refuses (origin, RP ID, no acceptable algorithm) fail before the key is
// touched.
func (c *Client) Create(ctx context.Context, o *CreationOptions) (*RegistrationResponse, error) {
	params, err := credentialParams(o.PubKeyCredParams)
	if err != nil {
		return nil, err
	}
	if o.AuthenticatorSelection.AuthenticatorAttachment == "platform" {
		return nil, fmt.Errorf("%w: authenticatorAttachment is platform, and a security key is cross-platform", ErrNotAllowed)
	}
	if o.Extensions.LargeBlob != nil && o.Extensions.LargeBlob.Support != "required" && o.Extensions.LargeBlob.Support != "preferred" {
		return nil, fmt.Errorf("%w: extensions.largeBlob.support: %q, want required or preferred", ErrOptions, o.Extensions.LargeBlob.Support)
	}
	cer, err := c.begin(ctx, TypeCreate, o.Challenge, o.RP.ID, o.Timeout)
	if err != nil {
		return nil, err
	}
	defer cer.cancel()
	ctx, s, cd, rpID := cer.ctx, cer.session, cer.clientData, cer.rpID
	cdh := cd.Hash()

	req := &ctap2.MakeCredentialRequest{
		ClientDataHash:   cdh,
		RP:               &ctap2.RPEntity{ID: rpID, Name: o.RP.Name},
		User:             &ctap2.UserEntity{ID: o.User.ID, Name: o.User.Name, DisplayName: o.User.DisplayName},
		PubKeyCredParams: params,
	}
	rk := false
	switch o.AuthenticatorSelection.ResidentKey {
	case "required":
		rk = true
		if !s.option("rk") {
			return nil, fmt.Errorf("%w: residentKey required, and the key cannot store discoverable credentials", ErrNotSupported)
		}
	case "preferred":
		// Browsers make a discoverable credential when the key can (and, for
		// a key with a PIN, since that needs UV anyway).
		rk = s.option("rk")
	}
	if rk {
		req.Options = &ctap2.Options{RK: ctap2.Bool(true)}
	}
	exclude := s.usableCredentials(o.ExcludeCredentials)
	if m := s.info.MaxCredentialCountInList; len(exclude) > 0 && m > 0 && uint(len(exclude)) > m {
		if exclude, err = s.presentCredentials(ctx, exclude); err != nil {
			return nil, err
		}
		exclude = exclude[:min(len(exclude), 1)] // one found is enough to refuse
	}
	req.ExcludeList = exclude

	switch o.Attestation {
	case "enterprise":
		if s.option("ep") {
			// Platform-managed: the person running ctapkit names the RP.
			req.EnterpriseAttestation = 2
		}
	case "none", "indirect", "direct":
	default:
		// Unknown conveyance values are ignored by browsers (treated as none).
	}
	req.AttestationFormatsPreference = o.AttestationFormats

	ext, err := s.creationExtensions(ctx, o, rk)
	if err != nil {
		return nil, err
	}
	if req.Extensions, err = ext.ctap.Map(); err != nil {
		return nil, err
	}

	var resp *ctap2.MakeCredentialResponse
	err = s.verified(ctx, o.AuthenticatorSelection.UserVerification, ctap2.PermMakeCredential, cdh, &req.Options,
		func(param []byte, protocol uint) { req.PinUvAuthParam, req.PinUvAuthProtocol = param, protocol },
		func() (err error) {
			resp, err = c.CTAP.MakeCredential(ctx, req)
			return err
		})
	if err != nil {
		return nil, ctapError("makeCredential", err)
	}
	return s.registrationResponse(o, cd, resp, ext, rk)
}

// credentialParams keeps the public-key entries in the RP's order (browsers skip
// unknown types); none at all means the spec's default, ES256 then RS256.
func credentialParams(in []CredentialParameters) ([]ctap2.CredentialParam, error) {
	if len(in) == 0 {
		return []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}, {Type: ctap2.CredentialType, Alg: ctap2.AlgRS256}}, nil
	}
	var out []ctap2.CredentialParam
	for _, p := range in {
		if p.Type == ctap2.CredentialType {
			out = append(out, ctap2.CredentialParam{Type: ctap2.CredentialType, Alg: ctap2.COSEAlgorithm(p.Alg)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: pubKeyCredParams has no entry of type public-key", ErrNotSupported)
	}
	return out, nil
}

// registrationResponse builds RegistrationResponseJSON from the key's answer.
func (s *session) registrationResponse(o *CreationOptions, cd CollectedClientData, resp *ctap2.MakeCredentialResponse,
	ext *creationExtensionState, rk bool) (*RegistrationResponse, error) {
	ad, err := resp.ParseAuthData()
	if err != nil {
		return nil, fmt.Errorf("makeCredential response: %w", err)
	}
	if ad.Attested == nil {
		return nil, fmt.Errorf("makeCredential response: %w: no attested credential data", ctap2.ErrMalformedResponse)
	}
	if ad.RPIDHash != ctap2.RPIDHash(s.rpID) {
		return nil, fmt.Errorf("makeCredential response: %w: rpIdHash is not the hash of %q", ctap2.ErrMalformedResponse, s.rpID)
	}
	key, err := ctap2.ParseCOSEKey(ad.Attested.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("makeCredential response: %w", err)
	}
	fmtName, attStmt := resp.Fmt, resp.AttStmt
	if o.Attestation != "direct" && o.Attestation != "enterprise" && o.Attestation != "indirect" {
		// Conveyance "none": the browser drops the statement. The AAGUID stays,
		// as in current browsers, so that RPs can name the key's model.
		fmtName, attStmt = "none", ctap2.RawMessage{0xa0}
	}
	attObj, err := ctap2.Marshal(map[string]ctap2.RawMessage{
		"fmt":      mustCBOR(fmtName),
		"attStmt":  attStmt,
		"authData": mustCBOR(resp.AuthData),
	})
	if err != nil {
		return nil, fmt.Errorf("attestation object: %w", err)
	}
	out := &RegistrationResponse{
		ID:    b64(ad.Attested.CredentialID),
		RawID: b64(ad.Attested.CredentialID),
		Type:  ctap2.CredentialType,
		Response: AttestationResponse{
			ClientDataJSON:     b64(cd.JSON()),
			AuthenticatorData:  b64(resp.AuthData),
			Transports:         slices.Clone(s.transports()),
			PublicKeyAlgorithm: int64(key.Alg),
			AttestationObject:  b64(attObj),
		},
		AuthenticatorAttachment: s.c.attachment(),
	}
	// getPublicKey() is null for algorithms the browser cannot express as SPKI.
	if der, err := x509.MarshalPKIXPublicKey(key.Public); err == nil {
		out.Response.PublicKey = b64(der)
	}
	out.ClientExtensionResults, err = s.creationResults(o, ad, resp, ext, rk)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func mustCBOR(v any) ctap2.RawMessage {
	b, err := ctap2.Marshal(v)
	if err != nil {
		panic(err) // strings and byte strings always encode
	}
	return b
}
