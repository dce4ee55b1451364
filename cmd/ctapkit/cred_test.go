package main

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
)

func TestShortIDs(t *testing.T) {
	ids := []string{"AgAAAAAAAAAA1", "AgAAAAAAAAAB2", "AgZZZ", "Ag", "QQQQQQQQQQQQ", "AgAAAAAAAAAA1x"}
	got := shortIDs(ids, 8)
	want := map[string]string{
		"AgAAAAAAAAAA1":  "AgAAAAAAAAAA1", // a prefix of another ID: whole
		"AgAAAAAAAAAA1x": "AgAAAAAAAAAA1x",
		"AgAAAAAAAAAB2":  "AgAAAAAAAAAB",
		"AgZZZ":          "AgZZZ", // shorter than the minimum: whole
		"Ag":             "Ag",
		"QQQQQQQQQQQQ":   "QQQQQQQQ",
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("shortIDs: %s -> %q, want %q", id, got[id], w)
		}
	}
	// A short form that is not the whole ID starts no other ID.
	for id, short := range got {
		if !strings.HasPrefix(id, short) {
			t.Errorf("%q is not a prefix of %s", short, id)
		}
		for _, other := range ids {
			if other != id && short != id && strings.HasPrefix(other, short) {
				t.Errorf("%q (for %s) also starts %s", short, id, other)
			}
		}
	}
	if got := shortIDs([]string{"AAAAAAAAAA", "AAAAAAAAAA"}, 4); got["AAAAAAAAAA"] != "AAAAAAAAAA" {
		t.Errorf("a repeated ID: %q, want it whole", got["AAAAAAAAAA"])
	}
}

func TestResolveCredential(t *testing.T) {
	id := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cred := func(s, user string) ctap2.ResidentCredential {
		return ctap2.ResidentCredential{ID: ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: id(s)}, User: ctap2.UserEntity{ID: []byte{1}, Name: user}}
	}
	list := []rpCredentials{{
		rp:    ctap2.RP{RPEntity: ctap2.RPEntity{ID: "example.com"}},
		creds: []ctap2.ResidentCredential{cred("AgAAAAAA", "alice"), cred("AgAAAAAAAAAA", "bob"), cred("AgBBBBBB", "carol")},
	}}
	for _, tc := range []struct {
		prefix, user string
		usage        bool // several matches: exit 2
	}{
		{prefix: "AgAAAAAA", user: "alice"}, // a whole ID wins over a longer one it starts
		{prefix: "AgAAAAAAA", user: "bob"},
		{prefix: "AgB", user: "carol"},
		{prefix: "Ag", usage: true},
		{prefix: "Zz"},
	} {
		ref, err := resolveCredential(list, tc.prefix)
		switch {
		case tc.user != "":
			if err != nil || ref.cred.User.Name != tc.user {
				t.Errorf("%s: %v, %v; want %s", tc.prefix, ref, err, tc.user)
			}
		case tc.usage:
			var ue *usageError
			if !errors.As(err, &ue) || exitCode(err) != exitUsage {
				t.Errorf("%s: %v, want a usage error", tc.prefix, err)
			}
		default:
			if err == nil || exitCode(err) != exitError {
				t.Errorf("%s: %v, want exit 1", tc.prefix, err)
			}
		}
	}
}

func TestNormalizeIDArg(t *testing.T) {
	for in, want := range map[string]string{"Ag+/": "Ag-_", "AgZ3==": "AgZ3", " AgZ3 ": "AgZ3"} {
		if got, err := normalizeIDArg("x", in); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "===", "Ag!", "A g", "é"} {
		if _, err := normalizeIDArg("x", in); exitCode(err) != exitUsage {
			t.Errorf("%q: %v, want a usage error", in, err)
		}
	}
}
