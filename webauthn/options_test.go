package webauthn_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	gowebauthn "github.com/go-webauthn/webauthn/webauthn"

	"github.com/ctapkit/ctapkit/webauthn"
)

// creationJSON is a minimal valid PublicKeyCredentialCreationOptionsJSON with
// the members of extra added (or replaced, or removed when nil).
func creationJSON(t *testing.T, extra map[string]any) []byte {
	t.Helper()
	m := map[string]any{
		"rp":               map[string]any{"name": "Example", "id": "example.com"},
		"user":             map[string]any{"id": "dXNlci0x", "name": "alice", "displayName": "Alice"},
		"challenge":        "Y2hhbGxlbmdlLTAxMjM0NTY3ODk",
		"pubKeyCredParams": []any{map[string]any{"type": "public-key", "alg": -7}, map[string]any{"type": "public-key", "alg": -8}},
	}
	return withMembers(t, m, extra)
}

func requestJSON(t *testing.T, extra map[string]any) []byte {
	t.Helper()
	return withMembers(t, map[string]any{"challenge": "Y2hhbGxlbmdlLTAxMjM0NTY3ODk"}, extra)
}

// withMembers sets the members of extra; a dotted name reaches into an object
// ("user.id"), a nil value removes the member.
func withMembers(t *testing.T, m, extra map[string]any) []byte {
	t.Helper()
	for name, v := range extra {
		obj := m
		parts := strings.Split(name, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := obj[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				obj[p] = next
			}
			obj = next
		}
		last := parts[len(parts)-1]
		if v == nil {
			delete(obj, last)
		} else {
			obj[last] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCreationOptions(t *testing.T) {
	o, err := webauthn.ParseCreationOptions(creationJSON(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := &webauthn.CreationOptions{
		RP:               webauthn.RPEntity{ID: "example.com", Name: "Example"},
		User:             webauthn.UserEntity{ID: []byte("user-1"), Name: "alice", DisplayName: "Alice"},
		Challenge:        []byte("challenge-0123456789"),
		PubKeyCredParams: []webauthn.CredentialParameters{{Type: "public-key", Alg: -7}, {Type: "public-key", Alg: -8}},
		// The spec's defaults.
		AuthenticatorSelection: webauthn.AuthenticatorSelection{ResidentKey: "discouraged", UserVerification: "preferred"},
		Attestation:            "none",
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", o, want)
	}

	// Wrapped as {"publicKey": …}, as go-webauthn and others send it: the same.
	wrapped, _ := json.Marshal(map[string]json.RawMessage{"publicKey": creationJSON(t, nil), "mediation": json.RawMessage(`"conditional"`)})
	if w, err := webauthn.ParseCreationOptions(wrapped); err != nil || !reflect.DeepEqual(w, o) {
		t.Errorf("wrapped: %+v, %v; want %+v", w, err, o)
	}
	// Whitespace around the JSON is fine.
	if _, err := webauthn.ParseCreationOptions(append(append([]byte("\n\t "), creationJSON(t, nil)...), "\n"...)); err != nil {
		t.Errorf("with whitespace: %v", err)
	}

	t.Run("everything", func(t *testing.T) {
		o, err := webauthn.ParseCreationOptions(creationJSON(t, map[string]any{
			"timeout":            60000,
			"excludeCredentials": []any{map[string]any{"type": "public-key", "id": "AQID", "transports": []string{"usb", "nfc"}}},
			"authenticatorSelection": map[string]any{"authenticatorAttachment": "cross-platform", "residentKey": "required",
				"userVerification": "required"},
			"hints":              []string{"security-key"},
			"attestation":        "direct",
			"attestationFormats": []string{"packed"},
			"extensions": map[string]any{"credProps": true, "credentialProtectionPolicy": "userVerificationRequired",
				"enforceCredentialProtectionPolicy": true, "prf": map[string]any{"eval": map[string]any{"first": "AQ", "second": "Ag"}},
				"largeBlob": map[string]any{"support": "required"}, "minPinLength": true, "credBlob": "Bw", "hmacCreateSecret": true,
				"unknownExtension": map[string]any{"x": 1}},
		}))
		if err != nil {
			t.Fatal(err)
		}
		if o.Timeout != 60000 || len(o.ExcludeCredentials) != 1 || !bytes.Equal(o.ExcludeCredentials[0].ID, []byte{1, 2, 3}) ||
			!reflect.DeepEqual(o.ExcludeCredentials[0].Transports, []string{"usb", "nfc"}) ||
			o.AuthenticatorSelection != (webauthn.AuthenticatorSelection{AuthenticatorAttachment: "cross-platform", ResidentKey: "required", UserVerification: "required"}) ||
			!reflect.DeepEqual(o.Hints, []string{"security-key"}) || o.Attestation != "direct" || !reflect.DeepEqual(o.AttestationFormats, []string{"packed"}) {
			t.Errorf("parsed %+v", o)
		}
		x := o.Extensions
		if !x.CredProps || x.CredentialProtectionPolicy != "userVerificationRequired" || !x.EnforceCredentialProtectionPolicy ||
			x.PRF == nil || x.PRF.Eval == nil || !bytes.Equal(x.PRF.Eval.First, []byte{1}) || !bytes.Equal(x.PRF.Eval.Second, []byte{2}) ||
			x.LargeBlob == nil || x.LargeBlob.Support != "required" || !x.MinPinLength || !bytes.Equal(x.CredBlob, []byte{7}) || !x.HMACCreateSecret {
			t.Errorf("extensions %+v", x)
		}
	})
}

func TestParseCreationOptionsResidentKey(t *testing.T) {
	for _, tc := range []struct {
		selection map[string]any
		want      string
	}{
		{nil, "discouraged"},
		{map[string]any{}, "discouraged"},
		{map[string]any{"requireResidentKey": true}, "required"},
		{map[string]any{"requireResidentKey": false}, "discouraged"},
		{map[string]any{"residentKey": "preferred"}, "preferred"},
		{map[string]any{"residentKey": "discouraged", "requireResidentKey": true}, "discouraged"}, // residentKey wins
		{map[string]any{"residentKey": "required", "requireResidentKey": false}, "required"},
		// An unknown value is ignored: requireResidentKey decides.
		{map[string]any{"residentKey": "always", "requireResidentKey": true}, "required"},
		{map[string]any{"residentKey": "always"}, "discouraged"},
	} {
		extra := map[string]any{}
		if tc.selection != nil {
			extra["authenticatorSelection"] = tc.selection
		}
		o, err := webauthn.ParseCreationOptions(creationJSON(t, extra))
		if err != nil {
			t.Fatalf("%v: %v", tc.selection, err)
		}
		if o.AuthenticatorSelection.ResidentKey != tc.want {
			t.Errorf("authenticatorSelection %v: residentKey %q, want %q", tc.selection, o.AuthenticatorSelection.ResidentKey, tc.want)
		}
	}
}

// optionsError checks err is an ErrOptions that names field.
func optionsError(t *testing.T, err error, field string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("accepted, want an error naming %s", field)
	case !errors.Is(err, webauthn.ErrOptions):
		t.Errorf("error %v does not wrap ErrOptions", err)
	case !strings.Contains(err.Error(), field):
		t.Errorf("error %q does not name %s", err, field)
	}
}

func TestParseCreationOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra map[string]any
		field string // the member the error must name
		also  string // and something else it must say
	}{
		// Required members.
		{"no rp", map[string]any{"rp": nil}, "rp", "missing"},
		{"no rp.name", map[string]any{"rp.name": nil}, "rp.name", "missing"},
		{"no user", map[string]any{"user": nil}, "user", "missing"},
		{"no user.id", map[string]any{"user.id": nil}, "user.id", "missing"},
		{"no user.name", map[string]any{"user.name": nil}, "user.name", "missing"},
		{"no user.displayName", map[string]any{"user.displayName": nil}, "user.displayName", "missing"},
		{"no challenge", map[string]any{"challenge": nil}, "challenge", "missing"},
		{"null challenge", map[string]any{"challenge": json.RawMessage("null")}, "challenge", "missing"},
		{"no pubKeyCredParams", map[string]any{"pubKeyCredParams": nil}, "pubKeyCredParams", "missing"},
		{"no alg", map[string]any{"pubKeyCredParams": []any{map[string]any{"type": "public-key"}}}, "pubKeyCredParams[0].alg", "missing"},
		{"no type", map[string]any{"pubKeyCredParams": []any{map[string]any{"type": "public-key", "alg": -7}, map[string]any{"alg": -8}}},
			"pubKeyCredParams[1].type", "missing"},
		{"no exclude id", map[string]any{"excludeCredentials": []any{map[string]any{"type": "public-key"}}}, "excludeCredentials[0].id", "missing"},
		{"no exclude type", map[string]any{"excludeCredentials": []any{map[string]any{"id": "AQ"}}}, "excludeCredentials[0].type", "missing"},
		{"no prf first", map[string]any{"extensions": map[string]any{"prf": map[string]any{"eval": map[string]any{"second": "AQ"}}}},
			"extensions.prf.eval.first", "missing"},

		// base64url, and not base64.
		{"challenge +", map[string]any{"challenge": "ab+c"}, "challenge", "'+'"},
		{"challenge /", map[string]any{"challenge": "ab/c"}, "challenge", "'/'"},
		{"challenge !", map[string]any{"challenge": "ab!c"}, "challenge", "base64url"},
		{"challenge 1 char", map[string]any{"challenge": "abcde"}, "challenge", "base64url"},
		{"user.id /", map[string]any{"user.id": "dXNl/i0x"}, "user.id", "'/'"},
		{"exclude id +", map[string]any{"excludeCredentials": []any{map[string]any{"type": "public-key", "id": "A+B"}}},
			"excludeCredentials[0].id", "'+'"},
		{"prf first +", map[string]any{"extensions": map[string]any{"prf": map[string]any{"eval": map[string]any{"first": "A+"}}}},
			"extensions.prf.eval.first", "'+'"},
		{"credBlob /", map[string]any{"extensions": map[string]any{"credBlob": "A/"}}, "extensions.credBlob", "'/'"},

		// Wrong JSON types.
		{"rp string", map[string]any{"rp": "example.com"}, "rp", "string"},
		{"rp.name number", map[string]any{"rp.name": 5}, "rp.name", "number"},
		{"user.id number", map[string]any{"user.id": 1234}, "user.id", "number"},
		{"user.id array", map[string]any{"user.id": []int{1, 2}}, "user.id", "array"},
		{"challenge object", map[string]any{"challenge": map[string]any{}}, "challenge", "object"},
		{"pubKeyCredParams object", map[string]any{"pubKeyCredParams": map[string]any{"alg": -7}}, "pubKeyCredParams", "array"},
		{"alg string", map[string]any{"pubKeyCredParams": []any{map[string]any{"type": "public-key", "alg": "-7"}}}, "alg", "string"},
		{"timeout string", map[string]any{"timeout": "60000"}, "timeout", "string"},
		{"timeout negative", map[string]any{"timeout": -1}, "timeout", ""},
		{"timeout fraction", map[string]any{"timeout": 1.5}, "timeout", ""},
		{"requireResidentKey string", map[string]any{"authenticatorSelection": map[string]any{"requireResidentKey": "true"}},
			"authenticatorSelection.requireResidentKey", "string"},
		{"credProps string", map[string]any{"extensions": map[string]any{"credProps": "yes"}}, "extensions.credProps", "string"},
		{"hints string", map[string]any{"hints": "security-key"}, "hints", "string"},

		// user.id is 1 to 64 bytes.
		{"user.id empty", map[string]any{"user.id": ""}, "user.id", "0 bytes"},
		{"user.id 65 bytes", map[string]any{"user.id": b64(bytes.Repeat([]byte{1}, 65))}, "user.id", "65 bytes"},

		// Members that belong to get().
		{"largeBlob read", map[string]any{"extensions": map[string]any{"largeBlob": map[string]any{"read": true}}}, "extensions.largeBlob", ""},
		{"prf evalByCredential", map[string]any{"extensions": map[string]any{"prf": map[string]any{"evalByCredential": map[string]any{"AQ": map[string]any{"first": "AQ"}}}}},
			"extensions.prf.evalByCredential", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := webauthn.ParseCreationOptions(creationJSON(t, tc.extra))
			optionsError(t, err, tc.field)
			if err != nil && !strings.Contains(err.Error(), tc.also) {
				t.Errorf("error %q does not say %q", err, tc.also)
			}
		})
	}

	// user.id of exactly 64 bytes is fine.
	if _, err := webauthn.ParseCreationOptions(creationJSON(t, map[string]any{"user.id": b64(bytes.Repeat([]byte{1}, 64))})); err != nil {
		t.Errorf("64-byte user.id: %v", err)
	}
	// Padding is allowed, as the JSON forms' base64url decoders allow it.
	if o, err := webauthn.ParseCreationOptions(creationJSON(t, map[string]any{"user.id": "dXNlcg=="})); err != nil || string(o.User.ID) != "user" {
		t.Errorf("padded user.id: %v", err)
	}
}

func TestParseOptionsMalformed(t *testing.T) {
	for _, in := range []string{"", " \n", "{", `{"challenge":"AA"`, "[]", "5", `"x"`, "true", `{"publicKey":5}`, `{"publicKey":"x"}`,
		`{"publicKey":[]}`, `{"challenge":"AAAA"} {}`, `{"challenge":"AAAA"} x`, "\xff"} {
		if _, err := webauthn.ParseCreationOptions([]byte(in)); err == nil || !errors.Is(err, webauthn.ErrOptions) {
			t.Errorf("ParseCreationOptions(%q): %v, want an ErrOptions", in, err)
		}
		if _, err := webauthn.ParseRequestOptions([]byte(in)); err == nil || !errors.Is(err, webauthn.ErrOptions) {
			t.Errorf("ParseRequestOptions(%q): %v, want an ErrOptions", in, err)
		}
	}
}

func TestParseRequestOptions(t *testing.T) {
	o, err := webauthn.ParseRequestOptions(requestJSON(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := (&webauthn.RequestOptions{Challenge: []byte("challenge-0123456789"), UserVerification: "preferred"}); !reflect.DeepEqual(o, want) {
		t.Errorf("parsed %+v, want %+v", o, want)
	}
	wrapped, _ := json.Marshal(map[string]json.RawMessage{"publicKey": requestJSON(t, nil)})
	if w, err := webauthn.ParseRequestOptions(wrapped); err != nil || !reflect.DeepEqual(w, o) {
		t.Errorf("wrapped: %+v, %v; want %+v", w, err, o)
	}

	o, err = webauthn.ParseRequestOptions(requestJSON(t, map[string]any{
		"timeout": 30000, "rpId": "example.com", "userVerification": "required", "hints": []string{"security-key"},
		"allowCredentials": []any{map[string]any{"type": "public-key", "id": "AQID"}, map[string]any{"type": "public-key", "id": "BAU", "transports": []string{"usb"}}},
		"extensions": map[string]any{"prf": map[string]any{"eval": map[string]any{"first": "AQ"}, "evalByCredential": map[string]any{"AQID": map[string]any{"first": "Ag", "second": "Aw"}}},
			"largeBlob": map[string]any{"read": true}, "getCredBlob": true},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if o.Timeout != 30000 || o.RPID != "example.com" || o.UserVerification != "required" || len(o.AllowCredentials) != 2 ||
		!bytes.Equal(o.AllowCredentials[1].ID, []byte{4, 5}) || o.Extensions.PRF == nil || !bytes.Equal(o.Extensions.PRF.Eval.First, []byte{1}) ||
		!bytes.Equal(o.Extensions.PRF.EvalByCredential["AQID"].Second, []byte{3}) || o.Extensions.LargeBlob == nil || !o.Extensions.LargeBlob.Read ||
		!o.Extensions.GetCredBlob {
		t.Errorf("parsed %+v", o)
	}

	for _, tc := range []struct {
		name  string
		extra map[string]any
		field string
	}{
		{"no challenge", map[string]any{"challenge": nil}, "challenge"},
		{"challenge +", map[string]any{"challenge": "a+bc"}, "challenge"},
		{"challenge number", map[string]any{"challenge": 5}, "challenge"},
		{"no allow id", map[string]any{"allowCredentials": []any{map[string]any{"type": "public-key", "id": "AQ"}, map[string]any{"type": "public-key"}}},
			"allowCredentials[1].id"},
		{"allow id /", map[string]any{"allowCredentials": []any{map[string]any{"type": "public-key", "id": "a/b"}}}, "allowCredentials[0].id"},
		{"rpId number", map[string]any{"rpId": 5}, "rpId"},
		{"userVerification bool", map[string]any{"userVerification": true}, "userVerification"},
		{"largeBlob read and write", map[string]any{"extensions": map[string]any{"largeBlob": map[string]any{"read": true, "write": "AQ"}}}, "extensions.largeBlob"},
		{"largeBlob support", map[string]any{"extensions": map[string]any{"largeBlob": map[string]any{"support": "required"}}}, "extensions.largeBlob.support"},
		{"largeBlob write +", map[string]any{"extensions": map[string]any{"largeBlob": map[string]any{"write": "A+"}}}, "extensions.largeBlob.write"},
		{"evalByCredential key", map[string]any{"extensions": map[string]any{"prf": map[string]any{"evalByCredential": map[string]any{"a+b": map[string]any{"first": "AQ"}}}}},
			"extensions.prf.evalByCredential"},
		{"evalByCredential no first", map[string]any{"extensions": map[string]any{"prf": map[string]any{"evalByCredential": map[string]any{"AQ": map[string]any{}}}}},
			"extensions.prf.evalByCredential.AQ.first"},
		{"hmacGetSecret no salt1", map[string]any{"extensions": map[string]any{"hmacGetSecret": map[string]any{"salt2": "AQ"}}}, "extensions.hmacGetSecret.salt1"},
		{"timeout too big", map[string]any{"timeout": 1 << 33}, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := webauthn.ParseRequestOptions(requestJSON(t, tc.extra))
			optionsError(t, err, tc.field)
		})
	}
}

// Options as go-webauthn writes them parse to what go-webauthn meant.
func TestParseGoWebAuthnOptions(t *testing.T) {
	rp := newRP(t, "https://login.example.com", "example.com")
	user := &rpUser{id: []byte("user-1"), name: "alice"}
	creation, _, err := rp.BeginRegistration(user,
		gowebauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		gowebauthn.WithConveyancePreference(protocol.PreferDirectAttestation),
		gowebauthn.WithExclusions([]protocol.CredentialDescriptor{{Type: protocol.PublicKeyCredentialType, CredentialID: []byte{1, 2, 3}}}),
		gowebauthn.WithExtensions(gowebauthn.WithExtensionCredProps(), gowebauthn.WithExtensionPRF(protocol.PRFValues{First: []byte("salt")}),
			gowebauthn.WithExtensionCredentialProtectionPolicy(protocol.CredentialProtectionPolicyUserVerificationRequired, true)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(creation)
	o, err := webauthn.ParseCreationOptions(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if o.RP.ID != "example.com" || !bytes.Equal(o.User.ID, user.id) || !bytes.Equal(o.Challenge, creation.Response.Challenge) ||
		o.AuthenticatorSelection.ResidentKey != "required" || o.Attestation != "direct" || len(o.ExcludeCredentials) != 1 ||
		len(o.PubKeyCredParams) != len(creation.Response.Parameters) || !o.Extensions.CredProps ||
		o.Extensions.PRF == nil || string(o.Extensions.PRF.Eval.First) != "salt" || !o.Extensions.EnforceCredentialProtectionPolicy {
		t.Errorf("parsed %+v\nfrom %s", o, b)
	}

	assertion, _, err := rp.BeginLogin(&rpUser{id: user.id, name: "alice", creds: []gowebauthn.Credential{{ID: []byte{9, 9}}}},
		gowebauthn.WithUserVerification(protocol.VerificationDiscouraged),
		gowebauthn.WithAssertionExtensions(gowebauthn.WithExtensionLargeBlobWrite([]byte("blob"))))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(assertion)
	r, err := webauthn.ParseRequestOptions(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if r.RPID != "example.com" || !bytes.Equal(r.Challenge, assertion.Response.Challenge) || r.UserVerification != "discouraged" ||
		len(r.AllowCredentials) != 1 || !bytes.Equal(r.AllowCredentials[0].ID, []byte{9, 9}) ||
		r.Extensions.LargeBlob == nil || string(r.Extensions.LargeBlob.Write) != "blob" {
		t.Errorf("parsed %+v\nfrom %s", r, b)
	}
}

// Where the parsers differ from a browser's parseCreationOptionsFromJSON.
func TestParseOptionsBrowserDifferences(t *testing.T) {
	t.Run("unknown userVerification", func(t *testing.T) {
		// WebIDL: an unknown enum value in a DOMString member is ignored, so the
		// member takes its default, preferred.
		o, err := webauthn.ParseRequestOptions(requestJSON(t, map[string]any{"userVerification": "REQUIRED"}))
		if err != nil {
			t.Fatal(err)
		}
		c, err := webauthn.ParseCreationOptions(creationJSON(t, map[string]any{"authenticatorSelection": map[string]any{"userVerification": "bogus"}}))
		if err != nil {
			t.Fatal(err)
		}
		if o.UserVerification != "preferred" || c.AuthenticatorSelection.UserVerification != "preferred" {
			t.Errorf("webauthn/options.go ParseRequestOptions/ParseCreationOptions keep an unknown userVerification value (%q, %q) "+
				"where a browser ignores it and uses the default \"preferred\"; client.go session.verified then treats it like "+
				"\"discouraged\" (no switch case), so a key with a PIN or built-in UV is not asked to verify", o.UserVerification, c.AuthenticatorSelection.UserVerification)
		}
	})
	t.Run("alg as -7.0", func(t *testing.T) {
		o, err := webauthn.ParseCreationOptions([]byte(`{"rp":{"name":"x"},"user":{"id":"AQ","name":"a","displayName":"a"},"challenge":"AQ",` +
			`"pubKeyCredParams":[{"type":"public-key","alg":-7.0}]}`))
		if err != nil {
			t.Errorf("webauthn/options.go paramJSON.Alg is an *int64, so the JSON number -7.0 (the same IDL long as -7) is refused "+
				"with the self-contradicting %q", err)
		}
		if o.PubKeyCredParams[0].Alg != -7 {
			t.Errorf("alg %d, want -7", o.PubKeyCredParams[0].Alg)
		}
	})
	t.Run("member names are case-sensitive", func(t *testing.T) {
		// A browser sees only "challenge"; "Challenge" is an unknown member.
		o, err := webauthn.ParseRequestOptions([]byte(`{"challenge":"AQ","Challenge":"Ag"}`))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(o.Challenge, []byte{1}) {
			t.Errorf("webauthn/options.go decodes with encoding/json, which matches member names case-insensitively: "+
				`{"challenge":"AQ","Challenge":"Ag"} gives challenge %x, a browser 01; {"CHALLENGE":…} alone is accepted where a browser says challenge is missing`, o.Challenge)
		}
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// evalByCredential's keys are credential IDs, not member names: one that reads
// like a member ("SECOND" is valid base64url) is kept.
func TestEvalByCredentialKeysAreNotMembers(t *testing.T) {
	o, err := webauthn.ParseRequestOptions([]byte(`{"challenge":"AQ","allowCredentials":[{"type":"public-key","id":"SECOND"}],` +
		`"extensions":{"prf":{"evalByCredential":{"SECOND":{"first":"AQ","First":"Ag"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := o.Extensions.PRF.EvalByCredential["SECOND"]
	if !ok || !bytes.Equal(v.First, []byte{1}) {
		t.Errorf("evalByCredential = %+v, want SECOND with first 01", o.Extensions.PRF.EvalByCredential)
	}
}
