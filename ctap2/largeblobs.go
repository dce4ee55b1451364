package ctap2

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// LargeBlobsRequest is authenticatorLargeBlobs (CTAP 2.1 §6.10.2). Exactly one of Get
// and Set is present; Offset is always sent; Length only with the first Set fragment.
type LargeBlobsRequest struct {
	Get               *uint  `cbor:"1,keyasint,omitempty"`
	Set               []byte `cbor:"2,keyasint,omitempty"`
	Offset            uint   `cbor:"3,keyasint"`
	Length            *uint  `cbor:"4,keyasint,omitempty"`
	PinUvAuthParam    []byte `cbor:"5,keyasint,omitempty"`
	PinUvAuthProtocol uint   `cbor:"6,keyasint,omitempty"`
}

// LargeBlobsResponse is the reply to a get: the requested bytes.
type LargeBlobsResponse struct {
	Config []byte `cbor:"1,keyasint"`
}

// LargeBlobsAuthMessage is what a largeBlobs set pinUvAuthParam authenticates:
// 32×0xFF || 0x0C 0x00 || uint32LE(offset) || SHA-256(fragment) (CTAP 2.1 §6.10.2).
func LargeBlobsAuthMessage(offset uint32, fragment []byte) []byte {
	msg := bytes.Repeat([]byte{0xff}, 32)
	msg = append(msg, byte(CmdLargeBlobs), 0x00)
	msg = binary.LittleEndian.AppendUint32(msg, offset)
	h := sha256.Sum256(fragment)
	return append(msg, h[:]...)
}

// Large-blob sizes (CTAP 2.1 §6.10).
const (
	LargeBlobKeySize      = 32 // largeBlobKey, an AES-256 key
	LargeBlobNonceSize    = 12 // AES-GCM nonce of a large-blob map
	LargeBlobTrailerSize  = 16 // LEFT(SHA-256(array), 16) after the CBOR array
	largeBlobTagSize      = 16
	largeBlobFragmentRoom = 64 // maxFragmentLength = maxMsgSize - 64
	// maxLargeBlobRead bounds a read from a key that does not state
	// maxSerializedLargeBlobArray, against one that never sends a short fragment.
	maxLargeBlobRead = 1 << 24
)

// InitialLargeBlobArray returns the serialized empty large-blob array, the value an
// authenticator holds until the first write: 0x80 || LEFT(SHA-256(0x80), 16).
func InitialLargeBlobArray() []byte {
	return []byte{0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d, 0x3c}
}

// LargeBlobTrailer is LEFT(SHA-256(array), 16), the integrity check that follows the
// CBOR array in the serialized form.
func LargeBlobTrailer(array []byte) []byte {
	h := sha256.Sum256(array)
	return h[:LargeBlobTrailerSize]
}

// ErrLargeBlobIntegrity reports a serialized large-blob array whose trailer does not
// match its contents. Writing a fresh array (WriteLargeBlobArray with an empty
// LargeBlobArray) repairs it, losing every blob.
var ErrLargeBlobIntegrity = errors.New("large-blob array: integrity check failed")

// ErrLargeBlobNotFound: no entry of the array opens with the given largeBlobKey.
var ErrLargeBlobNotFound = errors.New("no large blob for this key")

// LargeBlobArray is a decoded large-blob array. Each element is kept as its encoded
// CBOR item, so entries written by others (or of shapes this package does not know)
// survive a read-modify-write unchanged.
type LargeBlobArray []RawMessage

// LargeBlobEntry is one large-blob map (CTAP 2.1 §6.10.3): AES-256-GCM under the
// credential's largeBlobKey of the raw-DEFLATE-compressed data, with the tag appended
// to Ciphertext and "blob" || uint64LE(OrigSize) as associated data.
type LargeBlobEntry struct {
	Ciphertext []byte `cbor:"1,keyasint"`
	Nonce      []byte `cbor:"2,keyasint"`
	OrigSize   uint64 `cbor:"3,keyasint"`
}

// ParseLargeBlobArray checks the trailer of a serialized large-blob array and decodes
// the CBOR array before it.
func ParseLargeBlobArray(serialized []byte) (LargeBlobArray, error) {
	if len(serialized) < 1+LargeBlobTrailerSize {
		return nil, fmt.Errorf("large-blob array of %d bytes is shorter than the %d-byte minimum: %w", len(serialized), 1+LargeBlobTrailerSize, ErrLargeBlobIntegrity)
	}
	body, trailer := serialized[:len(serialized)-LargeBlobTrailerSize], serialized[len(serialized)-LargeBlobTrailerSize:]
	if !bytes.Equal(LargeBlobTrailer(body), trailer) {
		return nil, ErrLargeBlobIntegrity
	}
	var arr []RawMessage
	if err := Unmarshal(body, &arr); err != nil {
		return nil, fmt.Errorf("large-blob array: %w", err)
	}
	if arr == nil {
		// CBOR null decodes into a nil slice; it is not an array.
		if len(body) != 1 || body[0] != 0x80 {
			return nil, fmt.Errorf("large-blob array: not a CBOR array")
		}
		arr = []RawMessage{}
	}
	out := make(LargeBlobArray, len(arr))
	for i, e := range arr {
		// Elements are kept as bytes, but held to the same strict rules (duplicate
		// map keys, invalid UTF-8) as everything else decoded.
		var v any
		if err := Unmarshal(e, &v); err != nil {
			return nil, fmt.Errorf("large-blob array element %d: %w", i, err)
		}
		out[i] = bytes.Clone(e)
	}
	return out, nil
}

// Serialize encodes the array followed by its trailer, the form authenticators store.
func (a LargeBlobArray) Serialize() ([]byte, error) {
	elems := []RawMessage(a)
	if elems == nil {
		elems = []RawMessage{}
	}
	body, err := Marshal(elems)
	if err != nil {
		return nil, fmt.Errorf("encoding large-blob array: %w", err)
	}
	return append(body, LargeBlobTrailer(body)...), nil
}

// SealLargeBlob compresses data with raw DEFLATE and encrypts it under key with a fresh
// random nonce, giving the encoded large-blob map to store in the array.
func SealLargeBlob(key, data []byte) (RawMessage, error) {
	nonce := make([]byte, LargeBlobNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	compressed, err := deflateRaw(data)
	if err != nil {
		return nil, err
	}
	e, err := sealLargeBlob(key, nonce, compressed, uint64(len(data)))
	if err != nil {
		return nil, err
	}
	return Marshal(e)
}

func deflateRaw(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func largeBlobAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != LargeBlobKeySize {
		return nil, fmt.Errorf("largeBlobKey of %d bytes, want %d", len(key), LargeBlobKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func largeBlobAD(origSize uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte("blob"), origSize)
}

// sealLargeBlob encrypts already compressed data; golden vectors fix the nonce.
func sealLargeBlob(key, nonce, compressed []byte, origSize uint64) (*LargeBlobEntry, error) {
	aead, err := largeBlobAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != LargeBlobNonceSize {
		return nil, fmt.Errorf("large-blob nonce of %d bytes, want %d", len(nonce), LargeBlobNonceSize)
	}
	ct := aead.Seal(nil, nonce, compressed, largeBlobAD(origSize))
	return &LargeBlobEntry{Ciphertext: ct, Nonce: bytes.Clone(nonce), OrigSize: origSize}, nil
}

// errLargeBlobKey: the entry does not open with this key (another credential's blob).
var errLargeBlobKey = errors.New("large blob: wrong key or corrupted entry")

// openCompressed decrypts the entry, returning the compressed plaintext.
func (e *LargeBlobEntry) openCompressed(key []byte) ([]byte, error) {
	aead, err := largeBlobAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(e.Nonce) != LargeBlobNonceSize || len(e.Ciphertext) < largeBlobTagSize {
		return nil, errLargeBlobKey
	}
	pt, err := aead.Open(nil, e.Nonce, e.Ciphertext, largeBlobAD(e.OrigSize))
	if err != nil {
		return nil, errLargeBlobKey
	}
	return pt, nil
}

// Open decrypts and decompresses the entry with key. The decompressed size must equal
// OrigSize. Data compressed with a zlib header instead of raw DEFLATE (as python-fido2
// before 1.0 wrote it) is accepted too.
func (e *LargeBlobEntry) Open(key []byte) ([]byte, error) {
	compressed, err := e.openCompressed(key)
	if err != nil {
		return nil, err
	}
	data, err := inflate(flate.NewReader(bytes.NewReader(compressed)), e.OrigSize)
	if err != nil {
		if zr, zerr := zlib.NewReader(bytes.NewReader(compressed)); zerr == nil {
			if data, zerr = inflate(zr, e.OrigSize); zerr == nil {
				return data, nil
			}
		}
		return nil, err
	}
	return data, nil
}

// inflate reads exactly size bytes followed by the end of the stream. Reading stops
// one byte past size, so a small entry cannot expand without bound.
func inflate(r io.ReadCloser, size uint64) ([]byte, error) {
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, int64(min(size, math.MaxInt64-1))+1))
	if err != nil {
		return nil, fmt.Errorf("large blob: decompressing: %w", err)
	}
	if uint64(len(data)) != size {
		return nil, fmt.Errorf("large blob: decompressed to more or less than origSize %d", size)
	}
	return data, nil
}

// decodeLargeBlobEntry decodes one array element as a large-blob map, or reports false.
func decodeLargeBlobEntry(raw RawMessage) (*LargeBlobEntry, bool) {
	var e LargeBlobEntry
	if err := Unmarshal(raw, &e); err != nil {
		return nil, false
	}
	return &e, true
}

// opens reports whether the element is a large-blob map that authenticates under key.
func opens(raw RawMessage, key []byte) bool {
	e, ok := decodeLargeBlobEntry(raw)
	if !ok {
		return false
	}
	_, err := e.openCompressed(key)
	return err == nil
}

// ReadLargeBlob returns the data of the first entry of arr that opens with key.
// Entries of other credentials (or that do not decompress to their origSize) are
// skipped.
func ReadLargeBlob(arr LargeBlobArray, key []byte) (data []byte, found bool) {
	for _, raw := range arr {
		e, ok := decodeLargeBlobEntry(raw)
		if !ok {
			continue
		}
		if data, err := e.Open(key); err == nil {
			return data, true
		}
	}
	return nil, false
}

// SetLargeBlob returns a new array in which key's blob is data: every entry that opens
// with key is dropped and a freshly sealed entry is appended. arr is not modified.
func SetLargeBlob(arr LargeBlobArray, key, data []byte) (LargeBlobArray, error) {
	entry, err := SealLargeBlob(key, data)
	if err != nil {
		return nil, err
	}
	out, _ := RemoveLargeBlob(arr, key)
	return append(out, entry), nil
}

// RemoveLargeBlob returns a new array without the entries that open with key, and
// whether there were any. arr is not modified.
func RemoveLargeBlob(arr LargeBlobArray, key []byte) (LargeBlobArray, bool) {
	out := make(LargeBlobArray, 0, len(arr)+1)
	removed := false
	for _, raw := range arr {
		if opens(raw, key) {
			removed = true
			continue
		}
		out = append(out, raw)
	}
	return out, removed
}

// largeBlobLimits returns maxFragmentLength for the authenticator (maxMsgSize − 64,
// maxMsgSize defaulting to 1024) and its maxSerializedLargeBlobArray (0: unknown).
func (c *Client) largeBlobLimits(ctx context.Context) (fragment, maxArray int, err error) {
	info, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	if v, _ := info.Option("largeBlobs"); !v {
		return 0, 0, fmt.Errorf("the authenticator does not support large blobs (no largeBlobs option): %w", errors.ErrUnsupported)
	}
	fragment = info.MessageSize() - largeBlobFragmentRoom
	if fragment < 1 {
		return 0, 0, fmt.Errorf("maxMsgSize %d leaves no room for large-blob fragments: %w", info.MaxMsgSize, ErrMalformedResponse)
	}
	if info.MaxSerializedLargeBlobArray > 0 && info.MaxSerializedLargeBlobArray <= maxLargeBlobRead {
		maxArray = int(info.MaxSerializedLargeBlobArray)
	}
	return fragment, maxArray, nil
}

// ReadSerializedLargeBlobArray reads the whole serialized large-blob array as stored,
// trailer included and unchecked: get = maxFragmentLength at increasing offsets until a
// fragment comes back short.
func (c *Client) ReadSerializedLargeBlobArray(ctx context.Context) ([]byte, error) {
	fragment, maxArray, err := c.largeBlobLimits(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading large blobs: %w", err)
	}
	limit := maxArray
	if limit == 0 {
		limit = maxLargeBlobRead
	}
	var buf []byte
	for {
		get := uint(fragment)
		var resp LargeBlobsResponse
		if err := c.Call(ctx, CmdLargeBlobs, &LargeBlobsRequest{Get: &get, Offset: uint(len(buf))}, &resp); err != nil {
			return nil, fmt.Errorf("reading large blobs at offset %d: %w", len(buf), err)
		}
		if len(resp.Config) > fragment {
			return nil, fmt.Errorf("reading large blobs at offset %d: asked for %d bytes, got %d: %w", len(buf), fragment, len(resp.Config), ErrMalformedResponse)
		}
		buf = append(buf, resp.Config...)
		if len(buf) > limit {
			return nil, fmt.Errorf("reading large blobs: more than %d bytes: %w", limit, ErrMalformedResponse)
		}
		if len(resp.Config) < fragment {
			return buf, nil
		}
	}
}

// LargeBlobArray reads, checks (ErrLargeBlobIntegrity) and decodes the large-blob array.
func (c *Client) LargeBlobArray(ctx context.Context) (LargeBlobArray, error) {
	serialized, err := c.ReadSerializedLargeBlobArray(ctx)
	if err != nil {
		return nil, err
	}
	arr, err := ParseLargeBlobArray(serialized)
	if err != nil {
		return nil, fmt.Errorf("reading large blobs: %w", err)
	}
	return arr, nil
}

// WriteSerializedLargeBlobArray writes serialized (a CBOR array and its trailer, not
// checked here) in fragments of maxFragmentLength: offset on each, the total length on
// the first, and, when token is not nil, a pinUvAuthParam per fragment. A nil token
// suits authenticators without a PIN and with alwaysUv off.
func (c *Client) WriteSerializedLargeBlobArray(ctx context.Context, token *PINToken, serialized []byte) error {
	fragment, maxArray, err := c.largeBlobLimits(ctx)
	if err != nil {
		return fmt.Errorf("writing large blobs: %w", err)
	}
	if maxArray > 0 && len(serialized) > maxArray {
		return fmt.Errorf("writing large blobs: %d bytes exceed the authenticator's maximum of %d (maxSerializedLargeBlobArray)", len(serialized), maxArray)
	}
	if len(serialized) == 0 || uint64(len(serialized)) > 1<<32-1 {
		return fmt.Errorf("writing large blobs: cannot write %d bytes", len(serialized))
	}
	total := uint(len(serialized))
	for offset := 0; offset < len(serialized); {
		part := serialized[offset:min(offset+fragment, len(serialized))]
		req := LargeBlobsRequest{Set: part, Offset: uint(offset)}
		if offset == 0 {
			req.Length = &total
		}
		if token != nil {
			req.PinUvAuthProtocol = token.Protocol.Version()
			req.PinUvAuthParam = token.Param(LargeBlobsAuthMessage(uint32(offset), part))
		}
		if err := c.Call(ctx, CmdLargeBlobs, &req, nil); err != nil {
			return fmt.Errorf("writing large blobs at offset %d of %d: %w", offset, total, err)
		}
		offset += len(part)
	}
	return nil
}

// WriteLargeBlobArray serializes arr and writes it (see WriteSerializedLargeBlobArray).
func (c *Client) WriteLargeBlobArray(ctx context.Context, token *PINToken, arr LargeBlobArray) error {
	serialized, err := arr.Serialize()
	if err != nil {
		return err
	}
	return c.WriteSerializedLargeBlobArray(ctx, token, serialized)
}

// GetLargeBlob reads the blob stored for the credential whose largeBlobKey is key, or
// ErrLargeBlobNotFound.
func (c *Client) GetLargeBlob(ctx context.Context, key []byte) ([]byte, error) {
	if len(key) != LargeBlobKeySize {
		return nil, fmt.Errorf("largeBlobKey of %d bytes, want %d", len(key), LargeBlobKeySize)
	}
	arr, err := c.LargeBlobArray(ctx)
	if err != nil {
		return nil, err
	}
	data, ok := ReadLargeBlob(arr, key)
	if !ok {
		return nil, ErrLargeBlobNotFound
	}
	return data, nil
}

// PutLargeBlob stores data as the blob of the credential whose largeBlobKey is key,
// replacing any it had, and keeps every other entry: it reads the array, updates it
// and writes it whole. token (with the lbw permission) may be nil when the
// authenticator is not protected.
func (c *Client) PutLargeBlob(ctx context.Context, token *PINToken, key, data []byte) error {
	if len(key) != LargeBlobKeySize {
		return fmt.Errorf("largeBlobKey of %d bytes, want %d", len(key), LargeBlobKeySize)
	}
	arr, err := c.LargeBlobArray(ctx)
	if err != nil {
		return err
	}
	updated, err := SetLargeBlob(arr, key, data)
	if err != nil {
		return err
	}
	return c.WriteLargeBlobArray(ctx, token, updated)
}

// DeleteLargeBlob removes the blob of the credential whose largeBlobKey is key, or
// returns ErrLargeBlobNotFound without writing.
func (c *Client) DeleteLargeBlob(ctx context.Context, token *PINToken, key []byte) error {
	if len(key) != LargeBlobKeySize {
		return fmt.Errorf("largeBlobKey of %d bytes, want %d", len(key), LargeBlobKeySize)
	}
	arr, err := c.LargeBlobArray(ctx)
	if err != nil {
		return err
	}
	updated, removed := RemoveLargeBlob(arr, key)
	if !removed {
		return ErrLargeBlobNotFound
	}
	return c.WriteLargeBlobArray(ctx, token, updated)
}
