package softkey

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"io"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// MakeCredential answers authenticatorMakeCredential for Go callers; errors are
// ctap2.StatusError values.
func (a *Authenticator) MakeCredential(ctx context.Context, req *ctap2.MakeCredentialRequest) (*ctap2.MakeCredentialResponse, error) {
	return locked(a, ctx, ctap2.CmdMakeCredential, a.makeCredential, req)
}

// makeCredential follows CTAP 2.1 §6.1.2 in its order, so that a request with
// several faults gets the status a real key would give.
func (a *Authenticator) makeCredential(ctx context.Context, req *ctap2.MakeCredentialRequest, status func(byte)) (*ctap2.MakeCredentialResponse, error) {
	switch {
	case req.ClientDataHash == nil || req.RP == nil || req.User == nil || req.PubKeyCredParams == nil:
		return nil, ctap2.ErrMissingParameter
	case req.RP.ID == "" || req.User.ID == nil:
		return nil, ctap2.ErrMissingParameter
	case len(req.ClientDataHash) != 32:
		return nil, ctap2.ErrInvalidParameter
	case len(req.User.ID) == 0 || len(req.User.ID) > ctap2.MaxUserIDLength:
		return nil, ctap2.ErrInvalidLength
	}
	ext, err := parseMCExtensions(req.Extensions) // malformed inputs fail like decoding
	if err != nil {
		return nil, err
	}
	if err := a.pinUvAuthProbe(ctx, req.PinUvAuthParam, req.PinUvAuthProtocol, req.RP.ID, status); err != nil {
		return nil, err
	}
	alg, err := a.chooseAlgorithm(req.PubKeyCredParams)
	if err != nil {
		return nil, err
	}
	rk, uv, err := a.checkOptions(req.Options, true, req.PinUvAuthParam != nil)
	if err != nil {
		return nil, err
	}
	s, err := a.settings()
	if err != nil {
		return nil, err
	}
	protected := uvProtected(a, s)
	uvNotRequired := true // makeCredUvNotRqd
	if s.AlwaysUV {       // step 5
		uvNotRequired = false
		if uv, err = a.alwaysUV(protected, req.PinUvAuthParam, uv); err != nil {
			return nil, err
		}
	}
	// Step 6: a protected authenticator makes discoverable credentials only for a
	// verified user; non-discoverable ones need no UV (makeCredUvNotRqd).
	if protected && !uv && req.PinUvAuthParam == nil && !(uvNotRequired && !rk) {
		return nil, ctap2.ErrPUATRequired
	}
	enterprise, err := enterpriseAttestation(req.EnterpriseAttestation, s.EnterpriseAttestation) // config.go
	if err != nil {
		return nil, err
	}
	// Step 8: the token or built-in UV.
	verified, present, err := a.verifyUser(protected, req.PinUvAuthParam, req.PinUvAuthProtocol, req.ClientDataHash,
		ctap2.PermMakeCredential, req.RP.ID, uv)
	if err != nil {
		return nil, err
	}

	rpIDHash := ctap2.RPIDHash(req.RP.ID)
	for _, d := range req.ExcludeList {
		c, err := a.lookup(rpIDHash, d)
		if err != nil {
			return nil, err
		}
		// credProtect 3 credentials are invisible here without UV (§12.1).
		if c != nil && c.usable(verified&ctap2.FlagUV != 0 || a.cfg.Faults.ignoreCredProtect(), true) {
			// The touch is collected so a host cannot probe silently, then the answer
			// is EXCLUDED whatever the user did (step 9).
			if !present {
				if err := a.userPresence(ctx, req.RP.ID, status); errors.Is(err, ctap2.ErrKeepaliveCancel) {
					return nil, err
				}
			}
			return nil, ctap2.ErrCredentialExcluded
		}
	}
	// Step 10: the touch, unless built-in UV or the token's userPresent flag
	// already stood for it; then the token cannot serve another mc/ga.
	if !present {
		if err := a.userPresence(ctx, req.RP.ID, status); err != nil {
			return nil, err
		}
	}
	a.pin.token.clearAfterPresence()
	if rk {
		if err := a.checkCapacity(rpIDHash, req.User.ID); err != nil {
			return nil, err
		}
	}
	// Step 11, before anything is stored: a bad hmac-secret-mc input fails here.
	newExt, err := a.processMCExtensions(ext, req.RP.ID, rk, s)
	if err != nil {
		return nil, err
	}

	key, err := ctap2.GenerateKey(alg, a.rnd)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	var credID []byte
	if rk {
		credID, err = a.storeResident(req, rpIDHash, alg, key, newExt)
	} else {
		credID, err = a.sealKeyWith(rpIDHash, alg, key, newExt.sealed())
	}
	if err != nil {
		return nil, err
	}
	pub, err := (&ctap2.COSEKey{Alg: alg, Public: key.Public()}).Marshal()
	if err != nil {
		return nil, ctap2.ErrOther
	}
	outputs, err := a.mcOutputs(newExt, credID, verified&ctap2.FlagUV != 0)
	if err != nil {
		return nil, err
	}
	count, err := a.counter.next()
	if err != nil {
		return nil, ctap2.ErrOther
	}
	authData := (&ctap2.AuthData{
		RPIDHash:   rpIDHash,
		Flags:      ctap2.FlagUP | verified,
		SignCount:  count,
		Attested:   &ctap2.AttestedCredentialData{AAGUID: a.meta.AAGUID, CredentialID: credID, PublicKey: pub},
		Extensions: outputs,
	}).Marshal()
	format, attStmt, epAtt, err := a.attestMC(enterprise, alg, key, authData, req.ClientDataHash)
	if err != nil {
		return nil, err
	}
	return &ctap2.MakeCredentialResponse{Fmt: format, AuthData: authData, AttStmt: attStmt, EpAtt: epAtt, LargeBlobKey: newExt.largeBlobKey}, nil
}

// chooseAlgorithm picks the first entry of the RP's list the softkey can make
// (step 3); entries of other credential types are skipped.
func (a *Authenticator) chooseAlgorithm(params []ctap2.CredentialParam) (ctap2.COSEAlgorithm, error) {
	for _, p := range params {
		if p.Type != ctap2.CredentialType {
			continue
		}
		if slices.Contains(a.cfg.Algorithms, p.Alg) {
			return p.Alg, nil
		}
	}
	return 0, ctap2.ErrUnsupportedAlgorithm
}

// checkOptions applies the option rules of makeCredential (mc) or getAssertion
// (steps 4 and 3) and returns rk and uv. uv is ignored when the request has a
// pinUvAuthParam (withParam); uv=true needs configured built-in UV, else
// INVALID_OPTION.
func (a *Authenticator) checkOptions(o *ctap2.Options, mc, withParam bool) (rk, uv bool, err error) {
	if o == nil {
		return false, false, nil
	}
	if o.UV != nil && *o.UV && !withParam {
		if !a.uvConfigured() {
			return false, false, ctap2.ErrInvalidOption
		}
		uv = true
	}
	if mc {
		if o.UP != nil && !*o.UP {
			return false, false, ctap2.ErrInvalidOption
		}
		return o.RK != nil && *o.RK, uv, nil
	}
	if o.RK != nil {
		return false, false, ctap2.ErrUnsupportedOption
	}
	return false, uv, nil
}

// checkCapacity refuses a new discoverable credential when the store is full,
// unless it replaces the account's existing one.
func (a *Authenticator) checkCapacity(rpIDHash [32]byte, userID []byte) error {
	n, err := a.st.CountCredentials()
	if err != nil {
		return ctap2.ErrOther
	}
	if n < a.cfg.MaxResidentCredentials {
		return nil
	}
	existing, err := a.st.CredentialsByRP(rpIDHash)
	if err != nil {
		return ctap2.ErrOther
	}
	for _, c := range existing {
		if slices.Equal(c.User.ID, userID) {
			return nil
		}
	}
	return ctap2.ErrKeyStoreFull
}

// sealKey makes the ID of a non-resident credential: its key, sealed to the RP.
func (a *Authenticator) sealKey(rpIDHash [32]byte, alg ctap2.COSEAlgorithm, key crypto.Signer) ([]byte, error) {
	return a.sealKeyWith(rpIDHash, alg, key, sealedExtensions{})
}

// sealKeyWith is sealKey for a credential with extension data.
func (a *Authenticator) sealKeyWith(rpIDHash [32]byte, alg ctap2.COSEAlgorithm, key crypto.Signer, ext sealedExtensions) ([]byte, error) {
	raw, err := rawPrivateKey(key)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	id, err := a.sealer.seal(rpIDHash, alg, raw, ext)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	return id, nil
}

// storeResident saves a discoverable credential under a random handle. The write
// is durable before the reply leaves, so an acknowledged passkey survives a crash.
func (a *Authenticator) storeResident(req *ctap2.MakeCredentialRequest, rpIDHash [32]byte, alg ctap2.COSEAlgorithm, key crypto.Signer, ext *newCredExtensions) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	id := make([]byte, residentIDSize)
	id[0] = credIDResident
	if _, err := io.ReadFull(a.rnd, id[1:]); err != nil {
		return nil, ctap2.ErrOther
	}
	c := &store.Credential{
		ID:         id,
		RPID:       req.RP.ID,
		RPName:     req.RP.Name,
		RPIDHash:   rpIDHash,
		User:       *req.User,
		Alg:        alg,
		PrivateKey: der,
		Created:    a.cfg.Now().UTC(),
	}
	ext.apply(c)
	if err := a.st.PutCredential(c); err != nil {
		return nil, ctap2.ErrOther
	}
	return id, nil
}
