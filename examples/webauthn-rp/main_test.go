package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// These tests cover the RP's HTTP plumbing only. The ceremonies themselves are
// go-webauthn's job, and end to end with a real authenticator is make demo-rp.

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	s, err := newRP([]string{"http://localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.handler())
	t.Cleanup(srv.Close)
	return srv
}

// post sends body and decodes the JSON answer into a generic map.
func post(t *testing.T, srv *httptest.Server, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(srv.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("POST %s: Content-Type %q, want application/json", path, ct)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("POST %s: answer is not a JSON object: %v\n%s", path, err, raw)
	}
	return resp.StatusCode, m
}

// publicKey returns the "publicKey" member of a begin answer, checking rp ID and challenge.
func publicKey(t *testing.T, path string, code int, m map[string]any) map[string]any {
	t.Helper()
	if code != http.StatusOK {
		t.Fatalf("POST %s: status %d, answer %v", path, code, m)
	}
	pk, ok := m["publicKey"].(map[string]any)
	if !ok {
		t.Fatalf("POST %s: no publicKey object in %v", path, m)
	}
	ch, _ := pk["challenge"].(string)
	if b, err := base64.RawURLEncoding.DecodeString(ch); err != nil || len(b) < 16 {
		t.Errorf("POST %s: challenge %q is not 16+ bytes of base64url (%v)", path, ch, err)
	}
	return pk
}

func TestRegisterBegin(t *testing.T) {
	srv := newServer(t)
	code, m := post(t, srv, "/register/begin", `{"username":"alice"}`)
	pk := publicKey(t, "/register/begin", code, m)
	rp, _ := pk["rp"].(map[string]any)
	if rp["id"] != "localhost" {
		t.Errorf("rp = %v, want id localhost", rp)
	}
	u, _ := pk["user"].(map[string]any)
	if u["name"] != "alice" {
		t.Errorf("user = %v, want name alice", u)
	}
	if id, _ := u["id"].(string); id == "" || id == "alice" {
		t.Errorf("user.id = %q, want a random base64url handle", id)
	}
	sel, _ := pk["authenticatorSelection"].(map[string]any)
	if sel["residentKey"] != "preferred" || sel["userVerification"] != "preferred" {
		t.Errorf("authenticatorSelection = %v, want residentKey and userVerification preferred", sel)
	}
	if pk["attestation"] != "none" {
		t.Errorf("attestation = %v, want none", pk["attestation"])
	}

	// Options from the body and from the query.
	code, m = post(t, srv, "/register/begin?attestation=direct", `{"username":"bob","residentKey":"required","userVerification":"discouraged"}`)
	pk = publicKey(t, "/register/begin", code, m)
	sel, _ = pk["authenticatorSelection"].(map[string]any)
	if sel["residentKey"] != "required" || sel["requireResidentKey"] != true || sel["userVerification"] != "discouraged" || pk["attestation"] != "direct" {
		t.Errorf("options not applied: authenticatorSelection %v, attestation %v", sel, pk["attestation"])
	}
}

func TestLoginBeginDiscoverable(t *testing.T) {
	srv := newServer(t)
	for _, body := range []string{`{}`, ``} {
		code, m := post(t, srv, "/login/begin", body)
		pk := publicKey(t, "/login/begin", code, m)
		if pk["rpId"] != "localhost" {
			t.Errorf("body %q: rpId = %v, want localhost", body, pk["rpId"])
		}
		if ac, ok := pk["allowCredentials"].([]any); ok && len(ac) > 0 {
			t.Errorf("body %q: discoverable login has allowCredentials %v", body, ac)
		}
	}
}

// Every refusal is a 400 with a JSON {"error": "..."}.
func TestRefusals(t *testing.T) {
	srv := newServer(t)
	// alice has a registration in progress, so the finish below gets past the session check.
	if code, m := post(t, srv, "/register/begin", `{"username":"alice"}`); code != http.StatusOK {
		t.Fatalf("register/begin: %d %v", code, m)
	}
	garbage := `{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}`
	for _, c := range []struct{ name, path, body string }{
		{"unknown user", "/login/begin", `{"username":"nobody"}`},
		{"user without credentials", "/login/begin", `{"username":"alice"}`},
		{"no username", "/register/begin", `{}`},
		{"bad option", "/register/begin", `{"username":"alice","residentKey":"always"}`},
		{"not JSON", "/register/begin", `alice`},
		{"register garbage", "/register/finish?username=alice", garbage},
		{"register spent session", "/register/finish?username=alice", garbage},
		{"register not JSON", "/register/finish?username=alice", `{{`},
		{"register no session", "/register/finish?username=carol", garbage},
		{"login no session", "/login/finish?username=alice", `{}`},
		{"discoverable no session", "/login/finish", `{}`},
	} {
		code, m := post(t, srv, c.path, c.body)
		msg, _ := m["error"].(string)
		if code != http.StatusBadRequest || msg == "" {
			t.Errorf("%s: POST %s %s: %d %v, want 400 with an error", c.name, c.path, c.body, code, m)
		}
	}

	// A discoverable login started, then answered with garbage.
	if code, m := post(t, srv, "/login/begin", `{}`); code != http.StatusOK {
		t.Fatalf("login/begin: %d %v", code, m)
	}
	code, m := post(t, srv, "/login/finish", `{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{}}`)
	if msg, _ := m["error"].(string); code != http.StatusBadRequest || msg == "" {
		t.Errorf("login/finish garbage: %d %v, want 400 with an error", code, m)
	}
}

func TestPage(t *testing.T) {
	srv := newServer(t)
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "parseCreationOptionsFromJSON") {
		t.Errorf("GET /: %d, page without the WebAuthn script", resp.StatusCode)
	}
	// Begin endpoints are POST only.
	resp, err = http.Get(srv.URL + "/register/begin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /register/begin: %d, want 405", resp.StatusCode)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	name := filepath.Join(t.TempDir(), "port")
	if err := writeFileAtomic(name, "8080\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(name); err != nil || string(b) != "8080\n" {
		t.Errorf("read back %q, %v", b, err)
	}
}
