package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
)

func (a *app) infoCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "info",
		Short:   "Show what a key supports (authenticatorGetInfo)",
		Example: "  ctapkit -d soft:mem info\n  ctapkit info --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, s, done, err := a.beginSession(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			info, err := s.client.GetInfo(ctx)
			if err != nil {
				return fmt.Errorf("info: %w", err)
			}
			out := newInfoJSON(info, s.dev.Info().URI, s.dev.Info().Transport)
			out.U2FOnly = s.client.U2FOnly(ctx)
			if a.json {
				return writeJSON(a.io.Out, out)
			}
			return writeInfoHuman(a.io.Out, out)
		},
	}
}

type algJSON struct {
	Type string `json:"type"`
	Alg  int    `json:"alg"`
}

// infoJSON is getInfo with the spec's field names (CTAP 2.1 §6.4); the AAGUID as a UUID.
type infoJSON struct {
	Device                           string          `json:"device"`
	Transport                        string          `json:"transport"`
	Versions                         []string        `json:"versions"`
	Extensions                       []string        `json:"extensions"`
	AAGUID                           string          `json:"aaguid"`
	Options                          map[string]bool `json:"options"`
	MaxMsgSize                       int             `json:"maxMsgSize"`
	PinUvAuthProtocols               []uint          `json:"pinUvAuthProtocols"`
	MaxCredentialCountInList         uint            `json:"maxCredentialCountInList,omitempty"`
	MaxCredentialIDLength            uint            `json:"maxCredentialIdLength,omitempty"`
	Transports                       []string        `json:"transports"`
	Algorithms                       []algJSON       `json:"algorithms"`
	MaxSerializedLargeBlobArray      uint            `json:"maxSerializedLargeBlobArray,omitempty"`
	ForcePINChange                   bool            `json:"forcePINChange"`
	MinPINLength                     uint            `json:"minPINLength"`
	FirmwareVersion                  uint            `json:"firmwareVersion,omitempty"`
	MaxCredBlobLength                uint            `json:"maxCredBlobLength,omitempty"`
	RemainingDiscoverableCredentials *uint           `json:"remainingDiscoverableCredentials,omitempty"`
	// U2FOnly: the key speaks only CTAP1/U2F; the rest describes what it offers
	// through the U2F fallback.
	U2FOnly bool `json:"u2fOnly,omitempty"`
}

func newInfoJSON(i *ctap2.Info, uri, transport string) *infoJSON {
	out := &infoJSON{
		Device: uri, Transport: transport,
		Versions: i.Versions, Extensions: nonNil(i.Extensions), AAGUID: uuid(i.AAGUID),
		Options: i.Options, MaxMsgSize: i.MessageSize(), PinUvAuthProtocols: nonNil(i.PinUvAuthProtocols),
		MaxCredentialCountInList: i.MaxCredentialCountInList, MaxCredentialIDLength: i.MaxCredentialIDLength,
		Transports: nonNil(i.Transports), Algorithms: []algJSON{},
		MaxSerializedLargeBlobArray: i.MaxSerializedLargeBlobArray, ForcePINChange: i.ForcePINChange,
		MinPINLength: i.MinPINLength, FirmwareVersion: i.FirmwareVersion, MaxCredBlobLength: i.MaxCredBlobLength,
		RemainingDiscoverableCredentials: i.RemainingDiscoverableCredentials,
	}
	if out.Options == nil {
		out.Options = map[string]bool{}
	}
	if out.MinPINLength == 0 {
		out.MinPINLength = ctap2.DefaultMinPINLength
	}
	for _, p := range i.Algorithms {
		out.Algorithms = append(out.Algorithms, algJSON{Type: p.Type, Alg: int(p.Alg)})
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeInfoHuman(w io.Writer, i *infoJSON) error {
	var algs []string
	for _, p := range i.Algorithms {
		algs = append(algs, ctap2.COSEAlgorithm(p.Alg).String())
	}
	var protos []string
	for _, p := range i.PinUvAuthProtocols {
		protos = append(protos, fmt.Sprint(p))
	}
	rows := []row{
		{"Device", i.Device},
		{"Versions", strings.Join(i.Versions, ", ")},
		{"AAGUID", i.AAGUID},
		{"Options", optionList(i.Options)},
		{"Algorithms", strings.Join(algs, ", ")},
		{"Extensions", orNone(strings.Join(i.Extensions, ", "))},
		{"Transports", orNone(strings.Join(i.Transports, ", "))},
		{"PIN protocols", orNone(strings.Join(protos, ", "))},
	}
	if !i.U2FOnly { // U2F messages have fixed sizes; the CTAP2 limit means nothing here
		rows = append(rows, row{"Max message size", fmt.Sprint(i.MaxMsgSize)})
	}
	if i.RemainingDiscoverableCredentials != nil {
		rows = append(rows, row{"Free passkey slots", fmt.Sprint(*i.RemainingDiscoverableCredentials)})
	}
	if i.FirmwareVersion != 0 {
		rows = append(rows, row{"Firmware", fmt.Sprint(i.FirmwareVersion)})
	}
	if i.U2FOnly {
		rows = append(rows, row{"Note", u2fOnlyNote})
	}
	return writeTable(w, rows)
}

// u2fOnlyNote explains what works with a U2F-only key.
const u2fOnlyNote = "U2F-only key (CTAP1, no CTAP2): make-credential and get-assertion work through U2F\n" +
	"(ES256, non-discoverable credentials with --cred, no PIN or UV, no extensions, fido-u2f attestation)"

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
