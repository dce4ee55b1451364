package conformance

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// The makeCredential, getAssertion, attestation and counter cases share the helpers
// below (prefix mg). Every case works under its own random RP ID, so no case sees
// another's credentials, and every request that has to get past the key's user
// verification rules gets a PIN token or built-in UV exactly when the key asks for
// one (mgVerification).

// mgUnknownAlg is a COSE algorithm in the private-use range (below -65536): no
// authenticator supports it.
const mgUnknownAlg ctap2.COSEAlgorithm = -65600

// mgRPID returns a fresh RP ID for one case, e.g. "mc4-1a2b3c4d.conformance.example".
func mgRPID(tag string) string {
	return fmt.Sprintf("%s-%x.conformance.example", tag, mgRandom(4))
}

// mgRandom returns n random bytes (client data hashes, user IDs, unknown credential IDs).
func mgRandom(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// mgCTAP2 returns getInfo, skipping the case on a key that speaks only U2F (the
// client would answer makeCredential and getAssertion through U2F instead).
func mgCTAP2(t *T) *ctap2.Info {
	if t.Client().U2FOnly(t.Context()) {
		t.Skipf("the key speaks only CTAP1/U2F")
	}
	return t.Info()
}

// mgAlgorithms returns the algorithms the key lists in getInfo, or ES256 alone when
// it lists none (CTAP 2.1 §6.4: ES256 is then assumed).
func mgAlgorithms(info *ctap2.Info) []ctap2.COSEAlgorithm {
	var out []ctap2.COSEAlgorithm
	for _, a := range info.Algorithms {
		if a.Type == ctap2.CredentialType && !slices.Contains(out, a.Alg) {
			out = append(out, a.Alg)
		}
	}
	if len(out) == 0 {
		out = []ctap2.COSEAlgorithm{ctap2.AlgES256}
	}
	return out
}

// mgParams is pubKeyCredParams for algs, in that order.
func mgParams(algs ...ctap2.COSEAlgorithm) []ctap2.CredentialParam {
	out := make([]ctap2.CredentialParam, len(algs))
	for i, a := range algs {
		out[i] = ctap2.CredentialParam{Type: ctap2.CredentialType, Alg: a}
	}
	return out
}

// mgMCRequest is a valid makeCredential request for rpID with a fresh client data
// hash and user, asking for algs (ES256 when none are given).
func mgMCRequest(rpID string, algs ...ctap2.COSEAlgorithm) *ctap2.MakeCredentialRequest {
	if len(algs) == 0 {
		algs = []ctap2.COSEAlgorithm{ctap2.AlgES256}
	}
	return &ctap2.MakeCredentialRequest{
		ClientDataHash:   mgRandom(32),
		RP:               &ctap2.RPEntity{ID: rpID, Name: "Conformance RP"},
		User:             &ctap2.UserEntity{ID: mgRandom(16), Name: "conformance@" + rpID, DisplayName: "Conformance User"},
		PubKeyCredParams: mgParams(algs...),
	}
}

// mgMCMap is a valid makeCredential request as a raw map, for cases that change it
// in ways the typed request cannot express.
func mgMCMap(rpID string) map[int]any {
	return map[int]any{
		1: mgRandom(32),
		2: map[string]any{"id": rpID, "name": "Conformance RP"},
		3: map[string]any{"id": mgRandom(16), "name": "conformance@" + rpID, "displayName": "Conformance User"},
		4: []any{map[string]any{"type": ctap2.CredentialType, "alg": int(ctap2.AlgES256)}},
	}
}

// mgUV is how a request gets past the key's user verification rules: nothing, a
// PIN token (pinUvAuthParam) or built-in UV (option uv).
type mgUV struct {
	token *ctap2.PINToken
	uv    bool
}

// verified reports whether the request will carry user verification.
func (v mgUV) verified() bool { return v.token != nil || v.uv }

// mgVerification decides what a makeCredential (perm mc; rk says whether the
// credential is discoverable) or getAssertion (perm ga) for rpID needs on this key
// (CTAP 2.1 §6.1.2 steps 5-6, §6.2.2 step 4): a protected key (PIN set or built-in
// UV configured) makes discoverable credentials, and without makeCredUvNotRqd any
// credential, only for a verified user; alwaysUv asks for UV on both commands. It
// uses built-in UV when configured, else the suite's PIN, and skips the case when
// the key wants UV the suite cannot give.
func mgVerification(t *T, perm ctap2.Permission, rpID string, rk bool) mgUV {
	info := t.Info()
	pinSet, _ := info.Option("clientPin")
	uvOn, _ := info.Option("uv")
	alwaysUV, _ := info.Option("alwaysUv")
	uvNotRqd, _ := info.Option("makeCredUvNotRqd")
	protected := pinSet || uvOn
	need := alwaysUV
	if perm == ctap2.PermMakeCredential && protected && (rk || !uvNotRqd) {
		need = true
	}
	switch {
	case !need:
		return mgUV{}
	case uvOn:
		return mgUV{uv: true}
	case pinSet && t.Target().PIN != "":
		return mgUV{token: t.PINToken(perm, rpID)}
	}
	t.Skipf("the key requires user verification for this request, and the suite has neither its PIN nor built-in UV")
	return mgUV{}
}

// mgProtectMC adds what mgVerification asks for to a typed makeCredential request.
func mgProtectMC(t *T, req *ctap2.MakeCredentialRequest) mgUV {
	rk := req.Options != nil && req.Options.RK != nil && *req.Options.RK
	v := mgVerification(t, ctap2.PermMakeCredential, req.RP.ID, rk)
	switch {
	case v.token != nil:
		v.token.ProtectMakeCredential(req)
	case v.uv:
		if req.Options == nil {
			req.Options = &ctap2.Options{}
		}
		req.Options.UV = ctap2.Bool(true)
	}
	return v
}

// mgProtectGA adds what mgVerification asks for to a typed getAssertion request.
func mgProtectGA(t *T, req *ctap2.GetAssertionRequest) mgUV {
	v := mgVerification(t, ctap2.PermGetAssertion, req.RPID, false)
	switch {
	case v.token != nil:
		v.token.ProtectGetAssertion(req)
	case v.uv:
		if req.Options == nil {
			req.Options = &ctap2.Options{}
		}
		req.Options.UV = ctap2.Bool(true)
	}
	return v
}

// mgProtectMap adds what mgVerification asks for to a raw makeCredential (cmd
// makeCredential: hash at key 1, options 7, pinUvAuthParam 8) or getAssertion
// (hash 2, options 5, pinUvAuthParam 6) map.
func mgProtectMap(t *T, cmd ctap2.Command, m map[int]any, rpID string, rk bool) mgUV {
	hashKey, optKey, paramKey, perm := 1, 7, 8, ctap2.PermMakeCredential
	if cmd == ctap2.CmdGetAssertion {
		hashKey, optKey, paramKey, perm = 2, 5, 6, ctap2.PermGetAssertion
	}
	v := mgVerification(t, perm, rpID, rk)
	switch {
	case v.token != nil:
		cdh, _ := m[hashKey].([]byte)
		m[paramKey], m[paramKey+1] = v.token.Protect(cdh)
	case v.uv:
		opts, _ := m[optKey].(map[string]any)
		if opts == nil {
			opts = map[string]any{}
		}
		opts["uv"] = true
		m[optKey] = opts
	}
	return v
}

// mgCred is a credential a case made.
type mgCred struct {
	RPID      string
	ID        []byte
	Key       *ctap2.COSEKey
	User      *ctap2.UserEntity
	SignCount uint32 // in the makeCredential authenticator data
}

// mgMake makes a credential for rpID (discoverable when rk) with the key's
// verification rules met, and checks the response's basic shape. A failure ends the
// case: the credential is a precondition.
func mgMake(t *T, rpID string, rk bool, algs ...ctap2.COSEAlgorithm) *mgCred {
	req := mgMCRequest(rpID, algs...)
	if rk {
		req.Options = &ctap2.Options{RK: ctap2.Bool(true)}
	}
	return mgMakeReq(t, req)
}

// mgMakeReq sends req (protected by mgProtectMC) and returns the credential.
func mgMakeReq(t *T, req *ctap2.MakeCredentialRequest) *mgCred {
	mgProtectMC(t, req)
	resp, err := t.Client().MakeCredential(t.Context(), req)
	t.Must("makeCredential for "+req.RP.ID, err)
	id, key, err := resp.CredentialKey()
	if err != nil {
		t.Fatalf("makeCredential authenticator data: %v", err)
	}
	ad, _ := resp.ParseAuthData()
	return &mgCred{RPID: req.RP.ID, ID: id, Key: key, User: req.User, SignCount: ad.SignCount}
}

// mgGARequest is a getAssertion request for rpID with a fresh client data hash and
// an allow list of ids (none: discoverable credentials).
func mgGARequest(rpID string, ids ...[]byte) *ctap2.GetAssertionRequest {
	req := &ctap2.GetAssertionRequest{RPID: rpID, ClientDataHash: mgRandom(32)}
	for _, id := range ids {
		req.AllowList = append(req.AllowList, ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id})
	}
	return req
}

// mgAssert gets an assertion from c (through an allow list) and checks its
// signature; a failure ends the case.
func mgAssert(t *T, c *mgCred) *ctap2.GetAssertionResponse {
	req := mgGARequest(c.RPID, c.ID)
	mgProtectGA(t, req)
	resp, err := t.Client().GetAssertion(t.Context(), req)
	t.Must("getAssertion for "+c.RPID, err)
	if err := resp.Verify(c.Key, req.ClientDataHash); err != nil {
		t.Fatalf("assertion signature: observed %v, expected a valid %v signature over authData || clientDataHash", err, c.Key.Alg)
	}
	return resp
}

// mgAuthData parses authenticator data or ends the case.
func mgAuthData(t *T, what string, b []byte) *ctap2.AuthData {
	ad, err := ctap2.ParseAuthData(b)
	if err != nil {
		t.Fatalf("%s authenticator data: observed %v, expected well-formed authenticator data", what, err)
	}
	return ad
}

// mgRaw sends a CTAP2 message (command byte || CBOR) below the client, so nothing
// checks or re-encodes it, and returns the reply body or the status as a
// ctap2.StatusError. A CTAPHID_ERROR answer (the transport refused the message)
// becomes the status with the same code (CTAP1_ERR_* equal CTAPHID errors).
func mgRaw(t *T, msg []byte) ([]byte, error) { return mgRawWith(t.Context(), t, msg) }

// mgRawWith is mgRaw with its own context (e.g. one that watches keepalives).
func mgRawWith(ctx context.Context, t *T, msg []byte) ([]byte, error) {
	reply, err := t.Target().Device.Transact(ctx, transport.CmdCBOR, msg)
	var hidErr ctaphid.Error
	if errors.As(err, &hidErr) {
		t.Logf("the transport answered CTAPHID_ERROR %v", hidErr)
		return nil, ctap2.StatusError(hidErr)
	}
	if err != nil {
		return nil, err
	}
	if len(reply) == 0 {
		return nil, errors.New("empty reply")
	}
	if reply[0] != byte(ctap2.StatusOK) {
		return nil, ctap2.StatusError(reply[0])
	}
	return reply[1:], nil
}

// mgMessage encodes cmd || CBOR(req).
func mgMessage(t *T, cmd ctap2.Command, req any) []byte {
	body, err := ctap2.Marshal(req)
	if err != nil {
		t.Fatalf("encoding the request: %v", err)
	}
	return append([]byte{byte(cmd)}, body...)
}

// mgMapInOrder encodes m as a CBOR map with its keys in the given order (a
// non-canonical order when it is not ascending); the values are canonical.
func mgMapInOrder(t *T, m map[int]any, order []int) []byte {
	if len(m) != len(order) || len(m) > 23 {
		t.Fatalf("mgMapInOrder: %d keys, %d in order", len(m), len(order))
	}
	out := []byte{0xA0 | byte(len(m))}
	for _, k := range order {
		v, ok := m[k]
		if !ok {
			t.Fatalf("mgMapInOrder: key %d not in the map", k)
		}
		kb, err1 := ctap2.Marshal(k)
		vb, err2 := ctap2.Marshal(v)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("encoding the request: %v", err)
		}
		out = append(append(out, kb...), vb...)
	}
	return out
}

// mgCallMC sends a raw makeCredential map through the client (which encodes it
// canonically) and returns the decoded response.
func mgCallMC(t *T, m map[int]any) (*ctap2.MakeCredentialResponse, error) {
	var resp ctap2.MakeCredentialResponse
	err := t.Client().Call(t.Context(), ctap2.CmdMakeCredential, m, &resp)
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

// mgCheckMC checks a successful makeCredential response: authenticator data with
// AT and UP for rpID's hash, the key's AAGUID, a credential key of algorithm want,
// and an attestation statement that verifies over cdh. It returns the credential
// ID and key (nil key when ctapkit cannot parse keys of that algorithm).
func mgCheckMC(t *T, rpID string, cdh []byte, resp *ctap2.MakeCredentialResponse, want ctap2.COSEAlgorithm) ([]byte, *ctap2.COSEKey) {
	if resp.Fmt == "" || len(resp.AuthData) == 0 || len(resp.AttStmt) == 0 {
		t.Fatalf("makeCredential response: observed fmt %q, %d bytes of authData, %d bytes of attStmt, expected all three", resp.Fmt, len(resp.AuthData), len(resp.AttStmt))
	}
	ad := mgAuthData(t, "makeCredential", resp.AuthData)
	if ad.RPIDHash != ctap2.RPIDHash(rpID) {
		t.Errorf("rpIdHash: observed %x, expected SHA-256(%q)", ad.RPIDHash, rpID)
	}
	if !ad.Flags.Has(ctap2.FlagUP) {
		t.Errorf("flags: observed %v, expected UP set", ad.Flags)
	}
	if ad.Attested == nil {
		t.Fatalf("flags: observed %v, expected AT and attested credential data", ad.Flags)
	}
	if info := t.Info(); !bytes.Equal(ad.Attested.AAGUID[:], info.AAGUID) {
		t.Errorf("aaguid in authData: observed %x, expected getInfo's %x", ad.Attested.AAGUID, info.AAGUID)
	}
	var hdr struct {
		Alg ctap2.COSEAlgorithm `cbor:"3,keyasint"`
	}
	if err := ctap2.Unmarshal(ad.Attested.PublicKey, &hdr); err != nil {
		t.Fatalf("credential public key: observed %v, expected a COSE_Key map", err)
	}
	if hdr.Alg != want {
		t.Errorf("credential public key alg: observed %v, expected %v", hdr.Alg, want)
	}
	key, err := ctap2.ParseCOSEKey(ad.Attested.PublicKey)
	if err != nil {
		if _, unknown := ctap2.ParseAlgorithm(want.String()); unknown != nil {
			t.Logf("algorithm %v: the suite cannot parse its keys, so its attestation is not verified", want)
			return ad.Attested.CredentialID, nil
		}
		t.Fatalf("credential public key: observed %v, expected a valid %v COSE_Key", err, want)
	}
	if _, err := resp.VerifyAttestation(cdh); err != nil {
		t.Errorf("attestation (%s): observed %v, expected a statement that verifies", resp.Fmt, err)
	}
	return ad.Attested.CredentialID, key
}

func init() {
	register(
		Case{ID: "MC-1", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.1, §6.1.2; WebAuthn §6.1, §6.5",
			Description: "an ES256 makeCredential answers fmt, authData and attStmt; the attestation verifies and the AAGUID is getInfo's",
			Run: func(t *T) {
				mgCTAP2(t)
				rpID := mgRPID("mc1")
				req := mgMCRequest(rpID, ctap2.AlgES256)
				mgProtectMC(t, req)
				resp, err := t.Client().MakeCredential(t.Context(), req)
				if !t.ExpectStatus("makeCredential (ES256)", err, ctap2.StatusOK) {
					return
				}
				mgCheckMC(t, rpID, req.ClientDataHash, resp, ctap2.AlgES256)
			}},
		Case{ID: "MC-2", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.4 (0x0A), §6.1.2 step 3",
			Description: "every algorithm getInfo lists makes a credential of that algorithm whose attestation verifies",
			Run: func(t *T) {
				info := mgCTAP2(t)
				for _, alg := range mgAlgorithms(info) {
					rpID := mgRPID("mc2")
					req := mgMCRequest(rpID, alg)
					mgProtectMC(t, req)
					resp, err := t.Client().MakeCredential(t.Context(), req)
					if !t.ExpectStatus(fmt.Sprintf("makeCredential with only %v", alg), err, ctap2.StatusOK) {
						continue
					}
					mgCheckMC(t, rpID, req.ClientDataHash, resp, alg)
					t.Logf("%v: fmt %s", alg, resp.Fmt)
				}
			}},
		Case{ID: "MC-3", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.1 (required parameters), §8.2 (CTAP2_ERR_MISSING_PARAMETER)",
			Description: "makeCredential without clientDataHash, rp, user or pubKeyCredParams fails with MISSING_PARAMETER",
			Run: func(t *T) {
				mgCTAP2(t)
				for key, name := range map[int]string{1: "clientDataHash", 2: "rp", 3: "user", 4: "pubKeyCredParams"} {
					m := mgMCMap(mgRPID("mc3"))
					delete(m, key)
					_, err := mgCallMC(t, m)
					t.ExpectStatus(fmt.Sprintf("makeCredential without %s (0x%02x)", name, key), err, ctap2.ErrMissingParameter)
				}
			}},
		Case{ID: "MC-4", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.1 (rp.id and user.id are required); WebAuthn §5.4.2, §5.4.3",
			Description: "makeCredential with an rp without id or a user without id fails with MISSING_PARAMETER",
			Run: func(t *T) {
				mgCTAP2(t)
				m := mgMCMap(mgRPID("mc4"))
				m[2] = map[string]any{"name": "Conformance RP"}
				_, err := mgCallMC(t, m)
				t.ExpectStatus("makeCredential with rp {name} and no id", err, ctap2.ErrMissingParameter)

				m = mgMCMap(mgRPID("mc4"))
				m[3] = map[string]any{"name": "conformance", "displayName": "Conformance User"}
				_, err = mgCallMC(t, m)
				t.ExpectStatus("makeCredential with user {name, displayName} and no id", err, ctap2.ErrMissingParameter)
			}},
		Case{ID: "MC-5", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.1 (parameter types), §8.2 (CTAP2_ERR_CBOR_UNEXPECTED_TYPE)",
			Description: "makeCredential with rp as an integer, user.id as text, pubKeyCredParams as a map or clientDataHash as text fails with CBOR_UNEXPECTED_TYPE",
			Run: func(t *T) {
				mgCTAP2(t)
				for _, c := range []struct {
					what   string
					change func(m map[int]any)
				}{
					{"rp as an integer", func(m map[int]any) { m[2] = 42 }},
					{"user.id as a text string", func(m map[int]any) {
						m[3] = map[string]any{"id": "conformance-user", "name": "conformance", "displayName": "Conformance User"}
					}},
					{"pubKeyCredParams as a map", func(m map[int]any) {
						m[4] = map[string]any{"type": ctap2.CredentialType, "alg": int(ctap2.AlgES256)}
					}},
					{"clientDataHash as a text string", func(m map[int]any) { m[1] = "0123456789abcdef0123456789abcdef" }},
				} {
					m := mgMCMap(mgRPID("mc5"))
					c.change(m)
					_, err := mgCallMC(t, m)
					t.ExpectStatus("makeCredential with "+c.what, err, ctap2.ErrCBORUnexpectedType)
				}
			}},
		Case{ID: "MC-6", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.1 (clientDataHash is the 32-byte SHA-256 hash); the error is not named, so INVALID_PARAMETER, INVALID_LENGTH and INVALID_CBOR are accepted",
			Description: "makeCredential with a 31- or 33-byte clientDataHash is refused",
			Run: func(t *T) {
				mgCTAP2(t)
				for _, n := range []int{31, 33} {
					m := mgMCMap(mgRPID("mc6"))
					m[1] = mgRandom(n)
					_, err := mgCallMC(t, m)
					t.ExpectOneOf(fmt.Sprintf("makeCredential with a %d-byte clientDataHash", n), err,
						ctap2.ErrInvalidParameter, ctap2.ErrInvalidLength, ctap2.ErrInvalidCBOR)
				}
			}},
		Case{ID: "MC-7", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.1.2 step 3",
			Description: "makeCredential listing only an unsupported algorithm fails with UNSUPPORTED_ALGORITHM",
			Run: func(t *T) {
				info := mgCTAP2(t)
				if slices.Contains(mgAlgorithms(info), mgUnknownAlg) {
					t.Skipf("the key lists private-use algorithm %d", mgUnknownAlg)
				}
				req := mgMCRequest(mgRPID("mc7"), mgUnknownAlg)
				_, err := t.Client().MakeCredential(t.Context(), req)
				t.ExpectStatus(fmt.Sprintf("makeCredential with pubKeyCredParams [%d]", mgUnknownAlg), err, ctap2.ErrUnsupportedAlgorithm)
			}},
		Case{ID: "MC-8", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.1.2 step 3 (the first supported entry, in the RP's preference order)",
			Description: "makeCredential picks the first supported algorithm of pubKeyCredParams, skipping unsupported ones",
			Run: func(t *T) {
				algs := mgAlgorithms(mgCTAP2(t))
				if len(algs) < 2 {
					t.Skipf("the key supports only %v: preference needs two algorithms", algs)
				}
				// Both orders of two supported algorithms, each behind an unsupported one.
				for _, order := range [][]ctap2.COSEAlgorithm{{algs[1], algs[0]}, {algs[0], algs[1]}} {
					rpID := mgRPID("mc8")
					req := mgMCRequest(rpID, mgUnknownAlg, order[0], order[1])
					mgProtectMC(t, req)
					resp, err := t.Client().MakeCredential(t.Context(), req)
					if !t.ExpectStatus(fmt.Sprintf("makeCredential with [%d, %v, %v]", mgUnknownAlg, order[0], order[1]), err, ctap2.StatusOK) {
						continue
					}
					mgCheckMC(t, rpID, req.ClientDataHash, resp, order[0])
				}
			}},
		Case{ID: "MC-9", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.1.2 step 3; WebAuthn §5.3 (entries of unknown types are ignored)",
			Description: "pubKeyCredParams entries of an unknown credential type are ignored",
			Run: func(t *T) {
				algs := mgAlgorithms(mgCTAP2(t))
				// The unknown-type entry names a supported algorithm, different from the
				// public-key entry when the key has two, so using it would show.
				decoy, want := algs[0], algs[0]
				if len(algs) > 1 {
					want = algs[1]
				}
				rpID := mgRPID("mc9")
				req := mgMCRequest(rpID)
				req.PubKeyCredParams = []ctap2.CredentialParam{{Type: "conformance-unknown-type", Alg: decoy}, {Type: ctap2.CredentialType, Alg: want}}
				mgProtectMC(t, req)
				resp, err := t.Client().MakeCredential(t.Context(), req)
				if !t.ExpectStatus("makeCredential with an unknown-type entry first", err, ctap2.StatusOK) {
					return
				}
				mgCheckMC(t, rpID, req.ClientDataHash, resp, want)

				req = mgMCRequest(mgRPID("mc9"))
				req.PubKeyCredParams = []ctap2.CredentialParam{{Type: "conformance-unknown-type", Alg: ctap2.AlgES256}}
				_, err = t.Client().MakeCredential(t.Context(), req)
				t.ExpectStatus("makeCredential with only an unknown-type entry", err, ctap2.ErrUnsupportedAlgorithm)
			}},
		Case{ID: "MC-10", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.1.2 step 4 (unknown option keys are ignored)",
			Description: "makeCredential with an unknown option succeeds",
			Run: func(t *T) {
				mgCTAP2(t)
				rpID := mgRPID("mc10")
				m := mgMCMap(rpID)
				m[7] = map[string]any{"conformance-unknown-option": true}
				mgProtectMap(t, ctap2.CmdMakeCredential, m, rpID, false)
				resp, err := mgCallMC(t, m)
				if !t.ExpectStatus("makeCredential with option conformance-unknown-option", err, ctap2.StatusOK) {
					return
				}
				mgCheckMC(t, rpID, m[1].([]byte), resp, ctap2.AlgES256)
			}},
		Case{ID: "MC-11", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.1.2 step 4 (up = false is invalid for makeCredential)",
			Description: "makeCredential with option up = false fails with INVALID_OPTION",
			Run: func(t *T) {
				mgCTAP2(t)
				req := mgMCRequest(mgRPID("mc11"))
				req.Options = &ctap2.Options{UP: ctap2.Bool(false)}
				_, err := t.Client().MakeCredential(t.Context(), req)
				t.ExpectStatus("makeCredential with up=false", err, ctap2.ErrInvalidOption)
			}},
		Case{ID: "MC-12", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.1.2 step 4 (uv = true without enabled built-in UV); CTAP 2.0 keys may answer UNSUPPORTED_OPTION",
			Description: "makeCredential with option uv = true on a key without configured built-in UV fails with INVALID_OPTION",
			Run: func(t *T) {
				info := mgCTAP2(t)
				if uv, _ := info.Option("uv"); uv {
					t.Skipf("the key has built-in user verification configured")
				}
				req := mgMCRequest(mgRPID("mc12"))
				req.Options = &ctap2.Options{UV: ctap2.Bool(true)}
				_, err := t.Client().MakeCredential(t.Context(), req)
				if info.HasVersion("FIDO_2_1") {
					t.ExpectStatus("makeCredential with uv=true", err, ctap2.ErrInvalidOption)
				} else {
					t.ExpectOneOf("makeCredential with uv=true (CTAP 2.0 key)", err, ctap2.ErrInvalidOption, ctap2.ErrUnsupportedOption)
				}
			}},
		Case{ID: "MC-13", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.1.2 step 12, §6.2.2 step 7 (no allowList: discoverable credentials)",
			Description: "makeCredential with rk = true makes a discoverable credential that getAssertion finds without an allowList",
			Run: func(t *T) {
				mgCTAP2(t)
				t.RequireOption("rk")
				rpID := mgRPID("mc13")
				c := mgMake(t, rpID, true)
				req := mgGARequest(rpID)
				mgProtectGA(t, req)
				resp, err := t.Client().GetAssertion(t.Context(), req)
				if !t.ExpectStatus("getAssertion without allowList after an rk makeCredential", err, ctap2.StatusOK) {
					return
				}
				if !bytes.Equal(resp.Credential.ID, c.ID) {
					t.Errorf("credential: observed %x, expected the new discoverable credential %x", resp.Credential.ID, c.ID)
				}
				if resp.User == nil || !bytes.Equal(resp.User.ID, c.User.ID) {
					t.Errorf("user.id: observed %v, expected %x", resp.User, c.User.ID)
				}
				if err := resp.Verify(c.Key, req.ClientDataHash); err != nil {
					t.Errorf("assertion signature: observed %v, expected a valid signature", err)
				}
			}},
		Case{ID: "MC-14", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.1.2 step 4 (rk on a key without discoverable credentials)",
			Description: "makeCredential with rk = true on a key without the rk option fails with UNSUPPORTED_OPTION",
			Run: func(t *T) {
				info := mgCTAP2(t)
				if rk, _ := info.Option("rk"); rk {
					t.Skipf("the key supports discoverable credentials (rk)")
				}
				req := mgMCRequest(mgRPID("mc14"))
				req.Options = &ctap2.Options{RK: ctap2.Bool(true)}
				_, err := t.Client().MakeCredential(t.Context(), req)
				t.ExpectStatus("makeCredential with rk=true", err, ctap2.ErrUnsupportedOption)
			}},
		Case{ID: "MC-15", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.1.2 step 9",
			Description: "makeCredential whose excludeList holds a credential of this key for the RP fails with CREDENTIAL_EXCLUDED",
			Run: func(t *T) {
				info := mgCTAP2(t)
				kinds := []bool{false}
				if rk, _ := info.Option("rk"); rk {
					kinds = append(kinds, true)
				}
				for _, rk := range kinds {
					rpID := mgRPID("mc15")
					c := mgMake(t, rpID, rk)
					req := mgMCRequest(rpID)
					req.ExcludeList = []ctap2.CredentialDescriptor{
						{Type: ctap2.CredentialType, ID: mgRandom(32)},
						{Type: ctap2.CredentialType, ID: c.ID},
					}
					mgProtectMC(t, req)
					_, err := t.Client().MakeCredential(t.Context(), req)
					t.ExpectStatus(fmt.Sprintf("makeCredential excluding an existing credential (rk=%v)", rk), err, ctap2.ErrCredentialExcluded)
				}
			}},
		Case{ID: "MC-16", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.1.2 step 9 (only credentials of this authenticator bound to rp.id exclude)",
			Description: "makeCredential whose excludeList holds unknown IDs and another RP's credential succeeds",
			Run: func(t *T) {
				mgCTAP2(t)
				other := mgMake(t, mgRPID("mc16-other"), false)
				rpID := mgRPID("mc16")
				req := mgMCRequest(rpID)
				req.ExcludeList = []ctap2.CredentialDescriptor{
					{Type: ctap2.CredentialType, ID: mgRandom(16)},
					{Type: ctap2.CredentialType, ID: mgRandom(64)},
					{Type: ctap2.CredentialType, ID: other.ID},
				}
				mgProtectMC(t, req)
				resp, err := t.Client().MakeCredential(t.Context(), req)
				if !t.ExpectStatus("makeCredential excluding unknown IDs and another RP's credential", err, ctap2.StatusOK) {
					return
				}
				mgCheckMC(t, rpID, req.ClientDataHash, resp, ctap2.AlgES256)
			}},
		Case{ID: "MC-17", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.1 (user.id up to 64 bytes); WebAuthn §5.4.3",
			Description: "makeCredential accepts a 64-byte user.id, and a discoverable credential returns it intact",
			Run: func(t *T) {
				info := mgCTAP2(t)
				rk, _ := info.Option("rk")
				rpID := mgRPID("mc17")
				req := mgMCRequest(rpID)
				req.User.ID = mgRandom(ctap2.MaxUserIDLength)
				if rk {
					req.Options = &ctap2.Options{RK: ctap2.Bool(true)}
				}
				mgProtectMC(t, req)
				resp, err := t.Client().MakeCredential(t.Context(), req)
				if !t.ExpectStatus(fmt.Sprintf("makeCredential with a 64-byte user.id (rk=%v)", rk), err, ctap2.StatusOK) {
					return
				}
				mgCheckMC(t, rpID, req.ClientDataHash, resp, ctap2.AlgES256)
				if !rk {
					return
				}
				ga := mgGARequest(rpID)
				mgProtectGA(t, ga)
				got, err := t.Client().GetAssertion(t.Context(), ga)
				if !t.ExpectStatus("getAssertion for the 64-byte user", err, ctap2.StatusOK) {
					return
				}
				if got.User == nil || !bytes.Equal(got.User.ID, req.User.ID) {
					t.Errorf("user.id: observed %v, expected the 64 bytes %x", got.User, req.User.ID)
				}
			}},
		Case{ID: "MC-18", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §6.4 (0x05 maxMsgSize), §8.2 (CTAP2_ERR_REQUEST_TOO_LARGE)",
			Description: "a makeCredential message one byte over maxMsgSize fails with REQUEST_TOO_LARGE (or INVALID_LENGTH)",
			Run: func(t *T) {
				info := mgCTAP2(t)
				limit := info.MessageSize()
				if limit+1 > ctaphid.MaxMessageSize {
					t.Skipf("maxMsgSize %d: a longer message does not fit in a CTAPHID message (%d bytes)", limit, ctaphid.MaxMessageSize)
				}
				m := mgMCMap(mgRPID("mc18"))
				msg := mgPadTo(t, m, limit+1)
				_, err := mgRaw(t, msg)
				t.ExpectOneOf(fmt.Sprintf("makeCredential of %d bytes (maxMsgSize %d)", len(msg), limit), err,
					ctap2.ErrRequestTooLarge, ctap2.ErrInvalidLength)
			}},
		Case{ID: "MC-19", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §6.4 (0x05 maxMsgSize: the largest message the key accepts)",
			Description: "a makeCredential message of exactly maxMsgSize bytes succeeds",
			Run: func(t *T) {
				info := mgCTAP2(t)
				limit := info.MessageSize()
				if limit > ctaphid.MaxMessageSize {
					t.Skipf("maxMsgSize %d is over the CTAPHID message limit (%d bytes)", limit, ctaphid.MaxMessageSize)
				}
				rpID := mgRPID("mc19")
				m := mgMCMap(rpID)
				mgProtectMap(t, ctap2.CmdMakeCredential, m, rpID, false)
				msg := mgPadTo(t, m, limit)
				body, err := mgRaw(t, msg)
				if !t.ExpectStatus(fmt.Sprintf("makeCredential of exactly maxMsgSize (%d) bytes", len(msg)), err, ctap2.StatusOK) {
					return
				}
				var resp ctap2.MakeCredentialResponse
				if err := ctap2.Unmarshal(body, &resp); err != nil {
					t.Fatalf("makeCredential response: observed %v, expected a response map", err)
				}
				mgCheckMC(t, rpID, m[1].([]byte), &resp, ctap2.AlgES256)
			}},
		Case{ID: "MC-20", Area: AreaMakeCredential,
			Requirement: "CTAP 2.1 §8 (message encoding), §8.2 (CTAP2_ERR_INVALID_CBOR)",
			Description: "a makeCredential with malformed CBOR (truncated map, byte string longer than the message) fails with INVALID_CBOR",
			Run: func(t *T) {
				mgCTAP2(t)
				for _, c := range []struct {
					what string
					msg  []byte
				}{
					{"a map of one entry without its value", []byte{byte(ctap2.CmdMakeCredential), 0xA1, 0x01}},
					{"a 32-byte clientDataHash cut after 3 bytes", []byte{byte(ctap2.CmdMakeCredential), 0xA4, 0x01, 0x58, 0x20, 1, 2, 3}},
				} {
					_, err := mgRaw(t, c.msg)
					t.ExpectStatus("makeCredential with "+c.what, err, ctap2.ErrInvalidCBOR)
				}
			}},
		Case{ID: "MC-21", Area: AreaMakeCredential, Presence: true,
			Requirement: "CTAP 2.1 §8 (canonical CBOR: authenticators may reject requests in other forms); OK and INVALID_CBOR are both conformant",
			Description: "a valid makeCredential with map keys in descending order either succeeds or fails with INVALID_CBOR",
			Run: func(t *T) {
				mgCTAP2(t)
				rpID := mgRPID("mc21")
				m := mgMCMap(rpID)
				mgProtectMap(t, ctap2.CmdMakeCredential, m, rpID, false)
				var order []int
				for k := range m {
					order = append(order, k)
				}
				slices.Sort(order)
				slices.Reverse(order)
				msg := append([]byte{byte(ctap2.CmdMakeCredential)}, mgMapInOrder(t, m, order)...)
				body, err := mgRaw(t, msg)
				if !t.ExpectOneOf("makeCredential with keys "+fmt.Sprint(order), err, ctap2.StatusOK, ctap2.ErrInvalidCBOR) {
					return
				}
				if err != nil {
					t.Logf("the key requires canonical CBOR requests (INVALID_CBOR)")
					return
				}
				t.Logf("the key accepts non-canonical key order")
				var resp ctap2.MakeCredentialResponse
				if err := ctap2.Unmarshal(body, &resp); err != nil {
					t.Fatalf("makeCredential response: observed %v, expected a response map", err)
				}
				mgCheckMC(t, rpID, m[1].([]byte), &resp, ctap2.AlgES256)
			}},
		Case{ID: "MC-22", Area: AreaMakeCredential, Presence: true,
			Requirement: "WebAuthn §6.1 (flags), CTAP 2.1 §6.4 (0x08 maxCredentialIdLength)",
			Description: "makeCredential authData: UP and AT set, no reserved bits, BS only with BE, ED only with extensions, credential ID within maxCredentialIdLength",
			Run: func(t *T) {
				info := mgCTAP2(t)
				rpID := mgRPID("mc22")
				req := mgMCRequest(rpID)
				mgProtectMC(t, req)
				resp, err := t.Client().MakeCredential(t.Context(), req)
				if !t.ExpectStatus("makeCredential", err, ctap2.StatusOK) {
					return
				}
				ad := mgAuthData(t, "makeCredential", resp.AuthData)
				mgCheckFlags(t, "makeCredential", ad.Flags, true)
				if ad.Extensions != nil {
					t.Errorf("flags: observed ED with extension data %x, expected none for a request without extensions", ad.Extensions)
				}
				if n := len(ad.Attested.CredentialID); info.MaxCredentialIDLength != 0 && uint(n) > info.MaxCredentialIDLength {
					t.Errorf("credential ID length: observed %d, expected at most getInfo maxCredentialIdLength %d", n, info.MaxCredentialIDLength)
				}
			}},
	)
}

// mgCheckFlags checks the flag bits common to makeCredential (mc) and getAssertion
// authenticator data: UP set (these requests ask for presence), reserved bits clear,
// BS only with BE, AT only for makeCredential.
func mgCheckFlags(t *T, what string, f ctap2.AuthFlags, mc bool) {
	const rfu = 0x02 | 0x20
	if !f.Has(ctap2.FlagUP) {
		t.Errorf("%s flags %02x: observed UP clear, expected UP set", what, byte(f))
	}
	if f&rfu != 0 {
		t.Errorf("%s flags %02x: observed reserved bits %02x, expected them clear", what, byte(f), byte(f&rfu))
	}
	if f.Has(ctap2.FlagBS) && !f.Has(ctap2.FlagBE) {
		t.Errorf("%s flags %02x: observed BS without BE, expected BS clear when BE is", what, byte(f))
	}
	if mc != f.Has(ctap2.FlagAT) {
		t.Errorf("%s flags %02x: observed AT %v, expected %v", what, byte(f), f.Has(ctap2.FlagAT), mc)
	}
}

// mgPadTo encodes makeCredential map m as a message of exactly size bytes by
// padding user.displayName (authenticators may truncate it, CTAP 2.1 §6.1).
func mgPadTo(t *T, m map[int]any, size int) []byte {
	user, _ := m[3].(map[string]any)
	if user == nil {
		t.Fatalf("mgPadTo: no user map")
	}
	pad := 0
	for range 8 {
		user["displayName"] = string(bytes.Repeat([]byte{'x'}, pad))
		msg := mgMessage(t, ctap2.CmdMakeCredential, m)
		if len(msg) == size {
			return msg
		}
		pad += size - len(msg)
		if pad < 0 {
			t.Skipf("the smallest request (%d bytes) is already over %d bytes", len(msg), size)
		}
	}
	t.Fatalf("could not pad makeCredential to exactly %d bytes", size)
	return nil
}
