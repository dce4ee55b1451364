package ctap2

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/ctapkit/ctapkit/transport"
)

// blobAuthenticator is a fake authenticator that implements getInfo and largeBlobs as
// CTAP 2.1 §6.10 describes, checking every request independently of the code under
// test (requests are decoded as plain maps; pinUvAuthParams are recomputed by hand).
type blobAuthenticator struct {
	t          testing.TB
	maxMsgSize uint // 0: not in getInfo (1024)
	maxArray   uint // maxSerializedLargeBlobArray
	token      *PINToken
	stored     []byte

	pending   []byte
	expectLen int
	writes    []blobWrite
	gets      [][]byte // the exact get requests
}

type blobWrite struct {
	offset    int
	size      int
	length    *uint64
	hasParam  bool
	hasProto  bool
	committed bool
}

func newBlobAuthenticator(t testing.TB, maxMsgSize uint, token *PINToken) *blobAuthenticator {
	return &blobAuthenticator{t: t, maxMsgSize: maxMsgSize, maxArray: 4096, token: token, stored: InitialLargeBlobArray()}
}

func (a *blobAuthenticator) fragment() int {
	if a.maxMsgSize == 0 {
		return 1024 - 64
	}
	return int(a.maxMsgSize) - 64
}

func (a *blobAuthenticator) Info() transport.DeviceInfo {
	return transport.DeviceInfo{URI: "fake:blobs"}
}
func (a *blobAuthenticator) Close() error { return nil }

func (a *blobAuthenticator) Transact(_ context.Context, _ transport.Command, msg []byte) ([]byte, error) {
	t := a.t
	t.Helper()
	switch msg[0] {
	case 0x04:
		info := map[int]any{1: []string{"FIDO_2_1"}, 3: make([]byte, 16), 4: map[string]bool{"largeBlobs": true}, 11: a.maxArray}
		if a.maxMsgSize != 0 {
			info[5] = a.maxMsgSize
		}
		return okReply(mustCBOR(t, info)), nil
	case 0x0c:
	default:
		t.Errorf("unexpected command %x", msg)
		return statusReply(ErrInvalidCommand), nil
	}
	limit := 1024
	if a.maxMsgSize != 0 {
		limit = int(a.maxMsgSize)
	}
	if len(msg) > limit {
		t.Errorf("request of %d bytes exceeds maxMsgSize %d", len(msg), limit)
	}
	if err := CheckCanonical(msg[1:]); err != nil {
		t.Errorf("request not canonical: %v", err)
	}
	var req map[int]RawMessage
	if err := Unmarshal(msg[1:], &req); err != nil {
		t.Errorf("request %x: %v", msg, err)
		return statusReply(ErrInvalidCBOR), nil
	}
	for k := range req {
		if k < 1 || k > 6 {
			t.Errorf("unknown key %d", k)
		}
	}
	uintKey := func(k int) (uint64, bool) {
		raw, ok := req[k]
		if !ok {
			return 0, false
		}
		var v uint64
		if err := Unmarshal(raw, &v); err != nil {
			t.Errorf("key %d: %v", k, err)
		}
		return v, true
	}
	bytesKey := func(k int) ([]byte, bool) {
		raw, ok := req[k]
		if !ok {
			return nil, false
		}
		var v []byte
		if err := Unmarshal(raw, &v); err != nil {
			t.Errorf("key %d: %v", k, err)
		}
		return v, true
	}
	offset, hasOffset := uintKey(3)
	if !hasOffset {
		t.Errorf("no offset in %x", msg)
		return statusReply(ErrMissingParameter), nil
	}
	get, isGet := uintKey(1)
	set, isSet := bytesKey(2)
	if isGet == isSet {
		t.Errorf("get and set both present or both absent: %x", msg)
		return statusReply(ErrInvalidParameter), nil
	}
	if isGet {
		a.gets = append(a.gets, bytes.Clone(msg))
		if _, ok := req[4]; ok {
			t.Errorf("length on a get")
		}
		if get > uint64(a.fragment()) {
			return statusReply(ErrInvalidLength), nil
		}
		if offset > uint64(len(a.stored)) {
			return statusReply(ErrInvalidParameter), nil
		}
		end := min(int(offset)+int(get), len(a.stored))
		return okReply(mustCBOR(t, map[int][]byte{1: a.stored[offset:end]})), nil
	}
	if len(set) > a.fragment() {
		return statusReply(ErrInvalidLength), nil
	}
	w := blobWrite{offset: int(offset), size: len(set)}
	if l, ok := uintKey(4); ok {
		w.length = &l
	}
	param, hasParam := bytesKey(5)
	proto, hasProto := uintKey(6)
	w.hasParam, w.hasProto = hasParam, hasProto
	a.writes = append(a.writes, w)
	if a.token != nil {
		if !hasParam {
			return statusReply(ErrPUATRequired), nil
		}
		if !hasProto || uint(proto) != a.token.Protocol.Version() {
			return statusReply(ErrMissingParameter), nil
		}
		// 32×ff || 0c 00 || uint32LE(offset) || SHA-256(set), assembled here by hand.
		sum := sha256.Sum256(set)
		msg := cat(bytes.Repeat([]byte{0xff}, 32), []byte{0x0c, 0x00},
			[]byte{byte(offset), byte(offset >> 8), byte(offset >> 16), byte(offset >> 24)}, sum[:])
		if !bytes.Equal(param, hmacParam(a.token, msg)) {
			return statusReply(ErrPINAuthInvalid), nil
		}
	}
	if offset == 0 {
		if w.length == nil {
			return statusReply(ErrInvalidParameter), nil
		}
		if *w.length > uint64(a.maxArray) {
			return statusReply(ErrLargeBlobStorageFull), nil
		}
		a.expectLen, a.pending = int(*w.length), nil
	} else if w.length != nil {
		t.Errorf("length on the fragment at offset %d", offset)
	}
	if int(offset) != len(a.pending) {
		return statusReply(ErrInvalidSeq), nil
	}
	if len(a.pending)+len(set) > a.expectLen {
		return statusReply(ErrInvalidParameter), nil
	}
	a.pending = append(a.pending, set...)
	if len(a.pending) == a.expectLen {
		body, trailer := a.pending[:a.expectLen-16], a.pending[a.expectLen-16:]
		sum := sha256.Sum256(body)
		if !bytes.Equal(sum[:16], trailer) {
			return statusReply(ErrIntegrityFailure), nil
		}
		a.stored, a.pending = a.pending, nil
		a.writes[len(a.writes)-1].committed = true
	}
	return okReply(nil), nil
}

func blobKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func noiseBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestInitialLargeBlobArray(t *testing.T) {
	want := unhex("80 76 BE 8B 52 8D 00 75 F7 AA E9 8D 6F A5 7A 6D 3C")
	sum := sha256.Sum256([]byte{0x80})
	if got := InitialLargeBlobArray(); !bytes.Equal(got, want) || !bytes.Equal(got[1:], sum[:16]) {
		t.Errorf("initial array %x", got)
	}
	arr, err := ParseLargeBlobArray(want)
	if err != nil || arr == nil || len(arr) != 0 {
		t.Errorf("parse: %v, %v", arr, err)
	}
	for _, a := range []LargeBlobArray{nil, {}} {
		if s, err := a.Serialize(); err != nil || !bytes.Equal(s, want) {
			t.Errorf("Serialize(%#v) = %x, %v", a, s, err)
		}
	}
	// Callers get their own copy.
	InitialLargeBlobArray()[0] = 0
	if InitialLargeBlobArray()[0] != 0x80 {
		t.Error("InitialLargeBlobArray shares its bytes")
	}
}

func TestParseLargeBlobArrayErrors(t *testing.T) {
	withTrailer := func(body []byte) []byte { return cat(body, LargeBlobTrailer(body)) }
	bad := InitialLargeBlobArray()
	bad[16] ^= 1
	for name, s := range map[string][]byte{
		"empty":         nil,
		"16 bytes":      InitialLargeBlobArray()[:16],
		"bad trailer":   bad,
		"map":           withTrailer(unhex("a0")),
		"null":          withTrailer(unhex("f6")),
		"two items":     withTrailer(unhex("80 80")),
		"indefinite":    withTrailer(unhex("9f ff")),
		"truncated":     withTrailer(unhex("82 01")),
		"tagged entry":  withTrailer(unhex("81 c1 00")),
		"dup keys":      withTrailer(unhex("81 a2 01 00 01 00")),
		"trailer only":  InitialLargeBlobArray()[1:],
		"trailer short": InitialLargeBlobArray()[:15],
	} {
		if arr, err := ParseLargeBlobArray(s); err == nil {
			t.Errorf("%s: parsed as %v", name, arr)
		}
	}
	if _, err := ParseLargeBlobArray(bad); !errors.Is(err, ErrLargeBlobIntegrity) {
		t.Errorf("bad trailer: %v", err)
	}
}

func TestLargeBlobRead(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		maxMsgSize uint
		size       int
		gets       []string
	}{
		// maxFragmentLength 192: 500 bytes take three reads, the last one short.
		{256, 500, []string{"0c a2 01 18c0 03 00", "0c a2 01 18c0 03 18c0", "0c a2 01 18c0 03 190180"}},
		// Exactly two fragments: a third read returns nothing.
		{256, 384, []string{"0c a2 01 18c0 03 00", "0c a2 01 18c0 03 18c0", "0c a2 01 18c0 03 190180"}},
		// No maxMsgSize in getInfo: 1024 − 64.
		{0, 500, []string{"0c a2 01 1903c0 03 00"}},
		{0, 100, []string{"0c a2 01 1903c0 03 00"}},
		// maxFragmentLength 1: one read per byte, then an empty one.
		{65, 24, nil},
	} {
		t.Run(fmt.Sprint(tc.maxMsgSize, "/", tc.size), func(t *testing.T) {
			a := newBlobAuthenticator(t, tc.maxMsgSize, nil)
			// One entry: a byte string padded so that the whole is tc.size bytes.
			body := cat(unhex("81 59"), binary.BigEndian.AppendUint16(nil, uint16(tc.size-16-4)), noiseBytes(tc.size-16-4, 1))
			a.stored = cat(body, LargeBlobTrailer(body))
			c := NewClient(a)
			raw, err := c.ReadSerializedLargeBlobArray(ctx)
			if err != nil || !bytes.Equal(raw, a.stored) {
				t.Fatalf("read %d bytes, %v", len(raw), err)
			}
			var want [][]byte
			for _, g := range tc.gets {
				want = append(want, unhex(g))
			}
			if tc.gets == nil {
				for off := range tc.size + 1 {
					want = append(want, mustCBOR(t, map[int]uint{1: 1, 3: uint(off)}))
					want[off] = append([]byte{0x0c}, want[off]...)
				}
			}
			if !reflect.DeepEqual(a.gets, want) {
				t.Errorf("gets\n %x\nwant\n %x", a.gets, want)
			}
			arr, err := c.LargeBlobArray(ctx)
			if err != nil || len(arr) != 1 || !bytes.Equal(arr[0], body[1:]) {
				t.Errorf("array %x, %v", arr, err)
			}
		})
	}
}

func TestLargeBlobReadErrors(t *testing.T) {
	ctx := context.Background()
	info := func(opts map[string]bool, maxMsgSize, maxArray uint) []byte {
		return mustCBOR(t, map[int]any{1: []string{"FIDO_2_1"}, 3: make([]byte, 16), 4: opts, 5: maxMsgSize, 11: maxArray})
	}
	lb := map[string]bool{"largeBlobs": true}
	full := okReply(mustCBOR(t, map[int][]byte{1: make([]byte, 192)}))
	get0 := unhex("0c a2 01 18c0 03 00")

	// More bytes than asked for.
	c, d := scriptClient(t, info(lb, 256, 1024), exchange{get0, okReply(mustCBOR(t, map[int][]byte{1: make([]byte, 193)}))})
	if _, err := c.ReadSerializedLargeBlobArray(ctx); !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("oversized fragment: %v", err)
	}
	d.done()
	// A key that never sends a short fragment stops at maxSerializedLargeBlobArray.
	script := []exchange{}
	for range 6 {
		script = append(script, exchange{nil, full})
	}
	c, d = scriptClient(t, info(lb, 256, 1024), script...)
	if _, err := c.ReadSerializedLargeBlobArray(ctx); !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("endless array: %v", err)
	}
	d.done()
	// Status errors pass through.
	c, _ = scriptClient(t, info(lb, 256, 1024), exchange{get0, statusReply(ErrInvalidLength)})
	if _, err := c.LargeBlobArray(ctx); !errors.Is(err, ErrInvalidLength) {
		t.Errorf("INVALID_LENGTH: %v", err)
	}
	// No largeBlobs option (or false): unsupported, nothing sent.
	for _, opts := range []map[string]bool{{"rk": true}, {"largeBlobs": false}} {
		c, d = scriptClient(t, info(opts, 256, 1024))
		if _, err := c.LargeBlobArray(ctx); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%v: %v", opts, err)
		}
		if err := c.WriteLargeBlobArray(ctx, nil, nil); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%v: %v", opts, err)
		}
		d.done()
	}
	// maxMsgSize too small for any fragment.
	c, d = scriptClient(t, info(lb, 64, 1024))
	if _, err := c.LargeBlobArray(ctx); err == nil {
		t.Error("maxMsgSize 64 accepted")
	}
	d.done()
}

// TestLargeBlobIntegrity: a stored array whose trailer does not match is an error for
// every reader and blocks read-modify-write (nothing is written).
func TestLargeBlobIntegrity(t *testing.T) {
	ctx := context.Background()
	a := newBlobAuthenticator(t, 256, nil)
	arr, err := SetLargeBlob(nil, blobKey(1), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	a.stored, _ = arr.Serialize()
	a.stored[len(a.stored)-1] ^= 0x80
	c := NewClient(a)
	if _, err := c.LargeBlobArray(ctx); !errors.Is(err, ErrLargeBlobIntegrity) {
		t.Errorf("LargeBlobArray: %v", err)
	}
	if _, err := c.GetLargeBlob(ctx, blobKey(1)); !errors.Is(err, ErrLargeBlobIntegrity) {
		t.Errorf("GetLargeBlob: %v", err)
	}
	if err := c.PutLargeBlob(ctx, nil, blobKey(2), []byte("x")); !errors.Is(err, ErrLargeBlobIntegrity) {
		t.Errorf("PutLargeBlob: %v", err)
	}
	if err := c.DeleteLargeBlob(ctx, nil, blobKey(1)); !errors.Is(err, ErrLargeBlobIntegrity) {
		t.Errorf("DeleteLargeBlob: %v", err)
	}
	if len(a.writes) != 0 {
		t.Errorf("%d writes to a corrupt array", len(a.writes))
	}
	// Writing a fresh array repairs it.
	if err := c.WriteLargeBlobArray(ctx, nil, LargeBlobArray{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.stored, InitialLargeBlobArray()) {
		t.Errorf("stored %x", a.stored)
	}
}

// TestLargeBlobWriteFragments: the array goes out in maxFragmentLength pieces at
// increasing offsets, the total length on the first only, a pinUvAuthParam on each.
func TestLargeBlobWriteFragments(t *testing.T) {
	ctx := context.Background()
	for _, tok := range []*PINToken{cmToken1, cmToken2, nil} {
		a := newBlobAuthenticator(t, 256, tok)
		c := NewClient(a)
		data := noiseBytes(450, 2) // incompressible: the array is a little over 450 bytes
		if err := c.PutLargeBlob(ctx, tok, blobKey(7), data); err != nil {
			t.Fatal(err)
		}
		total := len(a.stored)
		if total <= 2*192 || total > 3*192 {
			t.Fatalf("array of %d bytes, want three fragments", total)
		}
		want := []blobWrite{
			{offset: 0, size: 192, length: uint64Ptr(uint64(total))},
			{offset: 192, size: 192},
			{offset: 384, size: total - 384, committed: true},
		}
		for i := range want {
			want[i].hasParam, want[i].hasProto = tok != nil, tok != nil
		}
		if !reflect.DeepEqual(a.writes, want) {
			t.Errorf("token %v: writes\n %+v\nwant\n %+v", tok, a.writes, want)
		}
		got, err := c.GetLargeBlob(ctx, blobKey(7))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("read back %d bytes, %v", len(got), err)
		}
	}
	// A token the authenticator does not accept: the first fragment is refused.
	a := newBlobAuthenticator(t, 256, cmToken2)
	wrong := &PINToken{Protocol: PINProtocolTwo{}, Token: blobKey(0xee)}
	if err := NewClient(a).PutLargeBlob(ctx, wrong, blobKey(7), []byte("x")); !errors.Is(err, ErrPINAuthInvalid) {
		t.Errorf("wrong token: %v", err)
	}
	// Missing token on a protected authenticator.
	if err := NewClient(a).PutLargeBlob(ctx, nil, blobKey(7), []byte("x")); !errors.Is(err, ErrPUATRequired) {
		t.Errorf("no token: %v", err)
	}
	if !bytes.Equal(a.stored, InitialLargeBlobArray()) {
		t.Error("refused writes changed the array")
	}
}

func uint64Ptr(v uint64) *uint64 { return &v }

func TestLargeBlobWriteLimits(t *testing.T) {
	ctx := context.Background()
	a := newBlobAuthenticator(t, 256, nil)
	a.maxArray = 1024
	c := NewClient(a)
	if err := c.PutLargeBlob(ctx, nil, blobKey(1), noiseBytes(1100, 3)); err == nil || !strings.Contains(err.Error(), "maxSerializedLargeBlobArray") {
		t.Errorf("oversized array: %v", err)
	}
	if err := c.WriteSerializedLargeBlobArray(ctx, nil, nil); err == nil {
		t.Error("empty write accepted")
	}
	if len(a.writes) != 0 {
		t.Errorf("%d writes", len(a.writes))
	}
	// The authenticator's own checks still surface: a bad trailer fails at the end.
	bad := InitialLargeBlobArray()
	bad[1] ^= 1
	if err := c.WriteSerializedLargeBlobArray(ctx, nil, bad); !errors.Is(err, ErrIntegrityFailure) {
		t.Errorf("bad trailer: %v", err)
	}
	gets := len(a.gets)
	for name, key := range map[string][]byte{"nil": nil, "31 bytes": make([]byte, 31), "33 bytes": make([]byte, 33)} {
		if _, err := c.GetLargeBlob(ctx, key); err == nil {
			t.Errorf("get with %s key", name)
		}
		if err := c.PutLargeBlob(ctx, nil, key, []byte("x")); err == nil {
			t.Errorf("put with %s key", name)
		}
		if err := c.DeleteLargeBlob(ctx, nil, key); err == nil {
			t.Errorf("delete with %s key", name)
		}
	}
	if len(a.gets) != gets {
		t.Error("a bad key was not refused before reading")
	}
}

// TestLargeBlobPerCredential: two credentials share the array; each key reads only its
// own entry, replacing or deleting one keeps the other.
func TestLargeBlobPerCredential(t *testing.T) {
	ctx := context.Background()
	a := newBlobAuthenticator(t, 256, cmToken2)
	c := NewClient(a)
	keyA, keyB, keyC := blobKey(0xa), blobKey(0xb), blobKey(0xc)
	dataA, dataB := []byte("credential A's blob"), []byte("credential B's blob, a little longer")
	for _, step := range []struct {
		key, data []byte
	}{{keyA, dataA}, {keyB, dataB}} {
		if err := c.PutLargeBlob(ctx, cmToken2, step.key, step.data); err != nil {
			t.Fatal(err)
		}
	}
	get := func(key []byte) []byte {
		t.Helper()
		data, err := c.GetLargeBlob(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if !bytes.Equal(get(keyA), dataA) || !bytes.Equal(get(keyB), dataB) {
		t.Error("blobs do not read back")
	}
	if _, err := c.GetLargeBlob(ctx, keyC); !errors.Is(err, ErrLargeBlobNotFound) {
		t.Errorf("third key: %v", err)
	}
	// Replace A: still two entries, B untouched.
	arrBefore, _ := c.LargeBlobArray(ctx)
	dataA2 := []byte("A, second version")
	if err := c.PutLargeBlob(ctx, cmToken2, keyA, dataA2); err != nil {
		t.Fatal(err)
	}
	arr, err := c.LargeBlobArray(ctx)
	if err != nil || len(arr) != 2 {
		t.Fatalf("after replacing: %d entries, %v", len(arr), err)
	}
	if !bytes.Equal(arr[0], arrBefore[1]) {
		t.Error("B's entry changed when A was replaced")
	}
	if !bytes.Equal(get(keyA), dataA2) || !bytes.Equal(get(keyB), dataB) {
		t.Error("wrong data after replacing A")
	}
	// Delete B; deleting it again writes nothing.
	if err := c.DeleteLargeBlob(ctx, cmToken2, keyB); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetLargeBlob(ctx, keyB); !errors.Is(err, ErrLargeBlobNotFound) {
		t.Errorf("deleted blob: %v", err)
	}
	if !bytes.Equal(get(keyA), dataA2) {
		t.Error("A lost when B was deleted")
	}
	n := len(a.writes)
	if err := c.DeleteLargeBlob(ctx, cmToken2, keyB); !errors.Is(err, ErrLargeBlobNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if len(a.writes) != n {
		t.Error("deleting a missing blob wrote the array")
	}
	// An empty blob is a blob.
	if err := c.PutLargeBlob(ctx, cmToken2, keyC, nil); err != nil {
		t.Fatal(err)
	}
	if data, err := c.GetLargeBlob(ctx, keyC); err != nil || len(data) != 0 {
		t.Errorf("empty blob: %x, %v", data, err)
	}
}

// openByHand decrypts a large-blob map with crypto/cipher directly: AES-256-GCM,
// associated data "blob" || uint64LE(origSize).
func openByHand(t testing.TB, key []byte, raw RawMessage) (compressed []byte, origSize uint64) {
	t.Helper()
	var m struct {
		CT    []byte `cbor:"1,keyasint"`
		Nonce []byte `cbor:"2,keyasint"`
		Size  uint64 `cbor:"3,keyasint"`
	}
	if err := Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	ad := append([]byte("blob"), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint64(ad[4:], m.Size)
	pt, err := gcm.Open(nil, m.Nonce, m.CT, ad)
	if err != nil {
		t.Fatalf("AES-GCM open: %v", err)
	}
	if len(m.Nonce) != 12 {
		t.Errorf("nonce of %d bytes", len(m.Nonce))
	}
	return pt, m.Size
}

// TestLargeBlobDeflate: the plaintext under AES-GCM is raw DEFLATE (no zlib header),
// so compressible data makes a much smaller entry.
func TestLargeBlobDeflate(t *testing.T) {
	key := blobKey(3)
	data := bytes.Repeat([]byte("compressible "), 400) // 5200 bytes
	raw, err := SealLargeBlob(key, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 200 {
		t.Errorf("entry of %d bytes for %d compressible bytes", len(raw), len(data))
	}
	compressed, size := openByHand(t, key, raw)
	if size != uint64(len(data)) {
		t.Errorf("origSize %d", size)
	}
	inflated, err := io.ReadAll(flate.NewReader(bytes.NewReader(compressed)))
	if err != nil || !bytes.Equal(inflated, data) {
		t.Errorf("raw inflate: %v", err)
	}
	if zr, err := zlib.NewReader(bytes.NewReader(compressed)); err == nil {
		if _, err := io.ReadAll(zr); err == nil {
			t.Error("plaintext is a zlib stream, not raw DEFLATE")
		}
	}
	// Incompressible data still round-trips, at about its own size plus overhead.
	rnd := noiseBytes(300, 4)
	raw, _ = SealLargeBlob(key, rnd)
	if got, ok := ReadLargeBlob(LargeBlobArray{raw}, key); !ok || !bytes.Equal(got, rnd) {
		t.Error("incompressible blob does not read back")
	}
	// Two seals of the same data use different nonces.
	r1, _ := SealLargeBlob(key, data)
	r2, _ := SealLargeBlob(key, data)
	if bytes.Equal(r1, r2) {
		t.Error("two seals are identical")
	}
}

// TestLargeBlobEntryChecks: entries that do not authenticate, have the wrong origSize or
// are not large-blob maps are skipped by readers and kept by writers.
func TestLargeBlobEntryChecks(t *testing.T) {
	key := blobKey(5)
	data := []byte("the real blob")
	good, _ := SealLargeBlob(key, data)
	compressed, _ := deflateRaw(data)

	// Authentic, but decompresses to fewer bytes than origSize claims.
	wrongSize, err := sealLargeBlob(key, make([]byte, 12), compressed, uint64(len(data)+1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrongSize.Open(key); err == nil {
		t.Error("origSize mismatch opened")
	}
	// origSize is authenticated: changing it breaks the tag.
	var e LargeBlobEntry
	if err := Unmarshal(good, &e); err != nil {
		t.Fatal(err)
	}
	e.OrigSize++
	if _, err := e.Open(key); err == nil {
		t.Error("origSize is not authenticated")
	}
	tampered := e
	tampered.OrigSize--
	tampered.Ciphertext = bytes.Clone(e.Ciphertext)
	tampered.Ciphertext[0] ^= 1
	if _, err := tampered.Open(key); err == nil {
		t.Error("tampered ciphertext opened")
	}
	// An authentic entry claiming an absurd origSize.
	huge, _ := sealLargeBlob(key, make([]byte, 12), compressed, 1<<63)
	if _, err := huge.Open(key); err == nil {
		t.Error("origSize 2^63 opened")
	}
	shortNonce := LargeBlobEntry{Ciphertext: make([]byte, 32), Nonce: make([]byte, 11), OrigSize: 1}
	if _, err := shortNonce.Open(key); err == nil {
		t.Error("11-byte nonce opened")
	}
	if _, err := e.Open(key[:16]); err == nil {
		t.Error("16-byte key accepted")
	}

	others := LargeBlobArray{
		mustCBOR(t, "not a map"),
		mustCBOR(t, map[int]any{1: []byte{1}, 9: "other shape"}),
		mustCBOR(t, wrongSize),
		mustCBOR(t, &tampered),
		mustCBOR(t, &shortNonce),
	}
	arr := append(append(LargeBlobArray{}, others...), good)
	got, ok := ReadLargeBlob(arr, key)
	if !ok || !bytes.Equal(got, data) {
		t.Errorf("ReadLargeBlob skipped past bad entries: %q, %v", got, ok)
	}
	if _, ok := ReadLargeBlob(arr, blobKey(6)); ok {
		t.Error("another key read the blob")
	}
	if _, ok := ReadLargeBlob(arr, nil); ok {
		t.Error("nil key read the blob")
	}

	// Writers keep foreign entries byte for byte and leave their input alone.
	snapshot := cloneBlobArray(arr)
	replaced, err := SetLargeBlob(arr, key, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(arr, snapshot) {
		t.Error("SetLargeBlob modified its input")
	}
	// wrongSize authenticates under key, so it belongs to key and is replaced too.
	wantKept := LargeBlobArray{others[0], others[1], others[3], others[4]}
	if !reflect.DeepEqual(replaced[:len(replaced)-1], wantKept) {
		t.Errorf("kept\n %x\nwant\n %x", replaced[:len(replaced)-1], wantKept)
	}
	if got, _ := ReadLargeBlob(replaced, key); string(got) != "new" {
		t.Errorf("replaced blob reads %q", got)
	}
	removed, did := RemoveLargeBlob(arr, key)
	if !did || !reflect.DeepEqual(removed, wantKept) || !reflect.DeepEqual(arr, snapshot) {
		t.Errorf("RemoveLargeBlob: %v, %x", did, removed)
	}
	if _, did := RemoveLargeBlob(wantKept, key); did {
		t.Error("removed from an array without the key")
	}
	if _, err := SetLargeBlob(arr, key[:31], data); err == nil {
		t.Error("SetLargeBlob with a 31-byte key")
	}
	// And the whole array survives serialization.
	s, err := replaced.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseLargeBlobArray(s)
	if err != nil || !reflect.DeepEqual(back, replaced) {
		t.Errorf("round trip: %v", err)
	}
}

func cloneBlobArray(a LargeBlobArray) LargeBlobArray {
	out := make(LargeBlobArray, len(a))
	for i, e := range a {
		out[i] = bytes.Clone(e)
	}
	return out
}

// largeBlobVector is testdata/largeblob_vector.json, made by largeblob_vector.py with
// python-fido2 (see the script for what comes from where).
type largeBlobVector struct {
	Entries map[string]struct {
		Key, Nonce, Data, Compressed, CBOR hexField
	}
	Write struct {
		MaxMsgSize        uint
		PinUvAuthProtocol uint
		Token             hexField
		Serialized        hexField
		Fragments         []struct {
			Offset         int
			Set            hexField
			PinUvAuthParam hexField
		}
	}
}

type hexField []byte

func (b *hexField) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*b = v
	return err
}

func loadLargeBlobVector(t testing.TB) *largeBlobVector {
	t.Helper()
	raw, err := testdata.ReadFile("testdata/largeblob_vector.json")
	if err != nil {
		t.Fatal(err)
	}
	var v largeBlobVector
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Entries) != 2 || len(v.Write.Fragments) < 2 {
		t.Fatalf("vector file incomplete: %+v", v)
	}
	return &v
}

// TestLargeBlobPythonFIDO2Vector checks encryption, the array, its trailer and the
// per-fragment pinUvAuthParams against python-fido2.
func TestLargeBlobPythonFIDO2Vector(t *testing.T) {
	v := loadLargeBlobVector(t)
	raw, legacy := v.Entries["raw"], v.Entries["legacy"]

	// Same key, nonce and compressed bytes: byte-identical large-blob map.
	e, err := sealLargeBlob(raw.Key, raw.Nonce, raw.Compressed, uint64(len(raw.Data)))
	if err != nil {
		t.Fatal(err)
	}
	if enc := mustCBOR(t, e); !bytes.Equal(enc, raw.CBOR) {
		t.Errorf("sealed entry\n %x\nwant\n %x", enc, raw.CBOR)
	}
	// zlib's raw DEFLATE inflates here; python-fido2 0.9's zlib-wrapped data too.
	for name, ent := range map[string]struct{ Key, Nonce, Data, Compressed, CBOR hexField }{"raw": raw, "legacy": legacy} {
		var got LargeBlobEntry
		if err := Unmarshal(ent.CBOR, &got); err != nil {
			t.Fatal(err)
		}
		data, err := got.Open(ent.Key)
		if err != nil || !bytes.Equal(data, ent.Data) {
			t.Errorf("%s: opened %q, %v", name, data, err)
		}
	}
	if !bytes.Equal(legacy.Compressed[:2], []byte{0x78, 0x9c}) {
		t.Errorf("legacy vector is not zlib-wrapped: %x", legacy.Compressed[:2])
	}

	// The serialized array python-fido2 wrote is ours too.
	arr := LargeBlobArray{RawMessage(raw.CBOR), RawMessage(legacy.CBOR)}
	s, err := arr.Serialize()
	if err != nil || !bytes.Equal(s, v.Write.Serialized) {
		t.Errorf("serialized\n %x\nwant\n %x (%v)", s, v.Write.Serialized, err)
	}
	parsed, err := ParseLargeBlobArray(v.Write.Serialized)
	if err != nil || !reflect.DeepEqual(parsed, arr) {
		t.Errorf("parse: %x, %v", parsed, err)
	}
	for name, ent := range map[string]struct{ Key, Data hexField }{"raw": {raw.Key, raw.Data}, "legacy": {legacy.Key, legacy.Data}} {
		if got, ok := ReadLargeBlob(parsed, ent.Key); !ok || !bytes.Equal(got, ent.Data) {
			t.Errorf("ReadLargeBlob %s: %q, %v", name, got, ok)
		}
	}

	// Writing it with the same maxMsgSize and token sends the same fragments and params.
	a := newBlobAuthenticator(t, v.Write.MaxMsgSize, &PINToken{Protocol: PINProtocolByVersion(v.Write.PinUvAuthProtocol), Token: v.Write.Token})
	var sent [][]byte
	dev := &recordingDevice{Device: a, sent: &sent}
	tok := &PINToken{Protocol: PINProtocolByVersion(v.Write.PinUvAuthProtocol), Token: v.Write.Token}
	if err := NewClient(dev).WriteLargeBlobArray(context.Background(), tok, arr); err != nil {
		t.Fatal(err)
	}
	var sets []map[int]RawMessage
	for _, m := range sent {
		if m[0] != 0x0c {
			continue
		}
		var req map[int]RawMessage
		if err := Unmarshal(m[1:], &req); err != nil {
			t.Fatal(err)
		}
		sets = append(sets, req)
	}
	if len(sets) != len(v.Write.Fragments) {
		t.Fatalf("%d fragments, python-fido2 sent %d", len(sets), len(v.Write.Fragments))
	}
	for i, f := range v.Write.Fragments {
		var set, param []byte
		var offset int
		_ = Unmarshal(sets[i][2], &set)
		_ = Unmarshal(sets[i][3], &offset)
		_ = Unmarshal(sets[i][5], &param)
		if offset != f.Offset || !bytes.Equal(set, f.Set) || !bytes.Equal(param, f.PinUvAuthParam) {
			t.Errorf("fragment %d: offset %d set %x param %x\nwant offset %d set %x param %x", i, offset, set, param, f.Offset, f.Set, f.PinUvAuthParam)
		}
		if got := tok.Param(LargeBlobsAuthMessage(uint32(f.Offset), f.Set)); !bytes.Equal(got, f.PinUvAuthParam) {
			t.Errorf("LargeBlobsAuthMessage at %d: param %x", f.Offset, got)
		}
	}
	if !bytes.Equal(a.stored, v.Write.Serialized) {
		t.Error("the fake authenticator did not commit the array")
	}
}

// recordingDevice passes requests through and records them.
type recordingDevice struct {
	transport.Device
	sent *[][]byte
}

func (d *recordingDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	*d.sent = append(*d.sent, bytes.Clone(data))
	return d.Device.Transact(ctx, cmd, data)
}

func TestLargeBlobsAuthMessage(t *testing.T) {
	frag := []byte("fragment")
	sum := sha256.Sum256(frag)
	want := cat(bytes.Repeat([]byte{0xff}, 32), unhex("0c 00 04 03 02 01"), sum[:])
	if got := LargeBlobsAuthMessage(0x01020304, frag); !bytes.Equal(got, want) {
		t.Errorf("got %x", got)
	}
}

// FuzzParseLargeBlobArray: any bytes parse or fail without panicking; a parsed array
// serializes to an array that parses back equal, byte-identical when the input was
// canonical; readers and writers never panic and never modify their input.
func FuzzParseLargeBlobArray(f *testing.F) {
	f.Add(InitialLargeBlobArray())
	v := loadLargeBlobVector(f)
	f.Add([]byte(v.Write.Serialized))
	withTrailer := func(body []byte) []byte { return cat(body, LargeBlobTrailer(body)) }
	f.Add(withTrailer(unhex("82 61 61 a0")))
	f.Add(withTrailer(unhex("98 01 a0"))) // non-shortest length
	key := []byte(v.Entries["raw"].Key)
	f.Fuzz(func(t *testing.T, data []byte) {
		arr, err := ParseLargeBlobArray(data)
		if err != nil {
			if arr != nil {
				t.Fatal("array and error")
			}
			return
		}
		s, err := arr.Serialize()
		if err != nil {
			t.Fatalf("serialize: %v", err)
		}
		back, err := ParseLargeBlobArray(s)
		if err != nil || !reflect.DeepEqual(back, arr) {
			t.Fatalf("re-parse: %v", err)
		}
		if CheckCanonical(data[:len(data)-LargeBlobTrailerSize]) == nil && !bytes.Equal(s, data) {
			t.Fatalf("canonical input changed:\n in  %x\n out %x", data, s)
		}
		snapshot := cloneBlobArray(arr)
		_, _ = ReadLargeBlob(arr, key)
		removed, _ := RemoveLargeBlob(arr, key)
		set, err := SetLargeBlob(arr, key, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(arr, snapshot) {
			t.Fatal("input modified")
		}
		if len(set) != len(removed)+1 {
			t.Fatalf("set has %d entries, removed %d", len(set), len(removed))
		}
		if got, ok := ReadLargeBlob(set, key); !ok || string(got) != "x" {
			t.Fatalf("blob just set reads %q, %v", got, ok)
		}
	})
}
