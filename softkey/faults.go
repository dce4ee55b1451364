package softkey

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Faults are test knobs that make the softkey a broken authenticator, as a
// browser's virtual authenticator lets tests inject failures: each one breaks one
// rule of CTAP 2.1 (or of the transport's timing) so that a host test, or the
// conformance suite, can show that it notices. A nil *Faults and the zero value
// break nothing, and cost nothing: every hook in the engine is behind a nil check.
// Never give a softkey that protects anything a Faults.
//
// The response faults (ForceStatus, WrongStatus, DropResponse, Delay,
// NonCanonicalCBOR) act on HandleCBOR, the path every transport serves; the
// behaviour faults (signatures, counter, credProtect, permissions, cancel) act on
// every path, the Go API included.
type Faults struct {
	// ForceStatus answers the listed commands with the given status at once,
	// without running them (a key whose command is broken or disabled).
	ForceStatus map[ctap2.Command]ctap2.StatusError
	// WrongStatus replaces an error status the softkey would answer with another
	// one, e.g. {ErrUnsupportedOption: ErrInvalidOption}: a key that picked the
	// wrong name for the right refusal.
	WrongStatus map[ctap2.StatusError]ctap2.StatusError
	// DropResponse runs the listed commands (their effects happen) but withholds
	// the reply, as a key that hangs would: the transport keeps sending keepalives
	// until the host gives up and cancels, and only then does the softkey answer
	// CTAP2_ERR_KEEPALIVE_CANCEL.
	DropResponse map[ctap2.Command]bool
	// Delay holds every CBOR request this long before running it (a slow key); a
	// host cancel during the delay is answered CTAP2_ERR_KEEPALIVE_CANCEL.
	Delay time.Duration
	// NonCanonicalCBOR re-encodes every CBOR response against CTAP 2.1 §8's
	// canonical form: a map of two or more entries with its keys in reverse
	// order, else with a non-minimal length in the map's head.
	NonCanonicalCBOR bool
	// CorruptSignature flips a bit of every assertion signature (getAssertion,
	// getNextAssertion and U2F authenticate), so that none verifies.
	CorruptSignature bool
	// CorruptAttestation flips a bit of every attestation signature (packed
	// attStmt sig and U2F register), so that none verifies.
	CorruptAttestation bool
	// FrozenCounter stops the signature counter: after its first non-zero value
	// every signature carries the same signCount, which a relying party takes for
	// a cloned authenticator.
	FrozenCounter bool
	// IgnoreCredProtect makes credProtect decorative: getAssertion (and the
	// excludeList of makeCredential) use credentials of level 2 and 3 without user
	// verification, as if they had level 1.
	IgnoreCredProtect bool
	// IgnorePermissions accepts a valid pinUvAuthToken for any permission and any
	// RP ID: the token's permissions and its permissions RP ID are not checked.
	IgnorePermissions bool
	// SlowCancel makes a wait for user presence notice a host's cancellation this
	// late: CTAP2_ERR_KEEPALIVE_CANCEL comes SlowCancel after CTAPHID_CANCEL
	// instead of at once.
	SlowCancel time.Duration
}

// serveCBOR is HandleCBOR with the response faults around the engine's handler.
func (f *Faults) serveCBOR(ctx context.Context, req []byte, status func(byte), handle func(context.Context, []byte, func(byte)) []byte) []byte {
	if f.Delay > 0 {
		timer := time.NewTimer(f.Delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return []byte{byte(ctap2.ErrKeepaliveCancel)}
		}
	}
	var cmd ctap2.Command
	known := len(req) > 0
	if known {
		cmd = ctap2.Command(req[0])
		if s, ok := f.ForceStatus[cmd]; ok {
			return []byte{byte(s)}
		}
	}
	resp := handle(ctx, req, status)
	switch {
	case len(resp) == 0:
	case resp[0] != byte(ctap2.StatusOK):
		if s, ok := f.WrongStatus[ctap2.StatusError(resp[0])]; ok {
			resp = []byte{byte(s)}
		}
	case f.NonCanonicalCBOR && len(resp) > 1:
		resp = append(resp[:1:1], nonCanonical(resp[1:])...)
	}
	if known && f.DropResponse[cmd] {
		<-ctx.Done()
		return []byte{byte(ctap2.ErrKeepaliveCancel)}
	}
	return resp
}

// nonCanonical re-encodes a CBOR map so that it is still well-formed and means the
// same, but is not canonical: entries in reverse key order when there are two or
// more, else the entry count in a one-byte length argument where the head itself
// could hold it. Anything that is not a definite-length map is returned as is.
func nonCanonical(body []byte) []byte {
	n, head, ok := mapHead(body)
	if !ok {
		return body
	}
	if n < 2 {
		return append([]byte{0xb8, byte(n)}, body[head:]...)
	}
	rest := body[head:]
	entries := make([][]byte, 0, n)
	for range n {
		start := rest
		var k, v ctap2.RawMessage
		var err error
		if rest, err = ctap2.UnmarshalFirst(rest, &k); err != nil {
			return body
		}
		if rest, err = ctap2.UnmarshalFirst(rest, &v); err != nil {
			return body
		}
		entries = append(entries, start[:len(start)-len(rest)])
	}
	out := bytes.Clone(body[:head])
	for i := len(entries) - 1; i >= 0; i-- {
		out = append(out, entries[i]...)
	}
	return append(out, rest...)
}

// mapHead decodes the head of a definite-length CBOR map: its entry count and the
// head's length.
func mapHead(b []byte) (n uint64, head int, ok bool) {
	if len(b) == 0 || b[0]>>5 != 5 {
		return 0, 0, false
	}
	switch ai := b[0] & 0x1f; {
	case ai < 24:
		return uint64(ai), 1, true
	case ai == 24 && len(b) >= 2:
		return uint64(b[1]), 2, true
	case ai == 25 && len(b) >= 3:
		return uint64(binary.BigEndian.Uint16(b[1:])), 3, true
	case ai == 26 && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:])), 5, true
	}
	return 0, 0, false
}

// corrupt flips the lowest bit of a signature's last byte: a DER ECDSA signature
// stays well-formed (the bit belongs to s) but no longer verifies.
func corrupt(sig []byte) []byte {
	if len(sig) == 0 {
		return sig
	}
	out := bytes.Clone(sig)
	out[len(out)-1] ^= 1
	return out
}

// The engine's hooks; each is safe on a nil *Faults.

// assertionSig is the signature an assertion carries.
func (f *Faults) assertionSig(sig []byte) []byte {
	if f != nil && f.CorruptSignature {
		return corrupt(sig)
	}
	return sig
}

// attestationSig is the signature an attestation statement carries.
func (f *Faults) attestationSig(sig []byte) []byte {
	if f != nil && f.CorruptAttestation {
		return corrupt(sig)
	}
	return sig
}

// frozenCounter reports whether the signature counter is stopped.
func (f *Faults) frozenCounter() bool { return f != nil && f.FrozenCounter }

// ignoreCredProtect reports whether credProtect is ignored.
func (f *Faults) ignoreCredProtect() bool { return f != nil && f.IgnoreCredProtect }

// ignorePermissions reports whether token permissions and RP IDs are ignored.
func (f *Faults) ignorePermissions() bool { return f != nil && f.IgnorePermissions }

// lateCancel delays the answer to a cancelled presence wait by SlowCancel.
func (f *Faults) lateCancel() {
	if f != nil && f.SlowCancel > 0 {
		time.Sleep(f.SlowCancel)
	}
}
