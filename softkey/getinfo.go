package softkey

import (
	"context"
	"maps"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
)

// firmwareVersion is reported in getInfo; bump it when the softkey's behaviour
// changes in a way hosts could notice.
const firmwareVersion = 1

// maxCredentialIDLength is advertised in getInfo: above the longest ID the softkey
// makes (a sealed P-384 key with extension data and a full credBlob, 116 bytes), so
// hosts never drop its IDs.
const maxCredentialIDLength = 128

// buildInfo is computed once: getInfo answers never change while a softkey runs,
// except remainingDiscoverableCredentials and the PIN settings (clientPin,
// alwaysUv, forcePINChange, minPINLength), which getInfo fills in per call.
func (a *Authenticator) buildInfo() ctap2.Info {
	info := ctap2.Info{
		Versions:   []string{"FIDO_2_0"}, // staticPINInfo adds FIDO_2_1
		Extensions: slices.Clone(supportedExtensions),
		AAGUID:     a.meta.AAGUID[:],
		Options: map[string]bool{
			"rk":   true,
			"up":   true,
			"plat": false,
		},
		MaxMsgSize:               uint(a.cfg.MaxMsgSize),
		MaxCredentialCountInList: maxCredentialCountInList,
		MaxCredentialIDLength:    maxCredentialIDLength,
		Transports:               a.cfg.Transports,
		FirmwareVersion:          firmwareVersion,
		MaxCredBlobLength:        maxCredBlobLength,
	}
	for _, alg := range a.cfg.Algorithms {
		info.Algorithms = append(info.Algorithms, ctap2.CredentialParam{Type: ctap2.CredentialType, Alg: alg})
	}
	a.staticPINInfo(&info)
	return info
}

// Info answers authenticatorGetInfo. The caller owns the result: nothing in it
// aliases the softkey's own getInfo.
func (a *Authenticator) Info() (*ctap2.Info, error) {
	info, err := locked(a, context.Background(), ctap2.CmdGetInfo, a.getInfo, nil)
	if err != nil {
		return nil, err
	}
	info.Versions = slices.Clone(info.Versions)
	info.Extensions = slices.Clone(info.Extensions)
	info.AAGUID = slices.Clone(info.AAGUID)
	info.Options = maps.Clone(info.Options)
	info.Transports = slices.Clone(info.Transports)
	info.Algorithms = slices.Clone(info.Algorithms)
	info.PinUvAuthProtocols = slices.Clone(info.PinUvAuthProtocols)
	return info, nil
}

func (a *Authenticator) getInfo(context.Context, *struct{}, func(byte)) (*ctap2.Info, error) {
	info := a.info
	if err := a.fillPINInfo(&info); err != nil {
		return nil, err
	}
	n, err := a.st.CountCredentials()
	if err != nil {
		return nil, ctap2.ErrOther
	}
	remaining := uint(max(a.cfg.MaxResidentCredentials-n, 0))
	info.RemainingDiscoverableCredentials = &remaining
	return &info, nil
}
