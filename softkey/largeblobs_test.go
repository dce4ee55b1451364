package softkey

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// emptyLargeBlobArray is the serialized empty array as the spec prints it.
var emptyLargeBlobArray = unhex("80 76be8b528d0075f7aae98d6fa57a6d3c")

// serializedArray is a CBOR array of n byte strings of size bytes each (a stand-in
// for large-blob maps: the authenticator does not look inside) and its trailer.
func serializedArray(t testing.TB, n, size int, fill byte) []byte {
	t.Helper()
	elems := make([][]byte, n)
	for i := range elems {
		elems[i] = bytes.Repeat([]byte{fill + byte(i)}, size)
	}
	body := mustMarshal(t, elems)
	h := sha256.Sum256(body)
	return append(body, h[:16]...)
}

// lbAuth is a write's pinUvAuthParam, computed by hand.
func lbAuth(tok *ctap2.PINToken, offset uint32, fragment []byte) []byte {
	msg := append(bytes.Repeat([]byte{0xff}, 32), 0x0c, 0x00)
	msg = binary.LittleEndian.AppendUint32(msg, offset)
	h := sha256.Sum256(fragment)
	return tok.Protocol.Authenticate(tok.Token, append(msg, h[:]...))
}

// lbSet is one write request: offset, the fragment, length when total >= 0, and a
// pinUvAuthParam when tok is not nil.
func lbSet(offset int, fragment []byte, total int, tok *ctap2.PINToken) map[int]any {
	m := map[int]any{2: fragment, 3: offset}
	if total >= 0 {
		m[4] = total
	}
	if tok != nil {
		m[5] = lbAuth(tok, uint32(offset), fragment)
		m[6] = tok.Protocol.Version()
	}
	return m
}

func lbSend(t testing.TB, a *Authenticator, req any) ctap2.StatusError {
	t.Helper()
	st, body := call(t, a, ctap2.CmdLargeBlobs, req)
	if st == ctap2.StatusOK && len(body) != 0 {
		t.Fatalf("largeBlobs write answered %x, want an empty response", body)
	}
	return st
}

// lbGet reads get bytes at offset.
func lbGet(t testing.TB, a *Authenticator, offset, get int) (ctap2.StatusError, []byte) {
	t.Helper()
	st, body := call(t, a, ctap2.CmdLargeBlobs, map[int]any{1: get, 3: offset})
	if st != ctap2.StatusOK {
		return st, nil
	}
	m := rawMap[int](t, body)
	if len(m) != 1 {
		t.Fatalf("largeBlobs read answered keys %v, want only 0x01", m)
	}
	var resp struct {
		Config []byte `cbor:"1,keyasint"`
	}
	if err := ctap2.Unmarshal(body, &resp); err != nil || resp.Config == nil {
		t.Fatalf("largeBlobs read reply %x: %v", body, err)
	}
	return st, resp.Config
}

// readArray reads the whole array the way hosts do: maxFragmentLength at a time
// until a short fragment.
func readArray(t testing.TB, a *Authenticator) []byte {
	t.Helper()
	frag := int(info(t, a).MaxMsgSize) - 64
	var out []byte
	for {
		st, b := lbGet(t, a, len(out), frag)
		wantStatus(t, "largeBlobs read", st, ctap2.StatusOK)
		out = append(out, b...)
		if len(b) < frag {
			return out
		}
	}
}

// writeArray writes arr in fragments of at most frag bytes.
func writeArray(t testing.TB, a *Authenticator, arr []byte, frag int, tok *ctap2.PINToken) {
	t.Helper()
	for off := 0; off < len(arr); off += frag {
		total := -1
		if off == 0 {
			total = len(arr)
		}
		wantStatus(t, "largeBlobs write", lbSend(t, a, lbSet(off, arr[off:min(off+frag, len(arr))], total, tok)), ctap2.StatusOK)
	}
}

// TestLargeBlobsRead: a softkey that never stored an array serves the 17-byte
// empty one; reads check their parameters.
func TestLargeBlobsRead(t *testing.T) {
	a := newSoftkey(t, Config{MaxMsgSize: 1024})
	i := info(t, a)
	if !i.Options["largeBlobs"] || i.MaxSerializedLargeBlobArray != maxSerializedLargeBlobArray || i.MaxSerializedLargeBlobArray < 1024 {
		t.Fatalf("getInfo largeBlobs %v, maxSerializedLargeBlobArray %d", i.Options["largeBlobs"], i.MaxSerializedLargeBlobArray)
	}
	if got := readArray(t, a); !bytes.Equal(got, emptyLargeBlobArray) {
		t.Fatalf("never-written array %x, want %x", got, emptyLargeBlobArray)
	}
	if st, b := lbGet(t, a, 5, 4); st != ctap2.StatusOK || !bytes.Equal(b, emptyLargeBlobArray[5:9]) {
		t.Fatalf("4 bytes at 5: %v %x", st, b)
	}
	if st, b := lbGet(t, a, 17, 960); st != ctap2.StatusOK || len(b) != 0 {
		t.Fatalf("read at the end: %v %x, want an empty fragment", st, b)
	}
	if st, b := lbGet(t, a, 0, 0); st != ctap2.StatusOK || len(b) != 0 {
		t.Fatalf("read of 0 bytes: %v %x", st, b)
	}
	for _, tc := range []struct {
		name string
		req  any
		want ctap2.StatusError
	}{
		{"offset past the end", map[int]any{1: 1, 3: 18}, ctap2.ErrInvalidParameter},
		{"get > maxFragmentLength", map[int]any{1: 961, 3: 0}, ctap2.ErrInvalidLength},
		{"huge get", map[int]any{1: uint64(1) << 62, 3: 0}, ctap2.ErrInvalidLength},
		{"huge offset", map[int]any{1: 1, 3: uint64(1) << 62}, ctap2.ErrInvalidParameter},
		{"get with length", map[int]any{1: 10, 3: 0, 4: 17}, ctap2.ErrInvalidParameter},
		{"get with pinUvAuthParam", map[int]any{1: 10, 3: 0, 5: make([]byte, 16)}, ctap2.ErrInvalidParameter},
		{"get with pinUvAuthProtocol", map[int]any{1: 10, 3: 0, 6: 2}, ctap2.ErrInvalidParameter},
		{"no offset", map[int]any{1: 10}, ctap2.ErrInvalidParameter},
		{"neither get nor set", map[int]any{3: 0}, ctap2.ErrInvalidParameter},
		{"get and set", map[int]any{1: 10, 2: []byte{1}, 3: 0, 4: 17}, ctap2.ErrInvalidParameter},
		{"empty map", map[int]any{}, ctap2.ErrInvalidParameter},
		{"get as text", map[int]any{1: "10", 3: 0}, ctap2.ErrCBORUnexpectedType},
		{"negative offset", map[int]any{1: 10, 3: -1}, ctap2.ErrCBORUnexpectedType},
		{"set as text", map[int]any{2: "abc", 3: 0, 4: 17}, ctap2.ErrCBORUnexpectedType},
	} {
		if st, _ := call(t, a, ctap2.CmdLargeBlobs, tc.req); st != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, st, tc.want)
		}
	}
	st, _ := callRaw(t, a, []byte{byte(ctap2.CmdLargeBlobs)})
	wantStatus(t, "no params at all", st, ctap2.ErrMissingParameter)
}

// TestLargeBlobsWrite: an array written in several fragments replaces the stored
// one only when its last fragment arrives and checks out; until then reads return
// the old array. Fragments must come in order, fit the announced length, and the
// total must fit maxSerializedLargeBlobArray.
func TestLargeBlobsWrite(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{MaxMsgSize: 200}) // maxFragmentLength 136
	old := serializedArray(t, 1, 40, 'o')
	writeArray(t, a, old, 136, nil)
	if got := readArray(t, a); !bytes.Equal(got, old) {
		t.Fatalf("array %x, want %x", got, old)
	}

	arr := serializedArray(t, 4, 100, 'a') // 423 bytes: 4 fragments
	if len(arr) <= 3*136 {
		t.Fatalf("test array of %d bytes needs 4 fragments", len(arr))
	}
	wantStatus(t, "first fragment", lbSend(t, a, lbSet(0, arr[:136], len(arr), nil)), ctap2.StatusOK)
	if got := readArray(t, a); !bytes.Equal(got, old) {
		t.Fatal("a partial write is visible")
	}
	wantStatus(t, "skipping ahead", lbSend(t, a, lbSet(272, arr[272:408], -1, nil)), ctap2.ErrInvalidSeq)
	wantStatus(t, "repeating the first fragment's offset", lbSend(t, a, lbSet(0, arr[:136], -1, nil)), ctap2.ErrInvalidParameter)
	wantStatus(t, "offset one short", lbSend(t, a, lbSet(135, arr[135:271], -1, nil)), ctap2.ErrInvalidSeq)
	wantStatus(t, "length on a later fragment", lbSend(t, a, lbSet(136, arr[136:272], len(arr), nil)), ctap2.ErrInvalidParameter)
	wantStatus(t, "a fragment over maxFragmentLength", lbSend(t, a, lbSet(136, arr[136:273], -1, nil)), ctap2.ErrInvalidLength)
	// The write in progress survives all of that.
	wantStatus(t, "second fragment", lbSend(t, a, lbSet(136, arr[136:272], -1, nil)), ctap2.StatusOK)
	wantStatus(t, "third fragment", lbSend(t, a, lbSet(272, arr[272:408], -1, nil)), ctap2.StatusOK)
	wantStatus(t, "past the announced length", lbSend(t, a, lbSet(408, append(bytes.Clone(arr[408:]), 0), -1, nil)), ctap2.ErrInvalidParameter)
	if got := readArray(t, a); !bytes.Equal(got, old) {
		t.Fatal("a partial write is visible")
	}
	wantStatus(t, "last fragment", lbSend(t, a, lbSet(408, arr[408:], -1, nil)), ctap2.StatusOK)
	if got := readArray(t, a); !bytes.Equal(got, arr) {
		t.Fatalf("array after the last fragment %x, want %x", got, arr)
	}
	wantStatus(t, "a fragment after the last", lbSend(t, a, lbSet(len(arr), []byte{0}, -1, nil)), ctap2.ErrInvalidSeq)

	// Sizes.
	big := serializedArray(t, 1, maxSerializedLargeBlobArray-19, 'b')
	if len(big) != maxSerializedLargeBlobArray+1 {
		t.Fatalf("oversized test array of %d bytes", len(big))
	}
	wantStatus(t, "one byte over maxSerializedLargeBlobArray", lbSend(t, a, lbSet(0, big[:136], len(big), nil)), ctap2.ErrLargeBlobStorageFull)
	wantStatus(t, "offset 0 without length", lbSend(t, a, lbSet(0, arr[:136], -1, nil)), ctap2.ErrInvalidParameter)
	wantStatus(t, "length 16", lbSend(t, a, lbSet(0, arr[:16], 16, nil)), ctap2.ErrInvalidParameter)
	wantStatus(t, "a fragment longer than length", lbSend(t, a, lbSet(0, arr[:40], 39, nil)), ctap2.ErrInvalidParameter)
	wantStatus(t, "huge length", lbSend(t, a, lbSet(0, arr[:40], 1<<40, nil)), ctap2.ErrLargeBlobStorageFull)
	wantStatus(t, "offset without a write in progress", lbSend(t, a, lbSet(17, arr[:40], -1, nil)), ctap2.ErrInvalidSeq)
	// Exactly the maximum fits.
	most := serializedArray(t, 1, maxSerializedLargeBlobArray-20, 'm')
	if len(most) != maxSerializedLargeBlobArray {
		t.Fatalf("test array of %d bytes", len(most))
	}
	writeArray(t, a, most, 136, nil)
	if got := readArray(t, a); !bytes.Equal(got, most) {
		t.Fatal("a maximum-size array does not read back")
	}
	// The empty array can be written back.
	writeArray(t, a, emptyLargeBlobArray, 136, nil)
	if got := readArray(t, a); !bytes.Equal(got, emptyLargeBlobArray) {
		t.Fatalf("array %x after writing the empty one", got)
	}

	// The committed array survives a restart; a write in progress does not.
	writeArray(t, a, arr, 136, nil)
	wantStatus(t, "first fragment of a write that will be cut short", lbSend(t, a, lbSet(0, old[:30], len(old), nil)), ctap2.StatusOK)
	b := newSoftkeyOn(t, st, Config{MaxMsgSize: 200})
	if got := readArray(t, b); !bytes.Equal(got, arr) {
		t.Fatalf("array after restart %x, want %x", got, arr)
	}
	wantStatus(t, "rest of the write after a restart", lbSend(t, b, lbSet(30, old[30:], -1, nil)), ctap2.ErrInvalidSeq)
	if got, _ := st.LargeBlobArray(); !bytes.Equal(got, arr) {
		t.Fatal("the stored array changed")
	}
}

// TestLargeBlobsIntegrity: an array whose trailer is wrong is refused with
// INTEGRITY_FAILURE once its last byte arrives; the stored array stays, and the
// abandoned write cannot be continued.
func TestLargeBlobsIntegrity(t *testing.T) {
	a := newSoftkey(t, Config{MaxMsgSize: 200})
	good := serializedArray(t, 2, 50, 'g')
	writeArray(t, a, good, 136, nil)
	bad := serializedArray(t, 3, 60, 'x')
	bad[len(bad)-1] ^= 1
	wantStatus(t, "first fragment", lbSend(t, a, lbSet(0, bad[:136], len(bad), nil)), ctap2.StatusOK)
	wantStatus(t, "last fragment of a bad array", lbSend(t, a, lbSet(136, bad[136:], -1, nil)), ctap2.ErrIntegrityFailure)
	if got := readArray(t, a); !bytes.Equal(got, good) {
		t.Fatalf("array after a failed write %x, want the old %x", got, good)
	}
	wantStatus(t, "continuing the failed write", lbSend(t, a, lbSet(len(bad), []byte{0}, -1, nil)), ctap2.ErrInvalidSeq)
	// A body that changed under a trailer of the right shape fails too.
	bad = serializedArray(t, 1, 30, 'y')
	bad[5] ^= 0x80
	wantStatus(t, "one-fragment bad array", lbSend(t, a, lbSet(0, bad, len(bad), nil)), ctap2.ErrIntegrityFailure)
	// 17 bytes that are not the empty array.
	wantStatus(t, "17 zero bytes", lbSend(t, a, lbSet(0, make([]byte, 17), 17, nil)), ctap2.ErrIntegrityFailure)
	if got := readArray(t, a); !bytes.Equal(got, good) {
		t.Fatal("the stored array changed")
	}
}

// largeBlobFailStore refuses large-blob writes while fail is set.
type largeBlobFailStore struct {
	store.Store
	fail bool
}

func (s *largeBlobFailStore) SetLargeBlobArray(b []byte) error {
	if s.fail {
		return errors.New("disk full")
	}
	return s.Store.SetLargeBlobArray(b)
}

// TestLargeBlobsStoreFailure: a commit the store refuses is CTAP1_ERR_OTHER, and
// the old array stays.
func TestLargeBlobsStoreFailure(t *testing.T) {
	st := &largeBlobFailStore{Store: store.NewMemory(store.Meta{})}
	a := newSoftkeyOn(t, st, Config{})
	arr := serializedArray(t, 1, 10, 'a')
	writeArray(t, a, arr, 1984, nil)
	st.fail = true
	wantStatus(t, "commit on a full disk", lbSend(t, a, lbSet(0, emptyLargeBlobArray, 17, nil)), ctap2.ErrOther)
	st.fail = false
	if got := readArray(t, a); !bytes.Equal(got, arr) {
		t.Fatalf("array %x after a failed commit", got)
	}
}

// TestLargeBlobsProtected: with a PIN every fragment needs a pinUvAuthParam over
// its offset and contents from a token with lbw; reads stay open. Refused
// fragments, unauthenticated first fragments included, leave the write in progress
// alone.
func TestLargeBlobsProtected(t *testing.T) {
	forProtocols(t, func(t *testing.T, v uint) {
		a := newSoftkey(t, Config{MaxMsgSize: 300}) // maxFragmentLength 236
		h := newPINHost(t, a, v)
		h.mustSetPIN("1234")
		arr := serializedArray(t, 3, 100, 'p') // 2 fragments
		wantStatus(t, "no pinUvAuthParam", lbSend(t, a, lbSet(0, arr[:236], len(arr), nil)), ctap2.ErrPUATRequired)
		for _, perms := range []ctap2.Permission{permMCGA, permCM, permACFG, permCM | permACFG | permMCGA} {
			tok := h.mustToken("1234", perms, "")
			wantStatus(t, "a token without lbw", lbSend(t, a, lbSet(0, arr[:236], len(arr), tok)), ctap2.ErrPINAuthInvalid)
		}
		tok := h.mustToken("1234", permLBW, "")
		req := lbSet(0, arr[:236], len(arr), tok)
		delete(req, 6)
		wantStatus(t, "no pinUvAuthProtocol", lbSend(t, a, req), ctap2.ErrMissingParameter)
		req = lbSet(0, arr[:236], len(arr), tok)
		req[6] = 3
		wantStatus(t, "pinUvAuthProtocol 3", lbSend(t, a, req), ctap2.ErrInvalidParameter)
		req = lbSet(0, arr[:236], len(arr), tok)
		req[5] = lbAuth(tok, 0, arr[:235])
		wantStatus(t, "a MAC over another fragment", lbSend(t, a, req), ctap2.ErrPINAuthInvalid)
		if got := readArray(t, a); !bytes.Equal(got, emptyLargeBlobArray) {
			t.Fatal("refused writes changed the array")
		}

		wantStatus(t, "first fragment", lbSend(t, a, lbSet(0, arr[:236], len(arr), tok)), ctap2.StatusOK)
		// Someone without the token tries to restart the write: refused, and the
		// write in progress goes on.
		wantStatus(t, "an unauthenticated restart", lbSend(t, a, lbSet(0, emptyLargeBlobArray, 17, nil)), ctap2.ErrPUATRequired)
		cm := h.mustToken("1234", permCM, "")
		wantStatus(t, "a restart with a token without lbw", lbSend(t, a, lbSet(0, emptyLargeBlobArray, 17, cm)), ctap2.ErrPINAuthInvalid)
		// (That token request replaced the lbw token; get another.)
		tok = h.mustToken("1234", permLBW, "")
		req = lbSet(236, arr[236:], -1, tok)
		req[5] = lbAuth(tok, 0, arr[236:]) // the right fragment under another offset
		wantStatus(t, "a MAC over another offset", lbSend(t, a, req), ctap2.ErrPINAuthInvalid)
		wantStatus(t, "last fragment", lbSend(t, a, lbSet(236, arr[236:], -1, tok)), ctap2.StatusOK)
		if got := readArray(t, a); !bytes.Equal(got, arr) {
			t.Fatalf("array %x, want %x", got, arr)
		}

		// lbw outlives a user-present getAssertion with the same token (CTAP 2.1
		// §6.2.2 step 9 keeps it), which loses ga.
		made := makeCredential(t, a, mcRequest("a.example", []byte("u")))
		tok = h.mustToken("1234", permLBW|permGA, "a.example")
		getAssertion(t, a, protectGA(gaRequest("a.example", made.id), tok))
		wantStatus(t, "getAssertion again with the token", call1(t, a, protectGA(gaRequest("a.example", made.id), tok)), ctap2.ErrPINAuthInvalid)
		writeArray(t, a, emptyLargeBlobArray, 236, tok)
		if got := readArray(t, a); !bytes.Equal(got, emptyLargeBlobArray) {
			t.Fatal("write with the lbw token after getAssertion failed")
		}
	})
}

func call1(t testing.TB, a *Authenticator, req *ctap2.GetAssertionRequest) ctap2.StatusError {
	t.Helper()
	st, _ := call(t, a, ctap2.CmdGetAssertion, req)
	return st
}

// TestLargeBlobsAlwaysUV: alwaysUv alone protects large-blob writes.
func TestLargeBlobsAlwaysUV(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, shared(st), Config{})
	wantStatus(t, "toggleAlwaysUv", cfgSend(t, a, cfgReq(t, ctap2.ConfigToggleAlwaysUV, nil, nil)), ctap2.StatusOK)
	wantStatus(t, "write under alwaysUv", lbSend(t, a, lbSet(0, emptyLargeBlobArray, 17, nil)), ctap2.ErrPUATRequired)
	if st, b := lbGet(t, a, 0, 17); st != ctap2.StatusOK || !bytes.Equal(b, emptyLargeBlobArray) {
		t.Fatalf("read under alwaysUv: %v %x", st, b)
	}
}

// TestLargeBlobsReset: reset empties the array and drops a write in progress.
func TestLargeBlobsReset(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{MaxMsgSize: 200})
	arr := serializedArray(t, 3, 60, 'r')
	writeArray(t, a, arr, 136, nil)
	wantStatus(t, "first fragment", lbSend(t, a, lbSet(0, arr[:136], len(arr), nil)), ctap2.StatusOK)
	if err := a.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := readArray(t, a); !bytes.Equal(got, emptyLargeBlobArray) {
		t.Fatalf("array after reset %x", got)
	}
	if got, _ := st.LargeBlobArray(); got != nil && !bytes.Equal(got, emptyLargeBlobArray) {
		t.Fatalf("stored array after reset %x", got)
	}
	wantStatus(t, "continuing a write from before the reset", lbSend(t, a, lbSet(136, arr[136:], -1, nil)), ctap2.ErrInvalidSeq)
	if got := readArray(t, newSoftkeyOn(t, st, Config{})); !bytes.Equal(got, emptyLargeBlobArray) {
		t.Fatalf("array after reset and restart %x", got)
	}
}

// TestLargeBlobsHost: ctap2's host Client stores, reads and deletes per-credential
// blobs (encrypted to the largeBlobKey the softkey made for a credential, and
// fragmented) on a protected softkey; credential management reports the same
// largeBlobKey; the blobs survive a restart and the Go API reads what the host
// wrote.
func TestLargeBlobsHost(t *testing.T) {
	ctx := context.Background()
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{MaxMsgSize: 300})
	h := newPINHost(t, a, 2)
	h.mustSetPIN("1234")
	var keys [][]byte
	for _, user := range []string{"u1", "u2"} {
		req := protectMC(withExt(residentRequest("a.example", []byte(user)), map[string]ctap2.RawMessage{"largeBlobKey": {0xf5}}),
			h.mustToken("1234", permMC, "a.example"))
		made := makeCredential(t, a, req)
		if len(made.resp.LargeBlobKey) != 32 {
			t.Fatalf("makeCredential largeBlobKey %x", made.resp.LargeBlobKey)
		}
		keys = append(keys, made.resp.LargeBlobKey)
	}
	tok := h.mustToken("1234", permCM, "")
	resp := cmOK(t, a, cmReq(t, ctap2.CredMgmtEnumerateCredentialsBegin, &ctap2.CredMgmtParams{RPIDHash: rpHash("a.example")}, tok))
	if !bytes.Equal(resp.LargeBlobKey, keys[1]) {
		t.Fatalf("credential management largeBlobKey %x, want makeCredential's %x", resp.LargeBlobKey, keys[1])
	}

	c := hostClient(a)
	data1 := bytes.Repeat([]byte("certificate "), 100) // compresses well
	data2 := make([]byte, 700)                         // does not: several fragments
	for i := range data2 {
		data2[i] = byte(i*7 + i/13)
	}
	if err := c.PutLargeBlob(ctx, nil, keys[0], data1); !errors.Is(err, ctap2.ErrPUATRequired) {
		t.Fatalf("PutLargeBlob without a token: %v, want PUAT_REQUIRED", err)
	}
	if err := c.PutLargeBlob(ctx, h.mustToken("1234", permCM, ""), keys[0], data1); !errors.Is(err, ctap2.ErrPINAuthInvalid) {
		t.Fatalf("PutLargeBlob with a cm token: %v, want PIN_AUTH_INVALID", err)
	}
	lbw := h.mustToken("1234", permLBW, "")
	if err := c.PutLargeBlob(ctx, lbw, keys[0], data1); err != nil {
		t.Fatal(err)
	}
	if err := c.PutLargeBlob(ctx, lbw, keys[1], data2); err != nil {
		t.Fatal(err)
	}
	serialized, err := c.ReadSerializedLargeBlobArray(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(serialized) <= 2*236 {
		t.Fatalf("array of %d bytes: the test wants several fragments", len(serialized))
	}
	for i, want := range [][]byte{data1, data2} {
		got, err := c.GetLargeBlob(ctx, keys[i])
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("blob %d: %d bytes, %v", i, len(got), err)
		}
	}
	if err := c.DeleteLargeBlob(ctx, lbw, keys[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetLargeBlob(ctx, keys[0]); !errors.Is(err, ctap2.ErrLargeBlobNotFound) {
		t.Fatalf("deleted blob: %v", err)
	}

	// After a restart, through the Go API.
	b := newSoftkeyOn(t, st, Config{MaxMsgSize: 300})
	var got []byte
	for {
		get := uint(236)
		r, err := b.LargeBlobs(ctx, &ctap2.LargeBlobsRequest{Get: &get, Offset: uint(len(got))})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.Config...)
		if len(r.Config) < 236 {
			break
		}
	}
	arr, err := ctap2.ParseLargeBlobArray(got)
	if err != nil {
		t.Fatal(err)
	}
	if data, ok := ctap2.ReadLargeBlob(arr, keys[1]); !ok || !bytes.Equal(data, data2) {
		t.Fatal("blob 2 not readable after a restart")
	}
	if _, err := b.LargeBlobs(ctx, &ctap2.LargeBlobsRequest{Set: ctap2.InitialLargeBlobArray(), Length: ptr(uint(17))}); !errors.Is(err, ctap2.ErrPUATRequired) {
		t.Fatalf("Go API write without a token: %v", err)
	}
	if _, err := b.LargeBlobs(ctx, nil); !errors.Is(err, ctap2.ErrInvalidParameter) {
		t.Fatalf("Go API with nil: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
