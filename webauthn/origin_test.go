package webauthn_test

import (
	"errors"
	"testing"

	"github.com/ctapkit/ctapkit/webauthn"
)

func TestParseOrigin(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // the serialized origin; "" for refused
		host string // Host when accepted; "" means the same as want's host
		bug  string // what browsers do there, for the failure message
	}{
		// https anywhere, in canonical form.
		{in: "https://example.com", want: "https://example.com", host: "example.com"},
		{in: "https://example.com/", want: "https://example.com"},
		{in: "https://login.example.co.uk", want: "https://login.example.co.uk", host: "login.example.co.uk"},
		{in: "HTTPS://Login.EXAMPLE.com", want: "https://login.example.com", host: "login.example.com"},
		{in: "https://localhost", want: "https://localhost"},
		// Default ports go, others stay.
		{in: "https://example.com:443", want: "https://example.com"},
		{in: "https://example.com:443/", want: "https://example.com"},
		{in: "https://example.com:8443", want: "https://example.com:8443", host: "example.com"},
		{in: "http://localhost:80", want: "http://localhost"},
		{in: "http://localhost:8080", want: "http://localhost:8080", host: "localhost"},
		{in: "http://localhost:443", want: "http://localhost:443"},
		{in: "https://example.com:80", want: "https://example.com:80"},
		// http only for localhost and below it.
		{in: "http://localhost", want: "http://localhost", host: "localhost"},
		{in: "http://LOCALHOST:3000", want: "http://localhost:3000", host: "localhost"},
		{in: "http://app.localhost:3000", want: "http://app.localhost:3000", host: "app.localhost"},
		{in: "http://example.com"},
		{in: "http://localhost.example.com"},
		{in: "http://notlocalhost"},
		{in: "http://127.0.0.1:8080"},
		// IP addresses cannot carry an RP ID.
		{in: "https://127.0.0.1"},
		{in: "https://192.168.1.10:8443"},
		{in: "https://[::1]"},
		{in: "http://[::1]:8080"},
		{in: "https://[2001:db8::1]"},
		{in: "https://[::ffff:127.0.0.1]"},
		// An origin is scheme, host and port: nothing else.
		{in: "https://example.com/login"},
		{in: "https://example.com?q=1"},
		{in: "https://example.com/?q=1"},
		{in: "https://example.com#top"},
		{in: "https://user@example.com"},
		{in: "https://user:pass@example.com"},
		// Not https, or not a URL with a host.
		{in: ""},
		{in: "example.com"},
		{in: "//example.com"},
		{in: "https://"},
		{in: "https:example.com"},
		{in: "ftp://example.com"},
		{in: "wss://example.com"},
		{in: "file:///etc/passwd"},
		{in: "javascript:alert(1)"},
		{in: "data:text/html,hi"},
		{in: "null"},
		{in: "https://exa mple.com"},
		{in: "https://a..b.example.com"},
		{in: "https://example.com."},
		{in: "https://example.com:-1"},
		{in: "https://example.com:+443"},
		{in: "https://:443"},

		// Where the WHATWG URL parser is easy to get wrong.
		{in: "https://example.com:0443", want: "https://example.com",
			bug: `the port is kept as written ("https://example.com:0443"): browsers parse it as the number 443, the default, and drop it`},
		{in: "https://example.com:08443", want: "https://example.com:8443",
			bug: `the port is kept as written (":08443"): browsers serialize the number, ":8443"`},
		{in: "https://example.com:65536",
			bug: "a port above 65535 is accepted: for browsers the URL is invalid"},
		{in: "https://127.1",
			bug: `"127.1" is taken for a host name: browsers parse it as the IPv4 address 127.0.0.1, which cannot be an RP`},
		{in: "https://0x7f.0.0.1",
			bug: `"0x7f.0.0.1" is taken for a host name: browsers parse it as the IPv4 address 127.0.0.1`},
		{in: "https://2130706433",
			bug: `"2130706433" is taken for a host name: browsers parse it as the IPv4 address 127.0.0.1`},
		{in: "https://example.123",
			bug: `a host whose last label is a number goes to the URL standard's IPv4 parser and fails there: browsers refuse it`},
		{in: "https://.example.com",
			bug: `a leading empty label is accepted (host ".example.com") though "a..b" and a trailing dot are refused; it is not a valid domain`},
		{in: "https://a<b.example.com",
			bug: `"<" is a forbidden host code point: browsers refuse the URL, ParseOrigin accepts it`},
		{in: "https://[fe80::1%25en0]",
			bug: `an IPv6 address with a zone ID passes as a host name ("fe80::1%en0": net.ParseIP does not take zones), ` +
				`and its serialization "https://fe80::1%en0" does not parse again; found by FuzzParseOrigin`},
		{in: "https://bücher.example", want: "https://xn--bcher-kva.example",
			bug: `an internationalized host stays in Unicode: browsers serialize the origin (and hash the RP ID) in its IDNA ASCII form "xn--bcher-kva.example"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			o, err := webauthn.ParseOrigin(tc.in)
			var problem string
			switch {
			case tc.want == "" && err == nil:
				problem = "accepted as " + o.Serialized + ", want refused"
			case tc.want == "" && !errors.Is(err, webauthn.ErrSecurity):
				problem = "error " + err.Error() + " does not wrap ErrSecurity"
			case tc.want != "" && err != nil:
				problem = "refused: " + err.Error()
			case tc.want != "" && o.Serialized != tc.want:
				problem = "serialized as " + o.Serialized + ", want " + tc.want
			case tc.want != "" && tc.host != "" && o.Host != tc.host:
				problem = "host " + o.Host + ", want " + tc.host
			}
			if problem != "" && tc.bug != "" {
				problem += " (" + tc.bug + ")"
			}
			if problem != "" {
				t.Error(problem)
			}
			if err == nil {
				// Idempotent: the serialized origin is an origin, the same one.
				again, err := webauthn.ParseOrigin(o.Serialized)
				if err != nil || again != o {
					t.Errorf("ParseOrigin(%q) = %+v, %v; want %+v again", o.Serialized, again, err, o)
				}
			}
		})
	}
}

func TestOriginRPID(t *testing.T) {
	for _, tc := range []struct {
		origin, rpID string
		want         string // "" for refused
	}{
		{"https://example.com", "", "example.com"},
		{"https://login.example.com", "", "login.example.com"},
		{"https://example.com", "example.com", "example.com"},
		{"https://login.example.com", "example.com", "example.com"},
		{"https://a.b.example.com", "b.example.com", "b.example.com"},
		{"https://a.b.example.com", "example.com", "example.com"},
		// Case-insensitive, and the RP ID comes back in lower case for hashing.
		{"https://login.example.com", "Example.COM", "example.com"},
		{"https://Login.Example.COM", "example.com", "example.com"},
		{"https://login.example.com", "LOGIN.example.com", "login.example.com"},
		// Ports play no part.
		{"https://example.com:8443", "example.com", "example.com"},
		{"https://login.example.com:8443", "", "login.example.com"},
		{"http://localhost:8080", "localhost", "localhost"},
		{"http://app.localhost:8080", "localhost", "localhost"},
		// Siblings, children and strangers are refused.
		{"https://login.example.com", "other.example.com", ""},
		{"https://example.com", "login.example.com", ""},
		{"https://example.com", "evil.com", ""},
		{"https://notexample.com", "example.com", ""}, // a suffix of the string, not a parent domain
		{"https://example.com.evil.com", "example.com", ""},
		{"https://example.com", "example.com.", ""},
		{"https://example.com", ".example.com", ""},
		{"https://login.example.com", "xample.com", ""},
		// Public suffixes are never an RP ID for the sites below them.
		{"https://example.com", "com", ""},
		{"https://example.co.uk", "co.uk", ""},
		{"https://login.example.co.uk", "example.co.uk", "example.co.uk"},
		{"https://x.github.io", "github.io", ""},
		{"https://a.x.github.io", "x.github.io", "x.github.io"},
		{"https://a.foo.ck", "foo.ck", ""}, // *.ck
		{"https://www.ck", "", "www.ck"},   // !www.ck
		// An RP ID is a bare host name.
		{"https://example.com", "example.com:443", ""},
		{"https://example.com:8443", "example.com:8443", ""},
		{"https://example.com", "https://example.com", ""},
		{"https://example.com", "example.com/", ""},
		{"https://example.com", "//example.com", ""},
		{"https://example.com", "127.0.0.1", ""},
		{"https://example.com", "[::1]", ""},
		{"https://example.com", "::1", ""},
	} {
		t.Run(tc.origin+" "+tc.rpID, func(t *testing.T) {
			o, err := webauthn.ParseOrigin(tc.origin)
			if err != nil {
				t.Fatal(err)
			}
			got, err := o.RPID(tc.rpID)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("RP ID %q accepted as %q for %s, want refused", tc.rpID, got, tc.origin)
			case tc.want == "" && !errors.Is(err, webauthn.ErrSecurity):
				t.Errorf("error %v does not wrap ErrSecurity", err)
			case tc.want != "" && err != nil:
				t.Errorf("RP ID %q refused for %s: %v", tc.rpID, tc.origin, err)
			case tc.want != "" && got != tc.want:
				t.Errorf("RP ID %q for %s: %q, want %q", tc.rpID, tc.origin, got, tc.want)
			}
		})
	}
}
