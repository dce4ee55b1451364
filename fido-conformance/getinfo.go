package conformance

import (
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
)

func init() {
	register(
		Case{ID: "GI-1", Area: AreaGetInfo, Requirement: "CTAP 2.1 §6.4",
			Description: "getInfo answers with versions that include FIDO_2_0 or FIDO_2_1",
			Run: func(t *T) {
				info, err := t.Client().GetInfo(t.Context())
				t.Must("getInfo", err)
				if !info.HasVersion("FIDO_2_0") && !info.HasVersion("FIDO_2_1") {
					t.Errorf("versions %v: observed no FIDO_2_0/FIDO_2_1, expected at least one", info.Versions)
				}
			}},
		Case{ID: "GI-2", Area: AreaGetInfo, Requirement: "CTAP 2.1 §6.4 (0x03)",
			Description: "the AAGUID is 16 bytes",
			Run: func(t *T) {
				if n := len(t.Info().AAGUID); n != 16 {
					t.Errorf("aaguid: observed %d bytes, expected 16", n)
				}
			}},
		Case{ID: "GI-3", Area: AreaGetInfo, Requirement: "CTAP 2.1 §6.4 (0x05)",
			Description: "maxMsgSize, when given, is at least 1024",
			Run: func(t *T) {
				if m := t.Info().MaxMsgSize; m != 0 && m < ctap2.DefaultMaxMsgSize {
					t.Errorf("maxMsgSize: observed %d, expected at least %d", m, ctap2.DefaultMaxMsgSize)
				}
			}},
		Case{ID: "GI-4", Area: AreaGetInfo, Requirement: "CTAP 2.1 §6.4 (0x06), §6.5",
			Description: "a key with clientPin lists PIN/UV auth protocols, each 1 or 2",
			Run: func(t *T) {
				info := t.Info()
				if _, ok := info.Options["clientPin"]; !ok {
					t.Skipf("no clientPin option")
				}
				if len(info.PinUvAuthProtocols) == 0 {
					t.Errorf("pinUvAuthProtocols: observed none, expected at least one with clientPin")
				}
				for _, p := range info.PinUvAuthProtocols {
					if p != 1 && p != 2 {
						t.Errorf("pinUvAuthProtocols: observed %d, expected 1 or 2", p)
					}
				}
			}},
		Case{ID: "GI-5", Area: AreaGetInfo, Requirement: "CTAP 2.1 §6.4 (0x0A)",
			Description: "algorithms, when given, are public-key entries and include ES256",
			Run: func(t *T) {
				algs := t.Info().Algorithms
				if len(algs) == 0 {
					t.Skipf("no algorithms list (ES256 is then assumed)")
				}
				for _, a := range algs {
					if a.Type != ctap2.CredentialType {
						t.Errorf("algorithm type: observed %q, expected %q", a.Type, ctap2.CredentialType)
					}
				}
				if !slices.ContainsFunc(algs, func(p ctap2.CredentialParam) bool { return p.Alg == ctap2.AlgES256 }) {
					t.Errorf("algorithms: observed no ES256, expected it (every FIDO2 key supports it)")
				}
			}},
		Case{ID: "GI-6", Area: AreaGetInfo, Requirement: "CTAP 2.1 §6.4 (FIDO_2_1 requirements)",
			Description: "a FIDO_2_1 key with clientPin supports pinUvAuthToken and protocol 2",
			Run: func(t *T) {
				t.RequireVersion("FIDO_2_1")
				info := t.Info()
				if _, ok := info.Options["clientPin"]; !ok {
					t.Skipf("no clientPin option")
				}
				if v, _ := info.Option("pinUvAuthToken"); !v {
					t.Errorf("pinUvAuthToken option: observed absent/false, expected true for FIDO_2_1")
				}
				if !slices.Contains(info.PinUvAuthProtocols, 2) {
					t.Errorf("pinUvAuthProtocols %v: observed no 2, expected protocol 2 for FIDO_2_1", info.PinUvAuthProtocols)
				}
			}},
		Case{ID: "GI-7", Area: AreaGetInfo, Requirement: "CTAP 2.1 §6.4 (0x14)",
			Description: "remainingDiscoverableCredentials, when given, matches credential metadata",
			Run: func(t *T) {
				info := t.Info()
				if info.RemainingDiscoverableCredentials == nil {
					t.Skipf("no remainingDiscoverableCredentials")
				}
				if set, _ := info.Option("clientPin"); !set {
					t.Skipf("credential metadata needs a PIN, and the key has none yet (CM-1 checks this once destructive cases set one)")
				}
				tok := t.PINToken(ctap2.PermCredentialManagement, "")
				md, err := t.Client().CredsMetadata(t.Context(), tok)
				t.Must("getCredsMetadata", err)
				if got, want := *info.RemainingDiscoverableCredentials, md.MaxRemaining; got != want {
					t.Errorf("remainingDiscoverableCredentials: observed %d, expected %d (credMgmt metadata)", got, want)
				}
			}},
	)
}
