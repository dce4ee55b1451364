package webauthn_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/go-webauthn/webauthn/metadata"
	"github.com/go-webauthn/webauthn/metadata/providers/memory"
	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	gowebauthn "github.com/go-webauthn/webauthn/webauthn"
	"github.com/google/uuid"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/webauthn"
	"github.com/ctapkit/ctapkit/webauthn/webauthntest"
)

// rpUser is a go-webauthn user with its credentials.
type rpUser struct {
	id    []byte
	name  string
	creds []gowebauthn.Credential
}

func (u *rpUser) WebAuthnID() []byte                           { return u.id }
func (u *rpUser) WebAuthnName() string                         { return u.name }
func (u *rpUser) WebAuthnDisplayName() string                  { return u.name }
func (u *rpUser) WebAuthnCredentials() []gowebauthn.Credential { return u.creds }

// newRP is an independent relying party: go-webauthn.
func newRP(t *testing.T, origin, rpID string) *gowebauthn.WebAuthn {
	t.Helper()
	return newRPWith(t, &gowebauthn.Config{RPID: rpID, RPDisplayName: "Example", RPOrigins: []string{origin}})
}

func newRPWith(t *testing.T, cfg *gowebauthn.Config) *gowebauthn.WebAuthn {
	t.Helper()
	rp, err := gowebauthn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

func TestGoWebAuthnRegistersAndLogsIn(t *testing.T) {
	const origin = "https://login.example.com"
	rp := newRP(t, origin, "example.com")
	key := webauthntest.New(t, webauthntest.Options{Origin: origin})
	user := &rpUser{id: []byte("user-1"), name: "alice"}

	creation, session, err := rp.BeginRegistration(user)
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(creation)
	resp := key.MustCreate(opts)
	t.Logf("registration: %s", resp)
	parsed, err := protocol.ParseCredentialCreationResponseBody(bytes.NewReader(resp))
	if err != nil {
		t.Fatalf("go-webauthn cannot parse our registration: %v", err)
	}
	cred, err := rp.CreateCredential(user, *session, parsed)
	if err != nil {
		t.Fatalf("go-webauthn refuses our registration: %v", err)
	}
	user.creds = append(user.creds, *cred)

	var last uint32
	for i := range 2 {
		assertion, session, err := rp.BeginLogin(user)
		if err != nil {
			t.Fatal(err)
		}
		opts, _ := json.Marshal(assertion)
		resp := key.MustGet(opts)
		parsed, err := protocol.ParseCredentialRequestResponseBody(bytes.NewReader(resp))
		if err != nil {
			t.Fatalf("go-webauthn cannot parse our assertion: %v", err)
		}
		got, err := rp.ValidateLogin(user, *session, parsed)
		if err != nil {
			t.Fatalf("go-webauthn refuses our assertion %d: %v", i, err)
		}
		if got.Authenticator.CloneWarning || got.Authenticator.SignCount <= last {
			t.Errorf("assertion %d: counter %d after %d (clone warning %v)", i, got.Authenticator.SignCount, last, got.Authenticator.CloneWarning)
		}
		last = got.Authenticator.SignCount
		user.creds[0] = *got
	}
}

// The rest of this file is a matrix: each row has a softkey behind ctapkit's
// client on one side and go-webauthn on the other, and go-webauthn has the last
// word on every response.

const (
	rigOrigin = "https://login.example.com"
	rigRPID   = "example.com"
)

// browserKey is what a rig needs of webauthntest.Authenticator.
type browserKey interface {
	Create(optionsJSON []byte) ([]byte, error)
	Get(optionsJSON []byte) ([]byte, error)
}

// rig is one key, one go-webauthn RP and one user.
type rig struct {
	t    *testing.T
	rp   *gowebauthn.WebAuthn
	key  browserKey
	user *rpUser
}

func newRig(t *testing.T, opts webauthntest.Options) *rig {
	t.Helper()
	opts.Origin = rigOrigin
	return &rig{t: t, rp: newRP(t, rigOrigin, rigRPID), key: webauthntest.New(t, opts),
		user: &rpUser{id: []byte("user-1"), name: "alice"}}
}

// registration is one create() as both sides saw it.
type registration struct {
	resp   []byte // RegistrationResponseJSON
	parsed *protocol.ParsedCredentialCreationData
	cred   *gowebauthn.Credential
}

// tryRegister returns keyErr when ctapkit's client or the key refused (the RP
// never saw a response), rpErr when go-webauthn refused the response. An
// accepted credential is added to the user.
func (r *rig) tryRegister(opts ...gowebauthn.RegistrationOption) (reg *registration, keyErr, rpErr error) {
	r.t.Helper()
	creation, session, err := r.rp.BeginRegistration(r.user, opts...)
	if err != nil {
		r.t.Fatalf("go-webauthn BeginRegistration: %v", err)
	}
	optsJSON, err := json.Marshal(creation)
	if err != nil {
		r.t.Fatal(err)
	}
	reg = &registration{}
	if reg.resp, keyErr = r.key.Create(optsJSON); keyErr != nil {
		return nil, keyErr, nil
	}
	if reg.parsed, rpErr = protocol.ParseCredentialCreationResponseBody(bytes.NewReader(reg.resp)); rpErr != nil {
		return reg, nil, fmt.Errorf("parsing: %w", rpErr)
	}
	if reg.cred, rpErr = r.rp.CreateCredential(r.user, *session, reg.parsed); rpErr != nil {
		return reg, nil, rpErr
	}
	r.user.creds = append(r.user.creds, *reg.cred)
	return reg, nil, nil
}

func (r *rig) register(opts ...gowebauthn.RegistrationOption) *registration {
	r.t.Helper()
	reg, keyErr, rpErr := r.tryRegister(opts...)
	if keyErr != nil {
		r.t.Fatalf("create: %v", keyErr)
	}
	if rpErr != nil {
		r.t.Fatalf("go-webauthn refuses our registration: %v (%s)", describe(rpErr), reg.resp)
	}
	return reg
}

// login is one get() as both sides saw it.
type login struct {
	resp   []byte
	parsed *protocol.ParsedCredentialAssertionData
	cred   *gowebauthn.Credential
}

// tryLogin signs in with the user's credentials in allowCredentials, or with a
// discoverable credential (empty allowCredentials, the user found by its
// handle). An accepted login updates the stored credential (its counter).
func (r *rig) tryLogin(discoverable bool, opts ...gowebauthn.LoginOption) (l *login, keyErr, rpErr error) {
	r.t.Helper()
	var (
		assertion *protocol.CredentialAssertion
		session   *gowebauthn.SessionData
		err       error
	)
	if discoverable {
		assertion, session, err = r.rp.BeginDiscoverableLogin(opts...)
	} else {
		assertion, session, err = r.rp.BeginLogin(r.user, opts...)
	}
	if err != nil {
		r.t.Fatalf("go-webauthn BeginLogin: %v", err)
	}
	optsJSON, err := json.Marshal(assertion)
	if err != nil {
		r.t.Fatal(err)
	}
	l = &login{}
	if l.resp, keyErr = r.key.Get(optsJSON); keyErr != nil {
		return nil, keyErr, nil
	}
	if l.parsed, rpErr = protocol.ParseCredentialRequestResponseBody(bytes.NewReader(l.resp)); rpErr != nil {
		return l, nil, fmt.Errorf("parsing: %w", rpErr)
	}
	if discoverable {
		l.cred, rpErr = r.rp.ValidateDiscoverableLogin(func(rawID, userHandle []byte) (gowebauthn.User, error) {
			if !bytes.Equal(userHandle, r.user.id) {
				return nil, fmt.Errorf("unknown user handle %q", userHandle)
			}
			return r.user, nil
		}, *session, l.parsed)
	} else {
		l.cred, rpErr = r.rp.ValidateLogin(r.user, *session, l.parsed)
	}
	if rpErr != nil {
		return l, nil, rpErr
	}
	for i := range r.user.creds {
		if bytes.Equal(r.user.creds[i].ID, l.cred.ID) {
			r.user.creds[i] = *l.cred
		}
	}
	return l, nil, nil
}

func (r *rig) login(discoverable bool, opts ...gowebauthn.LoginOption) *login {
	r.t.Helper()
	l, keyErr, rpErr := r.tryLogin(discoverable, opts...)
	if keyErr != nil {
		r.t.Fatalf("get: %v", keyErr)
	}
	if rpErr != nil {
		r.t.Fatalf("go-webauthn refuses our assertion: %v (%s)", describe(rpErr), l.resp)
	}
	return l
}

// describe adds go-webauthn's details, which its Error() leaves out.
func describe(err error) string {
	var e *protocol.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%v: %s %s", err, e.Details, e.DevInfo)
	}
	return err.Error()
}

func b64d(t *testing.T, s string) []byte {
	t.Helper()
	b, err := webauthn.DecodeBase64URL(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return b
}

func TestGoWebAuthnAlgorithms(t *testing.T) {
	for _, tc := range []struct {
		name     string
		keyAlgs  []ctap2.COSEAlgorithm // nil: the softkey's default, ES256 then EdDSA
		rpParams []webauthncose.COSEAlgorithmIdentifier
		want     webauthncose.COSEAlgorithmIdentifier
	}{
		{"ES256 by default", nil, nil, webauthncose.AlgES256},
		{"EdDSA first in pubKeyCredParams", nil, []webauthncose.COSEAlgorithmIdentifier{webauthncose.AlgEdDSA, webauthncose.AlgES256}, webauthncose.AlgEdDSA},
		{"ES256 first in pubKeyCredParams", []ctap2.COSEAlgorithm{ctap2.AlgEdDSA, ctap2.AlgES256}, []webauthncose.COSEAlgorithmIdentifier{webauthncose.AlgES256, webauthncose.AlgEdDSA}, webauthncose.AlgES256},
		{"EdDSA-only key", []ctap2.COSEAlgorithm{ctap2.AlgEdDSA}, nil, webauthncose.AlgEdDSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, webauthntest.Options{Algorithms: tc.keyAlgs})
			var opts []gowebauthn.RegistrationOption
			if tc.rpParams != nil {
				var params []protocol.CredentialParameter
				for _, a := range tc.rpParams {
					params = append(params, protocol.CredentialParameter{Type: protocol.PublicKeyCredentialType, Algorithm: a})
				}
				opts = append(opts, gowebauthn.WithCredentialParameters(params))
			}
			reg := r.register(opts...)
			var pk webauthncose.PublicKeyData
			if err := webauthncbor.Unmarshal(reg.cred.PublicKey, &pk); err != nil {
				t.Fatal(err)
			}
			if webauthncose.COSEAlgorithmIdentifier(pk.Algorithm) != tc.want {
				t.Errorf("credential algorithm %d, want %d", pk.Algorithm, tc.want)
			}
			if got := reg.parsed.Raw.AttestationResponse.PublicKeyAlgorithm; got != int64(tc.want) {
				t.Errorf("publicKeyAlgorithm %d, want %d", got, tc.want)
			}
			// Two logins: the counter goes up and go-webauthn sees no clone.
			var last uint32
			for i := range 2 {
				l := r.login(false)
				if a := l.cred.Authenticator; a.CloneWarning || a.SignCount <= last {
					t.Errorf("login %d: counter %d after %d, clone warning %v", i, a.SignCount, last, a.CloneWarning)
				}
				last = l.cred.Authenticator.SignCount
			}
		})
	}
}

// newBatchRig is a rig whose key attests with a batch certificate for its own
// AAGUID. webauthntest cannot do this: its store gets a random AAGUID that
// Options cannot name, so the certificate's id-fido-gen-ce-aaguid could never
// match; the key is put together here as webauthntest.New does.
func newBatchRig(t *testing.T, faults *softkey.Faults) (*rig, *softkey.BatchAttestation) {
	t.Helper()
	st := store.NewMemory(store.Meta{})
	batch, err := softkey.NewBatchAttestation(st.Meta().AAGUID)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := softkey.New(st, softkey.Config{Attestation: softkey.AttestationBatch, BatchKey: batch.Key, BatchCerts: batch.Certs, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := expose.InProcess(context.Background(), auth, expose.InProcessOptions{
		Info: transport.DeviceInfo{URI: "soft:mem", Transport: "soft", Product: "ctapkit softkey (batch)"}})
	if err != nil {
		auth.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	key := &webauthntest.Authenticator{Softkey: auth, Client: &webauthn.Client{CTAP: ctap2.NewClient(dev), Origin: rigOrigin}}
	return &rig{t: t, rp: newRP(t, rigOrigin, rigRPID), key: key, user: &rpUser{id: []byte("user-batch"), name: "alice"}}, batch
}

// mdsFor is an in-memory FIDO metadata service that knows one model: aaguid,
// attesting basic_full under root. With it go-webauthn checks the x5c chain up to
// root (its only way to take a trust anchor).
func mdsFor(t *testing.T, aaguid [16]byte, root *x509.Certificate) metadata.Provider {
	t.Helper()
	id := uuid.UUID(aaguid)
	mds, err := memory.New(memory.WithMetadata(map[uuid.UUID]*metadata.Entry{id: {
		AaGUID: id,
		MetadataStatement: metadata.Statement{
			AaGUID:                      id,
			Description:                 "ctapkit softkey (test)",
			AttestationTypes:            metadata.AuthenticatorAttestationTypes{metadata.BasicFull},
			AttestationRootCertificates: []*x509.Certificate{root},
		},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	return mds
}

func TestGoWebAuthnAttestation(t *testing.T) {
	direct := gowebauthn.WithConveyancePreference(protocol.PreferDirectAttestation)
	none := gowebauthn.WithConveyancePreference(protocol.PreferNoAttestation)

	t.Run("none", func(t *testing.T) {
		r := newRig(t, webauthntest.Options{})
		reg := r.register(none)
		if f := reg.parsed.Response.AttestationObject.Format; f != "none" {
			t.Errorf("fmt %q, want none", f)
		}
		if len(reg.parsed.Response.AttestationObject.AttStatement) != 0 {
			t.Errorf("attStmt %v, want empty", reg.parsed.Response.AttestationObject.AttStatement)
		}
		if reg.cred.AttestationType != string(metadata.None) {
			t.Errorf("go-webauthn attestation type %q, want none", reg.cred.AttestationType)
		}
		r.login(false)
	})

	t.Run("direct self", func(t *testing.T) {
		r := newRig(t, webauthntest.Options{})
		reg := r.register(direct)
		att := reg.parsed.Response.AttestationObject
		if att.Format != "packed" || att.AttStatement["x5c"] != nil {
			t.Errorf("fmt %q attStmt %v, want packed without x5c", att.Format, att.AttStatement)
		}
		if reg.cred.AttestationType != string(metadata.BasicSurrogate) {
			t.Errorf("go-webauthn attestation type %q, want %s (self)", reg.cred.AttestationType, metadata.BasicSurrogate)
		}
		r.login(false)
	})

	t.Run("direct batch", func(t *testing.T) {
		r, batch := newBatchRig(t, nil)
		reg := r.register(direct)
		att := reg.parsed.Response.AttestationObject
		x5c, _ := att.AttStatement["x5c"].([]any)
		if att.Format != "packed" || len(x5c) != 2 {
			t.Fatalf("fmt %q with %d certificates, want packed with the batch certificate and CA", att.Format, len(x5c))
		}
		if reg.cred.AttestationType != string(metadata.BasicFull) {
			t.Errorf("go-webauthn attestation type %q, want %s", reg.cred.AttestationType, metadata.BasicFull)
		}
		if der, _ := x5c[1].([]byte); !bytes.Equal(der, batch.CA.Raw) {
			t.Error("x5c[1] is not the CA")
		}
		r.login(false)
	})

	t.Run("direct batch, CA as trust anchor", func(t *testing.T) {
		r, batch := newBatchRig(t, nil)
		aaguid := r.key.(*webauthntest.Authenticator).Softkey.AAGUID()
		r.rp = newRPWith(t, &gowebauthn.Config{RPID: rigRPID, RPDisplayName: "Example", RPOrigins: []string{rigOrigin},
			MDS: mdsFor(t, aaguid, batch.CA)})
		reg := r.register(direct)
		if reg.cred.AttestationType != string(metadata.BasicFull) {
			t.Errorf("go-webauthn attestation type %q, want %s", reg.cred.AttestationType, metadata.BasicFull)
		}
		r.login(false) // logins are checked against the metadata too

		// Another CA for the same model: go-webauthn refuses the chain.
		other, err := softkey.NewBatchAttestation(aaguid)
		if err != nil {
			t.Fatal(err)
		}
		r.rp = newRPWith(t, &gowebauthn.Config{RPID: rigRPID, RPDisplayName: "Example", RPOrigins: []string{rigOrigin},
			MDS: mdsFor(t, aaguid, other.CA)})
		if _, keyErr, rpErr := r.tryRegister(direct); keyErr != nil || rpErr == nil {
			t.Errorf("batch certificate under another trust anchor: key %v, RP %v; want the RP to refuse", keyErr, rpErr)
		} else {
			t.Logf("refused as it should: %s", describe(rpErr))
		}
	})

	t.Run("direct batch, corrupt signature", func(t *testing.T) {
		r, _ := newBatchRig(t, &softkey.Faults{CorruptAttestation: true})
		if _, keyErr, rpErr := r.tryRegister(direct); keyErr != nil || rpErr == nil {
			t.Errorf("corrupt batch attestation: key %v, RP %v; want the RP to refuse", keyErr, rpErr)
		}
	})

	t.Run("direct self, corrupt signature", func(t *testing.T) {
		r := newRig(t, webauthntest.Options{Faults: &softkey.Faults{CorruptAttestation: true}})
		if _, keyErr, rpErr := r.tryRegister(direct); keyErr != nil || rpErr == nil {
			t.Errorf("corrupt self attestation: key %v, RP %v; want the RP to refuse", keyErr, rpErr)
		}
		// With conveyance none the statement is dropped, and so is the fault.
		r.register(none)
	})
}

func TestGoWebAuthnResidentKeys(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rk       protocol.ResidentKeyRequirement
		resident bool
	}{
		{"resident", protocol.ResidentKeyRequirementRequired, true},
		{"non-resident", protocol.ResidentKeyRequirementDiscouraged, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, webauthntest.Options{})
			reg := r.register(gowebauthn.WithResidentKeyRequirement(tc.rk), gowebauthn.WithExtensions(gowebauthn.WithExtensionCredProps()))
			if cp := reg.parsed.ClientExtensionResults.CredProps; cp == nil || cp.RK == nil || *cp.RK != tc.resident {
				t.Errorf("credProps %+v, want rk %v", cp, tc.resident)
			}
			if tc.resident {
				l := r.login(true)
				if !bytes.Equal(l.parsed.Response.UserHandle, r.user.id) {
					t.Errorf("userHandle %q, want %q", l.parsed.Response.UserHandle, r.user.id)
				}
			} else {
				// Nothing to discover: the browser says NotAllowedError.
				if _, keyErr, _ := r.tryLogin(true); !errors.Is(keyErr, webauthn.ErrNotAllowed) {
					t.Errorf("discoverable login with a non-resident credential: %v, want NotAllowedError", keyErr)
				}
			}
			r.login(false)
		})
	}
}

func TestGoWebAuthnUserVerification(t *testing.T) {
	keys := []struct {
		name     string
		opts     webauthntest.Options
		verifies bool
	}{
		{"built-in UV", webauthntest.Options{UV: softkey.UVPass}, true},
		{"PIN", webauthntest.Options{PIN: "1234"}, true},
		{"plain", webauthntest.Options{}, false},
	}
	for _, k := range keys {
		for _, uv := range []protocol.UserVerificationRequirement{protocol.VerificationRequired, protocol.VerificationPreferred, protocol.VerificationDiscouraged} {
			t.Run(k.name+"/"+string(uv), func(t *testing.T) {
				r := newRig(t, k.opts)
				wantUV := k.verifies && uv != protocol.VerificationDiscouraged
				if !k.verifies && uv == protocol.VerificationRequired {
					_, keyErr, _ := r.tryRegister(gowebauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: uv}))
					if !errors.Is(keyErr, webauthn.ErrNotAllowed) {
						t.Errorf("create, UV required, key cannot verify: %v, want NotAllowedError", keyErr)
					}
					// Also for get, with a credential made without UV.
					r.register(gowebauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationDiscouraged}))
					if _, keyErr, _ := r.tryLogin(false, gowebauthn.WithUserVerification(uv)); !errors.Is(keyErr, webauthn.ErrNotAllowed) {
						t.Errorf("get, UV required, key cannot verify: %v, want NotAllowedError", keyErr)
					}
					return
				}
				reg := r.register(gowebauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: uv}))
				if got := reg.parsed.Response.AttestationObject.AuthData.Flags.HasUserVerified(); got != wantUV {
					t.Errorf("create: UV flag %v, want %v", got, wantUV)
				}
				if reg.cred.Flags.UserVerified != wantUV {
					t.Errorf("go-webauthn credential UserVerified %v, want %v", reg.cred.Flags.UserVerified, wantUV)
				}
				l := r.login(false, gowebauthn.WithUserVerification(uv))
				if got := l.parsed.Response.AuthenticatorData.Flags.HasUserVerified(); got != wantUV {
					t.Errorf("get: UV flag %v, want %v", got, wantUV)
				}
				// ctapkit's own parser reads the same flags.
				ad, err := ctap2.ParseAuthData(b64d(t, l.parsed.Raw.AssertionResponse.AuthenticatorData.String()))
				if err != nil {
					t.Fatal(err)
				}
				if ad.Flags.Has(ctap2.FlagUV) != wantUV || !ad.Flags.Has(ctap2.FlagUP) {
					t.Errorf("get: ctap2 flags %v, want UP and UV %v", ad.Flags, wantUV)
				}
			})
		}
	}
}

func TestGoWebAuthnPRF(t *testing.T) {
	in1 := protocol.PRFValues{First: []byte("first input"), Second: []byte("second input")}
	in2 := protocol.PRFValues{First: []byte("another input")}
	prfGet := func(v protocol.PRFValues) gowebauthn.LoginOption {
		return gowebauthn.WithAssertionExtensions(gowebauthn.WithExtensionPRF(v))
	}
	results := func(t *testing.T, l *login) (first, second []byte) {
		t.Helper()
		p := l.parsed.ClientExtensionResults.PRF
		if p == nil || p.Results == nil {
			t.Fatalf("no prf results: %s", l.resp)
		}
		if len(p.Results.First) != 32 || (len(p.Results.Second) != 0 && len(p.Results.Second) != 32) {
			t.Fatalf("prf results of %d and %d bytes, want 32", len(p.Results.First), len(p.Results.Second))
		}
		return p.Results.First, p.Results.Second
	}

	for _, tc := range []struct {
		name     string
		opts     webauthntest.Options
		verifies bool
	}{
		{"plain", webauthntest.Options{}, false},
		{"PIN", webauthntest.Options{PIN: "1234"}, true},
		{"built-in UV", webauthntest.Options{UV: softkey.UVPass}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts)
			reg := r.register(gowebauthn.WithExtensions(gowebauthn.WithExtensionPRFSupport()))
			if p := reg.parsed.ClientExtensionResults.PRF; p == nil || p.Enabled == nil || !*p.Enabled {
				t.Fatalf("prf at create: %+v, want enabled", p)
			}

			uv := gowebauthn.WithUserVerification(protocol.VerificationPreferred)
			a1, a2 := results(t, r.login(false, prfGet(in1), uv))
			b1, b2 := results(t, r.login(false, prfGet(in1), uv))
			if len(a2) == 0 {
				t.Fatal("no second result for a second input")
			}
			if !bytes.Equal(a1, b1) || !bytes.Equal(a2, b2) {
				t.Error("prf results differ between two gets with the same inputs")
			}
			if bytes.Equal(a1, a2) {
				t.Error("first and second results are equal for different inputs")
			}
			c1, c2 := results(t, r.login(false, prfGet(in2), uv))
			if bytes.Equal(c1, a1) || len(c2) != 0 {
				t.Errorf("another input: first equal %v, second %x; want a different first and no second", bytes.Equal(c1, a1), c2)
			}
			if !tc.verifies {
				return
			}
			// hmac-secret keeps one secret for verified gets and one for the rest.
			l := r.login(false, prfGet(in1), gowebauthn.WithUserVerification(protocol.VerificationDiscouraged))
			if l.parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
				t.Fatal("UV flag set with userVerification discouraged")
			}
			if d1, _ := results(t, l); bytes.Equal(d1, a1) {
				t.Error("prf result without UV equals the one with UV")
			}
		})
	}

	// prf with eval at create goes out as hmac-secret-mc; its result is the one
	// a later get gives for the same input and the same UV state.
	t.Run("eval at create", func(t *testing.T) {
		r := newRig(t, webauthntest.Options{})
		reg := r.register(gowebauthn.WithExtensions(gowebauthn.WithExtensionPRF(in1)))
		p := reg.parsed.ClientExtensionResults.PRF
		if p == nil || p.Enabled == nil || !*p.Enabled {
			t.Fatalf("prf at create: %+v, want enabled", p)
		}
		if p.Results == nil {
			t.Skip("no prf results at create: the key lacks hmac-secret-mc")
		}
		a1, a2 := results(t, r.login(false, prfGet(in1)))
		if !bytes.Equal(p.Results.First, a1) || !bytes.Equal(p.Results.Second, a2) {
			t.Error("prf results at create differ from the ones at get")
		}
	})
}

func TestGoWebAuthnLargeBlob(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts webauthntest.Options
	}{
		{"plain", webauthntest.Options{}},
		{"PIN", webauthntest.Options{PIN: "1234"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts)
			reg := r.register(gowebauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
				gowebauthn.WithExtensions(gowebauthn.WithExtensionLargeBlobSupport(protocol.LargeBlobSupportRequired)))
			if lb := reg.parsed.ClientExtensionResults.LargeBlob; lb == nil || lb.Supported == nil || !*lb.Supported {
				t.Fatalf("largeBlob at create: %+v, want supported", lb)
			}

			// Nothing written yet: no blob.
			l := r.login(false, gowebauthn.WithAssertionExtensions(gowebauthn.WithExtensionLargeBlobRead()))
			if lb := l.parsed.ClientExtensionResults.LargeBlob; lb == nil || len(lb.Blob) != 0 {
				t.Errorf("read before any write: %+v, want no blob", lb)
			}

			blob := bytes.Repeat([]byte("a large blob for "+tc.name+". "), 20)
			l = r.login(false, gowebauthn.WithAssertionExtensions(gowebauthn.WithExtensionLargeBlobWrite(blob)))
			if lb := l.parsed.ClientExtensionResults.LargeBlob; lb == nil || lb.Written == nil || !*lb.Written {
				t.Fatalf("largeBlob write: %+v, want written", lb)
			}
			l = r.login(false, gowebauthn.WithAssertionExtensions(gowebauthn.WithExtensionLargeBlobRead()))
			if lb := l.parsed.ClientExtensionResults.LargeBlob; lb == nil || !bytes.Equal(lb.Blob, blob) {
				t.Errorf("largeBlob read: %+v, want the blob written", lb)
			}
		})
	}
}

func TestGoWebAuthnCredProtect(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     webauthntest.Options
		resident protocol.ResidentKeyRequirement
	}{
		{"PIN, non-resident", webauthntest.Options{PIN: "1234"}, protocol.ResidentKeyRequirementDiscouraged},
		{"PIN, resident", webauthntest.Options{PIN: "1234"}, protocol.ResidentKeyRequirementRequired},
		{"built-in UV, non-resident", webauthntest.Options{UV: softkey.UVPass}, protocol.ResidentKeyRequirementDiscouraged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.opts)
			reg := r.register(gowebauthn.WithResidentKeyRequirement(tc.resident), gowebauthn.WithExtensions(
				gowebauthn.WithExtensionCredentialProtectionPolicy(protocol.CredentialProtectionPolicyUserVerificationRequired, true)))
			// go-webauthn has checked that the key applied at least the policy.
			if ext := reg.parsed.Response.AttestationObject.AuthData.Ext; ext == nil || ext.CredProtect == nil ||
				*ext.CredProtect != protocol.CredentialProtectionPolicyUserVerificationRequired {
				t.Errorf("credProtect output %+v, want userVerificationRequired", ext)
			}
			// Without UV the key acts as if it did not hold the credential.
			if _, keyErr, _ := r.tryLogin(false, gowebauthn.WithUserVerification(protocol.VerificationDiscouraged)); !errors.Is(keyErr, webauthn.ErrNotAllowed) {
				t.Errorf("get without UV: %v, want NotAllowedError", keyErr)
			}
			if tc.resident == protocol.ResidentKeyRequirementRequired {
				if _, keyErr, _ := r.tryLogin(true, gowebauthn.WithUserVerification(protocol.VerificationDiscouraged)); !errors.Is(keyErr, webauthn.ErrNotAllowed) {
					t.Errorf("discoverable get without UV: %v, want NotAllowedError", keyErr)
				}
			}
			for _, uv := range []protocol.UserVerificationRequirement{protocol.VerificationRequired, protocol.VerificationPreferred} {
				l := r.login(false, gowebauthn.WithUserVerification(uv))
				if !l.parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
					t.Errorf("get with userVerification %s: no UV flag", uv)
				}
			}
		})
	}

	// Level 2: hidden from discoverable gets without UV, usable by ID.
	t.Run("userVerificationOptionalWithCredentialIDList", func(t *testing.T) {
		r := newRig(t, webauthntest.Options{PIN: "1234"})
		r.register(gowebauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired), gowebauthn.WithExtensions(
			gowebauthn.WithExtensionCredentialProtectionPolicy(protocol.CredentialProtectionPolicyUserVerificationOptionalWithCredentialIDList, true)))
		discouraged := gowebauthn.WithUserVerification(protocol.VerificationDiscouraged)
		if _, keyErr, _ := r.tryLogin(true, discouraged); !errors.Is(keyErr, webauthn.ErrNotAllowed) {
			t.Errorf("discoverable get without UV: %v, want NotAllowedError", keyErr)
		}
		if l := r.login(false, discouraged); l.parsed.Response.AuthenticatorData.Flags.HasUserVerified() {
			t.Error("UV flag with userVerification discouraged")
		}
		r.login(true, gowebauthn.WithUserVerification(protocol.VerificationRequired))
	})

	t.Run("optional policy, enforced", func(t *testing.T) {
		r := newRig(t, webauthntest.Options{PIN: "1234"})
		r.register(gowebauthn.WithExtensions(
			gowebauthn.WithExtensionCredentialProtectionPolicy(protocol.CredentialProtectionPolicyUserVerificationOptional, true)))
		r.login(false, gowebauthn.WithUserVerification(protocol.VerificationDiscouraged))
	})
}

// The RP checks: a response whose signature is broken is refused.
func TestGoWebAuthnRefusesCorruptSignature(t *testing.T) {
	r := newRig(t, webauthntest.Options{Faults: &softkey.Faults{CorruptSignature: true}})
	r.register()
	l, keyErr, rpErr := r.tryLogin(false)
	if keyErr != nil {
		t.Fatalf("get: %v", keyErr)
	}
	if rpErr == nil {
		t.Fatalf("go-webauthn accepted a corrupt signature: %s", l.resp)
	}
	t.Logf("refused as it should: %s", describe(rpErr))
}

// A largeBlob write needs a pinUvAuthToken with the lbw permission on a key
// that can verify its user, whatever userVerification says.
func TestGoWebAuthnLargeBlobWriteWithoutUV(t *testing.T) {
	r := newRig(t, webauthntest.Options{PIN: "1234"})
	r.register(gowebauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		gowebauthn.WithExtensions(gowebauthn.WithExtensionLargeBlobSupport(protocol.LargeBlobSupportRequired)))
	l, keyErr, rpErr := r.tryLogin(false, gowebauthn.WithUserVerification(protocol.VerificationDiscouraged),
		gowebauthn.WithAssertionExtensions(gowebauthn.WithExtensionLargeBlobWrite([]byte("blob"))))
	if keyErr != nil {
		// WebAuthn §10.1.5: a failed write is reported as written: false, and
		// the assertion is returned all the same.
		t.Fatalf("webauthn/get.go Get with extensions.largeBlob.write and userVerification discouraged on a key with a PIN: "+
			"session.verified gets no pinUvAuthToken (so none with the lbw permission), the assertion succeeds, then "+
			"extensions.go requestResults' PutLargeBlob fails with CTAP2_ERR_PUAT_REQUIRED and get() fails with %q "+
			"(not a DOMException); want the write done with an lbw token (UV), or at least the assertion with written: false", keyErr)
	}
	if rpErr != nil {
		t.Fatalf("go-webauthn refuses: %v", describe(rpErr))
	}
	if lb := l.parsed.ClientExtensionResults.LargeBlob; lb == nil || lb.Written == nil {
		t.Errorf("largeBlob output %+v, want written", lb)
	}
}

func TestGoWebAuthnExcludeCredentials(t *testing.T) {
	r := newRig(t, webauthntest.Options{})
	r.register()
	_, keyErr, _ := r.tryRegister(gowebauthn.WithExclusions(gowebauthn.Credentials(r.user.creds).CredentialDescriptors()))
	if !errors.Is(keyErr, webauthn.ErrInvalidState) {
		t.Errorf("create with the key's credential in excludeCredentials: %v, want InvalidStateError", keyErr)
	}
}
