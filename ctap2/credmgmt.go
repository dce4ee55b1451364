package ctap2

import (
	"context"
	"errors"
	"fmt"
)

// CredMgmtSubcommand is a credentialManagement subCommand (CTAP 2.1 §6.8).
type CredMgmtSubcommand uint

const (
	CredMgmtGetCredsMetadata                      CredMgmtSubcommand = 0x01
	CredMgmtEnumerateRPsBegin                     CredMgmtSubcommand = 0x02
	CredMgmtEnumerateRPsGetNextRP                 CredMgmtSubcommand = 0x03
	CredMgmtEnumerateCredentialsBegin             CredMgmtSubcommand = 0x04
	CredMgmtEnumerateCredentialsGetNextCredential CredMgmtSubcommand = 0x05
	CredMgmtDeleteCredential                      CredMgmtSubcommand = 0x06
	CredMgmtUpdateUserInformation                 CredMgmtSubcommand = 0x07
)

// CredMgmtRequest is authenticatorCredentialManagement (0x0A, or the 0x41 prototype).
// SubCommandParams holds the encoded CredMgmtParams exactly as they are authenticated:
// pinUvAuthParam covers subCommand || SubCommandParams (CredMgmtAuthMessage).
type CredMgmtRequest struct {
	SubCommand        CredMgmtSubcommand `cbor:"1,keyasint,omitempty"`
	SubCommandParams  RawMessage         `cbor:"2,keyasint,omitempty"`
	PinUvAuthProtocol uint               `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    []byte             `cbor:"4,keyasint,omitempty"`
}

// CredMgmtParams is the subCommandParams map: rpIDHash for enumerateCredentialsBegin,
// credentialID for deleteCredential, credentialID and user for updateUserInformation.
type CredMgmtParams struct {
	RPIDHash     []byte                `cbor:"1,keyasint,omitempty"`
	CredentialID *CredentialDescriptor `cbor:"2,keyasint,omitempty"`
	User         *UserEntity           `cbor:"3,keyasint,omitempty"`
}

// CredMgmtResponse is the credentialManagement reply; which fields are set depends on
// the subcommand. The two metadata counts are pointers because 0 is a value that must
// be sent.
type CredMgmtResponse struct {
	ExistingResidentCredentialsCount             *uint                 `cbor:"1,keyasint,omitempty"`
	MaxPossibleRemainingResidentCredentialsCount *uint                 `cbor:"2,keyasint,omitempty"`
	RP                                           *RPEntity             `cbor:"3,keyasint,omitempty"`
	RPIDHash                                     []byte                `cbor:"4,keyasint,omitempty"`
	TotalRPs                                     uint                  `cbor:"5,keyasint,omitempty"`
	User                                         *UserEntity           `cbor:"6,keyasint,omitempty"`
	CredentialID                                 *CredentialDescriptor `cbor:"7,keyasint,omitempty"`
	PublicKey                                    RawMessage            `cbor:"8,keyasint,omitempty"`
	TotalCredentials                             uint                  `cbor:"9,keyasint,omitempty"`
	CredProtect                                  uint                  `cbor:"10,keyasint,omitempty"`
	LargeBlobKey                                 []byte                `cbor:"11,keyasint,omitempty"`
	ThirdPartyPayment                            *bool                 `cbor:"12,keyasint,omitempty"`
}

// CredMgmtAuthMessage is what a credentialManagement pinUvAuthParam authenticates:
// subCommand (one byte) || the encoded subCommandParams, if any (CTAP 2.1 §6.8.2).
// Both sides use it: the host to sign, the authenticator to verify the bytes it got.
func CredMgmtAuthMessage(sub CredMgmtSubcommand, params []byte) []byte {
	return append([]byte{byte(sub)}, params...)
}

// CredsMetadata is the getCredsMetadata answer.
type CredsMetadata struct {
	Existing     uint // existingResidentCredentialsCount
	MaxRemaining uint // maxPossibleRemainingResidentCredentialsCount
}

// RP is one relying party with discoverable credentials on the authenticator.
type RP struct {
	RPEntity
	RPIDHash []byte // SHA-256 of the RP ID, as the authenticator stored it
}

// ResidentCredential is one discoverable credential as credential management lists it.
type ResidentCredential struct {
	User              UserEntity
	ID                CredentialDescriptor
	PublicKey         RawMessage // COSE_Key; ParseCOSEKey decodes it
	CredProtect       uint       // 1..3; 0 when the authenticator did not say
	LargeBlobKey      []byte     // 32 bytes, when the credential has one
	ThirdPartyPayment *bool      // [2.2]; nil when absent
}

// errNoCredMgmtToken: every authenticated subcommand needs a token with the cm permission.
var errNoCredMgmtToken = errors.New("credential management needs a pinUvAuthToken with the cm permission")

// credMgmtCommand picks 0x0A (credMgmt) or, for CTAP 2.1-PRE keys, the 0x41 prototype
// (credentialMgmtPreview). It may send getInfo, so it runs before any stateful sequence.
func (c *Client) credMgmtCommand(ctx context.Context) (Command, error) {
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("credential management: %w", err)
	}
	if v, _ := info.Option("credMgmt"); v {
		return CmdCredentialManagement, nil
	}
	if v, _ := info.Option("credentialMgmtPreview"); v {
		return CmdCredentialMgmtPre, nil
	}
	return 0, fmt.Errorf("credential management: the authenticator does not support it (no credMgmt or credentialMgmtPreview option): %w", errors.ErrUnsupported)
}

// credMgmt sends one authenticated subcommand. params (nil: none) is encoded once and
// those exact bytes are both sent and authenticated.
func (c *Client) credMgmt(ctx context.Context, cmd Command, token *PINToken, sub CredMgmtSubcommand, params *CredMgmtParams, resp *CredMgmtResponse) error {
	if token == nil {
		return errNoCredMgmtToken
	}
	req := CredMgmtRequest{SubCommand: sub, PinUvAuthProtocol: token.Protocol.Version()}
	if params != nil {
		enc, err := Marshal(params)
		if err != nil {
			return fmt.Errorf("encoding subCommandParams: %w", err)
		}
		req.SubCommandParams = enc
	}
	req.PinUvAuthParam = token.Param(CredMgmtAuthMessage(sub, req.SubCommandParams))
	if resp == nil {
		return c.Call(ctx, cmd, &req, nil)
	}
	return c.Call(ctx, cmd, &req, resp)
}

// credMgmtNext sends a GetNext subcommand: only key 0x01, nothing authenticated. It must
// directly follow the Begin or a previous GetNext.
func (c *Client) credMgmtNext(ctx context.Context, cmd Command, sub CredMgmtSubcommand, resp *CredMgmtResponse) error {
	return c.Call(ctx, cmd, &CredMgmtRequest{SubCommand: sub}, resp)
}

// CredsMetadata returns how many discoverable credentials exist and how many more fit
// (getCredsMetadata).
func (c *Client) CredsMetadata(ctx context.Context, token *PINToken) (*CredsMetadata, error) {
	cmd, err := c.credMgmtCommand(ctx)
	if err != nil {
		return nil, err
	}
	var resp CredMgmtResponse
	if err := c.credMgmt(ctx, cmd, token, CredMgmtGetCredsMetadata, nil, &resp); err != nil {
		return nil, fmt.Errorf("getCredsMetadata: %w", err)
	}
	if resp.ExistingResidentCredentialsCount == nil || resp.MaxPossibleRemainingResidentCredentialsCount == nil {
		return nil, fmt.Errorf("getCredsMetadata: missing credential counts: %w", ErrMalformedResponse)
	}
	return &CredsMetadata{
		Existing:     *resp.ExistingResidentCredentialsCount,
		MaxRemaining: *resp.MaxPossibleRemainingResidentCredentialsCount,
	}, nil
}

// EnumerateRPs lists the relying parties that have discoverable credentials
// (enumerateRPsBegin, then enumerateRPsGetNextRP for each further RP). None is an
// empty list. The token must not be bound to an RP ID. The caller must not send other
// commands to the authenticator while this runs.
func (c *Client) EnumerateRPs(ctx context.Context, token *PINToken) ([]RP, error) {
	cmd, err := c.credMgmtCommand(ctx)
	if err != nil {
		return nil, err
	}
	var resp CredMgmtResponse
	if err := c.credMgmt(ctx, cmd, token, CredMgmtEnumerateRPsBegin, nil, &resp); err != nil {
		if errors.Is(err, ErrNoCredentials) {
			return []RP{}, nil
		}
		return nil, fmt.Errorf("enumerateRPsBegin: %w", err)
	}
	if resp.TotalRPs == 0 {
		return nil, fmt.Errorf("enumerateRPsBegin: missing totalRPs: %w", ErrMalformedResponse)
	}
	total := resp.TotalRPs
	var rps []RP
	for {
		rp, err := rpFrom(&resp)
		if err != nil {
			return nil, fmt.Errorf("RP %d of %d: %w", len(rps)+1, total, err)
		}
		rps = append(rps, rp)
		if uint(len(rps)) >= total {
			return rps, nil
		}
		resp = CredMgmtResponse{}
		if err := c.credMgmtNext(ctx, cmd, CredMgmtEnumerateRPsGetNextRP, &resp); err != nil {
			return nil, fmt.Errorf("enumerateRPsGetNextRP (RP %d of %d): %w", len(rps)+1, total, err)
		}
	}
}

func rpFrom(r *CredMgmtResponse) (RP, error) {
	if r.RP == nil || len(r.RPIDHash) != 32 {
		return RP{}, fmt.Errorf("missing rp or a 32-byte rpIDHash: %w", ErrMalformedResponse)
	}
	return RP{RPEntity: *r.RP, RPIDHash: r.RPIDHash}, nil
}

// EnumerateCredentials lists the discoverable credentials of the RP whose RP ID hashes
// to rpIDHash (enumerateCredentialsBegin, then
// enumerateCredentialsGetNextCredential). None is an empty list. The caller must not
// send other commands to the authenticator while this runs.
func (c *Client) EnumerateCredentials(ctx context.Context, token *PINToken, rpIDHash []byte) ([]ResidentCredential, error) {
	if len(rpIDHash) != 32 {
		return nil, fmt.Errorf("enumerateCredentials: rpIDHash is %d bytes, want 32", len(rpIDHash))
	}
	cmd, err := c.credMgmtCommand(ctx)
	if err != nil {
		return nil, err
	}
	var resp CredMgmtResponse
	params := &CredMgmtParams{RPIDHash: rpIDHash}
	if err := c.credMgmt(ctx, cmd, token, CredMgmtEnumerateCredentialsBegin, params, &resp); err != nil {
		if errors.Is(err, ErrNoCredentials) {
			return []ResidentCredential{}, nil
		}
		return nil, fmt.Errorf("enumerateCredentialsBegin: %w", err)
	}
	if resp.TotalCredentials == 0 {
		return nil, fmt.Errorf("enumerateCredentialsBegin: missing totalCredentials: %w", ErrMalformedResponse)
	}
	total := resp.TotalCredentials
	var creds []ResidentCredential
	for {
		cred, err := credentialFrom(&resp)
		if err != nil {
			return nil, fmt.Errorf("credential %d of %d: %w", len(creds)+1, total, err)
		}
		creds = append(creds, cred)
		if uint(len(creds)) >= total {
			return creds, nil
		}
		resp = CredMgmtResponse{}
		if err := c.credMgmtNext(ctx, cmd, CredMgmtEnumerateCredentialsGetNextCredential, &resp); err != nil {
			return nil, fmt.Errorf("enumerateCredentialsGetNextCredential (credential %d of %d): %w", len(creds)+1, total, err)
		}
	}
}

func credentialFrom(r *CredMgmtResponse) (ResidentCredential, error) {
	if r.User == nil || r.CredentialID == nil || len(r.CredentialID.ID) == 0 || len(r.PublicKey) == 0 {
		return ResidentCredential{}, fmt.Errorf("missing user, credentialID or publicKey: %w", ErrMalformedResponse)
	}
	if r.CredProtect > 3 {
		return ResidentCredential{}, fmt.Errorf("credProtect %d: %w", r.CredProtect, ErrMalformedResponse)
	}
	if r.LargeBlobKey != nil && len(r.LargeBlobKey) != LargeBlobKeySize {
		return ResidentCredential{}, fmt.Errorf("largeBlobKey of %d bytes: %w", len(r.LargeBlobKey), ErrMalformedResponse)
	}
	return ResidentCredential{
		User:              *r.User,
		ID:                *r.CredentialID,
		PublicKey:         r.PublicKey,
		CredProtect:       r.CredProtect,
		LargeBlobKey:      r.LargeBlobKey,
		ThirdPartyPayment: r.ThirdPartyPayment,
	}, nil
}

func credentialDescriptor(id []byte) *CredentialDescriptor {
	return &CredentialDescriptor{Type: CredentialType, ID: id}
}

// DeleteCredential deletes the discoverable credential with this ID (deleteCredential).
func (c *Client) DeleteCredential(ctx context.Context, token *PINToken, id []byte) error {
	if len(id) == 0 {
		return errors.New("deleteCredential: empty credential ID")
	}
	cmd, err := c.credMgmtCommand(ctx)
	if err != nil {
		return err
	}
	if err := c.credMgmt(ctx, cmd, token, CredMgmtDeleteCredential, &CredMgmtParams{CredentialID: credentialDescriptor(id)}, nil); err != nil {
		return fmt.Errorf("deleteCredential: %w", err)
	}
	return nil
}

// UpdateUserInformation replaces the user name and display name stored with a
// discoverable credential (updateUserInformation). user.ID must be the credential's
// user handle. The 0x41 prototype has no such subcommand.
func (c *Client) UpdateUserInformation(ctx context.Context, token *PINToken, id []byte, user UserEntity) error {
	if len(id) == 0 {
		return errors.New("updateUserInformation: empty credential ID")
	}
	if len(user.ID) == 0 || len(user.ID) > MaxUserIDLength {
		return fmt.Errorf("updateUserInformation: user ID of %d bytes, want 1..%d", len(user.ID), MaxUserIDLength)
	}
	cmd, err := c.credMgmtCommand(ctx)
	if err != nil {
		return err
	}
	if cmd == CmdCredentialMgmtPre {
		return fmt.Errorf("updateUserInformation: the authenticator only has the credential management prototype (0x41), which cannot update users: %w", errors.ErrUnsupported)
	}
	params := &CredMgmtParams{CredentialID: credentialDescriptor(id), User: &user}
	if err := c.credMgmt(ctx, cmd, token, CredMgmtUpdateUserInformation, params, nil); err != nil {
		return fmt.Errorf("updateUserInformation: %w", err)
	}
	return nil
}
