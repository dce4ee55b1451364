package webauthn_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	gowebauthn "github.com/go-webauthn/webauthn/webauthn"

	"github.com/ctapkit/ctapkit/webauthn"
)

// challengeRoundTrips checks what the RP relies on: the challenge, written
// into clientDataJSON as base64url, reads back as the same bytes.
func challengeRoundTrips(t *testing.T, challenge []byte) {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString(challenge)
	if back, err := webauthn.DecodeBase64URL(enc); err != nil || !bytes.Equal(back, challenge) {
		t.Fatalf("challenge %x: base64url %q decodes to %x, %v", challenge, enc, back, err)
	}
	cd := webauthn.CollectedClientData{Type: webauthn.TypeGet, Challenge: challenge, Origin: "https://example.com"}
	var parsed struct{ Challenge string }
	if err := json.Unmarshal(cd.JSON(), &parsed); err != nil {
		t.Fatalf("clientDataJSON %s: %v", cd.JSON(), err)
	}
	if back, err := webauthn.DecodeBase64URL(parsed.Challenge); err != nil || !bytes.Equal(back, challenge) {
		t.Fatalf("challenge %x: clientDataJSON has %q", challenge, parsed.Challenge)
	}
}

// goWebAuthnSeeds are options as go-webauthn writes them, with extensions.
func goWebAuthnSeeds(f *testing.F) (creation, request []byte) {
	rp, err := gowebauthn.New(&gowebauthn.Config{RPID: "example.com", RPDisplayName: "Example", RPOrigins: []string{"https://example.com"}})
	if err != nil {
		f.Fatal(err)
	}
	user := &rpUser{id: []byte("user-1"), name: "alice", creds: []gowebauthn.Credential{{ID: []byte{1, 2, 3}}}}
	c, _, err := rp.BeginRegistration(user,
		gowebauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementRequired),
		gowebauthn.WithConveyancePreference(protocol.PreferDirectAttestation),
		gowebauthn.WithExclusions(gowebauthn.Credentials(user.creds).CredentialDescriptors()),
		gowebauthn.WithExtensions(gowebauthn.WithExtensionCredProps(), gowebauthn.WithExtensionPRF(protocol.PRFValues{First: []byte("a"), Second: []byte("b")}),
			gowebauthn.WithExtensionLargeBlobSupport(protocol.LargeBlobSupportPreferred),
			gowebauthn.WithExtensionCredentialProtectionPolicy(protocol.CredentialProtectionPolicyUserVerificationOptionalWithCredentialIDList, false)))
	if err != nil {
		f.Fatal(err)
	}
	a, _, err := rp.BeginLogin(user, gowebauthn.WithUserVerification(protocol.VerificationRequired),
		gowebauthn.WithAssertionExtensions(gowebauthn.WithExtensionPRFByCredential(
			map[string]protocol.PRFValues{"AQID": {First: []byte("x")}}, &protocol.PRFValues{First: []byte("y")}),
			gowebauthn.WithExtensionLargeBlobRead()))
	if err != nil {
		f.Fatal(err)
	}
	creation, _ = json.Marshal(c)
	request, _ = json.Marshal(a)
	return creation, request
}

func FuzzParseCreationOptions(f *testing.F) {
	gw, _ := goWebAuthnSeeds(f)
	f.Add(gw)
	f.Add([]byte(`{"rp":{"name":"x"},"user":{"id":"AQ","name":"a","displayName":"a"},"challenge":"AAAA","pubKeyCredParams":[{"type":"public-key","alg":-7}]}`))
	f.Add([]byte(`{"publicKey":{"rp":{"id":"example.com","name":"x"},"user":{"id":"dXNlcg==","name":"a","displayName":"a"},"challenge":"AA",` +
		`"pubKeyCredParams":[],"excludeCredentials":[{"type":"public-key","id":"AQ","transports":["usb"]}],` +
		`"authenticatorSelection":{"residentKey":"preferred","requireResidentKey":true,"userVerification":"discouraged"},` +
		`"attestation":"enterprise","timeout":1e3,"extensions":{"prf":{},"largeBlob":{"support":"required"},"credBlob":"AQ"}}}`))
	f.Add([]byte(`{"rp":{"name":"x"},"user":{"id":"a+b","name":"a","displayName":"a"},"challenge":"AAAA","pubKeyCredParams":[{"alg":-7.0}]}`))
	f.Add([]byte(`{"publicKey":null}`))
	f.Add([]byte(`[{"rp":1}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := webauthn.ParseCreationOptions(data)
		if err != nil {
			if !errors.Is(err, webauthn.ErrOptions) {
				t.Fatalf("error %v is not an ErrOptions", err)
			}
			return
		}
		if n := len(o.User.ID); n < 1 || n > 64 {
			t.Fatalf("accepted a user.id of %d bytes", n)
		}
		if o.Attestation == "" || o.AuthenticatorSelection.ResidentKey == "" {
			t.Fatalf("defaults not filled in: %+v", o)
		}
		challengeRoundTrips(t, o.Challenge)
	})
}

func FuzzParseRequestOptions(f *testing.F) {
	_, gw := goWebAuthnSeeds(f)
	f.Add(gw)
	f.Add([]byte(`{"challenge":"AAAA"}`))
	f.Add([]byte(`{"publicKey":{"challenge":"AA==","rpId":"example.com","allowCredentials":[{"type":"public-key","id":"AQ"}],` +
		`"userVerification":"required","extensions":{"largeBlob":{"write":""},"getCredBlob":true,"hmacGetSecret":{"salt1":"AQ","salt2":"Ag"}}}}`))
	f.Add([]byte(`{"challenge":"AAAA","extensions":{"prf":{"eval":{"first":"AQ"},"evalByCredential":{"AQ":{"first":"Ag","second":""}}}}}`))
	f.Add([]byte(`{"challenge":"AA\nAA","timeout":4294967295}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := webauthn.ParseRequestOptions(data)
		if err != nil {
			if !errors.Is(err, webauthn.ErrOptions) {
				t.Fatalf("error %v is not an ErrOptions", err)
			}
			return
		}
		if lb := o.Extensions.LargeBlob; lb != nil && lb.Read && lb.Write != nil {
			t.Fatal("largeBlob read and write together accepted")
		}
		challengeRoundTrips(t, o.Challenge)
	})
}

func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{
		"https://example.com", "https://login.example.com:8443", "http://localhost:8080", "http://app.localhost",
		"HTTPS://EXAMPLE.COM:443/", "https://127.0.0.1", "https://[::1]:443", "http://example.com", "https://example.com/path",
		"https://user@example.com", "https://bücher.example", "https://example.com:0443", "https://a..b", "ftp://x",
		"https://xn--bcher-kva.example", "https://example.com?", "https://127.1", "",
		"https://[fe80::1%25en0]", "https://[::1]x", "http://[v1.x]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := webauthn.ParseOrigin(s)
		if err != nil {
			if !errors.Is(err, webauthn.ErrSecurity) {
				t.Fatalf("ParseOrigin(%q): error %v is not an ErrSecurity", s, err)
			}
			return
		}
		if strings.ContainsAny(o.Host, ":%[]") {
			t.Fatalf("ParseOrigin(%q) accepts host %q: an IP literal", s, o.Host)
		}
		again, err := webauthn.ParseOrigin(o.Serialized)
		if err != nil || again != o {
			t.Fatalf("ParseOrigin(%q) = %+v, but its serialization parses to %+v, %v", s, o, again, err)
		}
		if !strings.HasPrefix(o.Serialized, "https://"+o.Host) && !strings.HasPrefix(o.Serialized, "http://"+o.Host) {
			t.Fatalf("ParseOrigin(%q) = %+v: serialization is not scheme://host", s, o)
		}
		if o.Host != strings.ToLower(o.Host) {
			t.Fatalf("ParseOrigin(%q): host %q is not lower case", s, o.Host)
		}
		if id, err := o.RPID(""); err != nil || id != o.Host {
			t.Fatalf("ParseOrigin(%q): RPID(\"\") = %q, %v; want the host %q", s, id, err, o.Host)
		}
	})
}
