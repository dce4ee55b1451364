// Command ctapkit talks to FIDO2 security keys and to ctapkit's software authenticator:
// list and inspect keys, register and assert against any relying party, manage the
// softkey used in CI.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], systemStreams()))
}
