package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/ctapkit/ctapkit/webauthn"
)

// clientDataFlags are the two ways to give what the key signs over: a raw
// clientDataHash, or a challenge from which a browser-style clientDataJSON (origin
// https://RP) is built and hashed. With neither, a random challenge is used.
type clientDataFlags struct {
	hashHex   string
	challenge string
}

// resolve returns the clientDataHash and, when it built one, the clientDataJSON.
func (f *clientDataFlags) resolve(kind, rpID string) (hash, clientDataJSON []byte, err error) {
	if f.hashHex != "" && f.challenge != "" {
		return nil, nil, usageErrorf("--client-data-hash and --challenge are mutually exclusive")
	}
	if f.hashHex != "" {
		hash, err := hex.DecodeString(f.hashHex)
		if err != nil || len(hash) != 32 {
			return nil, nil, usageErrorf("--client-data-hash: want 64 hex digits (32 bytes), got %q", f.hashHex)
		}
		return hash, nil, nil
	}
	challenge := make([]byte, 32)
	if f.challenge != "" {
		if challenge, err = decodeB64URL(f.challenge); err != nil || len(challenge) == 0 {
			return nil, nil, usageErrorf("--challenge: want base64url, got %q", f.challenge)
		}
	} else if _, err := rand.Read(challenge); err != nil {
		return nil, nil, err
	}
	cd := webauthn.CollectedClientData{Type: kind, Challenge: challenge, Origin: "https://" + rpID}
	return cd.Hash(), cd.JSON(), nil
}

// decodeB64URL accepts base64url with or without padding, as credential IDs are
// printed without it but pasted from elsewhere with it.
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
