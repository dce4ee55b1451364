package ctap2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// configMsg is the authenticated message, built by hand: 32×ff || 0d || sub || params.
func configMsg(sub byte, params string) []byte {
	return unhex(strings.Repeat("ff", 32) + fmt.Sprintf("0d %02x", sub) + params)
}

func TestConfigRequests(t *testing.T) {
	ctx := context.Background()
	info := infoReply(t, 0, "authnrCfg", "setMinPINLength")
	// {1: 6, 2: ["example.com"], 3: true}
	minParams := "a3 01 06 02 81 6b 6578616d706c652e636f6d 03 f5"
	for _, tok := range []*PINToken{cmToken1, cmToken2} {
		proto := fmt.Sprintf("%02x", tok.Protocol.Version())
		c, d := scriptClient(t, info,
			exchange{unhex("0d a3 01 01 03" + proto + "04" + paramHex(tok, configMsg(1, ""))), okReply(nil)},
			exchange{unhex("04"), okReply(info)}, // the cached getInfo was dropped
			exchange{unhex("0d a3 01 02 03" + proto + "04" + paramHex(tok, configMsg(2, ""))), okReply(nil)},
			exchange{unhex("04"), okReply(info)},
			exchange{unhex("0d a4 01 03 02" + minParams + "03" + proto + "04" + paramHex(tok, configMsg(3, joinHex(minParams)))), okReply(nil)},
			exchange{unhex("04"), okReply(info)},
			// Nothing to change: no subCommandParams at all, and none authenticated.
			exchange{unhex("0d a3 01 03 03" + proto + "04" + paramHex(tok, configMsg(3, ""))), okReply(nil)},
			exchange{unhex("04"), okReply(info)},
			// Only the RP list.
			exchange{unhex("0d a4 01 03 02 a1 02 81 61 61 03" + proto + "04" + paramHex(tok, configMsg(3, "a1 02 81 61 61"))), okReply(nil)})
		if err := c.EnableEnterpriseAttestation(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if err := c.ToggleAlwaysUV(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if err := c.SetMinPINLength(ctx, tok, 6, []string{"example.com"}, true); err != nil {
			t.Fatal(err)
		}
		if err := c.SetMinPINLength(ctx, tok, 0, nil, false); err != nil {
			t.Fatal(err)
		}
		if err := c.SetMinPINLength(ctx, tok, 0, []string{"a"}, false); err != nil {
			t.Fatal(err)
		}
		d.done()
	}
}

// TestConfigWithoutToken: an unprotected authenticator gets no keys 3 and 4.
func TestConfigWithoutToken(t *testing.T) {
	ctx := context.Background()
	info := infoReply(t, 0, "authnrCfg")
	c, d := scriptClient(t, info,
		exchange{unhex("0d a1 01 02"), okReply(nil)},
		exchange{unhex("04"), okReply(info)},
		exchange{unhex("0d a2 01 03 02 a1 01 08"), okReply(nil)},
		exchange{unhex("04"), okReply(info)},
		exchange{unhex("0d a1 01 01"), statusReply(ErrPUATRequired)})
	if err := c.ToggleAlwaysUV(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.SetMinPINLength(ctx, nil, 8, nil, false); err != nil {
		t.Fatal(err)
	}
	if err := c.EnableEnterpriseAttestation(ctx, nil); !errors.Is(err, ErrPUATRequired) {
		t.Errorf("PUAT_REQUIRED: %v", err)
	}
	d.done()
}

func TestConfigUnsupported(t *testing.T) {
	c, d := scriptClient(t, infoReply(t, 0, "clientPin"))
	if err := c.ToggleAlwaysUV(context.Background(), cmToken2); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("no authnrCfg: %v", err)
	}
	d.done()
}

func TestConfigAuthMessage(t *testing.T) {
	want := append(bytes.Repeat([]byte{0xff}, 32), 0x0d, 0x03, 0xa1, 0x01, 0x08)
	if got := ConfigAuthMessage(ConfigSetMinPINLength, unhex("a1 01 08")); !bytes.Equal(got, want) {
		t.Errorf("got %x", got)
	}
}
