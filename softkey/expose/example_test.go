package expose_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// A softkey in a Go test, as the README shows it: register, sign in, verify.
func ExampleInProcess() {
	ctx := context.Background()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{}) // presence: auto
	if err != nil {
		log.Fatal(err)
	}
	dev, err := expose.InProcess(ctx, auth, expose.InProcessOptions{}) // real CTAPHID framing
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close() // also closes auth and its store
	client := ctap2.NewClient(dev)

	cdh := sha256.Sum256([]byte("client data"))
	mc, err := client.MakeCredential(ctx, &ctap2.MakeCredentialRequest{
		ClientDataHash:   cdh[:],
		RP:               &ctap2.RPEntity{ID: "example.com"},
		User:             &ctap2.UserEntity{ID: []byte{1, 2, 3}, Name: "alice"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
	})
	if err != nil {
		log.Fatal(err)
	}
	credID, pub, err := mc.CredentialKey()
	if err != nil {
		log.Fatal(err)
	}
	ga, err := client.GetAssertion(ctx, &ctap2.GetAssertionRequest{
		RPID:           "example.com",
		ClientDataHash: cdh[:],
		AllowList:      []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: credID}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := ga.Verify(pub, cdh[:]); err != nil { // signature over authData || clientDataHash
		log.Fatal(err)
	}
	fmt.Println("signature verified")
	// Output: signature verified
}
