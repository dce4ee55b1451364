package expose

import (
	"context"
	"errors"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// TestInProcessU2FOnly: served as a U2F-only key, the softkey announces no CBOR,
// refuses CBOR with CTAPHID_ERR_INVALID_CMD and still answers U2F.
func TestInProcessU2FOnly(t *testing.T) {
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dev, err := InProcess(ctx, auth, InProcessOptions{U2FOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	caps := dev.(interface{ Capabilities() byte }).Capabilities()
	if caps&ctaphid.CapCBOR != 0 || caps&ctaphid.CapNMSG != 0 {
		t.Errorf("capabilities %#02x: want MSG without CBOR", caps)
	}
	_, err = dev.Transact(ctx, transport.CmdCBOR, []byte{byte(ctap2.CmdGetInfo)})
	if !errors.Is(err, ctaphid.ErrInvalidCmd) || !errors.Is(err, transport.ErrUnsupportedCommand) {
		t.Errorf("CBOR on a U2F-only key: %v", err)
	}
	if v, err := ctap1.NewClient(dev).Version(ctx); err != nil || v != ctap1.Version {
		t.Errorf("U2F version %q, %v", v, err)
	}
	if !ctap2.NewClient(dev).U2FOnly(ctx) {
		t.Error("the host does not see a U2F-only key")
	}
}

// TestPythonFido2U2FOnly: python-fido2's WebAuthn client sees the softkey served as a
// U2F-only key as one, falls back to CTAP1, and registers and signs in through it
// (testdata/pyfido2_u2fonly.py).
func TestPythonFido2U2FOnly(t *testing.T) {
	auth := newPythonSoftkey(t, softkey.Config{})
	runPython(t, auth, pythonOptions{U2FOnly: true}, "pyfido2_u2fonly.py")
}
