package ctap2

import (
	"bytes"
	"crypto/ecdsa"
	"embed"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
)

// testdata holds golden vectors: hex text files whose '#' lines say where they come from.
//
//go:embed testdata
var testdata embed.FS

// golden returns the bytes of testdata/name: the hex digits of every non-comment line.
func golden(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := testdata.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var digits strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// unhex decodes a hex literal, ignoring spaces and newlines; bad hex is a bug in the test.
func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

func mustCBOR(t testing.TB, v any) []byte {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func bigFromHex(s string) *big.Int {
	n, ok := new(big.Int).SetString(strings.Join(strings.Fields(s), ""), 16)
	if !ok {
		panic("bad hex " + s)
	}
	return n
}

// mustBytes is the uncompressed encoding 04 || X || Y of an EC public key.
func mustBytes(pub *ecdsa.PublicKey) []byte {
	b, err := pub.Bytes()
	if err != nil {
		panic(err)
	}
	return b
}
