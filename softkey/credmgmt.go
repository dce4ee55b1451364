package softkey

import (
	"bytes"
	"context"
	"errors"
	"math"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// credMgmtWindow is how long an enumeration waits for its next GetNext subcommand
// (CTAP 2.1 §6.8: the same 30 s as getNextAssertion).
const credMgmtWindow = 30 * time.Second

// credMgmtParams is the wire form of ctap2.CredMgmtRequest, with pointers where CTAP
// tells "absent" from a zero value. SubCommandParams stays raw: pinUvAuthParam covers
// exactly the bytes the platform sent, whatever their encoding.
type credMgmtParams struct {
	SubCommand        *ctap2.CredMgmtSubcommand `cbor:"1,keyasint"`
	SubCommandParams  ctap2.RawMessage          `cbor:"2,keyasint"`
	PinUvAuthProtocol *uint                     `cbor:"3,keyasint"`
	PinUvAuthParam    []byte                    `cbor:"4,keyasint"`
}

// credMgmtSequence is the state an enumeration continues from: the GetNext
// subcommand that may come next and what it has left to return. It lives in
// Authenticator.cm; any command other than that GetNext ends it (handler.go and
// credMgmt).
type credMgmtSequence struct {
	next ctap2.CredMgmtSubcommand
	// rps and ids are the RPs (enumerateRPsGetNextRP) and credentials
	// (enumerateCredentialsGetNextCredential) left, read again from the store when
	// their turn comes: for up to credMgmtWindow an enumeration holds 32 bytes per
	// RP and an ID per credential, not the records (private keys included; 4.5 MB
	// for an RP's 10,000 credentials).
	rps  [][32]byte
	ids  [][]byte
	last time.Time
}

// CredentialManagement answers authenticatorCredentialManagement (0x0A) for Go
// callers. Zero fields of req are absent parameters; subcommands without a reply
// answer an empty response. Like HandleCBOR it keeps the enumeration state, so a
// GetNext must directly follow its Begin here too.
func (a *Authenticator) CredentialManagement(ctx context.Context, req *ctap2.CredMgmtRequest) (*ctap2.CredMgmtResponse, error) {
	if req == nil {
		req = &ctap2.CredMgmtRequest{}
	}
	p := &credMgmtParams{SubCommandParams: req.SubCommandParams, PinUvAuthParam: req.PinUvAuthParam}
	if req.SubCommand != 0 {
		p.SubCommand = &req.SubCommand
	}
	if req.PinUvAuthProtocol != 0 {
		p.PinUvAuthProtocol = &req.PinUvAuthProtocol
	}
	resp, err := locked(a, ctx, ctap2.CmdCredentialManagement, a.credentialManagement, p)
	if err == nil && resp == nil {
		resp = &ctap2.CredMgmtResponse{}
	}
	return resp, err
}

// credentialManagement is command 0x0A.
func (a *Authenticator) credentialManagement(_ context.Context, req *credMgmtParams, _ func(byte)) (*ctap2.CredMgmtResponse, error) {
	return a.credMgmt(req, false)
}

// credentialMgmtPreview is the CTAP 2.1-PRE prototype command 0x41: the same
// subcommands, auth and state, without updateUserInformation.
func (a *Authenticator) credentialMgmtPreview(_ context.Context, req *credMgmtParams, _ func(byte)) (*ctap2.CredMgmtResponse, error) {
	return a.credMgmt(req, true)
}

// credMgmt dispatches a credentialManagement subcommand (CTAP 2.1 §6.8). Every
// subcommand but the two GetNext ones needs a pinUvAuthParam over subCommand ||
// subCommandParams from a token with the cm permission; the GetNext ones carry no
// auth and must directly follow their Begin or a previous GetNext.
func (a *Authenticator) credMgmt(req *credMgmtParams, prototype bool) (*ctap2.CredMgmtResponse, error) {
	seq := a.cm
	a.cm = nil // only the GetNext that continues it keeps a sequence alive
	if req.SubCommand == nil {
		return nil, ctap2.ErrMissingParameter
	}
	switch sub := *req.SubCommand; sub {
	case ctap2.CredMgmtGetCredsMetadata:
		return a.getCredsMetadata(req)
	case ctap2.CredMgmtEnumerateRPsBegin:
		return a.enumerateRPsBegin(req)
	case ctap2.CredMgmtEnumerateCredentialsBegin:
		return a.enumerateCredentialsBegin(req)
	case ctap2.CredMgmtEnumerateRPsGetNextRP, ctap2.CredMgmtEnumerateCredentialsGetNextCredential:
		return a.credMgmtNext(seq, sub)
	case ctap2.CredMgmtDeleteCredential:
		return nil, a.deleteCredential(req)
	case ctap2.CredMgmtUpdateUserInformation:
		if !prototype {
			return nil, a.updateUserInformation(req)
		}
	}
	return nil, ctap2.ErrInvalidSubcommand
}

// credMgmtAuth verifies the request's pinUvAuthParam over subCommand || the raw
// subCommandParams with the cm permission. It binds nothing: the callers apply the
// token's permissions RP ID themselves.
func (a *Authenticator) credMgmtAuth(req *credMgmtParams) error {
	msg := ctap2.CredMgmtAuthMessage(*req.SubCommand, req.SubCommandParams)
	return a.verifyPinUvAuthParam(protocolParam(req.PinUvAuthProtocol), req.PinUvAuthParam, msg, ctap2.PermCredentialManagement, "")
}

// protocolParam maps an optional pinUvAuthProtocol onto verifyPinUvAuthParam's
// argument, where 0 means absent: an explicit 0 becomes a value no protocol has, so
// that it is INVALID_PARAMETER rather than MISSING_PARAMETER.
func protocolParam(p *uint) uint {
	switch {
	case p == nil:
		return 0
	case *p == 0:
		return math.MaxUint
	}
	return *p
}

// tokenMayTouch reports whether the current token may manage rpIDHash's
// credentials: it has no permissions RP ID, or that RP ID hashes to rpIDHash.
func (a *Authenticator) tokenMayTouch(rpIDHash [32]byte) bool {
	rpID, bound := a.tokenRPID()
	return !bound || ctap2.RPIDHash(rpID) == rpIDHash
}

// unboundToken is the rule of getCredsMetadata and enumerateRPsBegin: they are
// about every RP, so a token bound to one may not use them (PIN_AUTH_INVALID).
func (a *Authenticator) unboundToken() error {
	if _, bound := a.tokenRPID(); bound {
		return ctap2.ErrPINAuthInvalid
	}
	return nil
}

// subCommandParams decodes the raw subCommandParams; absent is MISSING_PARAMETER,
// anything but a well-formed map with the right types a CBOR error.
func (req *credMgmtParams) subCommandParams() (*ctap2.CredMgmtParams, error) {
	var p ctap2.CredMgmtParams
	if req.SubCommandParams == nil {
		return nil, ctap2.ErrMissingParameter
	}
	if err := decodeParams(req.SubCommandParams, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (a *Authenticator) getCredsMetadata(req *credMgmtParams) (*ctap2.CredMgmtResponse, error) {
	if err := a.credMgmtAuth(req); err != nil {
		return nil, err
	}
	if err := a.unboundToken(); err != nil {
		return nil, err
	}
	n, err := a.st.CountCredentials()
	if err != nil {
		return nil, ctap2.ErrOther
	}
	existing, remaining := uint(n), uint(max(a.cfg.MaxResidentCredentials-n, 0))
	return &ctap2.CredMgmtResponse{
		ExistingResidentCredentialsCount:             &existing,
		MaxPossibleRemainingResidentCredentialsCount: &remaining,
	}, nil
}

func (a *Authenticator) enumerateRPsBegin(req *credMgmtParams) (*ctap2.CredMgmtResponse, error) {
	if err := a.credMgmtAuth(req); err != nil {
		return nil, err
	}
	if err := a.unboundToken(); err != nil {
		return nil, err
	}
	rps, err := a.st.RelyingParties()
	if err != nil {
		return nil, ctap2.ErrOther
	}
	if len(rps) == 0 {
		return nil, ctap2.ErrNoCredentials
	}
	resp := rpEntry(rps[0])
	resp.TotalRPs = uint(len(rps))
	if len(rps) > 1 {
		hashes := make([][32]byte, 0, len(rps)-1)
		for _, rp := range rps[1:] {
			hashes = append(hashes, rp.IDHash)
		}
		a.cm = &credMgmtSequence{next: ctap2.CredMgmtEnumerateRPsGetNextRP, rps: hashes, last: a.cfg.Now()}
	}
	return resp, nil
}

func rpEntry(rp store.RPInfo) *ctap2.CredMgmtResponse {
	return &ctap2.CredMgmtResponse{
		RP:       &ctap2.RPEntity{ID: rp.ID, Name: rp.Name},
		RPIDHash: bytes.Clone(rp.IDHash[:]),
	}
}

func (a *Authenticator) enumerateCredentialsBegin(req *credMgmtParams) (*ctap2.CredMgmtResponse, error) {
	p, err := req.subCommandParams()
	if err != nil {
		return nil, err
	}
	if p.RPIDHash == nil {
		return nil, ctap2.ErrMissingParameter
	}
	if err := a.credMgmtAuth(req); err != nil {
		return nil, err
	}
	if len(p.RPIDHash) != 32 {
		return nil, ctap2.ErrInvalidParameter
	}
	rpIDHash := [32]byte(p.RPIDHash)
	if !a.tokenMayTouch(rpIDHash) {
		return nil, ctap2.ErrPINAuthInvalid
	}
	creds, err := a.st.CredentialsByRP(rpIDHash)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	if len(creds) == 0 {
		return nil, ctap2.ErrNoCredentials
	}
	resp, err := a.credentialEntry(creds[0])
	if err != nil {
		return nil, err
	}
	resp.TotalCredentials = uint(len(creds))
	if len(creds) > 1 {
		ids := make([][]byte, 0, len(creds)-1)
		for _, c := range creds[1:] {
			ids = append(ids, bytes.Clone(c.ID))
		}
		a.cm = &credMgmtSequence{next: ctap2.CredMgmtEnumerateCredentialsGetNextCredential, ids: ids, last: a.cfg.Now()}
	}
	return resp, nil
}

// credMgmtNext continues the enumeration seq with sub: NOT_ALLOWED unless seq
// exists, expects sub and is not older than credMgmtWindow.
func (a *Authenticator) credMgmtNext(seq *credMgmtSequence, sub ctap2.CredMgmtSubcommand) (*ctap2.CredMgmtResponse, error) {
	now := a.cfg.Now()
	if seq == nil || seq.next != sub || now.Sub(seq.last) > credMgmtWindow {
		return nil, ctap2.ErrNotAllowed
	}
	var resp *ctap2.CredMgmtResponse
	switch {
	// Nothing can delete an RP's credentials or a credential meanwhile: any other
	// command ends the sequence.
	case sub == ctap2.CredMgmtEnumerateRPsGetNextRP && len(seq.rps) > 0:
		// The RP's ID and name are its newest credential's, as in RelyingParties.
		creds, err := a.st.CredentialsByRP(seq.rps[0])
		if err != nil || len(creds) == 0 {
			return nil, ctap2.ErrOther
		}
		resp = rpEntry(store.RPInfo{ID: creds[0].RPID, Name: creds[0].RPName, IDHash: seq.rps[0]})
		seq.rps = seq.rps[1:]
	case sub == ctap2.CredMgmtEnumerateCredentialsGetNextCredential && len(seq.ids) > 0:
		c, err := a.st.Credential(seq.ids[0])
		if err != nil {
			return nil, ctap2.ErrOther
		}
		if resp, err = a.credentialEntry(c); err != nil {
			return nil, err
		}
		seq.ids = seq.ids[1:]
	default:
		return nil, ctap2.ErrNotAllowed
	}
	if len(seq.rps)+len(seq.ids) > 0 {
		seq.last = now
		a.cm = seq
	}
	return resp, nil
}

// credentialEntry is one credential of an enumeration: user, credential ID,
// public key (derived from the stored private key), credProtect (1 when never
// set: userVerificationOptional is the default policy) and largeBlobKey if the
// credential has one (extensions.go keeps both).
func (a *Authenticator) credentialEntry(c *store.Credential) (*ctap2.CredMgmtResponse, error) {
	key, err := parseCredentialKey(residentCredential(c))
	if err != nil {
		return nil, ctap2.ErrOther
	}
	pub, err := (&ctap2.COSEKey{Alg: c.Alg, Public: key.Public()}).Marshal()
	if err != nil {
		return nil, ctap2.ErrOther
	}
	user := c.User
	user.ID = bytes.Clone(user.ID)
	return &ctap2.CredMgmtResponse{
		User:         &user,
		CredentialID: &ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: bytes.Clone(c.ID)},
		PublicKey:    pub,
		CredProtect:  uint(credProtectOf(c)),
		LargeBlobKey: a.largeBlobKeyOf(c),
	}, nil
}

// managedCredential finds the resident credential a deleteCredential or
// updateUserInformation names, after the auth: none is NO_CREDENTIALS, one of an
// RP the token is not bound to PIN_AUTH_INVALID.
func (a *Authenticator) managedCredential(d *ctap2.CredentialDescriptor) (*store.Credential, error) {
	if len(d.ID) == 0 {
		return nil, ctap2.ErrNoCredentials
	}
	c, err := a.st.Credential(d.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ctap2.ErrNoCredentials
	}
	if err != nil {
		return nil, ctap2.ErrOther
	}
	if !a.tokenMayTouch(c.RPIDHash) {
		return nil, ctap2.ErrPINAuthInvalid
	}
	return c, nil
}

func (a *Authenticator) deleteCredential(req *credMgmtParams) error {
	p, err := req.subCommandParams()
	if err != nil {
		return err
	}
	if p.CredentialID == nil {
		return ctap2.ErrMissingParameter
	}
	if err := a.credMgmtAuth(req); err != nil {
		return err
	}
	c, err := a.managedCredential(p.CredentialID)
	if err != nil {
		return err
	}
	if err := a.st.DeleteCredential(c.ID); err != nil {
		return ctap2.ErrOther
	}
	return nil
}

// updateUserInformation replaces the stored user's name and displayName with the
// given ones (an absent or empty one is removed); user.id must be the stored one
// (INVALID_PARAMETER otherwise).
func (a *Authenticator) updateUserInformation(req *credMgmtParams) error {
	p, err := req.subCommandParams()
	if err != nil {
		return err
	}
	if p.CredentialID == nil || p.User == nil {
		return ctap2.ErrMissingParameter
	}
	if err := a.credMgmtAuth(req); err != nil {
		return err
	}
	c, err := a.managedCredential(p.CredentialID)
	if err != nil {
		return err
	}
	if !bytes.Equal(p.User.ID, c.User.ID) {
		return ctap2.ErrInvalidParameter
	}
	c.User.Name, c.User.DisplayName = p.User.Name, p.User.DisplayName
	if err := a.st.PutCredential(c); err != nil {
		return ctap2.ErrOther
	}
	return nil
}
