package webauthn

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
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
	host, err := canonicalHost(u.Hostname())
	if err != nil {
		return Origin{}, fmt.Errorf("%w: origin %q: %v", ErrSecurity, s, err)
	}
	port := ""
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return Origin{}, fmt.Errorf("%w: origin %q: port %q is not a number from 0 to 65535", ErrSecurity, s, p)
		}
		port = strconv.FormatUint(n, 10)
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
	o := Origin{Serialized: scheme + "://" + host, Host: host}
	if port != "" {
		o.Serialized += ":" + port
	}
	return o, nil
}

// errIPAddress: an IP address is never an RP ID, so its origin cannot be an RP's.
var errIPAddress = errors.New("an IP address cannot be a relying party; use a host name (http://localhost for local tests)")

// canonicalHost is a host name as browsers serialize it (the WHATWG URL host
// parser, for domains): IDNA ASCII form, lower case. IP addresses in any
// spelling the URL standard accepts (IPv6 literals, and a last label that is a
// number, such as 127.1, 0x7f.0.0.1 or 2130706433) are refused, as are empty
// labels and characters outside letters, digits, '-' and '_'.
func canonicalHost(h string) (string, error) {
	if h == "" {
		return "", errors.New("no host")
	}
	if strings.ContainsAny(h, ":[]") {
		return "", errIPAddress
	}
	ascii, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", fmt.Errorf("host %q is not a valid domain name", h)
	}
	labels := strings.Split(ascii, ".")
	for _, l := range labels {
		if l == "" {
			return "", fmt.Errorf("host %q has an empty label", h)
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("host %q: %q is not allowed in a host name", h, r)
			}
		}
	}
	if endsInNumber(labels[len(labels)-1]) {
		return "", errIPAddress
	}
	return ascii, nil
}

// endsInNumber is the URL standard's test that sends a host to the IPv4 parser:
// a last label of decimal digits, or 0x followed by hex digits.
func endsInNumber(label string) bool {
	if rest, ok := strings.CutPrefix(label, "0x"); ok {
		return strings.Trim(rest, "0123456789abcdef") == ""
	}
	return strings.Trim(label, "0123456789") == ""
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
	if strings.ContainsAny(rpID, "/") || (strings.Contains(rpID, ":") && net.ParseIP(strings.Trim(rpID, "[]")) == nil) {
		return "", fmt.Errorf("%w: RP ID %q: an RP ID is a host name, without scheme or port", ErrSecurity, rpID)
	}
	id, err := canonicalHost(rpID)
	if errors.Is(err, errIPAddress) {
		return "", fmt.Errorf("%w: RP ID %q: an IP address cannot be an RP ID", ErrSecurity, rpID)
	}
	if err != nil {
		return "", fmt.Errorf("%w: RP ID %q: %v", ErrSecurity, rpID, err)
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
