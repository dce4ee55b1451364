package store

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

func randomCred(r *rand.Rand) *Credential {
	bs := func(min, max int) []byte {
		b := make([]byte, min+r.IntN(max-min+1))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	str := func() string {
		runes := []rune("aZ09.-_ üé漢字🔑")
		s := make([]rune, r.IntN(20))
		for i := range s {
			s[i] = runes[r.IntN(len(runes))]
		}
		return string(s)
	}
	c := &Credential{
		ID:          bs(1, ctap2.MaxCredentialIDLength),
		RPID:        str(),
		RPName:      str(),
		User:        ctap2.UserEntity{ID: bs(1, ctap2.MaxUserIDLength), Name: str(), DisplayName: str()},
		Alg:         []ctap2.COSEAlgorithm{ctap2.AlgES256, -8, -35, -257}[r.IntN(4)],
		PrivateKey:  bs(1, 300),
		CredProtect: uint8(r.IntN(4)),
	}
	copy(c.RPIDHash[:], bs(32, 32))
	switch r.IntN(3) {
	case 0:
	case 1:
		c.Created = time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(int64(time.Second)))
	case 2:
		c.Created = time.Unix(r.Int64N(1<<33), 0).In(time.FixedZone("X", 3600))
	}
	if r.IntN(2) == 0 {
		c.Extra = map[string][]byte{}
		for range r.IntN(4) {
			c.Extra[str()] = bs(0, 40)
		}
	}
	return c
}

func TestRecordRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 500 {
		c := randomCred(r)
		seq := r.Uint64()
		b, err := encodeCredential(c, seq)
		if err != nil {
			t.Fatalf("%d: encode: %v", i, err)
		}
		got, gotSeq, err := decodeCredential(b)
		if err != nil {
			t.Fatalf("%d: decode: %v", i, err)
		}
		if !credEqual(got, c) || gotSeq != seq {
			t.Fatalf("%d: round trip\n got %+v seq %d\nwant %+v seq %d", i, got, gotSeq, c, seq)
		}
		if got.Created.Location() != time.UTC {
			t.Fatalf("%d: decoded time in %v, want UTC", i, got.Created.Location())
		}
	}
}

// TestRecordGolden pins the record layout of FormatVersion 1: state files on disk
// depend on it.
func TestRecordGolden(t *testing.T) {
	c := testCred("example.com", "alice", "cred-1")
	c.Extra = map[string][]byte{"credBlob": {1, 2}}
	b, err := encodeCredential(c, 7)
	if err != nil {
		t.Fatal(err)
	}
	// {1: "cred-1", 2: "example.com", 3: "The example.com", 4: h'a379…', 5: "alice",
	//  6: "alice@example.com", 7: "Üser alice", 8: -7, 9: "private key of cred-1",
	//  10: 1740830400, 12: true, 13: 2, 14: {"credBlob": h'0102'}, 15: 7}
	const want = "ae0146637265642d31026b6578616d706c652e636f6d036f546865206578616d706c652e636f6d045820" +
		"a379a6f6eeafb9a55e378c118034e2751e682fab9f2d30ab13d2125586ce19470545616c696365067161" +
		"6c696365406578616d706c652e636f6d076bc39c73657220616c6963650826095570726976617465206b" +
		"6579206f6620637265642d310a1a67c2f6c00cf50d020ea16863726564426c6f624201020f07"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("record encoding changed:\n got %s\nwant %s", got, want)
	}
}

func FuzzDecodeCredential(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 8 {
		b, err := encodeCredential(randomCred(r), r.Uint64())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	full, _ := encodeCredential(testCred("example.com", "alice", "cred-1"), 1)
	f.Add(full)
	f.Add([]byte{})
	f.Add([]byte{0xa0})
	f.Add([]byte{0xbf, 0xff})
	f.Add([]byte{0xa2, 0x01, 0x41, 0x00, 0x01, 0x41, 0x00}) // duplicate key
	f.Fuzz(func(t *testing.T, b []byte) {
		c, seq, err := decodeCredential(b)
		if err != nil {
			return
		}
		enc, err := encodeCredential(c, seq)
		if err != nil {
			t.Fatalf("decoded credential does not encode: %v\n%+v", err, c)
		}
		c2, seq2, err := decodeCredential(enc)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !credEqual(c, c2) || seq != seq2 {
			t.Fatalf("round trip changed the credential:\n%+v\n%+v", c, c2)
		}
		enc2, err := encodeCredential(c2, seq2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %x vs %x (%v)", enc, enc2, err)
		}
	})
}
