package conformance

import (
	"bytes"
	"fmt"
	"sync/atomic"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
)

// mgCheckAssertion checks an assertion of c for clientDataHash cdh: the signature
// over authData || cdh with c's key, the RP ID hash, flags (UP set unless up is
// false, no AT) and the credential ID.
func mgCheckAssertion(t *T, c *mgCred, cdh []byte, resp *ctap2.GetAssertionResponse, up bool) *ctap2.AuthData {
	ad := mgAuthData(t, "getAssertion", resp.AuthData)
	if ad.RPIDHash != ctap2.RPIDHash(c.RPID) {
		t.Errorf("rpIdHash: observed %x, expected SHA-256(%q)", ad.RPIDHash, c.RPID)
	}
	if up {
		mgCheckFlags(t, "getAssertion", ad.Flags, false)
	} else if ad.Flags.Has(ctap2.FlagUP) {
		t.Errorf("flags %02x: observed UP set, expected UP clear with up=false", byte(ad.Flags))
	}
	if resp.Credential != nil && !bytes.Equal(resp.Credential.ID, c.ID) {
		t.Errorf("credential: observed %x, expected %x", resp.Credential.ID, c.ID)
	}
	if err := resp.Verify(c.Key, cdh); err != nil {
		t.Errorf("signature: observed %v, expected a valid %v signature over authData || clientDataHash", err, c.Key.Alg)
	}
	return ad
}

// mgCredByID returns the credential of cs with the given ID, or nil.
func mgCredByID(cs []*mgCred, id []byte) *mgCred {
	for _, c := range cs {
		if bytes.Equal(c.ID, id) {
			return c
		}
	}
	return nil
}

// mgTwoAccounts makes two discoverable credentials (two users) for one RP, the
// second one last, or skips without rk.
func mgTwoAccounts(t *T, tag string) (string, []*mgCred) {
	mgCTAP2(t)
	t.RequireOption("rk")
	rpID := mgRPID(tag)
	return rpID, []*mgCred{mgMake(t, rpID, true), mgMake(t, rpID, true)}
}

// mgDiscover runs getAssertion without an allowList for rpID and checks the first
// assertion against the credentials cs. It skips when the key lets the user pick
// an account on its display (userSelected) instead of listing them.
func mgDiscover(t *T, rpID string, cs []*mgCred) (*ctap2.GetAssertionRequest, *ctap2.GetAssertionResponse, *mgCred) {
	req := mgGARequest(rpID)
	mgProtectGA(t, req)
	resp, err := t.Client().GetAssertion(t.Context(), req)
	t.Must("getAssertion without allowList", err)
	if resp.UserSelected {
		t.Skipf("the key let the user pick the account on its display (userSelected)")
	}
	c := mgCredByID(cs, resp.Credential.ID)
	if c == nil {
		t.Fatalf("credential: observed %x, expected one of the RP's discoverable credentials", resp.Credential.ID)
	}
	mgCheckAssertion(t, c, req.ClientDataHash, resp, true)
	return req, resp, c
}

func init() {
	register(
		Case{ID: "GA-1", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 steps 7-12; WebAuthn §6.1, §6.3.3",
			Description: "getAssertion with an allowList signs authData || clientDataHash with the registered key, for the RP's hash, with UP set",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("ga1"), false)
				req := mgGARequest(c.RPID, c.ID)
				mgProtectGA(t, req)
				resp, err := t.Client().GetAssertion(t.Context(), req)
				if !t.ExpectStatus("getAssertion with the credential in allowList", err, ctap2.StatusOK) {
					return
				}
				ad := mgCheckAssertion(t, c, req.ClientDataHash, resp, true)
				if ad.Extensions != nil {
					t.Errorf("flags: observed ED with %x, expected no extension data without extension inputs", ad.Extensions)
				}
			}},
		Case{ID: "GA-2", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 12 (numberOfCredentials), §6.3",
			Description: "getAssertion without allowList for an RP with two accounts answers numberOfCredentials 2, getNextAssertion the other account, then NOT_ALLOWED",
			Run: func(t *T) {
				rpID, cs := mgTwoAccounts(t, "ga2")
				req, first, c1 := mgDiscover(t, rpID, cs)
				if first.NumberOfCredentials != 2 {
					t.Fatalf("numberOfCredentials: observed %d, expected 2", first.NumberOfCredentials)
				}
				if first.User == nil || !bytes.Equal(first.User.ID, c1.User.ID) {
					t.Errorf("user.id of the first assertion: observed %v, expected %x", first.User, c1.User.ID)
				}
				var next ctap2.GetAssertionResponse
				err := t.Client().Call(t.Context(), ctap2.CmdGetNextAssertion, nil, &next)
				if !t.ExpectStatus("getNextAssertion after numberOfCredentials 2", err, ctap2.StatusOK) {
					return
				}
				if next.Credential == nil {
					t.Fatalf("getNextAssertion: observed no credential, expected the other account's")
				}
				c2 := mgCredByID(cs, next.Credential.ID)
				if c2 == nil || c2 == c1 {
					t.Fatalf("getNextAssertion credential: observed %x, expected the other account's credential", next.Credential.ID)
				}
				mgCheckAssertion(t, c2, req.ClientDataHash, &next, true)
				if next.User == nil || !bytes.Equal(next.User.ID, c2.User.ID) {
					t.Errorf("user.id of the second assertion: observed %v, expected %x", next.User, c2.User.ID)
				}
				if next.NumberOfCredentials != 0 {
					t.Errorf("numberOfCredentials in getNextAssertion: observed %d, expected it absent (first response only)", next.NumberOfCredentials)
				}
				err = t.Client().Call(t.Context(), ctap2.CmdGetNextAssertion, nil, &next)
				t.ExpectStatus("a third getNextAssertion (both credentials returned)", err, ctap2.ErrNotAllowed)
			}},
		Case{ID: "GA-3", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 12 (no display: credentials in reverse creation order)",
			Description: "getAssertion without allowList returns the most recently created account first",
			Run: func(t *T) {
				t.RequireVersion("FIDO_2_1")
				rpID, cs := mgTwoAccounts(t, "ga3")
				_, _, c := mgDiscover(t, rpID, cs)
				if c != cs[1] {
					t.Errorf("first credential: observed the older account %x, expected the newest %x", c.ID, cs[1].ID)
				}
			}},
		Case{ID: "GA-4", Area: AreaGetAssertion,
			Requirement: "CTAP 2.1 §6.3 (no remembered getAssertion state)",
			Description: "getNextAssertion without a preceding getAssertion fails with NOT_ALLOWED",
			Run: func(t *T) {
				mgCTAP2(t)
				// getInfo first: whatever state an earlier case left ends with it.
				_, err := t.Client().GetInfo(t.Context())
				t.Must("getInfo", err)
				err = t.Client().Call(t.Context(), ctap2.CmdGetNextAssertion, nil, nil)
				t.ExpectStatus("getNextAssertion right after getInfo", err, ctap2.ErrNotAllowed)
			}},
		Case{ID: "GA-5", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.3 (the state belongs to an uninterrupted getAssertion/getNextAssertion sequence)",
			Description: "a command between getAssertion and getNextAssertion discards the state: getNextAssertion fails with NOT_ALLOWED",
			Run: func(t *T) {
				rpID, cs := mgTwoAccounts(t, "ga5")
				_, first, _ := mgDiscover(t, rpID, cs)
				if first.NumberOfCredentials != 2 {
					t.Fatalf("numberOfCredentials: observed %d, expected 2", first.NumberOfCredentials)
				}
				_, err := t.Client().GetInfo(t.Context())
				t.Must("getInfo", err)
				err = t.Client().Call(t.Context(), ctap2.CmdGetNextAssertion, nil, nil)
				t.ExpectStatus("getNextAssertion after getAssertion, getInfo", err, ctap2.ErrNotAllowed)
			}},
		Case{ID: "GA-6", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 11 (allowList: one credential, no numberOfCredentials)",
			Description: "getAssertion with two matching credentials in the allowList omits numberOfCredentials; getNextAssertion then fails with NOT_ALLOWED",
			Run: func(t *T) {
				mgCTAP2(t)
				t.RequireVersion("FIDO_2_1")
				rpID := mgRPID("ga6")
				cs := []*mgCred{mgMake(t, rpID, false), mgMake(t, rpID, false)}
				req := mgGARequest(rpID, cs[0].ID, cs[1].ID)
				mgProtectGA(t, req)
				resp, err := t.Client().GetAssertion(t.Context(), req)
				if !t.ExpectStatus("getAssertion with both credentials in allowList", err, ctap2.StatusOK) {
					return
				}
				c := mgCredByID(cs, resp.Credential.ID)
				if c == nil {
					t.Fatalf("credential: observed %x, expected one from the allowList", resp.Credential.ID)
				}
				mgCheckAssertion(t, c, req.ClientDataHash, resp, true)
				if resp.NumberOfCredentials != 0 {
					t.Errorf("numberOfCredentials: observed %d, expected it absent with an allowList", resp.NumberOfCredentials)
				}
				err = t.Client().Call(t.Context(), ctap2.CmdGetNextAssertion, nil, nil)
				t.ExpectStatus("getNextAssertion after an allowList getAssertion", err, ctap2.ErrNotAllowed)
			}},
		Case{ID: "GA-7", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 7 (credentials bound to the rpId; none: CTAP2_ERR_NO_CREDENTIALS)",
			Description: "getAssertion for another RP with a credential in the allowList fails with NO_CREDENTIALS",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("ga7"), false)
				req := mgGARequest(mgRPID("ga7-other"), c.ID)
				mgProtectGA(t, req)
				_, err := t.Client().GetAssertion(t.Context(), req)
				t.ExpectStatus("getAssertion for another RP with the credential in allowList", err, ctap2.ErrNoCredentials)
			}},
		Case{ID: "GA-8", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 3 (rk is not a getAssertion option); OpenSK answers INVALID_OPTION",
			Description: "getAssertion with option rk fails with UNSUPPORTED_OPTION (or INVALID_OPTION)",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("ga8"), false)
				req := mgGARequest(c.RPID, c.ID)
				req.Options = &ctap2.Options{RK: ctap2.Bool(true)}
				_, err := t.Client().GetAssertion(t.Context(), req)
				t.ExpectOneOf("getAssertion with rk=true", err, ctap2.ErrUnsupportedOption, ctap2.ErrInvalidOption)
			}},
		Case{ID: "GA-9", Area: AreaGetAssertion, Presence: true, // the touch is for makeCredential
			Requirement: "CTAP 2.1 §6.2.2 steps 3, 9 (up = false: no test of user presence, UP clear)",
			Description: "getAssertion with up = false signs without asking for a touch, with the UP flag clear",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("ga9"), false)
				req := mgGARequest(c.RPID, c.ID)
				req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
				var upNeeded atomic.Bool
				ctx := transport.WithKeepalive(t.Context(), func(s byte) {
					if s == transport.StatusUPNeeded {
						upNeeded.Store(true)
					}
				})
				body, err := mgRawWith(ctx, t, mgMessage(t, ctap2.CmdGetAssertion, req))
				if !t.ExpectStatus("getAssertion with up=false", err, ctap2.StatusOK) {
					return
				}
				if upNeeded.Load() {
					t.Errorf("keepalive: observed UPNEEDED, expected no request for a touch with up=false")
				}
				var resp ctap2.GetAssertionResponse
				if err := ctap2.Unmarshal(body, &resp); err != nil {
					t.Fatalf("getAssertion response: observed %v, expected a response map", err)
				}
				mgCheckAssertion(t, c, req.ClientDataHash, &resp, false)
			}},
		Case{ID: "GA-10", Area: AreaGetAssertion,
			Requirement: "CTAP 2.1 §6.2 (rpId and clientDataHash are required), §8.2",
			Description: "getAssertion without rpId or clientDataHash fails with MISSING_PARAMETER",
			Run: func(t *T) {
				mgCTAP2(t)
				var resp ctap2.GetAssertionResponse
				err := t.Client().Call(t.Context(), ctap2.CmdGetAssertion, map[int]any{2: mgRandom(32)}, &resp)
				t.ExpectStatus("getAssertion without rpId (0x01)", err, ctap2.ErrMissingParameter)
				err = t.Client().Call(t.Context(), ctap2.CmdGetAssertion, map[int]any{1: mgRPID("ga10")}, &resp)
				t.ExpectStatus("getAssertion without clientDataHash (0x02)", err, ctap2.ErrMissingParameter)
			}},
		Case{ID: "GA-11", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 7 (denoted credentials of this authenticator; others are skipped)",
			Description: "getAssertion with unknown IDs around a known one in the allowList answers with the known credential",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("ga11"), false)
				req := mgGARequest(c.RPID, mgRandom(32), c.ID, mgRandom(64))
				mgProtectGA(t, req)
				resp, err := t.Client().GetAssertion(t.Context(), req)
				if !t.ExpectStatus("getAssertion with [unknown, known, unknown]", err, ctap2.StatusOK) {
					return
				}
				if resp.Credential == nil || !bytes.Equal(resp.Credential.ID, c.ID) {
					t.Fatalf("credential: observed %v, expected the known credential %x", resp.Credential, c.ID)
				}
				mgCheckAssertion(t, c, req.ClientDataHash, resp, true)
			}},
		Case{ID: "GA-12", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 7 covers a non-empty and an absent allowList only; OK (as absent), NO_CREDENTIALS and INVALID_PARAMETER are accepted",
			Description: "getAssertion with an empty allowList either finds the discoverable credential as without one, or finds nothing",
			Run: func(t *T) {
				mgCTAP2(t)
				t.RequireOption("rk")
				c := mgMake(t, mgRPID("ga12"), true)
				m := map[int]any{1: c.RPID, 2: mgRandom(32), 3: []any{}}
				mgProtectMap(t, ctap2.CmdGetAssertion, m, c.RPID, false)
				var resp ctap2.GetAssertionResponse
				err := t.Client().Call(t.Context(), ctap2.CmdGetAssertion, m, &resp)
				if !t.ExpectOneOf("getAssertion with allowList []", err, ctap2.StatusOK, ctap2.ErrNoCredentials, ctap2.ErrInvalidParameter) {
					return
				}
				if err != nil {
					t.Logf("an empty allowList is treated as a list (%s)", statusName(err))
					return
				}
				t.Logf("an empty allowList is treated as absent")
				if resp.Credential == nil {
					t.Fatalf("credential: observed none, expected the discoverable credential %x", c.ID)
				}
				mgCheckAssertion(t, c, m[2].([]byte), &resp, true)
			}},
		Case{ID: "GA-13", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 12 (name and displayName only after user verification)",
			Description: "getAssertion without user verification returns the discoverable credential's user.id only",
			Run: func(t *T) {
				mgCTAP2(t)
				t.RequireVersion("FIDO_2_1")
				t.RequireOption("rk")
				c := mgMake(t, mgRPID("ga13"), true)
				req := mgGARequest(c.RPID)
				if v := mgProtectGA(t, req); v.verified() {
					t.Skipf("the key verifies the user on every getAssertion (alwaysUv)")
				}
				resp, err := t.Client().GetAssertion(t.Context(), req)
				if !t.ExpectStatus("getAssertion without UV", err, ctap2.StatusOK) {
					return
				}
				switch u := resp.User; {
				case u == nil:
					t.Errorf("user: observed none, expected {id} for a discoverable credential")
				case !bytes.Equal(u.ID, c.User.ID):
					t.Errorf("user.id: observed %x, expected %x", u.ID, c.User.ID)
				case u.Name != "" || u.DisplayName != "":
					t.Errorf("user: observed name %q, displayName %q, expected only id without user verification", u.Name, u.DisplayName)
				}
				if ad := mgAuthData(t, "getAssertion", resp.AuthData); ad.Flags.Has(ctap2.FlagUV) {
					t.Errorf("flags %02x: observed UV set, expected UV clear without verification", byte(ad.Flags))
				}
			}},
		Case{ID: "GA-14", Area: AreaGetAssertion,
			Requirement: "CTAP 2.1 §6.2 (clientDataHash is the 32-byte SHA-256 hash); the error is not named, so INVALID_PARAMETER, INVALID_LENGTH and INVALID_CBOR are accepted",
			Description: "getAssertion with a 31- or 33-byte clientDataHash is refused",
			Run: func(t *T) {
				mgCTAP2(t)
				for _, n := range []int{31, 33} {
					req := mgGARequest(mgRPID("ga14"))
					req.ClientDataHash = mgRandom(n)
					_, err := t.Client().GetAssertion(t.Context(), req)
					t.ExpectOneOf(fmt.Sprintf("getAssertion with a %d-byte clientDataHash", n), err,
						ctap2.ErrInvalidParameter, ctap2.ErrInvalidLength, ctap2.ErrInvalidCBOR)
				}
			}},
		Case{ID: "GA-15", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §8 (responses in CTAP2 canonical CBOR)",
			Description: "the getAssertion response, read raw, is CTAP2 canonical CBOR",
			Run: func(t *T) {
				// Raw from the start (see mgRawMC), so that the canonical check is
				// what fails on a key whose answers are all non-canonical.
				mcBody, _, rpID := mgRawMC(t, "ga15")
				var mc ctap2.MakeCredentialResponse
				if err := ctap2.Unmarshal(mcBody, &mc); err != nil {
					t.Fatalf("makeCredential response: observed %v, expected a response map", err)
				}
				id, _, err := mc.CredentialKey()
				if err != nil {
					t.Fatalf("makeCredential authenticator data: %v", err)
				}
				req := mgGARequest(rpID, id)
				body, err := mgRaw(t, mgMessage(t, ctap2.CmdGetAssertion, req))
				if mgNeedsUV(t, err) {
					mgProtectGA(t, req)
					body, err = mgRaw(t, mgMessage(t, ctap2.CmdGetAssertion, req))
				}
				if !t.ExpectStatus("getAssertion", err, ctap2.StatusOK) {
					return
				}
				if err := ctap2.CheckCanonical(body); err != nil {
					t.Errorf("getAssertion response: observed %v, expected CTAP2 canonical CBOR", err)
				}
			}},
		Case{ID: "GA-16", Area: AreaGetAssertion,
			Requirement: "CTAP 2.1 §6.2.2 step 3 (uv = true without enabled built-in UV); CTAP 2.0 keys may answer UNSUPPORTED_OPTION",
			Description: "getAssertion with option uv = true on a key without configured built-in UV fails with INVALID_OPTION",
			Run: func(t *T) {
				info := mgCTAP2(t)
				if uv, _ := info.Option("uv"); uv {
					t.Skipf("the key has built-in user verification configured")
				}
				req := mgGARequest(mgRPID("ga16"), mgRandom(32))
				req.Options = &ctap2.Options{UV: ctap2.Bool(true)}
				_, err := t.Client().GetAssertion(t.Context(), req)
				if info.HasVersion("FIDO_2_1") {
					t.ExpectStatus("getAssertion with uv=true", err, ctap2.ErrInvalidOption)
				} else {
					t.ExpectOneOf("getAssertion with uv=true (CTAP 2.0 key)", err, ctap2.ErrInvalidOption, ctap2.ErrUnsupportedOption)
				}
			}},
		Case{ID: "GA-17", Area: AreaGetAssertion, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 7 (no allowList: discoverable credentials only)",
			Description: "getAssertion without allowList does not find a non-discoverable credential: NO_CREDENTIALS",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("ga17"), false)
				req := mgGARequest(c.RPID)
				mgProtectGA(t, req)
				_, err := t.Client().GetAssertion(t.Context(), req)
				t.ExpectStatus("getAssertion without allowList for an RP with only a non-discoverable credential", err, ctap2.ErrNoCredentials)
			}},
	)
}
