package expose

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/internal/pcsctest"
	"github.com/ctapkit/ctapkit/softkey"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pcsctest.StopShared()
	os.Exit(code)
}

// servePCSCCard puts auth's Card into the shared private pcscd's reader and
// returns the reader's name, the environment entry that points PC/SC clients at
// that pcscd, and a function that takes the card out again.
func servePCSCCard(t *testing.T, auth *softkey.Authenticator) (reader, env string, stop func()) {
	t.Helper()
	d := pcsctest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := DialVPCD(ctx, d.CardAddr())
	if err != nil {
		t.Fatalf("connecting the card to vpcd: %v (pcscd log %s)", err, d.Log)
	}
	served := make(chan error, 1)
	go func() { served <- ServeVPCD(context.Background(), conn, NewCard(auth, CardOptions{})) }()
	return d.Reader, d.Env(), func() {
		conn.Close()
		<-served
		// pcscd sees the card leave on its next poll of vpcd (~400 ms); the next
		// test's card must not arrive before that.
		time.Sleep(time.Second)
	}
}

// TestPythonFido2OverPCSC: python-fido2's PC/SC device class (pyscard →
// libpcsclite → pcscd → vpcd) drives the softkey's card through the same
// scenarios as over CTAPHID: its own ISO 7816 framing (SELECT without Le, P1 0x80
// NFCCTAP_MSG, 250-byte CLA 0x90 chains, GET RESPONSE, 0x9100 polling).
func TestPythonFido2OverPCSC(t *testing.T) {
	for _, scenario := range []string{"basic", "pin1", "pin2", "credman", "config", "blobs"} {
		t.Run(scenario, func(t *testing.T) {
			auth := newPythonSoftkey(t, softkey.Config{})
			if scenario == "config" {
				auth = newEnterpriseSoftkey(t)
			}
			runPython(t, auth, pythonOptions{PCSC: true}, "pyfido2_host.py", scenario)
		})
	}
}
