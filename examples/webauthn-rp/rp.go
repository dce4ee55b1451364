package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// maxBody bounds every request body: a registration response with an attestation
// certificate chain is a few KiB, so 64 KiB is plenty and keeps a stray upload cheap.
const maxBody = 64 << 10

// user is one account. The user handle (id) is random, never the username, as the
// WebAuthn spec asks: it is stored on the authenticator for discoverable credentials.
type user struct {
	id    []byte
	name  string
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return u.name }
func (u *user) WebAuthnDisplayName() string                { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// rp is the relying party: users, credentials and ceremony state, all in memory.
//
// Sessions are kept server-side, keyed by username, with one extra slot for the
// discoverable (username-less) login. There are no cookies: this is a demo for one
// client at a time (a script or one browser tab); a real RP binds the SessionData to
// the browser's session instead, so two people cannot finish each other's ceremonies.
type rp struct {
	wa *webauthn.WebAuthn

	mu            sync.Mutex
	users         map[string]*user                 // by username
	regSessions   map[string]*webauthn.SessionData // by username
	loginSessions map[string]*webauthn.SessionData // by username
	discoverable  *webauthn.SessionData            // the one username-less login in flight
}

// newRP configures go-webauthn for RP ID "localhost" and the given origins.
func newRP(origins []string) (*rp, error) {
	wa, err := webauthn.New(&webauthn.Config{
		RPID:          "localhost",
		RPDisplayName: "ctapkit example RP",
		RPOrigins:     origins,
	})
	if err != nil {
		return nil, err
	}
	return &rp{
		wa:            wa,
		users:         map[string]*user{},
		regSessions:   map[string]*webauthn.SessionData{},
		loginSessions: map[string]*webauthn.SessionData{},
	}, nil
}

// handler routes the endpoints. Method-qualified patterns make net/http answer 405 for
// a GET on a POST endpoint.
func (s *rp) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", servePage)
	mux.HandleFunc("POST /register/begin", s.registerBegin)
	mux.HandleFunc("POST /register/finish", s.registerFinish)
	mux.HandleFunc("POST /login/begin", s.loginBegin)
	mux.HandleFunc("POST /login/finish", s.loginFinish)
	return mux
}

// beginRequest is the body of both begin endpoints. The three options apply to
// registration only and may also come as query parameters (?residentKey=required).
type beginRequest struct {
	Username         string `json:"username"`
	ResidentKey      string `json:"residentKey"`
	UserVerification string `json:"userVerification"`
	Attestation      string `json:"attestation"`
}

func (s *rp) registerBegin(w http.ResponseWriter, r *http.Request) {
	req, err := readBegin(r)
	if err != nil {
		fail(w, err)
		return
	}
	if req.Username == "" {
		fail(w, errors.New("username is required"))
		return
	}
	rk, err := oneOf("residentKey", pick(req.ResidentKey, r, "residentKey", "preferred"), "discouraged", "preferred", "required")
	if err != nil {
		fail(w, err)
		return
	}
	uv, err := oneOf("userVerification", pick(req.UserVerification, r, "userVerification", "preferred"), "discouraged", "preferred", "required")
	if err != nil {
		fail(w, err)
		return
	}
	att, err := oneOf("attestation", pick(req.Attestation, r, "attestation", "none"), "none", "indirect", "direct", "enterprise")
	if err != nil {
		fail(w, err)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[req.Username]
	if u == nil {
		// Registration creates the account: there are no passwords in this demo.
		id := make([]byte, 32)
		if _, err := rand.Read(id); err != nil {
			failCode(w, http.StatusInternalServerError, err)
			return
		}
		u = &user{id: id, name: req.Username}
		s.users[req.Username] = u
	}
	creation, session, err := s.wa.BeginRegistration(u,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			UserVerification: protocol.UserVerificationRequirement(uv),
		}),
		// After the selection above: it sets residentKey and the legacy requireResidentKey together.
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirement(rk)),
		webauthn.WithConveyancePreference(protocol.ConveyancePreference(att)),
		// Refuse a second credential for this user on the same authenticator.
		webauthn.WithExclusions(webauthn.Credentials(u.creds).CredentialDescriptors()),
	)
	if err != nil {
		fail(w, err)
		return
	}
	s.regSessions[req.Username] = session
	reply(w, http.StatusOK, creation)
}

func (s *rp) registerFinish(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("username")
	body, err := readBody(r)
	if err != nil {
		fail(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, session := s.users[name], s.regSessions[name]
	if u == nil || session == nil {
		fail(w, fmt.Errorf("no registration in progress for user %q (call /register/begin first)", name))
		return
	}
	// One answer per challenge: the session is spent even when the answer is wrong.
	delete(s.regSessions, name)
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		fail(w, err)
		return
	}
	cred, err := s.wa.CreateCredential(u, *session, parsed)
	if err != nil {
		fail(w, err)
		return
	}
	u.creds = append(u.creds, *cred)
	reply(w, http.StatusOK, map[string]any{
		"ok":           true,
		"user":         name,
		"credentialId": base64.RawURLEncoding.EncodeToString(cred.ID),
		"signCount":    cred.Authenticator.SignCount,
		"aaguid":       formatUUID(cred.Authenticator.AAGUID),
		"attestation":  cred.AttestationFormat,
		"userVerified": cred.Flags.UserVerified,
	})
}

func (s *rp) loginBegin(w http.ResponseWriter, r *http.Request) {
	req, err := readBegin(r)
	if err != nil {
		fail(w, err)
		return
	}
	uv, err := oneOf("userVerification", pick(req.UserVerification, r, "userVerification", "preferred"), "discouraged", "preferred", "required")
	if err != nil {
		fail(w, err)
		return
	}
	opt := webauthn.WithUserVerification(protocol.UserVerificationRequirement(uv))

	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Username == "" {
		// No username: a discoverable login, empty allowCredentials; the authenticator
		// picks a passkey and its user handle tells us who it is.
		assertion, session, err := s.wa.BeginDiscoverableLogin(opt)
		if err != nil {
			fail(w, err)
			return
		}
		s.discoverable = session
		reply(w, http.StatusOK, assertion)
		return
	}
	u := s.users[req.Username]
	if u == nil {
		fail(w, fmt.Errorf("unknown user %q", req.Username))
		return
	}
	assertion, session, err := s.wa.BeginLogin(u, opt) // fails for a user without credentials
	if err != nil {
		fail(w, err)
		return
	}
	s.loginSessions[req.Username] = session
	reply(w, http.StatusOK, assertion)
}

func (s *rp) loginFinish(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("username")
	body, err := readBody(r)
	if err != nil {
		fail(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	var session *webauthn.SessionData
	if name == "" {
		session, s.discoverable = s.discoverable, nil
	} else {
		session = s.loginSessions[name]
		delete(s.loginSessions, name)
	}
	if session == nil {
		fail(w, fmt.Errorf("no login in progress for %s (call /login/begin first)", who(name)))
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		fail(w, err)
		return
	}

	var (
		u    *user
		cred *webauthn.Credential
	)
	if name == "" {
		// The user handle the authenticator returned names the account.
		var found webauthn.User
		found, cred, err = s.wa.ValidatePasskeyLogin(func(_, userHandle []byte) (webauthn.User, error) {
			for _, c := range s.users {
				if bytes.Equal(c.id, userHandle) {
					return c, nil
				}
			}
			return nil, errors.New("no user has this user handle")
		}, *session, parsed)
		if err == nil {
			u = found.(*user)
		}
	} else {
		u = s.users[name]
		cred, err = s.wa.ValidateLogin(u, *session, parsed)
	}
	if err != nil {
		fail(w, err)
		return
	}
	// go-webauthn only flags a counter that did not go up; refusing the login is this
	// RP's policy (a cloned key would be the likeliest cause).
	if cred.Authenticator.CloneWarning {
		fail(w, fmt.Errorf("signCount %d is not above the stored one: possibly a cloned authenticator", parsed.Response.AuthenticatorData.Counter))
		return
	}
	// Store the new counter and flags, or the next login would compare with stale ones.
	for i := range u.creds {
		if bytes.Equal(u.creds[i].ID, cred.ID) {
			u.creds[i] = *cred
		}
	}
	reply(w, http.StatusOK, map[string]any{
		"ok":           true,
		"user":         u.name,
		"credentialId": base64.RawURLEncoding.EncodeToString(cred.ID),
		"signCount":    cred.Authenticator.SignCount,
		"userVerified": parsed.Response.AuthenticatorData.Flags.HasUserVerified(),
	})
}

func who(name string) string {
	if name == "" {
		return "a discoverable login"
	}
	return fmt.Sprintf("user %q", name)
}

// readBody reads a bounded request body.
func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("request body over %d bytes", maxBody)
	}
	return body, nil
}

// readBegin decodes a begin body; an empty body counts as {}.
func readBegin(r *http.Request) (beginRequest, error) {
	var req beginRequest
	body, err := readBody(r)
	if err != nil {
		return req, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, fmt.Errorf("request body: %v", err)
	}
	return req, nil
}

// pick returns the body field, else the query parameter, else the default.
func pick(field string, r *http.Request, param, def string) string {
	if field != "" {
		return field
	}
	if q := r.URL.Query().Get(param); q != "" {
		return q
	}
	return def
}

// oneOf checks v against the values the WebAuthn spec defines for an option, so a typo
// is an error here rather than an option a client silently ignores.
func oneOf(option, v string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if v == a {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s must be one of %v, not %q", option, allowed, v)
}

// formatUUID prints a 16-byte AAGUID the usual way (8-4-4-4-12 hex digits).
func formatUUID(b []byte) string {
	if len(b) != 16 {
		return fmt.Sprintf("%x", b)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// errorText flattens a go-webauthn error: its Error() is only the short "Details"
// ("Error validating origin"); the "DevInfo" says what was actually wrong.
func errorText(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" && pe.DevInfo != pe.Details {
		return pe.Details + ": " + pe.DevInfo
	}
	return err.Error()
}

func fail(w http.ResponseWriter, err error) { failCode(w, http.StatusBadRequest, err) }

func failCode(w http.ResponseWriter, code int, err error) {
	msg := errorText(err)
	if lw, ok := w.(*logWriter); ok {
		lw.err = msg
	}
	reply(w, code, map[string]string{"error": msg})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
