package conformance

import (
	"bytes"
	"crypto/sha256"

	"github.com/ctapkit/ctapkit/ctap2"
)

// credMgmt cases (CTAP 2.1 §6.8). They need a cm token, so a PIN the suite
// knows; they touch only discoverable credentials they make themselves, for RP
// IDs of their own, and delete them when they end.

// cmCommand skips the case unless the key has credential management and
// returns its command: 0x0A, or the 0x41 prototype of 2.1-PRE keys.
func cmCommand(t *T) ctap2.Command {
	info := t.Info()
	if v, _ := info.Option("credMgmt"); v {
		return ctap2.CmdCredentialManagement
	}
	if v, _ := info.Option("credentialMgmtPreview"); v {
		return ctap2.CmdCredentialMgmtPre
	}
	t.Skipf("the key does not support credential management (no credMgmt or credentialMgmtPreview option)")
	return 0
}

// cmToken is a cm token with the suite's PIN (the case skips without one).
func cmToken(t *T, rpID string) *ctap2.PINToken {
	return t.PINToken(ctap2.PermCredentialManagement, rpID)
}

// cmRaw sends one credentialManagement subcommand as a platform builds it,
// authenticated with tok unless nil, params encoded once (nil: none).
func cmRaw(t *T, cmd ctap2.Command, tok *ctap2.PINToken, sub ctap2.CredMgmtSubcommand, params *ctap2.CredMgmtParams, resp *ctap2.CredMgmtResponse) error {
	req := ctap2.CredMgmtRequest{SubCommand: sub}
	if params != nil {
		enc, err := ctap2.Marshal(params)
		t.Must("encoding subCommandParams", err)
		req.SubCommandParams = enc
	}
	if tok != nil {
		req.PinUvAuthProtocol = tok.Protocol.Version()
		req.PinUvAuthParam = tok.Param(ctap2.CredMgmtAuthMessage(sub, req.SubCommandParams))
	}
	if resp == nil {
		return t.Client().Call(t.Context(), cmd, &req, nil)
	}
	return t.Client().Call(t.Context(), cmd, &req, resp)
}

// sameCOSEKey reports whether two COSE keys are the same public key.
func sameCOSEKey(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ka, err1 := ctap2.ParseCOSEKey(a)
	kb, err2 := ctap2.ParseCOSEKey(b)
	if err1 != nil || err2 != nil || ka.Alg != kb.Alg {
		return false
	}
	pa, ok := ka.Public.(interface{ Equal(any) bool })
	return ok && pa.Equal(kb.Public)
}

// residentCreds lists rpID's discoverable credentials with a fresh cm token.
func residentCreds(t *T, rpID string) []ctap2.ResidentCredential {
	h := sha256.Sum256([]byte(rpID))
	creds, err := t.Client().EnumerateCredentials(t.Context(), cmToken(t, ""), h[:])
	t.Must("enumerating the credentials of "+rpID, err)
	return creds
}

func init() {
	register(
		Case{ID: "CM-1", Area: AreaCredMgmt, Presence: true, Requirement: "CTAP 2.1 §6.8.2 (getCredsMetadata)",
			Description: "getCredsMetadata counts every discoverable credential the enumeration lists, and one more after a new one; getInfo's remaining count agrees",
			Run: func(t *T) {
				cmCommand(t)
				tok := cmToken(t, "")
				before, err := t.Client().CredsMetadata(t.Context(), tok)
				t.Must("getCredsMetadata", err)
				rps, err := t.Client().EnumerateRPs(t.Context(), tok)
				t.Must("enumerating RPs", err)
				listed := 0
				for _, rp := range rps {
					creds, err := t.Client().EnumerateCredentials(t.Context(), tok, rp.RPIDHash)
					t.Must("enumerating the credentials of "+rp.ID, err)
					listed += len(creds)
				}
				if uint(listed) != before.Existing {
					t.Errorf("existingResidentCredentialsCount: observed %d, expected %d (credentials listed for %d RPs)", before.Existing, listed, len(rps))
				}
				if before.MaxRemaining == 0 {
					t.Skipf("the key has no room for another discoverable credential")
				}
				makeTestCred(t, freshRPID("cm1"), testUser("cm1"), true, nil)
				after, err := t.Client().CredsMetadata(t.Context(), cmToken(t, ""))
				t.Must("getCredsMetadata", err)
				if after.Existing != before.Existing+1 {
					t.Errorf("existingResidentCredentialsCount after one more credential: observed %d, expected %d", after.Existing, before.Existing+1)
				}
				switch {
				case after.MaxRemaining > before.MaxRemaining:
					t.Errorf("maxPossibleRemainingResidentCredentialsCount after one more credential: observed %d, expected at most %d", after.MaxRemaining, before.MaxRemaining)
				case after.MaxRemaining == before.MaxRemaining:
					t.Logf("maxPossibleRemainingResidentCredentialsCount stayed %d after one more credential (it is an estimate)", after.MaxRemaining)
				}
				// GI-7's check, for keys whose PIN only a destructive run sets.
				if rem := refreshInfo(t).RemainingDiscoverableCredentials; rem != nil && *rem != after.MaxRemaining {
					t.Errorf("getInfo remainingDiscoverableCredentials: observed %d, expected %d (credential metadata)", *rem, after.MaxRemaining)
				}
			}},
		Case{ID: "CM-2", Area: AreaCredMgmt, Presence: true, Requirement: "CTAP 2.1 §6.8.3, §6.8.4 (enumerateRPs, enumerateCredentials)",
			Description: "the enumeration lists a new RP (id, SHA-256 rpIDHash) and its two credentials (user, ID, public key)",
			Run: func(t *T) {
				cmCommand(t)
				rp := freshRPID("cm2")
				made := []*testCred{
					makeTestCred(t, rp, testUser("cm2-one"), true, nil),
					makeTestCred(t, rp, testUser("cm2-two"), true, nil),
				}
				tok := cmToken(t, "")
				rps, err := t.Client().EnumerateRPs(t.Context(), tok)
				t.Must("enumerating RPs", err)
				want := sha256.Sum256([]byte(rp))
				var found *ctap2.RP
				for i := range rps {
					if rps[i].ID == rp {
						found = &rps[i]
					}
				}
				switch {
				case found == nil:
					t.Errorf("enumerateRPs: observed no %s among %d RPs, expected it", rp, len(rps))
				case !bytes.Equal(found.RPIDHash, want[:]):
					t.Errorf("enumerateRPs: observed rpIDHash %x for %s, expected its SHA-256 %x", found.RPIDHash, rp, want)
				}
				creds, err := t.Client().EnumerateCredentials(t.Context(), tok, want[:])
				t.Must("enumerating credentials", err)
				if len(creds) != len(made) {
					t.Fatalf("enumerateCredentials for %s: observed %d credentials, expected %d", rp, len(creds), len(made))
				}
				for _, m := range made {
					var c *ctap2.ResidentCredential
					for i := range creds {
						if bytes.Equal(creds[i].ID.ID, m.id) {
							c = &creds[i]
						}
					}
					if c == nil {
						t.Errorf("enumerateCredentials: observed no credential %x, expected it", m.id)
						continue
					}
					if c.ID.Type != ctap2.CredentialType {
						t.Errorf("credentialID type: observed %q, expected %q", c.ID.Type, ctap2.CredentialType)
					}
					if !bytes.Equal(c.User.ID, m.user.ID) || c.User.Name != m.user.Name {
						t.Errorf("user of %x: observed id %x name %q, expected id %x name %q", m.id, c.User.ID, c.User.Name, m.user.ID, m.user.Name)
					}
					if !sameCOSEKey(c.PublicKey, m.authData.Attested.PublicKey) {
						t.Errorf("publicKey of %x: observed a key other than the one makeCredential attested", m.id)
					}
				}
			}},
		Case{ID: "CM-3", Area: AreaCredMgmt, Presence: true, Requirement: "CTAP 2.1 §6.8.5 (GetNext directly after Begin), ctap-reference §13",
			Description: "enumerateCredentialsGetNextCredential after an interleaved getInfo is refused with NOT_ALLOWED",
			Run: func(t *T) {
				cmd := cmCommand(t)
				rp := freshRPID("cm3")
				makeTestCred(t, rp, testUser("cm3-one"), true, nil)
				makeTestCred(t, rp, testUser("cm3-two"), true, nil)
				h := sha256.Sum256([]byte(rp))
				tok := cmToken(t, "")
				begin := func() {
					var resp ctap2.CredMgmtResponse
					err := cmRaw(t, cmd, tok, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: h[:]}, &resp)
					t.Must("enumerateCredentialsBegin", err)
					if resp.TotalCredentials != 2 {
						t.Fatalf("enumerateCredentialsBegin: observed totalCredentials %d, expected 2", resp.TotalCredentials)
					}
				}
				begin()
				_, err := t.Client().GetInfo(t.Context())
				t.Must("getInfo", err)
				var resp ctap2.CredMgmtResponse
				err = cmRaw(t, cmd, nil, ctap2.CredMgmtEnumerateCredentialsGetNextCredential, nil, &resp)
				t.ExpectStatus("enumerateCredentialsGetNextCredential after getInfo", err, ctap2.ErrNotAllowed)
				begin()
				err = cmRaw(t, cmd, nil, ctap2.CredMgmtEnumerateCredentialsGetNextCredential, nil, &resp)
				t.ExpectStatus("enumerateCredentialsGetNextCredential right after Begin", err, ctap2.StatusOK)
			}},
		Case{ID: "CM-4", Area: AreaCredMgmt, Presence: true, Requirement: "CTAP 2.1 §6.8.6 (deleteCredential)",
			Description: "deleteCredential removes the credential: getAssertion then answers NO_CREDENTIALS",
			Run: func(t *T) {
				cmCommand(t)
				rp := freshRPID("cm4")
				c := makeTestCred(t, rp, testUser("cm4"), true, nil)
				_, err := t.Client().GetAssertion(t.Context(), silent(assertRequest(rp, c.id)))
				t.Must("getAssertion before the delete", err)
				err = t.Client().DeleteCredential(t.Context(), cmToken(t, ""), c.id)
				if !t.ExpectStatus("deleteCredential", err, ctap2.StatusOK) {
					return
				}
				_, err = t.Client().GetAssertion(t.Context(), silent(assertRequest(rp, c.id)))
				t.ExpectStatus("getAssertion with the deleted credential in the allowList", err, ctap2.ErrNoCredentials)
				_, err = t.Client().GetAssertion(t.Context(), silent(assertRequest(rp)))
				t.ExpectStatus("getAssertion without allowList for the RP of the deleted credential", err, ctap2.ErrNoCredentials)
				if n := len(residentCreds(t, rp)); n != 0 {
					t.Errorf("enumerateCredentials after the delete: observed %d credentials, expected none", n)
				}
			}},
		Case{ID: "CM-5", Area: AreaCredMgmt, Presence: true, Requirement: "CTAP 2.1 §6.8.7 (updateUserInformation)",
			Description: "updateUserInformation replaces the stored user name and display name",
			Run: func(t *T) {
				if cmCommand(t) == ctap2.CmdCredentialMgmtPre {
					t.Skipf("the key only has the credential management prototype (0x41), which has no updateUserInformation")
				}
				rp := freshRPID("cm5")
				c := makeTestCred(t, rp, testUser("cm5-before"), true, nil)
				updated := ctap2.UserEntity{ID: c.user.ID, Name: "cm5-after", DisplayName: "Conformance after"}
				err := t.Client().UpdateUserInformation(t.Context(), cmToken(t, ""), c.id, updated)
				if !t.ExpectStatus("updateUserInformation", err, ctap2.StatusOK) {
					return
				}
				creds := residentCreds(t, rp)
				if len(creds) != 1 {
					t.Fatalf("enumerateCredentials: observed %d credentials, expected 1", len(creds))
				}
				u := creds[0].User
				if !bytes.Equal(u.ID, updated.ID) || u.Name != updated.Name || u.DisplayName != updated.DisplayName {
					t.Errorf("user after updateUserInformation: observed %x %q %q, expected %x %q %q", u.ID, u.Name, u.DisplayName, updated.ID, updated.Name, updated.DisplayName)
				}
			}},
		Case{ID: "CM-6", Area: AreaCredMgmt, Presence: true, Requirement: "CTAP 2.1 §6.8.6 (permissions RP ID of a cm token)",
			Description: "a cm token bound to another RP cannot delete a credential (PIN_AUTH_INVALID), which stays",
			Run: func(t *T) {
				cmCommand(t)
				t.RequireOption("pinUvAuthToken")
				rp := freshRPID("cm6")
				c := makeTestCred(t, rp, testUser("cm6"), true, nil)
				err := t.Client().DeleteCredential(t.Context(), cmToken(t, freshRPID("cm6-other")), c.id)
				t.ExpectStatus("deleteCredential with a cm token bound to another RP", err, ctap2.ErrPINAuthInvalid)
				if n := len(residentCreds(t, rp)); n != 1 {
					t.Errorf("enumerateCredentials after the refused delete: observed %d credentials, expected 1", n)
				}
			}},
		Case{ID: "CM-7", Area: AreaCredMgmt, Requirement: "CTAP 2.1 §6.8.2 (pinUvAuthParam required)",
			Description: "getCredsMetadata without pinUvAuthParam is refused with PUAT_REQUIRED",
			Run: func(t *T) {
				cmd := cmCommand(t)
				err := cmRaw(t, cmd, nil, ctap2.CredMgmtGetCredsMetadata, nil, nil)
				t.ExpectStatus("getCredsMetadata without pinUvAuthParam", err, ctap2.ErrPUATRequired)
			}},
		Case{ID: "CM-8", Area: AreaCredMgmt, Requirement: "CTAP 2.1 §6.8.2, §6.8.3 (no permissions RP ID for whole-key subcommands)",
			Description: "getCredsMetadata and enumerateRPsBegin refuse a cm token bound to an RP with PIN_AUTH_INVALID",
			Run: func(t *T) {
				cmd := cmCommand(t)
				t.RequireOption("pinUvAuthToken")
				tok := cmToken(t, freshRPID("cm8"))
				err := cmRaw(t, cmd, tok, ctap2.CredMgmtGetCredsMetadata, nil, &ctap2.CredMgmtResponse{})
				t.ExpectStatus("getCredsMetadata with an RP-bound cm token", err, ctap2.ErrPINAuthInvalid)
				err = cmRaw(t, cmd, tok, ctap2.CredMgmtEnumerateRPsBegin, nil, &ctap2.CredMgmtResponse{})
				t.ExpectStatus("enumerateRPsBegin with an RP-bound cm token", err, ctap2.ErrPINAuthInvalid)
			}},
	)
}
