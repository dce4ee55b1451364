package softkey

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// seededMeta is a reproducible identity: store.NewMeta from a seeded reader.
func seededMeta(t testing.TB, seed string) store.Meta {
	t.Helper()
	var s [32]byte
	copy(s[:], seed)
	m, err := store.NewMeta(mrand.NewChaCha8(s), nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// seededSoftkey is a deterministic softkey: same seed, same identity, fixed clock.
func seededSoftkey(t testing.TB, seed string, att AttestationMode) *Authenticator {
	t.Helper()
	return newSoftkeyOn(t, store.NewMemory(seededMeta(t, "meta "+seed)), Config{
		Seed:        []byte(seed),
		Now:         func() time.Time { return epoch },
		Attestation: att,
	})
}

// seedScript is a fixed sequence of requests; run returns the raw replies.
func seedScript(t testing.TB, a *Authenticator) [][]byte {
	t.Helper()
	var replies [][]byte
	send := func(cmd ctap2.Command, v any) []byte {
		msg := []byte{byte(cmd)}
		if v != nil {
			b, err := ctap2.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			msg = append(msg, b...)
		}
		reply := a.HandleCBOR(t.Context(), msg, nil)
		if reply[0] != 0 {
			t.Fatalf("%v: status %02x", cmd, reply[0])
		}
		replies = append(replies, reply)
		return reply
	}
	var ids [][]byte
	for i, alg := range []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA, ctap2.AlgES384} {
		for _, rk := range []bool{false, true} {
			req := mcRequest("a.example", fmt.Appendf(nil, "u%d", i), alg)
			if rk {
				req = residentRequest("a.example", fmt.Appendf(nil, "r%d", i), alg)
			}
			var resp ctap2.MakeCredentialResponse
			if err := ctap2.Unmarshal(send(ctap2.CmdMakeCredential, req)[1:], &resp); err != nil {
				t.Fatal(err)
			}
			id, _, err := resp.CredentialKey()
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		send(ctap2.CmdGetAssertion, gaRequest("a.example", id))
	}
	send(ctap2.CmdGetAssertion, gaRequest("a.example"))
	send(ctap2.CmdGetNextAssertion, nil)
	send(ctap2.CmdGetInfo, nil)
	return replies
}

// TestSeedDeterminism: two softkeys with the same seed and identity answer the same
// requests byte for byte; another seed answers differently.
func TestSeedDeterminism(t *testing.T) {
	for _, att := range []AttestationMode{AttestationSelf, AttestationNone} {
		r1 := seedScript(t, seededSoftkey(t, "seed one", att))
		r2 := seedScript(t, seededSoftkey(t, "seed one", att))
		r3 := seedScript(t, seededSoftkey(t, "seed two", att))
		for i := range r1 {
			if !bytes.Equal(r1[i], r2[i]) {
				t.Errorf("%s: reply %d differs between softkeys with the same seed:\n%x\n%x", att, i, r1[i], r2[i])
			}
		}
		for i := range len(r1) - 1 { // getInfo's AAGUID is the store's, not the seed's
			if bytes.Equal(r1[i], r3[i]) {
				t.Errorf("%s: reply %d is the same with another seed", att, i)
			}
		}
	}
}

// TestGolden pins a complete makeCredential and getAssertion exchange of a seeded
// softkey; go test -run TestGolden -update rewrites the files.
func TestGolden(t *testing.T) {
	a := seededSoftkey(t, "golden", AttestationSelf)
	req := mcRequest("example.com", []byte("golden user"))
	mcMsg := append([]byte{byte(ctap2.CmdMakeCredential)}, mustMarshal(t, req)...)
	mcReply := a.HandleCBOR(t.Context(), mcMsg, nil)
	var resp ctap2.MakeCredentialResponse
	if mcReply[0] != 0 || ctap2.Unmarshal(mcReply[1:], &resp) != nil {
		t.Fatalf("makeCredential reply %x", mcReply)
	}
	id, key, err := resp.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.VerifyAttestation(req.ClientDataHash); err != nil {
		t.Fatalf("golden makeCredential: %v", err)
	}
	ga := gaRequest("example.com", id)
	gaMsg := append([]byte{byte(ctap2.CmdGetAssertion)}, mustMarshal(t, ga)...)
	gaReply := a.HandleCBOR(t.Context(), gaMsg, nil)
	var gresp ctap2.GetAssertionResponse
	if gaReply[0] != 0 || ctap2.Unmarshal(gaReply[1:], &gresp) != nil {
		t.Fatalf("getAssertion reply %x", gaReply)
	}
	if err := gresp.Verify(key, ga.ClientDataHash); err != nil {
		t.Fatalf("golden getAssertion: %v", err)
	}

	for _, g := range []struct {
		name, what string
		req, reply []byte
	}{
		{"makecredential_es256_self.hex", "makeCredential (ES256, packed self attestation)", mcMsg, mcReply},
		{"getassertion_es256.hex", "getAssertion with the credential of makecredential_es256_self.hex", gaMsg, gaReply},
	} {
		path := filepath.Join("testdata", g.name)
		if *update {
			text := fmt.Sprintf("# %s of a seeded softkey: seed %q, identity store.NewMeta(ChaCha8(%q)),\n"+
				"# clock %s. Regenerate with: go test ./softkey/ -run TestGolden -update\n"+
				"# request\n%s# reply\n%s", g.what, "golden", "meta golden", epoch.Format("2006-01-02T15:04:05Z"),
				hexLines(g.req), hexLines(g.reply))
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		parts := strings.SplitN(string(raw), "# reply\n", 2)
		if len(parts) != 2 {
			t.Fatalf("%s: no \"# reply\" line", path)
		}
		wantReq, wantReply := unhexLines(t, parts[0]), unhexLines(t, parts[1])
		if !bytes.Equal(g.req, wantReq) {
			t.Errorf("%s: request changed:\n got %x\nwant %x", path, g.req, wantReq)
		}
		if !bytes.Equal(g.reply, wantReply) {
			t.Errorf("%s: reply changed:\n got %x\nwant %x", path, g.reply, wantReply)
		}
	}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := ctap2.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hexLines formats b as hex, 32 bytes a line.
func hexLines(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		n := min(len(b), 32)
		sb.WriteString(hex.EncodeToString(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	return sb.String()
}

// unhexLines decodes the hex digits of every non-comment line.
func unhexLines(t testing.TB, s string) []byte {
	t.Helper()
	var digits strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			digits.WriteString(line)
		}
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}
