package softkey

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// assertionQueue is the state getNextAssertion continues from (CTAP 2.1 §6.3): the
// request's data and the IDs of the credentials it has left, newest first (all
// resident: only a discoverable getAssertion leaves any). Each credential is read
// again from the store when its turn comes: an RP's 10,000 credentials would
// otherwise keep 5.9 MB of records, private keys included, for up to
// nextAssertionWindow; a 32-byte ID takes 36 bytes here.
type assertionQueue struct {
	rpIDHash       [32]byte
	clientDataHash []byte
	flags          ctap2.AuthFlags
	ext            *gaExtensions
	remaining      idQueue
	last           time.Time
}

// idQueue is a list of credential IDs in one buffer, taken from the front.
type idQueue struct {
	buf  []byte   // the IDs back to back
	ends []uint32 // where each ID ends in buf
	off  uint32   // where the front ID starts
}

func newIDQueue(creds []*credential) idQueue {
	n := 0
	for _, c := range creds {
		n += len(c.id)
	}
	q := idQueue{buf: make([]byte, 0, n), ends: make([]uint32, 0, len(creds))}
	for _, c := range creds {
		q.buf = append(q.buf, c.id...)
		q.ends = append(q.ends, uint32(len(q.buf)))
	}
	return q
}

func (q *idQueue) len() int { return len(q.ends) }

// pop removes the front ID and returns it; it shares q's buffer, which nothing
// writes to.
func (q *idQueue) pop() []byte {
	end := q.ends[0]
	id := q.buf[q.off:end:end]
	q.off, q.ends = end, q.ends[1:]
	return id
}

// GetAssertion answers authenticatorGetAssertion for Go callers.
func (a *Authenticator) GetAssertion(ctx context.Context, req *ctap2.GetAssertionRequest) (*ctap2.GetAssertionResponse, error) {
	return locked(a, ctx, ctap2.CmdGetAssertion, a.getAssertion, req)
}

// GetNextAssertion answers authenticatorGetNextAssertion for Go callers.
func (a *Authenticator) GetNextAssertion(ctx context.Context) (*ctap2.GetAssertionResponse, error) {
	return locked(a, ctx, ctap2.CmdGetNextAssertion, a.getNextAssertion, nil)
}

// getAssertion follows CTAP 2.1 §6.2.2 in its order.
func (a *Authenticator) getAssertion(ctx context.Context, req *ctap2.GetAssertionRequest, status func(byte)) (*ctap2.GetAssertionResponse, error) {
	switch {
	case req.RPID == "" || req.ClientDataHash == nil:
		return nil, ctap2.ErrMissingParameter
	case len(req.ClientDataHash) != 32:
		return nil, ctap2.ErrInvalidParameter
	}
	ext, err := parseGAExtensions(req.Extensions) // malformed inputs fail like decoding
	if err != nil {
		return nil, err
	}
	if err := a.pinUvAuthProbe(ctx, req.PinUvAuthParam, req.PinUvAuthProtocol, req.RPID, status); err != nil {
		return nil, err
	}
	_, uv, err := a.checkOptions(req.Options, false, req.PinUvAuthParam != nil)
	if err != nil {
		return nil, err
	}
	up := req.Options == nil || req.Options.UP == nil || *req.Options.UP
	if ext.hmacSecret != nil && !up {
		return nil, ctap2.ErrUnsupportedOption // hmac-secret needs user presence (§12.5)
	}
	s, err := a.settings()
	if err != nil {
		return nil, err
	}
	protected := uvProtected(a, s)
	if s.AlwaysUV && up { // step 4; a silent probe (up=false) stays allowed
		if uv, err = a.alwaysUV(protected, req.PinUvAuthParam, uv); err != nil {
			return nil, err
		}
	}
	// Step 5: the token or built-in UV.
	flags, present, err := a.verifyUser(protected, req.PinUvAuthParam, req.PinUvAuthProtocol, req.ClientDataHash,
		ctap2.PermGetAssertion, req.RPID, uv)
	if err != nil {
		return nil, err
	}

	// Step 6: the candidates, without those credProtect hides: level 3 without UV,
	// level 2 without UV unless listed. A hidden credential is answered exactly like
	// an unknown one.
	rpIDHash := ctap2.RPIDHash(req.RPID)
	verified := flags&ctap2.FlagUV != 0 || a.cfg.Faults.ignoreCredProtect()
	var candidates []*credential
	if len(req.AllowList) > 0 {
		for _, d := range req.AllowList {
			c, err := a.lookup(rpIDHash, d)
			if err != nil {
				return nil, err
			}
			if c != nil && c.usable(verified, true) {
				candidates = append(candidates, c)
				break // with an allowList one match is enough; no getNextAssertion
			}
		}
	} else {
		stored, err := a.st.CredentialsByRP(rpIDHash) // newest first, as §6.2.2 asks
		if err != nil {
			return nil, ctap2.ErrOther
		}
		for _, c := range stored {
			if rc := residentCredential(c); rc.usable(verified, false) {
				candidates = append(candidates, rc)
			}
		}
	}
	if len(candidates) == 0 {
		return nil, ctap2.ErrNoCredentials
	}

	if up {
		if !present {
			if err := a.userPresence(ctx, req.RPID, status); err != nil {
				return nil, err
			}
		}
		flags |= ctap2.FlagUP
		a.pin.token.clearAfterPresence() // step 7: the token served its one mc/ga
	}
	if ext.hmacSecret != nil { // extensions (step 11): the salts serve every credential
		if ext.salts, err = a.openSalts(ext.hmacSecret); err != nil {
			return nil, err
		}
	}
	resp, err := a.assert(rpIDHash, req.ClientDataHash, flags, ext, candidates[0])
	if err != nil {
		return nil, err
	}
	if n := len(candidates); n > 1 {
		resp.NumberOfCredentials = uint(n)
		a.next = &assertionQueue{
			rpIDHash:       rpIDHash,
			clientDataHash: bytes.Clone(req.ClientDataHash),
			flags:          flags,
			ext:            ext,
			remaining:      newIDQueue(candidates[1:]),
			last:           a.cfg.Now(),
		}
	}
	return resp, nil
}

// getNextAssertion reads the next remaining credential from the store. No command
// can delete one meanwhile (any other command ends the sequence), but a Go caller
// sharing the store can: a credential gone from the store is skipped, like one
// never found, and when none of the remaining ones is left the sequence ends with
// NO_CREDENTIALS. §6.3 names no status for this; NOT_ALLOWED is what it answers to
// a host that asks for more than numberOfCredentials or too late, which this host
// did not, and NO_CREDENTIALS is what getAssertion answers when it finds none.
func (a *Authenticator) getNextAssertion(context.Context, *struct{}, func(byte)) (*ctap2.GetAssertionResponse, error) {
	q := a.next
	if q == nil || q.remaining.len() == 0 || a.cfg.Now().Sub(q.last) > nextAssertionWindow {
		a.next = nil
		return nil, ctap2.ErrNotAllowed
	}
	q.last = a.cfg.Now()
	for q.remaining.len() > 0 {
		stored, err := a.st.Credential(q.remaining.pop())
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if q.remaining.len() == 0 {
			a.next = nil // the last one: nothing to keep
		}
		if err != nil {
			return nil, ctap2.ErrOther
		}
		if stored.RPIDHash != q.rpIDHash {
			continue // cannot happen: IDs are random
		}
		return a.assert(q.rpIDHash, q.clientDataHash, q.flags, q.ext, residentCredential(stored))
	}
	a.next = nil
	return nil, ctap2.ErrNoCredentials
}

// assert signs authData || clientDataHash with c and builds the response. The user
// entity of a resident credential carries only its ID unless the user was verified
// (flags has UV): name and displayName are personal data (CTAP 2.1 §6.2.2 step 12).
// ext (nil: none) adds the credential's extension outputs and largeBlobKey.
func (a *Authenticator) assert(rpIDHash [32]byte, clientDataHash []byte, flags ctap2.AuthFlags, ext *gaExtensions, c *credential) (*ctap2.GetAssertionResponse, error) {
	key, err := a.signer(c)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	outputs, err := a.gaOutputs(ext, c, flags&ctap2.FlagUV != 0)
	if err != nil {
		return nil, err
	}
	count, err := a.counter.next()
	if err != nil {
		return nil, ctap2.ErrOther
	}
	authData := (&ctap2.AuthData{RPIDHash: rpIDHash, Flags: flags, SignCount: count, Extensions: outputs}).Marshal()
	sig, err := ctap2.Sign(c.alg, key, concat(authData, clientDataHash), a.signRand)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	resp := &ctap2.GetAssertionResponse{
		Credential: &ctap2.CredentialDescriptor{Type: ctap2.CredentialType, ID: c.id},
		AuthData:   authData,
		Signature:  a.cfg.Faults.assertionSig(sig),
	}
	if ext != nil && ext.largeBlobKey {
		resp.LargeBlobKey = a.largeBlobKeyOf(c.stored)
	}
	if c.stored != nil {
		resp.User = &ctap2.UserEntity{ID: c.stored.User.ID}
		if flags&ctap2.FlagUV != 0 {
			resp.User.Name, resp.User.DisplayName = c.stored.User.Name, c.stored.User.DisplayName
		}
	}
	return resp, nil
}
