package conformance

import (
	"bytes"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// largeBlobs cases (CTAP 2.1 §6.10). Writes keep the array as the case found
// it: the round trip writes the original back, and refused writes must leave it
// untouched, which the cases check.

// lbLimits skips the case unless the key has large blobs and returns
// maxFragmentLength (maxMsgSize - 64) and maxSerializedLargeBlobArray.
func lbLimits(t *T) (fragment, maxArray int) {
	info := t.Info()
	if v, _ := info.Option("largeBlobs"); !v {
		t.Skipf("the key does not support large blobs (no largeBlobs option)")
	}
	fragment = info.MessageSize() - 64
	maxArray = int(info.MaxSerializedLargeBlobArray)
	if maxArray == 0 {
		maxArray = 1024 // the smallest a key with largeBlobs may offer
	}
	return fragment, maxArray
}

// lbRead reads the serialized array; a failure ends the case.
func lbRead(t *T) []byte {
	ser, err := t.Client().ReadSerializedLargeBlobArray(t.Context())
	t.Must("reading the large-blob array", err)
	return ser
}

// lbRestore writes orig back when the case ends, if the array changed.
func lbRestore(t *T, orig []byte) {
	t.Cleanup(func() {
		now, err := t.Client().ReadSerializedLargeBlobArray(t.Context())
		if err == nil && bytes.Equal(now, orig) {
			return
		}
		var tok *ctap2.PINToken
		if info, err := t.Client().Info(t.Context()); err == nil && info.Options["clientPin"] && t.Target().PIN != "" {
			if tok, err = t.Client().PINToken(t.Context(), t.Target().PIN, ctap2.PermLargeBlobWrite, ""); err != nil {
				t.Errorf("cleanup: getting an lbw token: %s", statusName(err))
				return
			}
		}
		if err := t.Client().WriteSerializedLargeBlobArray(t.Context(), tok, orig); err != nil {
			t.Errorf("cleanup: writing the original large-blob array back: %s", statusName(err))
		}
	})
}

// lbWithEntry returns the serialized array orig plus one entry of about size
// bytes (a blob sealed to a random key, so no credential can open it).
func lbWithEntry(t *T, orig []byte, size int) []byte {
	arr, err := ctap2.ParseLargeBlobArray(orig)
	if err != nil {
		t.Logf("the stored array does not parse (%v); the case writes a fresh one", err)
		arr = ctap2.LargeBlobArray{}
	}
	entry, err := ctap2.SealLargeBlob(randomBytes(32), randomBytes(max(size-40, 1)))
	t.Must("sealing a large blob", err)
	ser, err := append(arr, entry).Serialize()
	t.Must("serializing the large-blob array", err)
	return ser
}

// lbSet sends one write fragment, with tok unless nil, and length unless nil.
func lbSet(t *T, tok *ctap2.PINToken, offset int, fragment []byte, length *uint) error {
	req := ctap2.LargeBlobsRequest{Set: fragment, Offset: uint(offset), Length: length}
	if tok != nil {
		req.PinUvAuthProtocol = tok.Protocol.Version()
		req.PinUvAuthParam = tok.Param(ctap2.LargeBlobsAuthMessage(uint32(offset), fragment))
	}
	return t.Client().Call(t.Context(), ctap2.CmdLargeBlobs, &req, nil)
}

// lbUnchanged checks that the array still reads as orig.
func lbUnchanged(t *T, orig []byte, after string) {
	if now := lbRead(t); !bytes.Equal(now, orig) {
		t.Errorf("large-blob array after %s: observed %d bytes that differ from the %d bytes before, expected it unchanged", after, len(now), len(orig))
	}
}

func init() {
	register(
		Case{ID: "LB-1", Area: AreaLargeBlobs, Requirement: "CTAP 2.1 §6.10.2 (get), §6.10.3 (serialized array and its trailer)",
			Description: "the stored large-blob array reads as a CBOR array with a valid trailer (the 17-byte empty array when nothing was written)",
			Run: func(t *T) {
				_, maxArray := lbLimits(t)
				if m := t.Info().MaxSerializedLargeBlobArray; m < 1024 {
					t.Errorf("maxSerializedLargeBlobArray: observed %d, expected at least 1024 with largeBlobs", m)
				}
				ser := lbRead(t)
				if len(ser) > maxArray {
					t.Errorf("large-blob array: observed %d bytes, expected at most maxSerializedLargeBlobArray %d", len(ser), maxArray)
				}
				arr, err := ctap2.ParseLargeBlobArray(ser)
				if err != nil {
					t.Fatalf("large-blob array of %d bytes: observed %v, expected a CBOR array followed by LEFT(SHA-256(array), 16)", len(ser), err)
				}
				if len(arr) == 0 && !bytes.Equal(ser, ctap2.InitialLargeBlobArray()) {
					t.Errorf("empty large-blob array: observed %x, expected %x", ser, ctap2.InitialLargeBlobArray())
				}
				t.Logf("%d bytes, %d entries", len(ser), len(arr))
			}},
		Case{ID: "LB-2", Area: AreaLargeBlobs, Destructive: true, Requirement: "CTAP 2.1 §6.10.2 (set in fragments, lbw permission)",
			Description: "a whole array written in fragments with an lbw token reads back byte for byte",
			Run: func(t *T) {
				fragment, maxArray := lbLimits(t)
				t.EnsurePIN()
				orig := lbRead(t)
				lbRestore(t, orig)
				// Enough for three fragments where the key has room for it.
				size := min(2*fragment+100, maxArray-len(orig)-64)
				if size < 64 {
					t.Skipf("the large-blob array is nearly full (%d of %d bytes)", len(orig), maxArray)
				}
				ser := lbWithEntry(t, orig, size)
				if len(ser) > maxArray {
					t.Skipf("the large-blob array is nearly full (%d of %d bytes)", len(orig), maxArray)
				}
				tok := t.PINToken(ctap2.PermLargeBlobWrite, "")
				err := t.Client().WriteSerializedLargeBlobArray(t.Context(), tok, ser)
				if !t.ExpectStatus(fmt.Sprintf("writing a %d-byte array in %d-byte fragments", len(ser), fragment), err, ctap2.StatusOK) {
					return
				}
				if got := lbRead(t); !bytes.Equal(got, ser) {
					t.Errorf("large-blob array read back: observed %d bytes that differ from the %d written, expected the same bytes", len(got), len(ser))
				}
			}},
		Case{ID: "LB-3", Area: AreaLargeBlobs, Destructive: true, Requirement: "CTAP 2.1 §6.10.2 (trailer check on the last fragment)",
			Description: "an array with a wrong trailer is refused with INTEGRITY_FAILURE and the stored array is kept",
			Run: func(t *T) {
				lbLimits(t)
				t.EnsurePIN()
				orig := lbRead(t)
				lbRestore(t, orig)
				ser := lbWithEntry(t, orig, 64)
				ser[len(ser)-1] ^= 0xff
				err := t.Client().WriteSerializedLargeBlobArray(t.Context(), t.PINToken(ctap2.PermLargeBlobWrite, ""), ser)
				t.ExpectStatus("writing an array whose trailer does not match", err, ctap2.ErrIntegrityFailure)
				lbUnchanged(t, orig, "a refused write")
			}},
		Case{ID: "LB-4", Area: AreaLargeBlobs, Destructive: true, Requirement: "CTAP 2.1 §6.10.2 (offset != expectedNextOffset)",
			Description: "a fragment at an offset other than the next expected one is refused with INVALID_SEQ",
			Run: func(t *T) {
				lbLimits(t)
				t.EnsurePIN()
				orig := lbRead(t)
				lbRestore(t, orig)
				ser := lbWithEntry(t, orig, 64)
				tok := t.PINToken(ctap2.PermLargeBlobWrite, "")
				total := uint(len(ser))
				t.Must("writing the first fragment", lbSet(t, tok, 0, ser[:10], &total))
				err := lbSet(t, tok, 20, ser[20:30], nil)
				t.ExpectStatus("a fragment at offset 20 after 10 bytes", err, ctap2.ErrInvalidSeq)
				lbUnchanged(t, orig, "an abandoned write")
			}},
		Case{ID: "LB-5", Area: AreaLargeBlobs, Requirement: "CTAP 2.1 §6.10.2 (get > maxFragmentLength)",
			Description: "a read of more than maxFragmentLength (maxMsgSize - 64) bytes is refused with INVALID_LENGTH",
			Run: func(t *T) {
				fragment, _ := lbLimits(t)
				n := uint(fragment + 1)
				err := t.Client().Call(t.Context(), ctap2.CmdLargeBlobs, &ctap2.LargeBlobsRequest{Get: &n, Offset: 0}, &ctap2.LargeBlobsResponse{})
				t.ExpectStatus(fmt.Sprintf("get %d bytes with maxFragmentLength %d", n, fragment), err, ctap2.ErrInvalidLength)
			}},
		Case{ID: "LB-6", Area: AreaLargeBlobs, Destructive: true, Requirement: "CTAP 2.1 §6.10.2 (protected: pinUvAuthParam required)",
			Description: "a write without pinUvAuthParam on a key with a PIN is refused with PUAT_REQUIRED",
			Run: func(t *T) {
				fragment, _ := lbLimits(t)
				t.EnsurePIN()
				orig := lbRead(t)
				lbRestore(t, orig)
				// The stored array itself: a key that took it would change nothing.
				total := uint(len(orig))
				err := lbSet(t, nil, 0, orig[:min(len(orig), fragment)], &total)
				t.ExpectStatus("a write without pinUvAuthParam", err, ctap2.ErrPUATRequired)
				lbUnchanged(t, orig, "a refused write")
			}},
		Case{ID: "LB-7", Area: AreaLargeBlobs, Destructive: true, Requirement: "CTAP 2.1 §6.10.2 (length required at offset 0)",
			Description: "a first fragment without length is refused with INVALID_PARAMETER",
			Run: func(t *T) {
				lbLimits(t)
				t.EnsurePIN()
				orig := lbRead(t)
				lbRestore(t, orig)
				ser := lbWithEntry(t, orig, 64)
				err := lbSet(t, t.PINToken(ctap2.PermLargeBlobWrite, ""), 0, ser[:10], nil)
				t.ExpectStatus("a write at offset 0 without length", err, ctap2.ErrInvalidParameter)
				lbUnchanged(t, orig, "a refused write")
			}},
		Case{ID: "LB-8", Area: AreaLargeBlobs, Destructive: true, Requirement: "CTAP 2.1 §6.10.2 (length > maxSerializedLargeBlobArray)",
			Description: "a write announcing more than maxSerializedLargeBlobArray bytes is refused with LARGE_BLOB_STORAGE_FULL",
			Run: func(t *T) {
				_, maxArray := lbLimits(t)
				t.EnsurePIN()
				orig := lbRead(t)
				lbRestore(t, orig)
				ser := lbWithEntry(t, orig, 64)
				total := uint(maxArray + 1)
				err := lbSet(t, t.PINToken(ctap2.PermLargeBlobWrite, ""), 0, ser[:10], &total)
				t.ExpectStatus(fmt.Sprintf("a write of length %d with maxSerializedLargeBlobArray %d", total, maxArray), err, ctap2.ErrLargeBlobStorageFull)
				lbUnchanged(t, orig, "a refused write")
			}},
	)
}
