package conformance_test

import (
	"context"
	"fmt"
	"regexp"
	"time"

	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/fido-conformance/softtarget"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// Run the getInfo and makeCredential cases against an in-process softkey. For a
// real key, build the Target from any transport.Device and a ctap2.Client on it:
//
//	dev, err := registry.Open(ctx, "hid:/dev/hidraw3")
//	target := &conformance.Target{Device: dev, Client: ctap2.NewClient(dev)}
func ExampleRun() {
	ctx := context.Background()
	key, err := softtarget.New(ctx, store.NewMemory(store.Meta{}), softkey.Config{}, transport.DeviceInfo{URI: "soft:mem"})
	if err != nil {
		panic(err)
	}
	defer key.Close()

	results := conformance.Run(ctx, key.Target, conformance.Options{
		Only:        regexp.MustCompile(`^(GI|MC)-`),
		CaseTimeout: 30 * time.Second,
	})
	for _, s := range conformance.Summarize(results) {
		fmt.Printf("%s: %d failed\n", s.Area, s.Fail)
	}
	fmt.Println("all passed:", !conformance.Failed(results))
	// Output:
	// getInfo: 0 failed
	// makeCredential: 0 failed
	// all passed: true
}
