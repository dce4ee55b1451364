package conformance

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/transport"
)

// U2F cases (FIDO U2F Raw Message Formats v1.2; CTAP 2.1 §11.2.9.1.1 and §10 on
// keys that speak both protocols) drive the key's CTAP1 side through ctap1.Client
// over the target's device, and send hand-made APDUs for the error cases.

// u2fRPID names the application the U2F cases register for: application =
// SHA-256(u2fRPID), so that a CTAP2 request with this RP ID finds the credential.
const u2fRPID = "u2f.conformance.invalid"

// Instruction and class bytes the U2F error cases send: u2fBadINS is not a U2F,
// ISO 7816 or FIDO NFC instruction nor in the U2F vendor range 0x40..0xBF;
// u2fBadCLA is an ISO "reserved for future use" class (not 0x80, which NFC uses
// for CTAP2, nor 0xFF, which PC/SC readers take for themselves).
const (
	u2fBadINS byte = 0x3E
	u2fBadCLA byte = 0x70
)

// u2fClient skips the case unless the key speaks U2F: getInfo (asked again, since
// alwaysUv switches U2F off) lists U2F_V2, as a U2F-only key's synthetic info does.
func u2fClient(t *T) *ctap1.Client {
	info, err := t.Client().GetInfo(t.Context())
	t.Must("getInfo", err)
	if !info.HasVersion(ctap1.Version) {
		t.Skipf("the key does not list U2F_V2 in getInfo versions")
	}
	var opts []ctap1.ClientOption
	if _, nfc := t.Target().Device.(APDUTransmitter); nfc {
		opts = append(opts, ctap1.WithShortAPDUs())
	}
	return ctap1.NewClient(t.Target().Device, opts...)
}

// u2fRequireCTAP2 skips the case unless the key also speaks CTAP2.
func u2fRequireCTAP2(t *T) {
	info := t.Info()
	if !info.HasVersion("FIDO_2_0") && !info.HasVersion("FIDO_2_1") {
		t.Skipf("the key speaks only U2F (no FIDO_2_x in getInfo versions)")
	}
}

// u2fRegistration is a REGISTER the case made, with its request.
type u2fRegistration struct {
	req  *ctap1.RegisterRequest
	resp *ctap1.RegisterResponse
	key  *ctap2.COSEKey
}

// u2fRegister registers a new key pair for u2fRPID, waiting for a touch.
func u2fRegister(t *T, c *ctap1.Client) *u2fRegistration {
	req := &ctap1.RegisterRequest{Challenge: [32]byte(hidRandom(32)), Application: ctap2.RPIDHash(u2fRPID)}
	resp, err := c.Register(t.Context(), req)
	t.Must("U2F REGISTER", err)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), resp.PublicKey)
	if err != nil {
		t.Fatalf("U2F REGISTER public key: %v", err)
	}
	return &u2fRegistration{req: req, resp: resp, key: &ctap2.COSEKey{Alg: ctap2.AlgES256, Public: pub}}
}

// u2fRaw sends a hand-made APDU over CTAPHID_MSG (or the NFC transport) and
// returns the status word.
func u2fRaw(t *T, apdu []byte) ctap1.StatusWord {
	reply, err := t.Target().Device.Transact(t.Context(), transport.CmdMsg, apdu)
	t.Must(fmt.Sprintf("sending APDU % X", apdu[:min(len(apdu), 4)]), err)
	_, sw, err := ctap1.ParseResponse(reply)
	t.Must("U2F response", err)
	return sw
}

// u2fExpectSW fails the case unless got is want.
func u2fExpectSW(t *T, what string, got, want ctap1.StatusWord) bool {
	if got != want {
		t.Errorf("%s: observed 0x%04X, expected 0x%04X (%v)", what, uint16(got), uint16(want), want)
		return false
	}
	return true
}

// u2fSW is the status word in err, or 0x9000 for nil.
func u2fSW(err error) ctap1.StatusWord {
	var sw ctap1.StatusWord
	if err == nil {
		return ctap1.SWNoError
	}
	if errors.As(err, &sw) {
		return sw
	}
	return 0
}

// u2fCheckOnly sends AUTHENTICATE check-only and returns the status word.
func u2fCheckOnly(t *T, c *ctap1.Client, app [32]byte, keyHandle []byte) ctap1.StatusWord {
	req := ctap1.AuthenticateRequest{Control: ctap1.CheckOnly, Application: app, KeyHandle: keyHandle}
	data, err := req.Marshal()
	t.Must("encoding AUTHENTICATE", err)
	_, sw, err := c.Transmit(t.Context(), ctap1.InsAuthenticate, byte(ctap1.CheckOnly), 0, data)
	t.Must("U2F AUTHENTICATE check-only", err)
	return sw
}

// u2fAuthenticate signs with enforce-user-presence and verifies the signature.
func u2fAuthenticate(t *T, c *ctap1.Client, keyHandle []byte, key *ctap2.COSEKey) *ctap1.AuthenticateResponse {
	req := &ctap1.AuthenticateRequest{Control: ctap1.EnforcePresence, Challenge: [32]byte(hidRandom(32)),
		Application: ctap2.RPIDHash(u2fRPID), KeyHandle: keyHandle}
	resp, err := c.Authenticate(t.Context(), req)
	t.Must("U2F AUTHENTICATE enforce-user-presence", err)
	if resp.UserPresence != 0x01 {
		t.Errorf("user presence byte: observed 0x%02x, expected 0x01", resp.UserPresence)
	}
	signed := ctap1.AuthenticateSignedData(req.Application, resp.UserPresence, resp.Counter, req.Challenge)
	if err := key.Verify(signed, resp.Signature); err != nil {
		t.Errorf("AUTHENTICATE signature: observed one that does not verify with the credential's key (%v), expected a valid one", err)
	}
	return resp
}

func init() {
	register(
		Case{ID: "U2F-1", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (GetVersion)",
			Description: "VERSION answers U2F_V2",
			Run: func(t *T) {
				c := u2fClient(t)
				v, err := c.Version(t.Context())
				t.Must("U2F VERSION", err)
				if v != ctap1.Version {
					t.Errorf("VERSION: observed %q, expected %q", v, ctap1.Version)
				}
			}},
		Case{ID: "U2F-2", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (registration); WebAuthn §8.6 fido-u2f",
			Description: "REGISTER returns a key pair whose fido-u2f attestation signature verifies",
			Presence:    true,
			Run: func(t *T) {
				c := u2fClient(t)
				r := u2fRegister(t, c)
				if err := r.resp.Verify(r.req); err != nil {
					t.Errorf("REGISTER attestation: observed %v, expected a signature that verifies with the certificate", err)
				}
				mc, err := r.resp.MakeCredentialResponse(r.req.Application)
				t.Must("converting the registration", err)
				if _, err := ctap2.VerifyAttestation(mc.Fmt, mc.AttStmt, mc.AuthData, r.req.Challenge[:]); err != nil {
					t.Errorf("fido-u2f attestation: observed %v, expected it to verify", err)
				}
				t.Logf("key handle of %d bytes, certificate of %d bytes", len(r.resp.KeyHandle), len(r.resp.Certificate))
			}},
		Case{ID: "U2F-3", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (check-only)",
			Description: "AUTHENTICATE check-only with the key's own key handle answers 0x6985",
			Presence:    true,
			Run: func(t *T) {
				c := u2fClient(t)
				r := u2fRegister(t, c)
				u2fExpectSW(t, "check-only with the key's own key handle", u2fCheckOnly(t, c, r.req.Application, r.resp.KeyHandle), ctap1.SWConditionsNotSatisfied)
			}},
		Case{ID: "U2F-4", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (check-only)",
			Description: "AUTHENTICATE check-only with a foreign key handle answers 0x6A80",
			Run: func(t *T) {
				c := u2fClient(t)
				u2fExpectSW(t, "check-only with a random 64-byte key handle", u2fCheckOnly(t, c, ctap2.RPIDHash(u2fRPID), hidRandom(64)), ctap1.SWWrongData)
			}},
		Case{ID: "U2F-5", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (authentication)",
			Description: "AUTHENTICATE enforce-user-presence signs with the registered key, and the counter increases",
			Presence:    true,
			Run: func(t *T) {
				c := u2fClient(t)
				r := u2fRegister(t, c)
				first := u2fAuthenticate(t, c, r.resp.KeyHandle, r.key)
				second := u2fAuthenticate(t, c, r.resp.KeyHandle, r.key)
				t.Logf("counters %d, %d", first.Counter, second.Counter)
				if second.Counter <= first.Counter {
					t.Errorf("counter: observed %d after %d, expected it to increase", second.Counter, first.Counter)
				}
			}},
		Case{ID: "U2F-6", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (authentication)",
			Description: "AUTHENTICATE with the key handle under another application answers 0x6A80",
			Presence:    true,
			Run: func(t *T) {
				c := u2fClient(t)
				r := u2fRegister(t, c)
				other := ctap2.RPIDHash("other." + u2fRPID)
				u2fExpectSW(t, "check-only under another application", u2fCheckOnly(t, c, other, r.resp.KeyHandle), ctap1.SWWrongData)
				_, err := c.Authenticate(t.Context(), &ctap1.AuthenticateRequest{Control: ctap1.EnforcePresence,
					Challenge: [32]byte(hidRandom(32)), Application: other, KeyHandle: r.resp.KeyHandle})
				u2fExpectSW(t, "enforce-user-presence under another application", u2fSW(err), ctap1.SWWrongData)
			}},
		Case{ID: "U2F-7", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (status codes)",
			Description: "a command with a class byte other than 0 answers 0x6E00",
			Run: func(t *T) {
				u2fClient(t)
				apdu, err := ctap1.HIDCommand(ctap1.InsVersion, 0, 0, nil)
				t.Must("encoding VERSION", err)
				apdu[0] = u2fBadCLA
				u2fExpectSW(t, fmt.Sprintf("VERSION with CLA 0x%02X", u2fBadCLA), u2fRaw(t, apdu), ctap1.SWClaNotSupported)
			}},
		Case{ID: "U2F-8", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (status codes)",
			Description: "an unknown instruction answers 0x6D00",
			Run: func(t *T) {
				u2fClient(t)
				apdu, err := ctap1.HIDCommand(u2fBadINS, 0, 0, nil)
				t.Must("encoding the command", err)
				u2fExpectSW(t, fmt.Sprintf("INS 0x%02X", u2fBadINS), u2fRaw(t, apdu), ctap1.SWInsNotSupported)
			}},
		Case{ID: "U2F-9", Area: AreaU2F, Requirement: "U2F Raw Message Formats v1.2 (registration request, status codes)",
			Description: "REGISTER with 63 bytes of data instead of 64 answers 0x6700",
			Run: func(t *T) {
				u2fClient(t)
				apdu, err := ctap1.HIDCommand(ctap1.InsRegister, 0, 0, hidRandom(63))
				t.Must("encoding REGISTER", err)
				u2fExpectSW(t, "REGISTER of 63 bytes", u2fRaw(t, apdu), ctap1.SWWrongLength)
			}},
		Case{ID: "U2F-10", Area: AreaU2F, Requirement: "CTAP 2.1 §10 (interoperating with CTAP1/U2F)",
			Description: "a U2F-registered key handle works in a CTAP2 getAssertion allowList, signing with the U2F key",
			Presence:    true,
			Run: func(t *T) {
				c := u2fClient(t)
				u2fRequireCTAP2(t)
				r := u2fRegister(t, c)
				cdh := hidRandom(32)
				ga, err := t.Client().GetAssertion(t.Context(), &ctap2.GetAssertionRequest{RPID: u2fRPID, ClientDataHash: cdh,
					AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: r.resp.KeyHandle}}})
				t.Must("getAssertion with the U2F key handle", err)
				if !bytes.Equal(ga.Credential.ID, r.resp.KeyHandle) {
					t.Errorf("credential: observed another ID, expected the U2F key handle")
				}
				ad, err := ga.ParseAuthData()
				t.Must("parsing authData", err)
				if ad.RPIDHash != r.req.Application {
					t.Errorf("rpIdHash: observed %x, expected the U2F application %x", ad.RPIDHash, r.req.Application)
				}
				if !ad.Flags.Has(ctap2.FlagUP) {
					t.Errorf("flags %v: observed no UP, expected UP", ad.Flags)
				}
				if err := ga.Verify(r.key, cdh); err != nil {
					t.Errorf("assertion signature: observed %v, expected it to verify with the U2F public key", err)
				}
			}},
		Case{ID: "U2F-11", Area: AreaU2F, Requirement: "CTAP 2.1 §10 (interoperating with CTAP1/U2F)",
			Description: "a non-discoverable CTAP2 ES256 credential works through U2F AUTHENTICATE",
			Presence:    true,
			Run: func(t *T) {
				c := u2fClient(t)
				u2fRequireCTAP2(t)
				mc, err := t.Client().MakeCredential(t.Context(), &ctap2.MakeCredentialRequest{
					ClientDataHash:   hidRandom(32),
					RP:               &ctap2.RPEntity{ID: u2fRPID},
					User:             &ctap2.UserEntity{ID: hidRandom(16), Name: "u2f"},
					PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
					Options:          &ctap2.Options{RK: ctap2.Bool(false)},
				})
				if errors.Is(err, ctap2.ErrPUATRequired) {
					t.Skipf("makeCredential without user verification: %s (the key needs a PIN token)", statusName(err))
				}
				t.Must("makeCredential (ES256, rk false)", err)
				id, key, err := mc.CredentialKey()
				t.Must("reading the credential", err)
				if key.Alg != ctap2.AlgES256 {
					t.Fatalf("credential algorithm: observed %v, expected ES256", key.Alg)
				}
				if len(id) > ctap1.MaxKeyHandleSize {
					t.Skipf("the credential ID of %d bytes does not fit a U2F key handle", len(id))
				}
				u2fExpectSW(t, "check-only with the CTAP2 credential ID", u2fCheckOnly(t, c, ctap2.RPIDHash(u2fRPID), id), ctap1.SWConditionsNotSatisfied)
				u2fAuthenticate(t, c, id, key)
			}},
	)
}
