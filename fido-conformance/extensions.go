package conformance

import (
	"bytes"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Extension cases (CTAP 2.1 §12): credProtect, hmac-secret, credBlob,
// largeBlobKey and minPinLength, each skipped unless getInfo lists it. Cases
// that need user verification use a PIN token, so they set the suite's PIN on a
// key without one (destructive).

func mcExt(t *T, e ctap2.MakeCredentialExtensions) map[string]ctap2.RawMessage {
	m, err := e.Map()
	t.Must("encoding makeCredential extensions", err)
	return m
}

func gaExt(t *T, e ctap2.GetAssertionExtensions) map[string]ctap2.RawMessage {
	m, err := e.Map()
	t.Must("encoding getAssertion extensions", err)
	return m
}

// extOutputs parses the extension outputs of authData; a failure ends the case.
func extOutputs(t *T, what string, authData []byte) *ctap2.ExtensionOutputs {
	ad, err := ctap2.ParseAuthData(authData)
	t.Must(what+": parsing authData", err)
	out, err := ctap2.ParseExtensionOutputs(ad.Extensions)
	if err != nil {
		t.Fatalf("%s: extension outputs: %v", what, err)
	}
	return out
}

// hmacSecret runs getAssertion for the credential id of rpID with hmac-secret
// under protocol p and one or two salts, with user verification (a PIN token)
// when uv, and returns the decrypted outputs.
func hmacSecret(t *T, p ctap2.PINProtocol, rpID string, id []byte, uv bool, salt1, salt2 []byte) (out1, out2 []byte, err error) {
	var tok *ctap2.PINToken
	if uv {
		tok = tokenWith(t, p, ctap2.PermGetAssertion, rpID)
	}
	peer, err := t.Client().KeyAgreement(t.Context(), p)
	t.Must("getKeyAgreement for hmac-secret", err)
	hs, err := ctap2.NewHMACSecret(p, peer, nil)
	t.Must("hmac-secret key agreement", err)
	in, err := hs.Input(salt1, salt2)
	t.Must("hmac-secret input", err)
	req := assertRequest(rpID, id)
	req.Extensions = gaExt(t, ctap2.GetAssertionExtensions{HMACSecret: in})
	if tok != nil {
		tok.ProtectGetAssertion(req)
	}
	resp, err := t.Client().GetAssertion(t.Context(), req)
	if err != nil {
		return nil, nil, err
	}
	what := fmt.Sprintf("getAssertion with hmac-secret (protocol %d, uv %v)", p.Version(), uv)
	if f := flagsOf(t, resp.AuthData); f.Has(ctap2.FlagUV) != uv {
		t.Errorf("%s: observed flags %v, expected UV %v", what, f, uv)
	}
	outs := extOutputs(t, what, resp.AuthData)
	if outs.HMACSecretOutput == nil {
		t.Fatalf("%s: observed no hmac-secret output, expected encrypted outputs", what)
	}
	out1, out2, err = hs.Outputs(outs.HMACSecretOutput)
	if err != nil {
		t.Fatalf("%s: observed outputs that do not decrypt (%v), expected them under the shared secret", what, err)
	}
	return out1, out2, nil
}

// hmacCred makes a non-discoverable credential with hmac-secret for a new RP.
func hmacCred(t *T, prefix string) *testCred {
	t.RequireExtension(ctap2.ExtHMACSecret)
	c := makeTestCred(t, freshRPID(prefix), testUser(prefix), false, mcExt(t, ctap2.MakeCredentialExtensions{HMACSecret: true}))
	if out := extOutputs(t, "makeCredential with hmac-secret", c.resp.AuthData); out.HMACSecret == nil || !*out.HMACSecret {
		t.Errorf("makeCredential with hmac-secret: observed no \"hmac-secret\": true output, expected it")
	}
	return c
}

func init() {
	register(
		Case{ID: "EX-1", Area: AreaExtensions, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §12.1 (credProtect userVerificationRequired)",
			Description: "a credProtect 3 credential is invisible without UV (allowList, discovery, excludeList) and usable with a PIN token",
			Run: func(t *T) {
				t.RequireExtension(ctap2.ExtCredProtect)
				t.EnsurePIN()
				rp := freshRPID("ex1")
				c := makeTestCred(t, rp, testUser("ex1"), true, mcExt(t, ctap2.MakeCredentialExtensions{CredProtect: 3}))
				if out := extOutputs(t, "makeCredential with credProtect 3", c.resp.AuthData); out.CredProtect != 3 {
					t.Errorf("makeCredential with credProtect 3: observed credProtect output %d, expected 3", out.CredProtect)
				}
				_, err := t.Client().GetAssertion(t.Context(), silent(assertRequest(rp, c.id)))
				t.ExpectStatus("getAssertion without UV, credential in the allowList", err, ctap2.ErrNoCredentials)
				_, err = t.Client().GetAssertion(t.Context(), silent(assertRequest(rp)))
				t.ExpectStatus("getAssertion without UV and without allowList", err, ctap2.ErrNoCredentials)
				if notRqd, _ := t.Info().Option("makeCredUvNotRqd"); notRqd {
					req := credRequest(rp, testUser("ex1-other"), false, nil)
					req.ExcludeList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: c.id}}
					_, err = t.Client().MakeCredential(t.Context(), req)
					t.ExpectStatus("makeCredential without UV excluding the credProtect 3 credential", err, ctap2.StatusOK)
				}
				ga := assertRequest(rp, c.id)
				tokenWith(t, pinProtocols(t)[0], ctap2.PermGetAssertion, rp).ProtectGetAssertion(ga)
				resp, err := t.Client().GetAssertion(t.Context(), ga)
				if t.ExpectStatus("getAssertion with a PIN token", err, ctap2.StatusOK) && !bytes.Equal(resp.Credential.ID, c.id) {
					t.Errorf("getAssertion with a PIN token: observed credential %x, expected %x", resp.Credential.ID, c.id)
				}
			}},
		Case{ID: "EX-2", Area: AreaExtensions, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §12.1 (credProtect userVerificationOptionalWithCredentialIDList)",
			Description: "a credProtect 2 credential is not discoverable without UV, but usable from an allowList and discoverable with a PIN token",
			Run: func(t *T) {
				t.RequireExtension(ctap2.ExtCredProtect)
				t.EnsurePIN()
				rp := freshRPID("ex2")
				c := makeTestCred(t, rp, testUser("ex2"), true, mcExt(t, ctap2.MakeCredentialExtensions{CredProtect: 2}))
				if out := extOutputs(t, "makeCredential with credProtect 2", c.resp.AuthData); out.CredProtect != 2 {
					t.Errorf("makeCredential with credProtect 2: observed credProtect output %d, expected 2", out.CredProtect)
				}
				_, err := t.Client().GetAssertion(t.Context(), silent(assertRequest(rp)))
				t.ExpectStatus("getAssertion without UV and without allowList", err, ctap2.ErrNoCredentials)
				_, err = t.Client().GetAssertion(t.Context(), silent(assertRequest(rp, c.id)))
				t.ExpectStatus("getAssertion without UV, credential in the allowList", err, ctap2.StatusOK)
				ga := assertRequest(rp)
				tokenWith(t, pinProtocols(t)[0], ctap2.PermGetAssertion, rp).ProtectGetAssertion(ga)
				resp, err := t.Client().GetAssertion(t.Context(), ga)
				if t.ExpectStatus("getAssertion with a PIN token and without allowList", err, ctap2.StatusOK) && !bytes.Equal(resp.Credential.ID, c.id) {
					t.Errorf("getAssertion with a PIN token: observed credential %x, expected %x", resp.Credential.ID, c.id)
				}
			}},
		Case{ID: "EX-3", Area: AreaExtensions, Presence: true, Requirement: "CTAP 2.1 §12.5 (hmac-secret)",
			Description: "hmac-secret gives the same output for the same salt, different outputs for different salts, under each PIN protocol",
			Run: func(t *T) {
				c := hmacCred(t, "ex3")
				salt1, salt2 := randomBytes(32), randomBytes(32)
				var first []byte
				for _, p := range pinProtocols(t) {
					a1, a2, err := hmacSecret(t, p, c.rpID, c.id, false, salt1, salt2)
					if !t.ExpectStatus(fmt.Sprintf("getAssertion with hmac-secret and two salts (protocol %d)", p.Version()), err, ctap2.StatusOK) {
						continue
					}
					if bytes.Equal(a1, a2) {
						t.Errorf("hmac-secret with two different salts (protocol %d): observed the same output twice, expected different outputs", p.Version())
					}
					b1, b2, err := hmacSecret(t, p, c.rpID, c.id, false, salt1, nil)
					if !t.ExpectStatus(fmt.Sprintf("getAssertion with hmac-secret and one salt (protocol %d)", p.Version()), err, ctap2.StatusOK) {
						continue
					}
					if !bytes.Equal(a1, b1) {
						t.Errorf("hmac-secret for the same salt twice (protocol %d): observed different outputs, expected the same", p.Version())
					}
					if b2 != nil {
						t.Errorf("hmac-secret with one salt (protocol %d): observed two outputs, expected one", p.Version())
					}
					if first == nil {
						first = a1
					} else if !bytes.Equal(first, a1) {
						t.Errorf("hmac-secret for the same salt under protocol %d: observed an output other than under the first protocol, expected the same (outputs do not depend on the protocol)", p.Version())
					}
				}
			}},
		Case{ID: "EX-4", Area: AreaExtensions, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §12.5 (CredRandomWithUV / CredRandomWithoutUV)",
			Description: "hmac-secret gives different outputs for the same salt with and without UV, and the same with UV twice",
			Run: func(t *T) {
				t.RequireExtension(ctap2.ExtHMACSecret)
				t.EnsurePIN()
				c := hmacCred(t, "ex4")
				p := pinProtocols(t)[0]
				salt := randomBytes(32)
				without, _, err := hmacSecret(t, p, c.rpID, c.id, false, salt, nil)
				t.Must("hmac-secret without UV", err)
				with1, _, err := hmacSecret(t, p, c.rpID, c.id, true, salt, nil)
				t.Must("hmac-secret with UV", err)
				with2, _, err := hmacSecret(t, p, c.rpID, c.id, true, salt, nil)
				t.Must("hmac-secret with UV", err)
				if bytes.Equal(without, with1) {
					t.Errorf("hmac-secret for one salt with and without UV: observed the same output, expected different ones")
				}
				if !bytes.Equal(with1, with2) {
					t.Errorf("hmac-secret for one salt with UV twice: observed different outputs, expected the same")
				}
			}},
		Case{ID: "EX-5", Area: AreaExtensions, Presence: true, Requirement: "CTAP 2.1 §12.5 (saltAuth verification)",
			Description: "hmac-secret with a wrong saltAuth is refused with PIN_AUTH_INVALID",
			Run: func(t *T) {
				c := hmacCred(t, "ex5")
				for _, p := range pinProtocols(t) {
					peer, err := t.Client().KeyAgreement(t.Context(), p)
					t.Must("getKeyAgreement", err)
					hs, err := ctap2.NewHMACSecret(p, peer, nil)
					t.Must("hmac-secret key agreement", err)
					in, err := hs.Input(randomBytes(32), nil)
					t.Must("hmac-secret input", err)
					in.SaltAuth[0] ^= 0x01
					req := assertRequest(c.rpID, c.id)
					req.Extensions = gaExt(t, ctap2.GetAssertionExtensions{HMACSecret: in})
					_, err = t.Client().GetAssertion(t.Context(), req)
					t.ExpectStatus(fmt.Sprintf("getAssertion with hmac-secret and a wrong saltAuth (protocol %d)", p.Version()), err, ctap2.ErrPINAuthInvalid)
				}
			}},
		Case{ID: "EX-6", Area: AreaExtensions, Presence: true, Requirement: "CTAP 2.1 §12.2 (credBlob)",
			Description: "a credBlob stored at makeCredential comes back unchanged from getAssertion",
			Run: func(t *T) {
				t.RequireExtension(ctap2.ExtCredBlob)
				maxLen := int(t.Info().MaxCredBlobLength)
				if maxLen < 32 {
					t.Errorf("maxCredBlobLength: observed %d, expected at least 32 with credBlob", maxLen)
				}
				blob := randomBytes(max(min(maxLen, 32), 1))
				rp := freshRPID("ex6")
				c := makeTestCred(t, rp, testUser("ex6"), true, mcExt(t, ctap2.MakeCredentialExtensions{CredBlob: blob}))
				if out := extOutputs(t, "makeCredential with credBlob", c.resp.AuthData); out.CredBlobStored == nil || !*out.CredBlobStored {
					t.Errorf("makeCredential with a %d-byte credBlob: observed no \"credBlob\": true output, expected it", len(blob))
				}
				req := assertRequest(rp, c.id)
				req.Extensions = gaExt(t, ctap2.GetAssertionExtensions{CredBlob: true})
				resp, err := t.Client().GetAssertion(t.Context(), req)
				t.Must("getAssertion with credBlob", err)
				if out := extOutputs(t, "getAssertion with credBlob", resp.AuthData); !bytes.Equal(out.CredBlob, blob) {
					t.Errorf("getAssertion credBlob: observed %x, expected %x", out.CredBlob, blob)
				}
			}},
		Case{ID: "EX-7", Area: AreaExtensions, Presence: true, Requirement: "CTAP 2.1 §12.2 (credBlob longer than maxCredBlobLength)",
			Description: "a credBlob longer than maxCredBlobLength is not stored: output false, and getAssertion returns an empty credBlob",
			Run: func(t *T) {
				t.RequireExtension(ctap2.ExtCredBlob)
				blob := randomBytes(int(t.Info().MaxCredBlobLength) + 1)
				rp := freshRPID("ex7")
				c := makeTestCred(t, rp, testUser("ex7"), true, mcExt(t, ctap2.MakeCredentialExtensions{CredBlob: blob}))
				if out := extOutputs(t, "makeCredential with a long credBlob", c.resp.AuthData); out.CredBlobStored == nil || *out.CredBlobStored {
					t.Errorf("makeCredential with a %d-byte credBlob: observed output %v, expected \"credBlob\": false", len(blob), out.CredBlobStored)
				}
				req := assertRequest(rp, c.id)
				req.Extensions = gaExt(t, ctap2.GetAssertionExtensions{CredBlob: true})
				resp, err := t.Client().GetAssertion(t.Context(), req)
				t.Must("getAssertion with credBlob", err)
				if out := extOutputs(t, "getAssertion with credBlob", resp.AuthData); out.CredBlob == nil || len(out.CredBlob) != 0 {
					t.Errorf("getAssertion credBlob: observed %x (present %v), expected an empty byte string", out.CredBlob, out.CredBlob != nil)
				}
			}},
		Case{ID: "EX-8", Area: AreaExtensions, Presence: true, Requirement: "CTAP 2.1 §12.3 (largeBlobKey), §6.1.2 (0x05), §6.2.2 (0x07)",
			Description: "largeBlobKey gives a discoverable credential a 32-byte key in the response, the same one from getAssertion",
			Run: func(t *T) {
				t.RequireExtension(ctap2.ExtLargeBlobKey)
				rp := freshRPID("ex8")
				c := makeTestCred(t, rp, testUser("ex8"), true, mcExt(t, ctap2.MakeCredentialExtensions{LargeBlobKey: true}))
				key := c.resp.LargeBlobKey
				if len(key) != ctap2.LargeBlobKeySize {
					t.Fatalf("makeCredential largeBlobKey (0x05): observed %d bytes, expected %d", len(key), ctap2.LargeBlobKeySize)
				}
				if out := extOutputs(t, "makeCredential with largeBlobKey", c.resp.AuthData); out.Other[ctap2.ExtLargeBlobKey] != nil {
					t.Errorf("makeCredential authData: observed a largeBlobKey extension output, expected the key only in the response (0x05)")
				}
				req := assertRequest(rp, c.id)
				req.Extensions = gaExt(t, ctap2.GetAssertionExtensions{LargeBlobKey: true})
				resp, err := t.Client().GetAssertion(t.Context(), req)
				t.Must("getAssertion with largeBlobKey", err)
				if !bytes.Equal(resp.LargeBlobKey, key) {
					t.Errorf("getAssertion largeBlobKey (0x07): observed %x, expected the makeCredential one %x", resp.LargeBlobKey, key)
				}
			}},
		Case{ID: "EX-9", Area: AreaExtensions, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §12.4 (minPinLength), §6.11.4 (minPinLengthRPIDs)",
			Description: "minPinLength reports the minimum PIN length to an RP on the setMinPINLength list, and nothing to another",
			Run: func(t *T) {
				t.RequireExtension(ctap2.ExtMinPINLength)
				requireConfig(t)
				t.RequireOption("setMinPINLength")
				if t.Info().MaxRPIDsForSetMinPINLength == 0 {
					t.Skipf("the key takes no RP IDs in setMinPINLength (maxRPIDsForSetMinPINLength absent)")
				}
				t.EnsurePIN()
				listed, other := freshRPID("ex9-listed"), freshRPID("ex9-other")
				// Only the RP list: the minimum itself stays as it is.
				err := t.Client().SetMinPINLength(t.Context(), t.PINToken(ctap2.PermAuthenticatorConfig, ""), 0, []string{listed}, false)
				t.Must("setMinPINLength with minPinLengthRPIDs", err)
				want := max(refreshInfo(t).MinPINLength, ctap2.DefaultMinPINLength)
				ext := mcExt(t, ctap2.MakeCredentialExtensions{MinPINLength: true})
				c := makeTestCred(t, listed, testUser("ex9"), false, ext)
				if out := extOutputs(t, "makeCredential with minPinLength for a listed RP", c.resp.AuthData); out.MinPINLength == nil || *out.MinPINLength != want {
					t.Errorf("minPinLength output for a listed RP: observed %v, expected %d", ptrString(out.MinPINLength), want)
				}
				c = makeTestCred(t, other, testUser("ex9"), false, ext)
				if out := extOutputs(t, "makeCredential with minPinLength for another RP", c.resp.AuthData); out.MinPINLength != nil {
					t.Errorf("minPinLength output for an RP not on the list: observed %d, expected none", *out.MinPINLength)
				}
			}},
	)
}

func ptrString(p *uint) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprint(*p)
}
