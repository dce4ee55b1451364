package softkey

import (
	"context"
	"errors"

	"github.com/fxamacker/cbor/v2"

	"github.com/ctapkit/ctapkit/ctap2"
)

// HandleCBOR answers one CTAP2 message (command byte || CBOR parameters) with
// status byte || CBOR response; ctaphid.Server and the NFC exposure call it. ctx is
// cancelled when the host cancels; status reports keepalive states while the
// softkey waits for a touch.
func (a *Authenticator) HandleCBOR(ctx context.Context, req []byte, status func(byte)) []byte {
	if a.cfg.Faults != nil {
		return a.cfg.Faults.serveCBOR(ctx, req, status, a.handleCBOR)
	}
	return a.handleCBOR(ctx, req, status)
}

func (a *Authenticator) handleCBOR(ctx context.Context, req []byte, status func(byte)) []byte {
	resp, err := a.handle(ctx, req, status)
	if err != nil {
		return []byte{byte(statusOf(err))}
	}
	return append([]byte{byte(ctap2.StatusOK)}, resp...)
}

func (a *Authenticator) handle(ctx context.Context, req []byte, status func(byte)) ([]byte, error) {
	if err := a.begin(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	switch {
	case len(req) == 0:
		return nil, ctap2.ErrInvalidLength
	case len(req) > a.cfg.MaxMsgSize:
		return nil, ctap2.ErrRequestTooLarge
	}
	cmd, params := ctap2.Command(req[0]), req[1:]
	a.endSequences(cmd)
	switch cmd {
	case ctap2.CmdGetInfo:
		return serve(ctx, a.getInfo, nil, status)
	case ctap2.CmdMakeCredential:
		return serve(ctx, a.makeCredential, params, status)
	case ctap2.CmdGetAssertion:
		return serve(ctx, a.getAssertion, params, status)
	case ctap2.CmdGetNextAssertion:
		return serve(ctx, a.getNextAssertion, nil, status)
	case ctap2.CmdReset:
		return serve(ctx, a.reset, nil, status)
	case ctap2.CmdSelection:
		return serve(ctx, a.selection, nil, status)
	case ctap2.CmdClientPIN:
		return serve(ctx, a.clientPIN, params, status)
	case ctap2.CmdCredentialManagement:
		return serve(ctx, a.credentialManagement, params, status)
	case ctap2.CmdCredentialMgmtPre:
		return serve(ctx, a.credentialMgmtPreview, params, status)
	case ctap2.CmdConfig:
		return serve(ctx, a.config, params, status)
	case ctap2.CmdLargeBlobs:
		return serve(ctx, a.largeBlobs, params, status)
	}
	return nil, ctap2.ErrInvalidCommand
}

// serve decodes params into a fresh Req (nil params: a command without any), runs
// fn and encodes its response; a nil response is the empty reply of reset and
// selection.
func serve[Req, Resp any](ctx context.Context, fn func(context.Context, *Req, func(byte)) (*Resp, error), params []byte, status func(byte)) ([]byte, error) {
	req := new(Req)
	if params != nil {
		if err := decodeParams(params, req); err != nil {
			return nil, err
		}
	}
	resp, err := fn(ctx, req, status)
	if err != nil || resp == nil {
		return nil, err
	}
	out, err := ctap2.Marshal(resp)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	return out, nil
}

// decodeParams maps decoding failures to the statuses CTAP 2.1 §8 asks for:
// no parameters at all is a missing parameter, a well-formed item of the wrong type
// CBOR_UNEXPECTED_TYPE, anything else (malformed, duplicate keys, indefinite
// lengths, tags, trailing bytes, nesting bombs) INVALID_CBOR.
func decodeParams(params []byte, v any) error {
	if len(params) == 0 {
		return ctap2.ErrMissingParameter
	}
	err := ctap2.Unmarshal(params, v)
	if err == nil {
		return nil
	}
	var typeErr *cbor.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return ctap2.ErrCBORUnexpectedType
	}
	return ctap2.ErrInvalidCBOR
}

// statusOf turns an engine error into its CTAP status; store and internal
// failures are CTAP1_ERR_OTHER.
func statusOf(err error) ctap2.StatusError {
	if s, ok := ctap2.StatusOf(err); ok && s != ctap2.StatusOK {
		return s
	}
	return ctap2.ErrOther
}

// locked runs one typed command for the Go API, under the command lock, with the
// same getNextAssertion bookkeeping as HandleCBOR.
func locked[Req, Resp any](a *Authenticator, ctx context.Context, cmd ctap2.Command, fn func(context.Context, *Req, func(byte)) (*Resp, error), req *Req) (*Resp, error) {
	if err := a.begin(); err != nil {
		return nil, err
	}
	defer a.mu.Unlock()
	a.endSequences(cmd)
	if req == nil {
		req = new(Req)
	}
	return fn(ctx, req, nil)
}

// endSequences ends the stateful sequences that cmd does not continue: any command
// but getNextAssertion ends a getAssertion sequence (CTAP 2.1 §6.3), any command but
// credentialManagement (0x0A or 0x41) an enumeration of credential management
// (§6.8), which then ends it itself unless cmd is its GetNext.
func (a *Authenticator) endSequences(cmd ctap2.Command) {
	if cmd != ctap2.CmdGetNextAssertion {
		a.next = nil
	}
	if cmd != ctap2.CmdCredentialManagement && cmd != ctap2.CmdCredentialMgmtPre {
		a.cm = nil
	}
}
