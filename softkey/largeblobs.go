package softkey

import (
	"bytes"
	"context"

	"github.com/ctapkit/ctapkit/ctap2"
)

// maxSerializedLargeBlobArray is the largest serialized large-blob array the softkey
// stores (getInfo 0x0B; CTAP asks for at least 1024).
const maxSerializedLargeBlobArray = 4096

// largeBlobFragmentRoom is what a large-blob message needs besides its fragment:
// maxFragmentLength = maxMsgSize − 64 (CTAP 2.1 §6.10).
const largeBlobFragmentRoom = 64

// largeBlobsParams is the wire form of ctap2.LargeBlobsRequest (CTAP 2.1 §6.10.2),
// with pointers (and a nil slice) for absent parameters.
type largeBlobsParams struct {
	Get               *uint  `cbor:"1,keyasint"`
	Set               []byte `cbor:"2,keyasint"`
	Offset            *uint  `cbor:"3,keyasint"`
	Length            *uint  `cbor:"4,keyasint"`
	PinUvAuthParam    []byte `cbor:"5,keyasint"`
	PinUvAuthProtocol *uint  `cbor:"6,keyasint"`
}

// largeBlobWrite is a serialized large-blob array being written in fragments. It is
// volatile, like a key's RAM: lost at power down (a new Authenticator) and at reset.
// Nothing reaches the store before the last fragment's trailer checks out.
type largeBlobWrite struct {
	buf            []byte // the fragments so far; len(buf) is expectedNextOffset
	expectedLength int    // 0 when no write is in progress
}

// LargeBlobs answers authenticatorLargeBlobs (0x0C) for Go callers: a read (Get)
// or one fragment of a write (Set, with Length on the first). Offset is always
// sent; zero PinUvAuthProtocol is absent. A write answers an empty response.
func (a *Authenticator) LargeBlobs(ctx context.Context, req *ctap2.LargeBlobsRequest) (*ctap2.LargeBlobsResponse, error) {
	if req == nil {
		req = &ctap2.LargeBlobsRequest{}
	}
	offset := req.Offset
	p := &largeBlobsParams{Get: req.Get, Set: req.Set, Offset: &offset, Length: req.Length, PinUvAuthParam: req.PinUvAuthParam}
	if req.PinUvAuthProtocol != 0 {
		p.PinUvAuthProtocol = &req.PinUvAuthProtocol
	}
	resp, err := locked(a, ctx, ctap2.CmdLargeBlobs, a.largeBlobs, p)
	if err == nil && resp == nil {
		resp = &ctap2.LargeBlobsResponse{}
	}
	return resp, err
}

// maxFragmentLength is the largest get or set the softkey takes.
func (a *Authenticator) maxFragmentLength() int {
	return max(a.cfg.MaxMsgSize-largeBlobFragmentRoom, 0)
}

// largeBlobs follows CTAP 2.1 §6.10.2 in its order: offset and exactly one of get
// and set, else INVALID_PARAMETER; then the read or the write.
func (a *Authenticator) largeBlobs(_ context.Context, req *largeBlobsParams, _ func(byte)) (*ctap2.LargeBlobsResponse, error) {
	if req.Offset == nil || (req.Get == nil) == (req.Set == nil) {
		return nil, ctap2.ErrInvalidParameter
	}
	if req.Get != nil {
		return a.readLargeBlobs(req)
	}
	return nil, a.writeLargeBlobs(req)
}

// largeBlobArray is the stored serialized array; never written (or reset), it is
// the empty array with its trailer.
func (a *Authenticator) largeBlobArray() ([]byte, error) {
	arr, err := a.st.LargeBlobArray()
	if err != nil {
		return nil, ctap2.ErrOther
	}
	if arr == nil {
		return ctap2.InitialLargeBlobArray(), nil
	}
	return arr, nil
}

// readLargeBlobs returns up to get bytes of the stored array from offset; reads
// need no auth (the blobs are encrypted to their credentials' largeBlobKeys).
func (a *Authenticator) readLargeBlobs(req *largeBlobsParams) (*ctap2.LargeBlobsResponse, error) {
	if req.Length != nil || req.PinUvAuthParam != nil || req.PinUvAuthProtocol != nil {
		return nil, ctap2.ErrInvalidParameter
	}
	if *req.Get > uint(a.maxFragmentLength()) {
		return nil, ctap2.ErrInvalidLength
	}
	arr, err := a.largeBlobArray()
	if err != nil {
		return nil, err
	}
	if *req.Offset > uint(len(arr)) {
		return nil, ctap2.ErrInvalidParameter
	}
	off := int(*req.Offset)
	end := off + min(int(*req.Get), len(arr)-off)
	return &ctap2.LargeBlobsResponse{Config: bytes.Clone(arr[off:end])}, nil
}

// writeLargeBlobs takes one fragment of a new serialized array. The first
// (offset 0) states the total length; each next one must start where the last
// ended (INVALID_SEQ); a protected authenticator wants a pinUvAuthParam from a
// token with the lbw permission on every fragment. The pending state changes only
// once a fragment passed every check, so a refused fragment (an unauthenticated
// one included) cannot disturb a write in progress. The last fragment commits the
// whole array, in one store write, if its trailer is LEFT(SHA-256(array), 16);
// otherwise INTEGRITY_FAILURE, the write is abandoned and the stored array kept.
func (a *Authenticator) writeLargeBlobs(req *largeBlobsParams) error {
	w := &a.blob
	if len(req.Set) > a.maxFragmentLength() {
		return ctap2.ErrInvalidLength
	}
	expectedLength, expectedNext := w.expectedLength, len(w.buf)
	if *req.Offset == 0 {
		switch {
		case req.Length == nil:
			return ctap2.ErrInvalidParameter
		case *req.Length > maxSerializedLargeBlobArray:
			return ctap2.ErrLargeBlobStorageFull
		case *req.Length < 1+ctap2.LargeBlobTrailerSize:
			return ctap2.ErrInvalidParameter
		}
		expectedLength, expectedNext = int(*req.Length), 0
	} else if req.Length != nil {
		return ctap2.ErrInvalidParameter
	}
	if *req.Offset != uint(expectedNext) {
		return ctap2.ErrInvalidSeq
	}
	if a.protected() {
		msg := ctap2.LargeBlobsAuthMessage(uint32(expectedNext), req.Set)
		if err := a.verifyPinUvAuthParam(protocolParam(req.PinUvAuthProtocol), req.PinUvAuthParam, msg, ctap2.PermLargeBlobWrite, ""); err != nil {
			return err
		}
	}
	if expectedNext+len(req.Set) > expectedLength {
		return ctap2.ErrInvalidParameter
	}
	if expectedNext == 0 {
		*w = largeBlobWrite{buf: make([]byte, 0, expectedLength), expectedLength: expectedLength}
	}
	w.buf = append(w.buf, req.Set...)
	if len(w.buf) < w.expectedLength {
		return nil // more to come
	}
	arr := w.buf
	*w = largeBlobWrite{}
	body, trailer := arr[:len(arr)-ctap2.LargeBlobTrailerSize], arr[len(arr)-ctap2.LargeBlobTrailerSize:]
	if !bytes.Equal(ctap2.LargeBlobTrailer(body), trailer) {
		return ctap2.ErrIntegrityFailure
	}
	if err := a.st.SetLargeBlobArray(arr); err != nil {
		return ctap2.ErrOther
	}
	return nil
}
