package main

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ctapkit/ctapkit/internal/pcsctest"
)

// TestPCSCScripts runs the scripts in testdata/pcsc through the real PC/SC stack:
// a private pcscd with a vpcd reader, `ctapkit softkey serve --pcsc` as the card,
// and ctapkit commands on -d pcsc:READER. $VPCD is where the card connects,
// $READER the reader's name. Skipped (with the reason) where pcscd cannot run,
// except on CI.
func TestPCSCScripts(t *testing.T) {
	d := pcsctest.Shared(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/pcsc",
		Setup: func(e *testscript.Env) error {
			e.Setenv("HOME", e.WorkDir)
			e.Setenv("XDG_DATA_HOME", e.WorkDir+"/data")
			e.Setenv("NO_COLOR", "1")
			e.Setenv("PCSCLITE_CSOCK_NAME", d.Socket)
			e.Setenv("VPCD", d.CardAddr())
			e.Setenv("READER", d.Reader)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"jsonget":  cmdJSONGet,
			"checksig": cmdCheckSig,
			"exits":    cmdExits,
			"jsonenv":  cmdJSONEnv,
			"jsongt":   cmdJSONGreater,
		},
	})
}
