package webauthn

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// The options JSON forms of WebAuthn Level 3 (§5.1.10, PublicKeyCredential.
// parseCreationOptionsFromJSON and parseRequestOptionsFromJSON): what a relying
// party's server sends to the browser. Binary fields are base64url strings.
// Unknown members are ignored, as browsers do; the required ones of the IDL
// dictionaries are checked, and every error names the member.

// CreationOptions is PublicKeyCredentialCreationOptionsJSON, decoded.
type CreationOptions struct {
	RP                     RPEntity
	User                   UserEntity
	Challenge              []byte
	PubKeyCredParams       []CredentialParameters
	Timeout                uint32 // milliseconds; 0: none given
	ExcludeCredentials     []CredentialDescriptor
	AuthenticatorSelection AuthenticatorSelection
	Hints                  []string
	Attestation            string // none (default), indirect, direct, enterprise
	AttestationFormats     []string
	Extensions             CreationExtensions
}

// RequestOptions is PublicKeyCredentialRequestOptionsJSON, decoded.
type RequestOptions struct {
	Challenge        []byte
	Timeout          uint32
	RPID             string // "": the origin's effective domain
	AllowCredentials []CredentialDescriptor
	UserVerification string // required, preferred (default), discouraged
	Hints            []string
	Extensions       RequestExtensions
}

// RPEntity is PublicKeyCredentialRpEntity; ID "" means the origin's effective domain.
type RPEntity struct {
	ID   string
	Name string
}

// UserEntity is PublicKeyCredentialUserEntity.
type UserEntity struct {
	ID          []byte
	Name        string
	DisplayName string
}

// CredentialParameters is PublicKeyCredentialParameters.
type CredentialParameters struct {
	Type string
	Alg  int64
}

// CredentialDescriptor is PublicKeyCredentialDescriptor.
type CredentialDescriptor struct {
	Type       string
	ID         []byte
	Transports []string
}

// AuthenticatorSelection is AuthenticatorSelectionCriteria, with the defaults
// of the spec filled in by ParseCreationOptions.
type AuthenticatorSelection struct {
	AuthenticatorAttachment string // platform, cross-platform or ""
	ResidentKey             string // required, preferred or discouraged
	UserVerification        string // required, preferred or discouraged
}

// CreationExtensions are the client extension inputs of create() that ctapkit
// maps to CTAP; others are ignored, as browsers ignore unknown extensions.
type CreationExtensions struct {
	CredProps bool
	// CredentialProtectionPolicy is credProtect's WebAuthn form:
	// userVerificationOptional, userVerificationOptionalWithCredentialIDList or
	// userVerificationRequired. With Enforce, a key without credProtect refuses.
	CredentialProtectionPolicy        string
	EnforceCredentialProtectionPolicy bool
	PRF                               *PRFInputs // prf: enable, and maybe evaluate (eval)
	LargeBlob                         *LargeBlobInputs
	MinPinLength                      bool
	CredBlob                          []byte // CTAP 2.1 "credBlob": stored with the credential
	HMACCreateSecret                  bool   // CTAP 2.1 "hmacCreateSecret"
}

// RequestExtensions are the client extension inputs of get() that ctapkit maps.
type RequestExtensions struct {
	PRF           *PRFInputs
	LargeBlob     *LargeBlobInputs
	GetCredBlob   bool             // CTAP 2.1 "getCredBlob"
	HMACGetSecret *HMACGetSecretIn // CTAP 2.1 "hmacGetSecret"
}

// PRFValues are one or two PRF inputs (AuthenticationExtensionsPRFValues).
type PRFValues struct {
	First  []byte
	Second []byte // nil: none
}

// PRFInputs is AuthenticationExtensionsPRFInputs.
type PRFInputs struct {
	Eval *PRFValues
	// EvalByCredential maps base64url credential IDs (as the RP wrote them) to
	// their inputs; get() only.
	EvalByCredential map[string]PRFValues
}

// LargeBlobInputs is AuthenticationExtensionsLargeBlobInputs.
type LargeBlobInputs struct {
	Support string // create(): required or preferred
	Read    bool   // get()
	Write   []byte // get(); nil: no write
}

// HMACGetSecretIn is the CTAP 2.1 hmacGetSecret input: two 32-byte salts, the
// second optional.
type HMACGetSecretIn struct {
	Salt1 []byte
	Salt2 []byte
}

// ErrOptions reports options JSON that is malformed or misses a required member;
// a browser would throw a TypeError.
var ErrOptions = errors.New("invalid WebAuthn options")

// Wire forms: binary members are kept as strings until decoded with their path.
type (
	creationJSON struct {
		RP                     *rpJSON           `json:"rp"`
		User                   *userJSON         `json:"user"`
		Challenge              *string           `json:"challenge"`
		PubKeyCredParams       *[]paramJSON      `json:"pubKeyCredParams"`
		Timeout                *float64          `json:"timeout"`
		ExcludeCredentials     []descriptorJSON  `json:"excludeCredentials"`
		AuthenticatorSelection *selectionJSON    `json:"authenticatorSelection"`
		Hints                  []string          `json:"hints"`
		Attestation            *string           `json:"attestation"`
		AttestationFormats     []string          `json:"attestationFormats"`
		Extensions             *creationExtsJSON `json:"extensions"`
	}
	requestJSON struct {
		Challenge        *string          `json:"challenge"`
		Timeout          *float64         `json:"timeout"`
		RPID             *string          `json:"rpId"`
		AllowCredentials []descriptorJSON `json:"allowCredentials"`
		UserVerification *string          `json:"userVerification"`
		Hints            []string         `json:"hints"`
		Extensions       *requestExtsJSON `json:"extensions"`
	}
	rpJSON struct {
		ID   *string `json:"id"`
		Name *string `json:"name"`
	}
	userJSON struct {
		ID          *string `json:"id"`
		Name        *string `json:"name"`
		DisplayName *string `json:"displayName"`
	}
	paramJSON struct {
		Type *string  `json:"type"`
		Alg  *float64 `json:"alg"` // an IDL long: -7 and -7.0 alike
	}
	descriptorJSON struct {
		Type       *string  `json:"type"`
		ID         *string  `json:"id"`
		Transports []string `json:"transports"`
	}
	selectionJSON struct {
		AuthenticatorAttachment *string `json:"authenticatorAttachment"`
		ResidentKey             *string `json:"residentKey"`
		RequireResidentKey      *bool   `json:"requireResidentKey"`
		UserVerification        *string `json:"userVerification"`
	}
	creationExtsJSON struct {
		CredProps                         *bool          `json:"credProps"`
		CredentialProtectionPolicy        *string        `json:"credentialProtectionPolicy"`
		EnforceCredentialProtectionPolicy *bool          `json:"enforceCredentialProtectionPolicy"`
		PRF                               *prfJSON       `json:"prf"`
		LargeBlob                         *largeBlobJSON `json:"largeBlob"`
		MinPinLength                      *bool          `json:"minPinLength"`
		CredBlob                          *string        `json:"credBlob"`
		HMACCreateSecret                  *bool          `json:"hmacCreateSecret"`
	}
	requestExtsJSON struct {
		PRF           *prfJSON       `json:"prf"`
		LargeBlob     *largeBlobJSON `json:"largeBlob"`
		GetCredBlob   *bool          `json:"getCredBlob"`
		HMACGetSecret *struct {
			Salt1 *string `json:"salt1"`
			Salt2 *string `json:"salt2"`
		} `json:"hmacGetSecret"`
	}
	prfValuesJSON struct {
		First  *string `json:"first"`
		Second *string `json:"second"`
	}
	prfJSON struct {
		Eval             *prfValuesJSON           `json:"eval"`
		EvalByCredential map[string]prfValuesJSON `json:"evalByCredential"`
	}
	largeBlobJSON struct {
		Support *string `json:"support"`
		Read    *bool   `json:"read"`
		Write   *string `json:"write"`
	}
)

// ParseCreationOptions decodes PublicKeyCredentialCreationOptionsJSON, bare or
// wrapped in {"publicKey": …} as many RP libraries send it.
func ParseCreationOptions(data []byte) (*CreationOptions, error) {
	var in creationJSON
	if err := decodeOptions(data, &in); err != nil {
		return nil, err
	}
	var d fieldDecoder
	o := &CreationOptions{}
	if in.RP == nil {
		d.missing("rp")
	} else {
		o.RP.ID = d.optString(in.RP.ID)
		o.RP.Name = d.reqString("rp.name", in.RP.Name)
	}
	if in.User == nil {
		d.missing("user")
	} else {
		o.User.ID = d.reqBytes("user.id", in.User.ID)
		o.User.Name = d.reqString("user.name", in.User.Name)
		o.User.DisplayName = d.reqString("user.displayName", in.User.DisplayName)
		if d.err == nil && (len(o.User.ID) == 0 || len(o.User.ID) > 64) {
			d.fail("user.id", "%d bytes, want 1 to 64", len(o.User.ID))
		}
	}
	o.Challenge = d.reqBytes("challenge", in.Challenge)
	if in.PubKeyCredParams == nil {
		d.missing("pubKeyCredParams")
	} else {
		for i, p := range *in.PubKeyCredParams {
			name := fmt.Sprintf("pubKeyCredParams[%d]", i)
			o.PubKeyCredParams = append(o.PubKeyCredParams, CredentialParameters{
				Type: d.reqString(name+".type", p.Type),
				Alg:  d.reqInt(name+".alg", p.Alg),
			})
		}
	}
	o.Timeout = d.timeout(in.Timeout)
	o.ExcludeCredentials = d.descriptors("excludeCredentials", in.ExcludeCredentials)
	o.AuthenticatorSelection = AuthenticatorSelection{ResidentKey: "discouraged", UserVerification: "preferred"}
	if s := in.AuthenticatorSelection; s != nil {
		o.AuthenticatorSelection.AuthenticatorAttachment = d.optString(s.AuthenticatorAttachment)
		if s.RequireResidentKey != nil && *s.RequireResidentKey {
			o.AuthenticatorSelection.ResidentKey = "required"
		}
		if s.ResidentKey != nil {
			// residentKey wins over requireResidentKey; unknown values are ignored.
			if v := *s.ResidentKey; v == "required" || v == "preferred" || v == "discouraged" {
				o.AuthenticatorSelection.ResidentKey = v
			}
		}
		o.AuthenticatorSelection.UserVerification = userVerification(s.UserVerification)
	}
	o.Hints = in.Hints
	o.Attestation = "none"
	if in.Attestation != nil {
		o.Attestation = *in.Attestation
	}
	o.AttestationFormats = in.AttestationFormats
	if e := in.Extensions; e != nil {
		x := &o.Extensions
		x.CredProps = optBool(e.CredProps)
		x.CredentialProtectionPolicy = d.optString(e.CredentialProtectionPolicy)
		x.EnforceCredentialProtectionPolicy = optBool(e.EnforceCredentialProtectionPolicy)
		if e.PRF != nil {
			x.PRF = d.prf("extensions.prf", e.PRF)
			if x.PRF != nil && x.PRF.EvalByCredential != nil {
				d.fail("extensions.prf.evalByCredential", "not allowed in create()")
			}
		}
		if e.LargeBlob != nil {
			x.LargeBlob = &LargeBlobInputs{Support: "preferred"}
			if e.LargeBlob.Support != nil {
				x.LargeBlob.Support = *e.LargeBlob.Support
			}
			if e.LargeBlob.Read != nil || e.LargeBlob.Write != nil {
				d.fail("extensions.largeBlob", "read and write are for get(), not create()")
			}
		}
		x.MinPinLength = optBool(e.MinPinLength)
		if e.CredBlob != nil {
			x.CredBlob = d.reqBytes("extensions.credBlob", e.CredBlob)
		}
		x.HMACCreateSecret = optBool(e.HMACCreateSecret)
	}
	if d.err != nil {
		return nil, d.err
	}
	return o, nil
}

// ParseRequestOptions decodes PublicKeyCredentialRequestOptionsJSON, bare or
// wrapped in {"publicKey": …}.
func ParseRequestOptions(data []byte) (*RequestOptions, error) {
	var in requestJSON
	if err := decodeOptions(data, &in); err != nil {
		return nil, err
	}
	var d fieldDecoder
	o := &RequestOptions{UserVerification: "preferred"}
	o.Challenge = d.reqBytes("challenge", in.Challenge)
	o.Timeout = d.timeout(in.Timeout)
	o.RPID = d.optString(in.RPID)
	o.AllowCredentials = d.descriptors("allowCredentials", in.AllowCredentials)
	o.UserVerification = userVerification(in.UserVerification)
	o.Hints = in.Hints
	if e := in.Extensions; e != nil {
		x := &o.Extensions
		if e.PRF != nil {
			x.PRF = d.prf("extensions.prf", e.PRF)
		}
		if e.LargeBlob != nil {
			x.LargeBlob = &LargeBlobInputs{Read: optBool(e.LargeBlob.Read)}
			if e.LargeBlob.Write != nil {
				x.LargeBlob.Write = d.reqBytes("extensions.largeBlob.write", e.LargeBlob.Write)
				if x.LargeBlob.Write == nil {
					x.LargeBlob.Write = []byte{}
				}
			}
			if e.LargeBlob.Support != nil {
				d.fail("extensions.largeBlob.support", "is for create(), not get()")
			}
			if x.LargeBlob.Read && x.LargeBlob.Write != nil {
				d.fail("extensions.largeBlob", "read and write together")
			}
		}
		x.GetCredBlob = optBool(e.GetCredBlob)
		if h := e.HMACGetSecret; h != nil {
			x.HMACGetSecret = &HMACGetSecretIn{Salt1: d.reqBytes("extensions.hmacGetSecret.salt1", h.Salt1)}
			if h.Salt2 != nil {
				x.HMACGetSecret.Salt2 = d.reqBytes("extensions.hmacGetSecret.salt2", h.Salt2)
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return o, nil
}

// decodeOptions unmarshals one JSON object, unwrapping {"publicKey": …}, and
// turns encoding/json's errors into ones that name the member.
func decodeOptions(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return fmt.Errorf("%w: no JSON given", ErrOptions)
	}
	var wrapper struct {
		PublicKey json.RawMessage `json:"publicKey"`
	}
	if err := json.Unmarshal(data, &wrapper); err != nil {
		return jsonError(err)
	}
	if len(wrapper.PublicKey) > 0 && !bytes.Equal(wrapper.PublicKey, []byte("null")) {
		data = wrapper.PublicKey
	}
	// encoding/json matches member names case-insensitively; a browser does
	// not ("Challenge" is an unknown member). So the JSON is read as a tree
	// first, and members whose names are not exactly ours are dropped.
	var tree any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return fmt.Errorf("%w: malformed JSON: more than one value", ErrOptions)
	}
	exact, err := json.Marshal(keepExactMembers(tree))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOptions, err)
	}
	if err := json.Unmarshal(exact, v); err != nil {
		return jsonError(err)
	}
	return nil
}

// memberNames are the JSON member names of the options structures.
var memberNames = map[string]bool{}

func init() {
	var walk func(t reflect.Type)
	seen := map[reflect.Type]bool{}
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" {
				memberNames[name] = true
			}
			walk(f.Type)
		}
	}
	walk(reflect.TypeFor[creationJSON]())
	walk(reflect.TypeFor[requestJSON]())
}

// keepExactMembers drops, in every object, the members whose names equal one of
// ours only when case is ignored, which encoding/json would otherwise take
// for ours. Map keys chosen by the RP (evalByCredential's credential IDs) are
// not member names and are kept whatever they are.
func keepExactMembers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if !memberNames[k] && nearMiss(k) {
				continue
			}
			if k == "evalByCredential" {
				if byCred, ok := val.(map[string]any); ok {
					for id, in := range byCred {
						byCred[id] = keepExactMembers(in)
					}
					out[k] = byCred
					continue
				}
			}
			out[k] = keepExactMembers(val)
		}
		return out
	case []any:
		for i := range x {
			x[i] = keepExactMembers(x[i])
		}
	}
	return v
}

func nearMiss(k string) bool {
	for name := range memberNames {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%w: malformed JSON at byte %d: %v", ErrOptions, syn.Offset, syn)
	case errors.As(err, &typ) && typ.Field != "":
		return fmt.Errorf("%w: %s: got a JSON %s, want %s", ErrOptions, typ.Field, typ.Value, jsonKind(typ.Type.Kind().String()))
	case errors.As(err, &typ):
		return fmt.Errorf("%w: got a JSON %s, want an object", ErrOptions, typ.Value)
	}
	return fmt.Errorf("%w: %v", ErrOptions, err)
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	case "bool":
		return "a boolean"
	case "float64", "int64", "uint32":
		return "a number"
	}
	return k
}

// fieldDecoder keeps the first error, so that decoding reads as a list of
// fields and says which one is wrong.
type fieldDecoder struct{ err error }

func (d *fieldDecoder) fail(field, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", ErrOptions, field, fmt.Sprintf(format, args...))
	}
}

func (d *fieldDecoder) missing(field string) { d.fail(field, "missing") }

func (d *fieldDecoder) reqString(field string, s *string) string {
	if s == nil {
		d.missing(field)
		return ""
	}
	return *s
}

func (d *fieldDecoder) optString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (d *fieldDecoder) reqInt(field string, n *float64) int64 {
	switch {
	case n == nil:
		d.missing(field)
		return 0
	case *n != float64(int32(*n)):
		d.fail(field, "%v is not a whole number in the range of a long", *n)
		return 0
	}
	return int64(*n)
}

func (d *fieldDecoder) reqBytes(field string, s *string) []byte {
	if s == nil {
		d.missing(field)
		return nil
	}
	b, err := DecodeBase64URL(*s)
	if err != nil {
		d.fail(field, "%v", err)
	}
	return b
}

func (d *fieldDecoder) timeout(t *float64) uint32 {
	switch {
	case t == nil:
		return 0
	case *t < 0 || *t > 1<<32-1 || *t != float64(uint32(*t)):
		d.fail("timeout", "%v is not a whole number of milliseconds", *t)
		return 0
	}
	return uint32(*t)
}

func (d *fieldDecoder) descriptors(field string, in []descriptorJSON) []CredentialDescriptor {
	var out []CredentialDescriptor
	for i, c := range in {
		name := fmt.Sprintf("%s[%d]", field, i)
		out = append(out, CredentialDescriptor{
			Type:       d.reqString(name+".type", c.Type),
			ID:         d.reqBytes(name+".id", c.ID),
			Transports: c.Transports,
		})
	}
	return out
}

func (d *fieldDecoder) prfValues(field string, v prfValuesJSON) PRFValues {
	out := PRFValues{First: d.reqBytes(field+".first", v.First)}
	if v.Second != nil {
		out.Second = d.reqBytes(field+".second", v.Second)
		if out.Second == nil {
			out.Second = []byte{}
		}
	}
	if out.First == nil {
		out.First = []byte{}
	}
	return out
}

func (d *fieldDecoder) prf(field string, in *prfJSON) *PRFInputs {
	out := &PRFInputs{}
	if in.Eval != nil {
		v := d.prfValues(field+".eval", *in.Eval)
		out.Eval = &v
	}
	if in.EvalByCredential != nil {
		out.EvalByCredential = map[string]PRFValues{}
		for id, v := range in.EvalByCredential {
			if _, err := DecodeBase64URL(id); err != nil || id == "" {
				d.fail(field+".evalByCredential", "key %q is not a base64url credential ID", id)
			}
			out.EvalByCredential[id] = d.prfValues(field+".evalByCredential."+id, v)
		}
	}
	return out
}

func optBool(b *bool) bool { return b != nil && *b }

// userVerification is the member's value, or its default "preferred" when it is
// absent or not one of the enum's values (WebIDL ignores unknown values of a
// DOMString member that names an enum).
func userVerification(v *string) string {
	if v != nil && (*v == "required" || *v == "preferred" || *v == "discouraged") {
		return *v
	}
	return "preferred"
}

// DecodeBase64URL decodes base64url with or without padding, as the JSON forms
// allow. The standard alphabet's '+' and '/' are refused: they are a sign of
// base64 where base64url was due.
func DecodeBase64URL(s string) ([]byte, error) {
	if i := strings.IndexAny(s, "+/"); i >= 0 {
		return nil, fmt.Errorf("not base64url: %q at position %d (standard base64 instead of base64url?)", s[i], i)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		var bad base64.CorruptInputError
		if errors.As(err, &bad) {
			return nil, fmt.Errorf("not base64url: bad data at position %d", int64(bad))
		}
		return nil, fmt.Errorf("not base64url: %v", err)
	}
	return b, nil
}

// b64 encodes bytes as unpadded base64url, the response JSON's form.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
