package conformance

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/ctapkit/ctapkit/ctap2"
)

// clientPIN cases (CTAP 2.1 §6.5): retries, key agreement, setPIN/changePIN
// checks, PIN blocking, token permissions, RP binding and invalidation. Cases
// that spend PIN attempts or change the PIN are destructive; every one of them
// leaves the key with the PIN the suite knows and its retries back at the
// maximum (a correct PIN restores them).
//
// The helpers here (PIN sessions over one protocol, tokens, test credentials)
// also serve the credMgmt, config, largeBlobs, extensions and reset cases.

// --- PIN protocol helpers ---------------------------------------------------

// pinProtocols returns the PIN/UV auth protocols getInfo lists that the suite
// knows, in the key's order; none skips the case.
func pinProtocols(t *T) []ctap2.PINProtocol {
	var out []ctap2.PINProtocol
	for _, v := range t.Info().PinUvAuthProtocols {
		if p := ctap2.PINProtocolByVersion(v); p != nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Skipf("the key lists no PIN/UV auth protocol the suite knows (1 or 2)")
	}
	return out
}

// requireClientPIN skips the case unless the key supports a PIN at all.
func requireClientPIN(t *T) {
	if _, ok := t.Info().Option("clientPin"); !ok {
		t.Skipf("the key does not support a PIN (no clientPin option)")
	}
}

// refreshInfo asks getInfo again (the client caches it) and returns it.
func refreshInfo(t *T) *ctap2.Info {
	info, err := t.Client().GetInfo(t.Context())
	t.Must("getInfo", err)
	return info
}

// pinSession is one key agreement under one protocol: what a platform holds
// between getKeyAgreement and the subcommand that uses the shared secret.
type pinSession struct {
	p           ctap2.PINProtocol
	peer        []byte // the authenticator's COSE key agreement key
	platformKey []byte // ours, sent as keyAgreement (0x03)
	ss          []byte
}

// newPINSession runs getKeyAgreement and the platform's ECDH for protocol p.
func newPINSession(t *T, p ctap2.PINProtocol) *pinSession {
	peer, err := t.Client().KeyAgreement(t.Context(), p)
	t.Must(fmt.Sprintf("getKeyAgreement (protocol %d)", p.Version()), err)
	platformKey, ss, err := ctap2.Encapsulate(p, peer, nil)
	t.Must("platform key agreement", err)
	return &pinSession{p: p, peer: peer, platformKey: platformKey, ss: ss}
}

func (s *pinSession) encrypt(t *T, pt []byte) []byte {
	ct, err := s.p.Encrypt(s.ss, pt)
	t.Must("encrypting", err)
	return ct
}

// pinHashEnc is encrypt(ss, LEFT(SHA-256(pin), 16)).
func (s *pinSession) pinHashEnc(t *T, pin string) []byte {
	return s.encrypt(t, ctap2.PINHash([]byte(pin)))
}

// paddedPIN is pin followed by zeros up to n bytes, with no policy check (so
// that cases can send PINs the host library would refuse).
func paddedPIN(pin string, n int) []byte {
	out := make([]byte, n)
	copy(out, pin)
	return out
}

// tokenRequest is a PIN token request: getPinUvAuthTokenUsingPinWithPermissions
// (0x09) on keys with the pinUvAuthToken option, else getPinToken (0x05), which
// takes neither permissions nor an RP ID.
func (s *pinSession) tokenRequest(t *T, pin string, perms ctap2.Permission, rpID string) *ctap2.ClientPINRequest {
	req := &ctap2.ClientPINRequest{
		PinUvAuthProtocol: s.p.Version(),
		SubCommand:        ctap2.PINGetPINToken,
		KeyAgreement:      s.platformKey,
		PinHashEnc:        s.pinHashEnc(t, pin),
	}
	if v, _ := t.Info().Option("pinUvAuthToken"); v {
		req.SubCommand, req.Permissions, req.RPID = ctap2.PINGetPINUvAuthTokenUsingPinWithPerms, perms, rpID
	}
	return req
}

// token asks for a token with pin and decrypts it.
func (s *pinSession) token(t *T, pin string, perms ctap2.Permission, rpID string) (*ctap2.PINToken, error) {
	var resp ctap2.ClientPINResponse
	if err := t.Client().Call(t.Context(), ctap2.CmdClientPIN, s.tokenRequest(t, pin, perms, rpID), &resp); err != nil {
		return nil, err
	}
	tok, err := s.p.Decrypt(s.ss, resp.PinUvAuthToken)
	if err != nil || !(len(tok) == 32 || (s.p.Version() == 1 && len(tok) == 16)) {
		return nil, fmt.Errorf("pinUvAuthToken of %d bytes does not decrypt to a 16- or 32-byte token: %w", len(resp.PinUvAuthToken), ctap2.ErrMalformedResponse)
	}
	return &ctap2.PINToken{Protocol: s.p, Token: tok, Permissions: perms, RPID: rpID}, nil
}

// requireMcGaPIN skips the case on keys that refuse mc and ga permissions to
// PIN tokens (noMcGaPermissionsWithClientPin: those need built-in UV).
func requireMcGaPIN(t *T) {
	if v, _ := t.Info().Option("noMcGaPermissionsWithClientPin"); v {
		t.Skipf("the key gives PIN tokens no mc/ga permissions (noMcGaPermissionsWithClientPin)")
	}
}

// attemptPerm is a permission (and RP ID) the key grants a PIN token, for
// cases that only care whether the PIN is accepted: ga, or on keys that keep
// mc/ga from PIN tokens, one of cm, acfg and lbw.
func attemptPerm(t *T) (ctap2.Permission, string) {
	perm, rpID, ok := grantedPerm(t.Info())
	if !ok {
		t.Skipf("the key grants PIN tokens none of the permissions ga, cm, acfg and lbw")
	}
	return perm, rpID
}

func grantedPerm(info *ctap2.Info) (ctap2.Permission, string, bool) {
	if v, _ := info.Option("noMcGaPermissionsWithClientPin"); !v {
		return ctap2.PermGetAssertion, "conformance.example", true
	}
	for _, c := range []struct {
		opt  string
		perm ctap2.Permission
	}{{"credMgmt", ctap2.PermCredentialManagement}, {"authnrCfg", ctap2.PermAuthenticatorConfig}, {"largeBlobs", ctap2.PermLargeBlobWrite}} {
		if v, _ := info.Option(c.opt); v {
			return c.perm, "", true
		}
	}
	return 0, "", false
}

// tokenWith gets a token under protocol p with the suite's PIN; a failure ends
// the case.
func tokenWith(t *T, p ctap2.PINProtocol, perms ctap2.Permission, rpID string) *ctap2.PINToken {
	if perms&(ctap2.PermMakeCredential|ctap2.PermGetAssertion) != 0 {
		requireMcGaPIN(t)
	}
	tok, err := newPINSession(t, p).token(t, t.Target().PIN, perms, rpID)
	t.Must(fmt.Sprintf("getting a PIN token (protocol %d)", p.Version()), err)
	return tok
}

// pinRetries reads getPINRetries; a failure ends the case.
func pinRetries(t *T) (int, bool) {
	n, pc, err := t.Client().PINRetries(t.Context())
	t.Must("getPINRetries", err)
	return n, pc
}

// restoreRetries gets a token with the right PIN, which sets the retries back
// to the maximum; cases that spent attempts call it on their way out.
func restoreRetries(t *T) {
	info, err := t.Client().Info(t.Context())
	if err != nil {
		t.Logf("cleanup: getInfo: %v", err)
		return
	}
	perm, rpID, ok := grantedPerm(info)
	if !ok {
		perm = ctap2.PermGetAssertion
	}
	if _, err := t.Client().PINToken(t.Context(), t.Target().PIN, perm, rpID); err != nil {
		t.Logf("restoring the PIN retries with the right PIN: %s", statusName(err))
	}
}

// wrongPIN is a PIN that differs from the suite's.
func wrongPIN(t *T) string {
	if t.Target().PIN == "87654321" {
		return "11223344"
	}
	return "87654321"
}

// --- credential helpers -----------------------------------------------------

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// freshRPID returns an RP ID no earlier run used, e.g. "cp-1a2b3c4d.conformance.example".
func freshRPID(prefix string) string {
	return strings.ToLower(prefix) + "-" + hex.EncodeToString(randomBytes(4)) + ".conformance.example"
}

func testUser(name string) ctap2.UserEntity {
	return ctap2.UserEntity{ID: randomBytes(16), Name: name, DisplayName: "Conformance " + name}
}

var es256Only = []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}}

// pinKnown reports whether the key has a PIN and the suite knows it.
func pinKnown(t *T) bool {
	set, _ := t.Info().Option("clientPin")
	return set && t.Target().PIN != ""
}

// mcToken returns the token a makeCredential for rpID needs: none on a key
// without a PIN, an mc token on a key whose PIN the suite knows. A key with an
// unknown PIN still makes non-discoverable credentials without one when it
// lists makeCredUvNotRqd; otherwise the case is skipped.
func mcToken(t *T, rpID string, rk bool) *ctap2.PINToken {
	info := t.Info()
	if set, _ := info.Option("clientPin"); !set {
		return nil
	}
	if t.Target().PIN == "" {
		if notRqd, _ := info.Option("makeCredUvNotRqd"); notRqd && !rk {
			return nil
		}
		t.Skipf("the key has a PIN, but none was given to the suite")
	}
	requireMcGaPIN(t)
	return t.PINToken(ctap2.PermMakeCredential, rpID)
}

// credRequest is a makeCredential request for rpID and user with ES256.
func credRequest(rpID string, user ctap2.UserEntity, rk bool, ext map[string]ctap2.RawMessage) *ctap2.MakeCredentialRequest {
	req := &ctap2.MakeCredentialRequest{
		ClientDataHash:   randomBytes(32),
		RP:               &ctap2.RPEntity{ID: rpID, Name: "Conformance " + rpID},
		User:             &user,
		PubKeyCredParams: es256Only,
		Extensions:       ext,
	}
	if rk {
		req.Options = &ctap2.Options{RK: ctap2.Bool(true)}
	}
	return req
}

// testCred is a credential a case made.
type testCred struct {
	resp     *ctap2.MakeCredentialResponse
	authData *ctap2.AuthData
	id       []byte
	user     ctap2.UserEntity
	rpID     string
}

// makeTestCred makes a credential for rpID (with a token when the key needs
// one, see mcToken); a failure ends the case. Discoverable ones are deleted
// when the case ends, where credential management allows it.
func makeTestCred(t *T, rpID string, user ctap2.UserEntity, rk bool, ext map[string]ctap2.RawMessage) *testCred {
	req := credRequest(rpID, user, rk, ext)
	if tok := mcToken(t, rpID, rk); tok != nil {
		tok.ProtectMakeCredential(req)
	}
	resp, err := t.Client().MakeCredential(t.Context(), req)
	t.Must("makeCredential for "+rpID, err)
	ad, err := resp.ParseAuthData()
	t.Must("parsing the makeCredential authData", err)
	if ad.Attested == nil {
		t.Fatalf("makeCredential authData: observed no attested credential data, expected it")
	}
	c := &testCred{resp: resp, authData: ad, id: ad.Attested.CredentialID, user: user, rpID: rpID}
	if rk {
		t.Cleanup(func() { deleteResident(t, c.id) })
	}
	return c
}

// deleteResident removes a discoverable credential a case made, when credential
// management and the PIN allow it; it only logs failures (it runs in cleanups).
func deleteResident(t *T, id []byte) {
	ctx := t.Context()
	info, err := t.Client().Info(ctx)
	if err != nil {
		t.Logf("cleanup: getInfo: %v", err)
		return
	}
	cm, _ := info.Option("credMgmt")
	pre, _ := info.Option("credentialMgmtPreview")
	set, _ := info.Option("clientPin")
	if !(cm || pre) || !set || t.Target().PIN == "" {
		t.Logf("cleanup: left discoverable credential %x on the key (no credential management with a known PIN)", id)
		return
	}
	tok, err := t.Client().PINToken(ctx, t.Target().PIN, ctap2.PermCredentialManagement, "")
	if err == nil {
		err = t.Client().DeleteCredential(ctx, tok, id)
	}
	if err != nil && !errors.Is(err, ctap2.ErrNoCredentials) {
		t.Logf("cleanup: deleting discoverable credential %x: %s", id, statusName(err))
	}
}

// assertRequest is a getAssertion request for rpID with the allowList ids.
func assertRequest(rpID string, ids ...[]byte) *ctap2.GetAssertionRequest {
	req := &ctap2.GetAssertionRequest{RPID: rpID, ClientDataHash: randomBytes(32)}
	for _, id := range ids {
		req.AllowList = append(req.AllowList, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id})
	}
	return req
}

// silent makes req a getAssertion without user presence (up = false).
func silent(req *ctap2.GetAssertionRequest) *ctap2.GetAssertionRequest {
	req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
	return req
}

// flagsOf parses authData and returns its flags; a parse failure ends the case.
func flagsOf(t *T, authData []byte) ctap2.AuthFlags {
	ad, err := ctap2.ParseAuthData(authData)
	t.Must("parsing authData", err)
	return ad.Flags
}

// --- cases --------------------------------------------------------------------

func init() {
	register(
		Case{ID: "CP-1", Area: AreaClientPIN, Requirement: "CTAP 2.1 §6.5.5.2 (getPINRetries), §6.5.2.2 (maxPINRetries 8)",
			Description: "getPINRetries answers pinRetries of at most 8, under each PIN protocol",
			Run: func(t *T) {
				requireClientPIN(t)
				for _, p := range pinProtocols(t) {
					var resp ctap2.ClientPINResponse
					err := t.Client().Call(t.Context(), ctap2.CmdClientPIN,
						&ctap2.ClientPINRequest{PinUvAuthProtocol: p.Version(), SubCommand: ctap2.PINGetRetries}, &resp)
					what := fmt.Sprintf("getPINRetries (protocol %d)", p.Version())
					if !t.ExpectStatus(what, err, ctap2.StatusOK) {
						continue
					}
					if resp.PinRetries == nil {
						t.Errorf("%s: observed no pinRetries (0x03), expected it", what)
						continue
					}
					if *resp.PinRetries > ctap2.MaxPINRetries {
						t.Errorf("%s: observed pinRetries %d, expected at most %d", what, *resp.PinRetries, ctap2.MaxPINRetries)
					}
					if len(resp.KeyAgreement) != 0 || len(resp.PinUvAuthToken) != 0 {
						t.Errorf("%s: observed keyAgreement or pinUvAuthToken in the reply, expected only pinRetries and powerCycleState", what)
					}
					t.Logf("protocol %d: pinRetries %d, powerCycleState %v", p.Version(), *resp.PinRetries, resp.PowerCycleState != nil && *resp.PowerCycleState)
				}
			}},
		Case{ID: "CP-2", Area: AreaClientPIN, Requirement: "CTAP 2.1 §6.5.5.3 (getKeyAgreement), §6.5.6 (COSE key, alg -25)",
			Description: "getKeyAgreement returns a P-256 COSE key with alg -25 (ECDH-ES+HKDF-256), under each PIN protocol",
			Run: func(t *T) {
				requireClientPIN(t)
				for _, p := range pinProtocols(t) {
					var resp ctap2.ClientPINResponse
					err := t.Client().Call(t.Context(), ctap2.CmdClientPIN,
						&ctap2.ClientPINRequest{PinUvAuthProtocol: p.Version(), SubCommand: ctap2.PINGetKeyAgreement}, &resp)
					what := fmt.Sprintf("getKeyAgreement (protocol %d)", p.Version())
					if !t.ExpectStatus(what, err, ctap2.StatusOK) {
						continue
					}
					var k struct {
						Kty int    `cbor:"1,keyasint"`
						Alg int    `cbor:"3,keyasint"`
						Crv int    `cbor:"-1,keyasint"`
						X   []byte `cbor:"-2,keyasint"`
						Y   []byte `cbor:"-3,keyasint"`
					}
					if len(resp.KeyAgreement) == 0 {
						t.Errorf("%s: observed no keyAgreement (0x01), expected a COSE key", what)
						continue
					}
					if err := ctap2.Unmarshal(resp.KeyAgreement, &k); err != nil {
						t.Errorf("%s: keyAgreement is not a COSE key map: %v", what, err)
						continue
					}
					if k.Kty != 2 || k.Alg != int(ctap2.AlgECDHESHKDF256) || k.Crv != 1 {
						t.Errorf("%s: observed kty %d, alg %d, crv %d, expected kty 2 (EC2), alg -25, crv 1 (P-256)", what, k.Kty, k.Alg, k.Crv)
					}
					if _, err := ctap2.ParseKeyAgreementKey(resp.KeyAgreement); err != nil {
						t.Errorf("%s: observed an unusable key (%v), expected a P-256 point with 32-byte coordinates", what, err)
					}
				}
			}},
		Case{ID: "CP-3", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.5 step 3",
			Description: "setPIN on a key that already has a PIN is refused with PIN_AUTH_INVALID",
			Run: func(t *T) {
				pin := t.EnsurePIN()
				for _, p := range pinProtocols(t) {
					s := newPINSession(t, p)
					// The "new" PIN is the current one: even a key that wrongly
					// accepts the request keeps the PIN the suite knows.
					newPinEnc := s.encrypt(t, paddedPIN(pin, ctap2.PaddedPINLength))
					err := t.Client().Call(t.Context(), ctap2.CmdClientPIN, &ctap2.ClientPINRequest{
						PinUvAuthProtocol: p.Version(),
						SubCommand:        ctap2.PINSetPIN,
						KeyAgreement:      s.platformKey,
						PinUvAuthParam:    p.Authenticate(s.ss, newPinEnc),
						NewPinEnc:         newPinEnc,
					}, nil)
					t.ExpectStatus(fmt.Sprintf("setPIN with a PIN set (protocol %d)", p.Version()), err, ctap2.ErrPINAuthInvalid)
				}
			}},
		Case{ID: "CP-4", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.7.2, §6.5.5.6 steps 6-7 (decrement before the check)",
			Description: "a wrong PIN gives PIN_INVALID and costs exactly one retry, under each PIN protocol",
			Run: func(t *T) {
				t.EnsurePIN()
				perm, rpID := attemptPerm(t)
				t.Cleanup(func() { restoreRetries(t) })
				for _, p := range pinProtocols(t) {
					tokenWith(t, p, perm, rpID) // retries back at the maximum
					before, _ := pinRetries(t)
					_, err := newPINSession(t, p).token(t, wrongPIN(t), perm, rpID)
					t.ExpectStatus(fmt.Sprintf("PIN token request with a wrong PIN (protocol %d)", p.Version()), err, ctap2.ErrPINInvalid)
					after, _ := pinRetries(t)
					if after != before-1 {
						t.Errorf("pinRetries after one wrong PIN (protocol %d): observed %d, expected %d (was %d)", p.Version(), after, before-1, before)
					}
				}
			}},
		Case{ID: "CP-5", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.7.2 / §6.5.4 (regenerate after a mismatch)",
			Description: "after a wrong PIN the key agreement key changes, and a request under the old one fails even with the right PIN",
			Run: func(t *T) {
				pin := t.EnsurePIN()
				perm, rpID := attemptPerm(t)
				t.Cleanup(func() { restoreRetries(t) })
				for _, p := range pinProtocols(t) {
					tokenWith(t, p, perm, rpID)
					old := newPINSession(t, p)
					_, err := old.token(t, wrongPIN(t), perm, rpID)
					if !t.ExpectStatus(fmt.Sprintf("PIN token request with a wrong PIN (protocol %d)", p.Version()), err, ctap2.ErrPINInvalid) {
						continue
					}
					now, err := t.Client().KeyAgreement(t.Context(), p)
					t.Must("getKeyAgreement", err)
					if bytes.Equal(now, old.peer) {
						t.Errorf("getKeyAgreement after a wrong PIN (protocol %d): observed the same key, expected a new one", p.Version())
					}
					_, err = old.token(t, pin, perm, rpID)
					t.ExpectStatus(fmt.Sprintf("right PIN under the key agreement from before the mismatch (protocol %d)", p.Version()), err, ctap2.ErrPINInvalid)
				}
			}},
		Case{ID: "CP-6", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.7.2 (pinRetries reset to maxPINRetries on a match)",
			Description: "the right PIN after a wrong one sets pinRetries back to the maximum",
			Run: func(t *T) {
				pin := t.EnsurePIN()
				perm, rpID := attemptPerm(t)
				t.Cleanup(func() { restoreRetries(t) })
				for _, p := range pinProtocols(t) {
					tokenWith(t, p, perm, rpID)
					full, _ := pinRetries(t)
					_, err := newPINSession(t, p).token(t, wrongPIN(t), perm, rpID)
					t.ExpectStatus(fmt.Sprintf("PIN token request with a wrong PIN (protocol %d)", p.Version()), err, ctap2.ErrPINInvalid)
					_, err = newPINSession(t, p).token(t, pin, perm, rpID)
					if !t.ExpectStatus(fmt.Sprintf("PIN token request with the right PIN (protocol %d)", p.Version()), err, ctap2.StatusOK) {
						continue
					}
					if got, _ := pinRetries(t); got != full {
						t.Errorf("pinRetries after the right PIN (protocol %d): observed %d, expected %d", p.Version(), got, full)
					}
					if full != ctap2.MaxPINRetries {
						t.Logf("the key's maximum pinRetries is %d, not %d", full, ctap2.MaxPINRetries)
					}
				}
			}},
		Case{ID: "CP-7", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.2.2, §6.5.5.7.2 (3 consecutive mismatches: PIN_AUTH_BLOCKED until power cycle)",
			Description: "three wrong PINs in a row give PIN_AUTH_BLOCKED and powerCycleState; the right PIN works only after a power cycle",
			Run: func(t *T) {
				pin := t.EnsurePIN()
				perm, rpID := attemptPerm(t)
				if t.Target().PowerCycle == nil {
					t.Skipf("the target cannot power-cycle the key (no Target.PowerCycle)")
				}
				p := pinProtocols(t)[0]
				tokenWith(t, p, perm, rpID)
				full, _ := pinRetries(t)
				if full < 7 {
					t.Skipf("only %d PIN retries: three wrong PINs would leave fewer than 4", full)
				}
				t.Cleanup(func() {
					if _, pc, err := t.Client().PINRetries(t.Context()); err == nil && pc {
						if err := t.Target().PowerCycle(t.Context()); err != nil {
							t.Logf("cleanup: power cycle: %v", err)
						}
					}
					restoreRetries(t)
				})
				for i := 1; i <= 3; i++ {
					want := ctap2.ErrPINInvalid
					if i == 3 {
						want = ctap2.ErrPINAuthBlocked
					}
					_, err := newPINSession(t, p).token(t, wrongPIN(t), perm, rpID)
					if !t.ExpectStatus(fmt.Sprintf("wrong PIN %d of 3 in a row", i), err, want) && i < 3 {
						t.Fatalf("stopping before the key blocks its PIN")
					}
				}
				n, pc := pinRetries(t)
				if !pc {
					t.Errorf("getPINRetries after three wrong PINs: observed powerCycleState false/absent, expected true")
				}
				if n != full-3 {
					t.Errorf("pinRetries after three wrong PINs: observed %d, expected %d", n, full-3)
				}
				_, err := newPINSession(t, p).token(t, pin, perm, rpID)
				t.ExpectStatus("the right PIN before a power cycle", err, ctap2.ErrPINAuthBlocked)
				if n2, _ := pinRetries(t); n2 != n {
					t.Errorf("pinRetries after a blocked attempt: observed %d, expected %d (no attempt spent while blocked)", n2, n)
				}
				t.Must("power cycle", t.Target().PowerCycle(t.Context()))
				n3, pc := pinRetries(t)
				if pc {
					t.Errorf("getPINRetries after a power cycle: observed powerCycleState true, expected false/absent")
				}
				if n3 != n {
					t.Errorf("pinRetries after a power cycle: observed %d, expected %d (retries persist)", n3, n)
				}
				_, err = newPINSession(t, p).token(t, pin, perm, rpID)
				t.ExpectStatus("the right PIN after a power cycle", err, ctap2.StatusOK)
				if n4, _ := pinRetries(t); err == nil && n4 != full {
					t.Errorf("pinRetries after the right PIN: observed %d, expected %d", n4, full)
				}
			}},
		Case{ID: "CP-8", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.6 step 11 (minPINLength)",
			Description: "changePIN to a PIN shorter than minPINLength is refused with PIN_POLICY_VIOLATION",
			Run: func(t *T) {
				pin := t.EnsurePIN()
				minLen := max(int(t.Info().MinPINLength), ctap2.DefaultMinPINLength)
				short := strings.Repeat("7", minLen-1)
				for _, p := range pinProtocols(t) {
					err := changePINRaw(t, p, pin, paddedPIN(short, ctap2.PaddedPINLength))
					t.ExpectStatus(fmt.Sprintf("changePIN to a %d-digit PIN with minPINLength %d (protocol %d)", len(short), minLen, p.Version()), err, ctap2.ErrPINPolicyViolation)
					if err == nil {
						// The key took it: put the suite's PIN back.
						t.Must("restoring the PIN", t.Client().ChangePIN(t.Context(), short, pin))
					}
				}
			}},
		Case{ID: "CP-9", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.6 step 10 (paddedNewPin of 64 bytes)",
			Description: "changePIN with a newPinEnc that does not decrypt to 64 bytes is refused with INVALID_PARAMETER",
			Run: func(t *T) {
				pin := t.EnsurePIN()
				for _, p := range pinProtocols(t) {
					// 48 bytes: a whole number of AES blocks, so it decrypts, to the
					// wrong length. It holds the current PIN, so a key that takes it
					// anyway keeps the PIN the suite knows.
					err := changePINRaw(t, p, pin, paddedPIN(pin, 48))
					t.ExpectStatus(fmt.Sprintf("changePIN with a 48-byte padded PIN (protocol %d)", p.Version()), err, ctap2.ErrInvalidParameter)
				}
			}},
		Case{ID: "CP-10", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.7.2 step 3 (permissions 0)",
			Description: "a PIN token request with permissions 0 is refused with INVALID_PARAMETER",
			Run: func(t *T) {
				pin := t.EnsurePIN()
				t.RequireOption("pinUvAuthToken")
				t.Cleanup(func() { restoreRetries(t) })
				for _, p := range pinProtocols(t) {
					s := newPINSession(t, p)
					zero, sub := uint(0), uint(ctap2.PINGetPINUvAuthTokenUsingPinWithPerms)
					proto := p.Version()
					req := struct {
						PinUvAuthProtocol *uint            `cbor:"1,keyasint,omitempty"`
						SubCommand        *uint            `cbor:"2,keyasint,omitempty"`
						KeyAgreement      ctap2.RawMessage `cbor:"3,keyasint,omitempty"`
						PinHashEnc        []byte           `cbor:"6,keyasint,omitempty"`
						Permissions       *uint            `cbor:"9,keyasint,omitempty"`
					}{&proto, &sub, s.platformKey, s.pinHashEnc(t, pin), &zero}
					err := t.Client().Call(t.Context(), ctap2.CmdClientPIN, &req, nil)
					t.ExpectStatus(fmt.Sprintf("getPinUvAuthTokenUsingPinWithPermissions with permissions 0 (protocol %d)", p.Version()), err, ctap2.ErrInvalidParameter)
				}
			}},
		Case{ID: "CP-11", Area: AreaClientPIN, Requirement: "CTAP 2.1 §6.5.5.3 (pinUvAuthProtocol not supported)",
			Description: "getKeyAgreement with pinUvAuthProtocol 3 is refused with INVALID_PARAMETER",
			Run: func(t *T) {
				requireClientPIN(t)
				err := t.Client().Call(t.Context(), ctap2.CmdClientPIN,
					&ctap2.ClientPINRequest{PinUvAuthProtocol: 3, SubCommand: ctap2.PINGetKeyAgreement}, nil)
				t.ExpectStatus("getKeyAgreement with protocol 3", err, ctap2.ErrInvalidParameter)
			}},
		Case{ID: "CP-12", Area: AreaClientPIN, Requirement: "CTAP 2.1 §6.5.5 (subCommand is mandatory)",
			Description: "clientPIN without a subCommand is refused with MISSING_PARAMETER",
			Run: func(t *T) {
				requireClientPIN(t)
				p := pinProtocols(t)[0]
				err := t.Client().Call(t.Context(), ctap2.CmdClientPIN, &ctap2.ClientPINRequest{PinUvAuthProtocol: p.Version()}, nil)
				t.ExpectStatus("clientPIN with only pinUvAuthProtocol", err, ctap2.ErrMissingParameter)
			}},
		Case{ID: "CP-13", Area: AreaClientPIN, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §6.1.2 step 11 (permissions RP ID)",
			Description: "an mc token bound to RP A is refused for RP B with PIN_AUTH_INVALID, and works for RP A",
			Run: func(t *T) {
				t.EnsurePIN()
				t.RequireOption("pinUvAuthToken")
				for _, p := range pinProtocols(t) {
					rpA, rpB := freshRPID("cp13a"), freshRPID("cp13b")
					tok := tokenWith(t, p, ctap2.PermMakeCredential, rpA)
					req := credRequest(rpB, testUser("cp13"), false, nil)
					tok.ProtectMakeCredential(req)
					_, err := t.Client().MakeCredential(t.Context(), req)
					t.ExpectStatus(fmt.Sprintf("makeCredential for another RP with a token bound to %s (protocol %d)", rpA, p.Version()), err, ctap2.ErrPINAuthInvalid)
					req = credRequest(rpA, testUser("cp13"), false, nil)
					tok.ProtectMakeCredential(req)
					_, err = t.Client().MakeCredential(t.Context(), req)
					t.ExpectStatus(fmt.Sprintf("makeCredential for the token's RP (protocol %d)", p.Version()), err, ctap2.StatusOK)
				}
			}},
		Case{ID: "CP-14", Area: AreaClientPIN, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §6.1.2 step 11 (mc permission)",
			Description: "a token with only the ga permission is refused by makeCredential with PIN_AUTH_INVALID, and works for getAssertion",
			Run: func(t *T) {
				t.EnsurePIN()
				t.RequireOption("pinUvAuthToken")
				for _, p := range pinProtocols(t) {
					rp := freshRPID("cp14")
					cred := makeTestCred(t, rp, testUser("cp14"), false, nil)
					tok := tokenWith(t, p, ctap2.PermGetAssertion, rp)
					req := credRequest(rp, testUser("cp14"), false, nil)
					tok.ProtectMakeCredential(req)
					_, err := t.Client().MakeCredential(t.Context(), req)
					t.ExpectStatus(fmt.Sprintf("makeCredential with a ga-only token (protocol %d)", p.Version()), err, ctap2.ErrPINAuthInvalid)
					ga := assertRequest(rp, cred.id)
					tok.ProtectGetAssertion(ga)
					_, err = t.Client().GetAssertion(t.Context(), ga)
					t.ExpectStatus(fmt.Sprintf("getAssertion with the same token (protocol %d)", p.Version()), err, ctap2.StatusOK)
				}
			}},
		Case{ID: "CP-15", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.6 step 13 (changePIN invalidates tokens)",
			Description: "a token stops working after changePIN (PIN_AUTH_INVALID)",
			Run: func(t *T) {
				pin := t.EnsurePIN()
				probe := tokenProbe(t)
				tok := t.PINToken(probe.perm, probe.rpID)
				t.ExpectStatus("using a fresh token", probe.use(tok), ctap2.StatusOK)
				alt := wrongPIN(t)
				t.Must("changePIN", t.Client().ChangePIN(t.Context(), pin, alt))
				t.Cleanup(func() {
					if err := t.Client().ChangePIN(t.Context(), alt, pin); err != nil {
						t.Errorf("restoring the PIN: %s", statusName(err))
					}
				})
				t.ExpectStatus("using a token from before changePIN", probe.use(tok), ctap2.ErrPINAuthInvalid)
			}},
		Case{ID: "CP-16", Area: AreaClientPIN, Destructive: true, Requirement: "CTAP 2.1 §6.5.5.7 (resetPinUvAuthToken on every new token)",
			Description: "a token stops working once a new token is issued (PIN_AUTH_INVALID), and the new one works",
			Run: func(t *T) {
				t.EnsurePIN()
				probe := tokenProbe(t)
				for _, p := range pinProtocols(t) {
					first := tokenWith(t, p, probe.perm, probe.rpID)
					second := tokenWith(t, p, probe.perm, probe.rpID)
					t.ExpectStatus(fmt.Sprintf("using the first token after a second was issued (protocol %d)", p.Version()), probe.use(first), ctap2.ErrPINAuthInvalid)
					t.ExpectStatus(fmt.Sprintf("using the second token (protocol %d)", p.Version()), probe.use(second), ctap2.StatusOK)
				}
			}},
		Case{ID: "CP-17", Area: AreaClientPIN, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §6.1.2 step 11, §6.2.2 step 5 (UV bit with pinUvAuthParam)",
			Description: "makeCredential and getAssertion with a pinUvAuthParam set the UV flag",
			Run: func(t *T) {
				t.EnsurePIN()
				for _, p := range pinProtocols(t) {
					rp := freshRPID("cp17")
					req := credRequest(rp, testUser("cp17"), false, nil)
					tokenWith(t, p, ctap2.PermMakeCredential, rp).ProtectMakeCredential(req)
					resp, err := t.Client().MakeCredential(t.Context(), req)
					if !t.ExpectStatus(fmt.Sprintf("makeCredential with a token (protocol %d)", p.Version()), err, ctap2.StatusOK) {
						continue
					}
					ad, err := resp.ParseAuthData()
					t.Must("parsing authData", err)
					if !ad.Flags.Has(ctap2.FlagUV | ctap2.FlagUP) {
						t.Errorf("makeCredential with a token (protocol %d): observed flags %v, expected UP and UV", p.Version(), ad.Flags)
					}
					if ad.Attested == nil {
						t.Fatalf("makeCredential authData: observed no attested credential data, expected it")
					}
					ga := assertRequest(rp, ad.Attested.CredentialID)
					tokenWith(t, p, ctap2.PermGetAssertion, rp).ProtectGetAssertion(ga)
					as, err := t.Client().GetAssertion(t.Context(), ga)
					if !t.ExpectStatus(fmt.Sprintf("getAssertion with a token (protocol %d)", p.Version()), err, ctap2.StatusOK) {
						continue
					}
					if f := flagsOf(t, as.AuthData); !f.Has(ctap2.FlagUV | ctap2.FlagUP) {
						t.Errorf("getAssertion with a token (protocol %d): observed flags %v, expected UP and UV", p.Version(), f)
					}
				}
			}},
		Case{ID: "CP-18", Area: AreaClientPIN, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §6.1.2 step 1 (zero-length pinUvAuthParam)",
			Description: "makeCredential with a zero-length pinUvAuthParam answers PIN_INVALID after a touch when a PIN is set",
			Run: func(t *T) {
				t.EnsurePIN()
				p := pinProtocols(t)[0]
				req := credRequest(freshRPID("cp18"), testUser("cp18"), false, nil)
				req.PinUvAuthParam, req.PinUvAuthProtocol = []byte{}, p.Version()
				_, err := t.Client().MakeCredential(t.Context(), req)
				t.ExpectStatus("makeCredential with a zero-length pinUvAuthParam", err, ctap2.ErrPINInvalid)
			}},
	)
}

// changePINRaw sends changePIN from the current PIN with newPadded as the
// plaintext of newPinEnc, whatever its length or content.
func changePINRaw(t *T, p ctap2.PINProtocol, current string, newPadded []byte) error {
	s := newPINSession(t, p)
	pinHashEnc := s.pinHashEnc(t, current)
	newPinEnc := s.encrypt(t, newPadded)
	err := t.Client().Call(t.Context(), ctap2.CmdClientPIN, &ctap2.ClientPINRequest{
		PinUvAuthProtocol: p.Version(),
		SubCommand:        ctap2.PINChangePIN,
		KeyAgreement:      s.platformKey,
		PinUvAuthParam:    p.Authenticate(s.ss, append(append([]byte(nil), newPinEnc...), pinHashEnc...)),
		NewPinEnc:         newPinEnc,
		PinHashEnc:        pinHashEnc,
	}, nil)
	if err == nil {
		refreshInfo(t)
	}
	return err
}

// tokenUse is a command that checks a token without a touch and without
// changing anything, to tell a live token from a dead one.
type tokenUse struct {
	perm ctap2.Permission
	rpID string
	use  func(*ctap2.PINToken) error
}

// tokenProbe picks the probe: getCredsMetadata (cm) when the key has credential
// management, else authenticatorConfig's setMinPINLength without parameters
// (acfg), which changes nothing. Keys with neither skip the case.
func tokenProbe(t *T) tokenUse {
	info := t.Info()
	if v, _ := info.Option("pinUvAuthToken"); !v {
		t.Skipf("the key issues tokens without permissions (no pinUvAuthToken option)")
	}
	cm, _ := info.Option("credMgmt")
	pre, _ := info.Option("credentialMgmtPreview")
	if cm || pre {
		return tokenUse{perm: ctap2.PermCredentialManagement, use: func(tok *ctap2.PINToken) error {
			_, err := t.Client().CredsMetadata(t.Context(), tok)
			return err
		}}
	}
	if v, _ := info.Option("setMinPINLength"); v {
		return tokenUse{perm: ctap2.PermAuthenticatorConfig, use: func(tok *ctap2.PINToken) error {
			return t.Client().SetMinPINLength(t.Context(), tok, 0, nil, false)
		}}
	}
	t.Skipf("the key has neither credential management nor setMinPINLength to try a token on without a touch")
	return tokenUse{}
}
