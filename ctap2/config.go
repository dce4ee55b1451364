package ctap2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// ConfigSubcommand is an authenticatorConfig subCommand (CTAP 2.1 §6.11).
type ConfigSubcommand uint

const (
	ConfigEnableEnterpriseAttestation ConfigSubcommand = 0x01
	ConfigToggleAlwaysUV              ConfigSubcommand = 0x02
	ConfigSetMinPINLength             ConfigSubcommand = 0x03
	ConfigVendorPrototype             ConfigSubcommand = 0xFF
)

// ConfigRequest is authenticatorConfig (0x0D). SubCommandParams holds the encoded
// parameters exactly as they are authenticated (ConfigAuthMessage).
type ConfigRequest struct {
	SubCommand        ConfigSubcommand `cbor:"1,keyasint,omitempty"`
	SubCommandParams  RawMessage       `cbor:"2,keyasint,omitempty"`
	PinUvAuthProtocol uint             `cbor:"3,keyasint,omitempty"`
	PinUvAuthParam    []byte           `cbor:"4,keyasint,omitempty"`
}

// SetMinPINLengthParams is the subCommandParams map of setMinPINLength. A zero
// NewMinPINLength is not sent (the minimum stays as it is).
type SetMinPINLengthParams struct {
	NewMinPINLength     uint     `cbor:"1,keyasint,omitempty"`
	MinPINLengthRPIDs   []string `cbor:"2,keyasint,omitempty"`
	ForceChangePIN      bool     `cbor:"3,keyasint,omitempty"`
	PINComplexityPolicy *bool    `cbor:"4,keyasint,omitempty"` // [2.3]
}

// ConfigAuthMessage is what an authenticatorConfig pinUvAuthParam authenticates:
// 32×0xFF || 0x0D || subCommand || the encoded subCommandParams, if any (CTAP 2.1 §6.11).
func ConfigAuthMessage(sub ConfigSubcommand, params []byte) []byte {
	msg := bytes.Repeat([]byte{0xff}, 32)
	msg = append(msg, byte(CmdConfig), byte(sub))
	return append(msg, params...)
}

// config sends one subcommand. params (nil: none) is encoded once and those exact
// bytes are both sent and authenticated. A nil token sends no pinUvAuthParam, which
// authenticators accept only without a PIN and with alwaysUv off.
func (c *Client) config(ctx context.Context, token *PINToken, sub ConfigSubcommand, params any) error {
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	if v, _ := info.Option("authnrCfg"); !v {
		return fmt.Errorf("the authenticator does not support authenticatorConfig (no authnrCfg option): %w", errors.ErrUnsupported)
	}
	req := ConfigRequest{SubCommand: sub}
	if params != nil {
		enc, err := Marshal(params)
		if err != nil {
			return fmt.Errorf("encoding subCommandParams: %w", err)
		}
		req.SubCommandParams = enc
	}
	if token != nil {
		req.PinUvAuthProtocol = token.Protocol.Version()
		req.PinUvAuthParam = token.Param(ConfigAuthMessage(sub, req.SubCommandParams))
	}
	return c.Call(ctx, CmdConfig, &req, nil)
}

// EnableEnterpriseAttestation turns enterprise attestation on (option ep becomes true).
// token needs the acfg permission; nil when the authenticator is not protected.
func (c *Client) EnableEnterpriseAttestation(ctx context.Context, token *PINToken) error {
	if err := c.config(ctx, token, ConfigEnableEnterpriseAttestation, nil); err != nil {
		return fmt.Errorf("enableEnterpriseAttestation: %w", err)
	}
	c.dropInfoAfterConfig()
	return nil
}

// ToggleAlwaysUV flips the alwaysUv option. token needs the acfg permission; nil when
// the authenticator is not protected.
func (c *Client) ToggleAlwaysUV(ctx context.Context, token *PINToken) error {
	if err := c.config(ctx, token, ConfigToggleAlwaysUV, nil); err != nil {
		return fmt.Errorf("toggleAlwaysUv: %w", err)
	}
	c.dropInfoAfterConfig()
	return nil
}

// SetMinPINLength raises the minimum PIN length to newMin (0: keep it), lets the RPs in
// rpIDs see it through the minPinLength extension, and with forceChange makes the user
// change the PIN before its next use. The minimum can only grow until a reset. token
// needs the acfg permission; nil when the authenticator is not protected.
func (c *Client) SetMinPINLength(ctx context.Context, token *PINToken, newMin uint, rpIDs []string, forceChange bool) error {
	var params any
	if newMin != 0 || len(rpIDs) > 0 || forceChange {
		params = &SetMinPINLengthParams{NewMinPINLength: newMin, MinPINLengthRPIDs: rpIDs, ForceChangePIN: forceChange}
	}
	if err := c.config(ctx, token, ConfigSetMinPINLength, params); err != nil {
		return fmt.Errorf("setMinPINLength: %w", err)
	}
	c.dropInfoAfterConfig()
	return nil
}

// dropInfoAfterConfig drops the cached getInfo after a change it reports (options,
// minPINLength, forcePINChange); the next Info asks again.
func (c *Client) dropInfoAfterConfig() {
	c.mu.Lock()
	c.info = nil
	c.mu.Unlock()
}
