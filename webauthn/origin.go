package webauthn

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// ErrSecurity reports an origin or RP ID a browser refuses (its SecurityError).
var ErrSecurity = errors.New("refused by WebAuthn's origin rules")

// Origin is a validated web origin: the scheme, host and port the client data
// names, and the host the RP ID is checked against.
type Origin struct {
	Serialized string // scheme://host[:port], as it goes into clientDataJSON
	Host       string // lower case, without port: the origin's effective domain
}

// ParseOrigin checks an origin as a browser's secure-context rule does: https, or
// http for localhost and *.localhost only; a host name, not an IP address (IP
// addresses cannot carry an RP ID); nothing after the port.
func ParseOrigin(s string) (Origin, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return Origin{}, fmt.Errorf("%w: origin %q: want scheme://host[:port], e.g. https://example.com", ErrSecurity, s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Origin{}, fmt.Errorf("%w: origin %q: an origin has no user, path, query or fragment (want %s://%s)", ErrSecurity, s, u.Scheme, u.Host)
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if net.ParseIP(host) != nil {
		return Origin{}, fmt.Errorf("%w: origin %q: an IP address cannot be a relying party; use a host name (http://localhost for local tests)", ErrSecurity, s)
	}
	switch {
	case scheme == "https":
		if port == "443" {
			port = ""
		}
	case scheme == "http" && isLocalhost(host):
		if port == "80" {
			port = ""
		}
	case scheme == "http":
		return Origin{}, fmt.Errorf("%w: origin %q: http is allowed only for localhost; use https", ErrSecurity, s)
	default:
		return Origin{}, fmt.Errorf("%w: origin %q: scheme %q is not https", ErrSecurity, s, u.Scheme)
	}
	if host == "" || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
		return Origin{}, fmt.Errorf("%w: origin %q: bad host name", ErrSecurity, s)
	}
	o := Origin{Serialized: scheme + "://" + host, Host: host}
	if port != "" {
		o.Serialized += ":" + port
	}
	return o, nil
}

func isLocalhost(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// RPID returns the RP ID to use for this origin: rpID when it is the origin's
// host or a registrable domain suffix of it (WebAuthn §5.1.3 step 8, HTML's
// "is a registrable domain suffix of or is equal to"), the host itself when rpID
// is empty. A public suffix (com, co.uk, github.io) is never an RP ID for a host
// below it; ports play no part, as in browsers.
func (o Origin) RPID(rpID string) (string, error) {
	if rpID == "" {
		return o.Host, nil
	}
	id := strings.ToLower(rpID)
	if strings.ContainsAny(id, ":/") {
		return "", fmt.Errorf("%w: RP ID %q: an RP ID is a host name, without scheme or port", ErrSecurity, rpID)
	}
	if net.ParseIP(id) != nil {
		return "", fmt.Errorf("%w: RP ID %q: an IP address cannot be an RP ID", ErrSecurity, rpID)
	}
	if id == o.Host {
		return id, nil
	}
	if !strings.HasSuffix(o.Host, "."+id) {
		return "", fmt.Errorf("%w: RP ID %q is not %s or a parent domain of it", ErrSecurity, rpID, o.Host)
	}
	if _, err := publicsuffix.EffectiveTLDPlusOne(id); err != nil && id != "localhost" {
		return "", fmt.Errorf("%w: RP ID %q is a public suffix: sites under it are unrelated", ErrSecurity, rpID)
	}
	return id, nil
}
