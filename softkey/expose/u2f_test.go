package expose

import (
	"testing"

	"github.com/ctapkit/ctapkit/softkey"
)

// TestPythonFido2U2F: python-fido2's CTAP1 code (its APDU framing, registration and
// signature verification, fido-u2f attestation) drives the softkey's U2F side over
// CTAPHID_MSG, and moves credentials between U2F and CTAP2 in both directions
// (testdata/pyfido2_u2f.py).
func TestPythonFido2U2F(t *testing.T) {
	auth := newPythonSoftkey(t, softkey.Config{})
	runPython(t, auth, pythonOptions{}, "pyfido2_u2f.py")
}
