package softkey

import (
	"context"
	"crypto"

	"github.com/ctapkit/ctapkit/ctap2"
)

// maxRPIDsForSetMinPINLength is how many RP IDs setMinPINLength may name (getInfo
// 0x10); they are the RPs the minPinLength extension answers.
const maxRPIDsForSetMinPINLength = 8

// configParams is the wire form of ctap2.ConfigRequest, with pointers where CTAP
// tells "absent" from a zero value. SubCommandParams stays raw: pinUvAuthParam
// covers exactly the bytes the platform sent.
type configParams struct {
	SubCommand        *ctap2.ConfigSubcommand `cbor:"1,keyasint"`
	SubCommandParams  ctap2.RawMessage        `cbor:"2,keyasint"`
	PinUvAuthProtocol *uint                   `cbor:"3,keyasint"`
	PinUvAuthParam    []byte                  `cbor:"4,keyasint"`
}

// setMinPINLengthParams is the setMinPINLength subCommandParams map. Key 4
// (pinComplexityPolicy, CTAP 2.3) is not supported and, like any unknown key,
// ignored.
type setMinPINLengthParams struct {
	NewMinPINLength   *uint    `cbor:"1,keyasint"`
	MinPINLengthRPIDs []string `cbor:"2,keyasint"`
	ForceChangePIN    *bool    `cbor:"3,keyasint"`
}

// AuthenticatorConfig answers authenticatorConfig (0x0D) for Go callers. Zero
// fields of req are absent parameters.
func (a *Authenticator) AuthenticatorConfig(ctx context.Context, req *ctap2.ConfigRequest) error {
	if req == nil {
		req = &ctap2.ConfigRequest{}
	}
	p := &configParams{SubCommandParams: req.SubCommandParams, PinUvAuthParam: req.PinUvAuthParam}
	if req.SubCommand != 0 {
		p.SubCommand = &req.SubCommand
	}
	if req.PinUvAuthProtocol != 0 {
		p.PinUvAuthProtocol = &req.PinUvAuthProtocol
	}
	_, err := locked(a, ctx, ctap2.CmdConfig, a.config, p)
	return err
}

// config follows CTAP 2.1 §6.11: an unknown subcommand is INVALID_SUBCOMMAND; a
// protected authenticator (PIN set, built-in UV configured, or alwaysUv on)
// needs a pinUvAuthParam over 32×0xFF || 0x0D || subCommand || subCommandParams
// from a token with the acfg permission, an unprotected one takes the command
// without (a pinUvAuthParam sent anyway is ignored). Every change is durable
// before the reply.
func (a *Authenticator) config(_ context.Context, req *configParams, _ func(byte)) (*struct{}, error) {
	if req.SubCommand == nil {
		return nil, ctap2.ErrMissingParameter
	}
	sub := *req.SubCommand
	var minPIN setMinPINLengthParams
	switch sub {
	case ctap2.ConfigEnableEnterpriseAttestation, ctap2.ConfigToggleAlwaysUV:
	case ctap2.ConfigSetMinPINLength:
		// Absent parameters change nothing: every one of them is optional.
		if req.SubCommandParams != nil {
			if err := decodeParams(req.SubCommandParams, &minPIN); err != nil {
				return nil, err
			}
		}
	default:
		return nil, ctap2.ErrInvalidSubcommand
	}
	if a.protected() {
		msg := ctap2.ConfigAuthMessage(sub, req.SubCommandParams)
		if err := a.verifyPinUvAuthParam(protocolParam(req.PinUvAuthProtocol), req.PinUvAuthParam, msg, ctap2.PermAuthenticatorConfig, ""); err != nil {
			return nil, err
		}
	}
	s, err := a.settings()
	if err != nil {
		return nil, err
	}
	switch sub {
	case ctap2.ConfigEnableEnterpriseAttestation:
		s.EnterpriseAttestation = true
	case ctap2.ConfigToggleAlwaysUV:
		s.AlwaysUV = !s.AlwaysUV
	case ctap2.ConfigSetMinPINLength:
		current := minPINLength(s)
		newMin := current
		if minPIN.NewMinPINLength != nil {
			if *minPIN.NewMinPINLength < uint(current) || *minPIN.NewMinPINLength > ctap2.MaxPINLength {
				return nil, ctap2.ErrPINPolicyViolation // it only grows, until a reset
			}
			newMin = int(*minPIN.NewMinPINLength)
		}
		if len(minPIN.MinPINLengthRPIDs) > maxRPIDsForSetMinPINLength {
			return nil, ctap2.ErrKeyStoreFull
		}
		force := minPIN.ForceChangePIN != nil && *minPIN.ForceChangePIN
		if force && s.PINHash == nil {
			return nil, ctap2.ErrPINNotSet
		}
		s.MinPINLength = newMin
		if s.PINHash != nil && (force || newMin > s.PINCodePoints) {
			s.ForcePINChange = true
		}
		// An empty list leaves the current one alone, as an absent one does.
		if len(minPIN.MinPINLengthRPIDs) > 0 {
			s.MinPINLengthRPIDs = minPIN.MinPINLengthRPIDs
		}
	}
	return nil, a.setSettings(s)
}

// enterpriseAttestation checks makeCredential's enterpriseAttestation parameter
// (CTAP 2.1 §6.1.2): 0 is none; with "ep" disabled any other value is
// INVALID_PARAMETER; with it enabled, 1 (vendor-facilitated) and 2
// (platform-managed) ask for an enterprise attestation, anything else is
// INVALID_OPTION. It reports whether the attestation should be the enterprise one.
// The softkey has no list of RP IDs for vendor-facilitated enterprise attestation:
// it treats 1 like 2, as if every RP were on it.
func enterpriseAttestation(v uint, enabled bool) (bool, error) {
	switch {
	case v == 0:
		return false, nil
	case !enabled:
		return false, ctap2.ErrInvalidParameter
	case v != 1 && v != 2:
		return false, ctap2.ErrInvalidOption
	}
	return true, nil
}

// attestMC is makeCredential's attestation. With enterprise set and a batch key
// configured (Config.BatchKey and BatchCerts, whatever Config.Attestation says) it
// is a packed batch attestation, which identifies the device, and epAtt is true;
// otherwise it is the regular attestation of Config.Attestation and epAtt false
// (the spec's answer when no enterprise attestation can be given).
func (a *Authenticator) attestMC(enterprise bool, alg ctap2.COSEAlgorithm, credKey crypto.Signer, authData, clientDataHash []byte) (format string, attStmt ctap2.RawMessage, epAtt bool, err error) {
	if !enterprise || a.cfg.BatchKey == nil || len(a.cfg.BatchCerts) == 0 {
		format, attStmt, err = a.attest(alg, credKey, authData, clientDataHash)
		return format, attStmt, false, err
	}
	batchAlg, ok := algorithmOf(a.cfg.BatchKey)
	if !ok {
		return "", nil, false, ctap2.ErrOther
	}
	sig, err := ctap2.Sign(batchAlg, a.cfg.BatchKey, concat(authData, clientDataHash), a.signRand)
	if err != nil {
		return "", nil, false, ctap2.ErrOther
	}
	attStmt, err = ctap2.Marshal(ctap2.AttStmt{Alg: batchAlg, Sig: sig, X5C: a.cfg.BatchCerts})
	if err != nil {
		return "", nil, false, ctap2.ErrOther
	}
	return ctap2.FormatPacked, attStmt, true, nil
}
