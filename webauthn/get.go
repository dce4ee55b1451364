package webauthn

import (
	"context"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Get signs in with a credential, as navigator.credentials.get() does: it
// returns the AuthenticationResponseJSON to post to the RP. With an empty
// allowCredentials the key's discoverable credentials for the RP are offered
// (SelectAccount chooses when there are several).
func (c *Client) Get(ctx context.Context, o *RequestOptions) (*AuthenticationResponse, error) {
	if err := checkRequestExtensions(o); err != nil {
		return nil, err
	}
	cer, err := c.begin(ctx, TypeGet, o.Challenge, o.RPID, o.Timeout)
	if err != nil {
		return nil, err
	}
	defer cer.cancel()
	ctx, s, cd, rpID := cer.ctx, cer.session, cer.clientData, cer.rpID
	cdh := cd.Hash()

	allow := s.usableCredentials(o.AllowCredentials)
	if len(o.AllowCredentials) > 0 && len(allow) == 0 {
		return nil, fmt.Errorf("%w: no credential of allowCredentials can be on this key", ErrNotAllowed)
	}
	prf := (*PRFValues)(nil)
	if p := o.Extensions.PRF; p != nil {
		prf = p.Eval
	}
	// A list longer than the key takes, or per-credential PRF inputs, need to know
	// which credential the key holds before the real request.
	byCred := o.Extensions.PRF != nil && len(o.Extensions.PRF.EvalByCredential) > 0
	if m := s.info.MaxCredentialCountInList; (m > 0 && uint(len(allow)) > m) || (byCred && len(allow) > 1) {
		present, err := s.presentCredentials(ctx, allow)
		if err != nil {
			return nil, err
		}
		if len(present) == 0 {
			return nil, fmt.Errorf("getAssertion: %w (%w)", ErrNotAllowed, ctap2.ErrNoCredentials)
		}
		allow = present[:1]
	}
	if byCred && len(allow) == 1 {
		if v, ok := o.Extensions.PRF.EvalByCredential[b64(allow[0].ID)]; ok {
			prf = &v
		}
	}

	ext, err := s.requestExtensions(ctx, o, prf)
	if err != nil {
		return nil, err
	}
	req := &ctap2.GetAssertionRequest{RPID: rpID, ClientDataHash: cdh, AllowList: allow}
	if req.Extensions, err = ext.ctap.Map(); err != nil {
		return nil, err
	}
	perms := ctap2.PermGetAssertion
	uv := o.UserVerification
	if lb := o.Extensions.LargeBlob; lb != nil && lb.Write != nil && ext.largeBlob {
		perms |= ctap2.PermLargeBlobWrite
		// A key that can verify its user writes large blobs only with an lbw
		// token, so the user is verified whatever the RP preferred.
		if s.canVerify() {
			uv = "required"
		}
	}

	var resps []*ctap2.GetAssertionResponse
	err = s.verified(ctx, uv, perms, cdh, &req.Options,
		func(param []byte, protocol uint) { req.PinUvAuthParam, req.PinUvAuthProtocol = param, protocol },
		func() (err error) {
			resps, err = c.CTAP.GetAssertions(ctx, req)
			return err
		})
	if err != nil {
		return nil, ctapError("getAssertion", err)
	}
	resp, err := c.pickAssertion(resps)
	if err != nil {
		return nil, err
	}
	return s.authenticationResponse(ctx, o, cd, req, resp, ext)
}

// checkRequestExtensions applies get()'s rules on extension inputs that do not
// depend on the key.
func checkRequestExtensions(o *RequestOptions) error {
	x := o.Extensions
	if x.PRF != nil && len(x.PRF.EvalByCredential) > 0 {
		if len(o.AllowCredentials) == 0 {
			return fmt.Errorf("%w: extensions.prf.evalByCredential needs allowCredentials", ErrNotSupported)
		}
		for id := range x.PRF.EvalByCredential {
			found := false
			for _, d := range o.AllowCredentials {
				found = found || b64(d.ID) == id
			}
			if !found {
				return fmt.Errorf("%w: extensions.prf.evalByCredential: %s is not in allowCredentials", ErrOptions, id)
			}
		}
	}
	if x.PRF != nil && x.HMACGetSecret != nil {
		return fmt.Errorf("%w: extensions: prf and hmacGetSecret together", ErrOptions)
	}
	if lb := x.LargeBlob; lb != nil && lb.Write != nil && len(o.AllowCredentials) != 1 {
		return fmt.Errorf("%w: extensions.largeBlob.write needs exactly one credential in allowCredentials", ErrNotSupported)
	}
	return nil
}

// pickAssertion chooses among the assertions of several discoverable
// credentials (most recent first), through SelectAccount.
func (c *Client) pickAssertion(resps []*ctap2.GetAssertionResponse) (*ctap2.GetAssertionResponse, error) {
	if len(resps) == 0 {
		return nil, fmt.Errorf("getAssertion: %w: no assertion", ctap2.ErrMalformedResponse)
	}
	if len(resps) == 1 || c.SelectAccount == nil {
		return resps[0], nil
	}
	accounts := make([]Account, len(resps))
	for i, r := range resps {
		if r.Credential != nil {
			accounts[i].CredentialID = r.Credential.ID
		}
		if r.User != nil {
			accounts[i].UserID, accounts[i].Name, accounts[i].DisplayName = r.User.ID, r.User.Name, r.User.DisplayName
		}
	}
	i, err := c.SelectAccount(accounts)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(resps) {
		return nil, fmt.Errorf("account %d of %d chosen", i, len(resps))
	}
	return resps[i], nil
}

// authenticationResponse builds AuthenticationResponseJSON from the key's answer.
func (s *session) authenticationResponse(ctx context.Context, o *RequestOptions, cd CollectedClientData,
	req *ctap2.GetAssertionRequest, resp *ctap2.GetAssertionResponse, ext *requestExtensionState) (*AuthenticationResponse, error) {
	ad, err := resp.ParseAuthData()
	if err != nil {
		return nil, fmt.Errorf("getAssertion response: %w", err)
	}
	if ad.RPIDHash != ctap2.RPIDHash(s.rpID) {
		return nil, fmt.Errorf("getAssertion response: %w: rpIdHash is not the hash of %q", ctap2.ErrMalformedResponse, s.rpID)
	}
	var credID []byte
	switch {
	case resp.Credential != nil:
		credID = resp.Credential.ID
	case len(req.AllowList) == 1:
		credID = req.AllowList[0].ID // CTAP lets the key leave out the only candidate
	default:
		return nil, fmt.Errorf("getAssertion response: %w: no credential ID", ctap2.ErrMalformedResponse)
	}
	out := &AuthenticationResponse{
		ID:    b64(credID),
		RawID: b64(credID),
		Type:  ctap2.CredentialType,
		Response: AssertionResponse{
			ClientDataJSON:    b64(cd.JSON()),
			AuthenticatorData: b64(resp.AuthData),
			Signature:         b64(resp.Signature),
		},
		AuthenticatorAttachment: s.c.attachment(),
	}
	if resp.User != nil && len(resp.User.ID) > 0 {
		out.Response.UserHandle = b64(resp.User.ID)
	}
	if out.ClientExtensionResults, err = s.requestResults(ctx, o, ad, resp, ext); err != nil {
		return nil, err
	}
	return out, nil
}
