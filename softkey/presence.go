package softkey

import (
	"context"
	"errors"

	"github.com/ctapkit/ctapkit/ctap2"
)

// statusUPNeeded is the keepalive status "waiting for user presence" (CTAPHID
// KEEPALIVE, NFC 0x9100); the transport that serves the softkey relays it.
const statusUPNeeded = 0x02

// userPresence asks for a touch according to the presence policy. A declined touch
// is CTAP2_ERR_OPERATION_DENIED; a host CANCEL is CTAP2_ERR_KEEPALIVE_CANCEL; no
// answer within PresenceTimeout is CTAP2_ERR_USER_ACTION_TIMEOUT.
func (a *Authenticator) userPresence(ctx context.Context, rpID string, status func(byte)) error {
	if ctx.Err() != nil {
		return ctap2.ErrKeepaliveCancel
	}
	ask := a.cfg.PresenceFunc
	if ask == nil {
		if a.cfg.Presence == PresenceDeny {
			return ctap2.ErrOperationDenied
		}
		return nil
	}
	if status != nil {
		status(statusUPNeeded)
	}
	wait, cancel := context.WithTimeout(ctx, a.cfg.PresenceTimeout)
	defer cancel()
	ok, err := ask(wait, rpID)
	switch {
	case ctx.Err() != nil:
		a.cfg.Faults.lateCancel()
		return ctap2.ErrKeepaliveCancel
	case errors.Is(wait.Err(), context.DeadlineExceeded):
		return ctap2.ErrUserActionTimeout
	case err != nil:
		return ctap2.ErrOperationDenied
	case !ok:
		return ctap2.ErrOperationDenied
	}
	return nil
}
