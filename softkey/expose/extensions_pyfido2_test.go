package expose

import (
	"fmt"
	"testing"

	"github.com/ctapkit/ctapkit/softkey"
)

// TestPythonFido2Extensions: python-fido2's hmac-secret code (key agreement, salt
// encryption and output decryption by its own PIN protocols 1 and 2) and its CTAP2
// parser against the softkey's extensions: hmac-secret outputs differ with and
// without UV and are stable, credProtect 3 stays hidden without UV, credBlob and
// largeBlobKey round-trip (testdata/pyfido2_extensions.py).
func TestPythonFido2Extensions(t *testing.T) {
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprintf("protocol%d", v), func(t *testing.T) {
			auth := newPythonSoftkey(t, softkey.Config{})
			runPython(t, auth, pythonOptions{}, "pyfido2_extensions.py", fmt.Sprint(v))
		})
	}
}
