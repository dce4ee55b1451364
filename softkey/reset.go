package softkey

import (
	"context"
	"io"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// Reset answers authenticatorReset for Go callers.
func (a *Authenticator) Reset(ctx context.Context) error {
	_, err := locked(a, ctx, ctap2.CmdReset, a.reset, nil)
	return err
}

// Selection answers authenticatorSelection for Go callers.
func (a *Authenticator) Selection(ctx context.Context) error {
	_, err := locked(a, ctx, ctap2.CmdSelection, a.selection, nil)
	return err
}

// reset wipes every credential and replaces the master secret, which invalidates
// every sealed credential ID too; the PIN, its retries and the configuration go
// back to store.DefaultSettings, the large-blob array to the empty one, and the
// pinUvAuthToken and key agreement key are replaced. Like a USB key without a
// display it accepts the command only within ResetWindow of power-up (here: New),
// and only with a touch.
// The signature counter is kept: moving it back could let an RP accept a replay.
func (a *Authenticator) reset(ctx context.Context, _ *struct{}, status func(byte)) (*struct{}, error) {
	if a.cfg.Now().Sub(a.powerUp) > a.cfg.ResetWindow {
		return nil, ctap2.ErrNotAllowed
	}
	if err := a.userPresence(ctx, "", status); err != nil {
		return nil, err
	}
	secret := make([]byte, store.MasterSecretSize)
	if _, err := io.ReadFull(a.rnd, secret); err != nil {
		return nil, ctap2.ErrOther
	}
	sealer, err := newCredentialSealer(secret, a.rnd)
	if err != nil {
		return nil, ctap2.ErrOther
	}
	// Resident credentials go first: if the second write fails, none is left, and
	// repeating the reset replaces the secret that still opens sealed IDs.
	if err := a.st.DeleteAllCredentials(); err != nil {
		return nil, ctap2.ErrOther
	}
	if err := a.st.SetMasterSecret(secret); err != nil {
		return nil, ctap2.ErrOther
	}
	if err := a.resetPIN(); err != nil {
		return nil, err
	}
	// The large-blob array goes back to the empty one (the blobs were encrypted to
	// keys of credentials that are gone), and a write in progress is dropped.
	a.blob = largeBlobWrite{}
	if err := a.st.SetLargeBlobArray(nil); err != nil {
		return nil, ctap2.ErrOther
	}
	a.sealer = sealer
	a.signers.clear()
	a.meta.MasterSecret = secret
	return nil, nil
}

// selection is the touch that picks one of several keys (CTAP 2.1 §6.9).
func (a *Authenticator) selection(ctx context.Context, _ *struct{}, status func(byte)) (*struct{}, error) {
	return nil, a.userPresence(ctx, "", status)
}
