// Package webauthn is the client side of WebAuthn: what a browser does between a
// relying party's JavaScript options and the CTAP authenticator.
package webauthn

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Client data types (WebAuthn §5.8.1).
const (
	TypeCreate = "webauthn.create"
	TypeGet    = "webauthn.get"
)

// CollectedClientData is what the client signs over, via its hash (WebAuthn §5.8.1).
type CollectedClientData struct {
	Type        string
	Challenge   []byte
	Origin      string
	CrossOrigin bool
	TopOrigin   string // only serialized when CrossOrigin is true
}

// JSON serializes the client data in the exact order and escaping of WebAuthn L3
// §5.8.1.1, so that verifiers using the fixed-prefix check accept it.
func (c *CollectedClientData) JSON() []byte {
	var b strings.Builder
	b.WriteString(`{"type":`)
	writeCCDString(&b, c.Type)
	b.WriteString(`,"challenge":`)
	writeCCDString(&b, base64.RawURLEncoding.EncodeToString(c.Challenge))
	b.WriteString(`,"origin":`)
	writeCCDString(&b, c.Origin)
	if c.CrossOrigin {
		b.WriteString(`,"crossOrigin":true`)
		if c.TopOrigin != "" {
			b.WriteString(`,"topOrigin":`)
			writeCCDString(&b, c.TopOrigin)
		}
	} else {
		b.WriteString(`,"crossOrigin":false`)
	}
	b.WriteString("}")
	return []byte(b.String())
}

// Hash is the clientDataHash the authenticator signs: SHA-256 of JSON().
func (c *CollectedClientData) Hash() []byte {
	h := sha256.Sum256(c.JSON())
	return h[:]
}

// writeCCDString is CCDToString: code points 0x20, 0x21, 0x23-0x5B, 0x5D-0x10FFFF are
// copied; '"' and '\' are backslash-escaped; everything else becomes \uXXXX.
func writeCCDString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case r == 0x20 || r == 0x21 || r >= 0x23 && r <= 0x5B || r >= 0x5D:
			b.WriteRune(r)
		default:
			fmt.Fprintf(b, `\u%04x`, r)
		}
	}
	b.WriteByte('"')
}
