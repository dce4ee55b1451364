package ctap2_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// A makeCredential and a getAssertion protected by PIN tokens, with hmac-secret.
// The softkey stands in for a security key; any transport.Device works the same.
func ExamplePINToken_Protect() {
	ctx := context.Background()
	key, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		panic(err)
	}
	defer key.Close()
	c := ctap2.NewClient(softDevice{key})
	if err := c.SetPIN(ctx, "1234"); err != nil {
		panic(err)
	}

	// A token with the mc permission for this RP; one makeCredential uses it up.
	tok, err := c.PINToken(ctx, "1234", ctap2.PermMakeCredential, "example.com")
	if err != nil {
		panic(err)
	}
	cdh := sha256.Sum256([]byte("clientDataJSON"))
	ext, _ := (&ctap2.MakeCredentialExtensions{HMACSecret: true}).Map()
	mc := &ctap2.MakeCredentialRequest{
		ClientDataHash:   cdh[:],
		RP:               &ctap2.RPEntity{ID: "example.com"},
		User:             &ctap2.UserEntity{ID: []byte{1}, Name: "alice"},
		PubKeyCredParams: []ctap2.CredentialParam{{Type: ctap2.CredentialType, Alg: ctap2.AlgES256}},
		Extensions:       ext,
	}
	tok.ProtectMakeCredential(mc) // pinUvAuthParam = authenticate(token, clientDataHash)
	cred, err := c.MakeCredential(ctx, mc)
	if err != nil {
		panic(err)
	}
	credID, _, _ := cred.CredentialKey()

	// A wrong PIN reports the attempts left.
	_, err = c.PINToken(ctx, "0000", ctap2.PermGetAssertion, "example.com")
	var pe *ctap2.PINError
	fmt.Println(errors.As(err, &pe), pe.Retries, errors.Is(err, ctap2.ErrPINInvalid))

	// getAssertion with a fresh ga token and an hmac-secret salt.
	tok, err = c.PINToken(ctx, "1234", ctap2.PermGetAssertion, "example.com")
	if err != nil {
		panic(err)
	}
	hs, err := c.NewHMACSecret(ctx)
	if err != nil {
		panic(err)
	}
	in, err := hs.Input(ctap2.PRFSalt([]byte("my PRF input")), nil)
	if err != nil {
		panic(err)
	}
	gext, _ := (&ctap2.GetAssertionExtensions{HMACSecret: in}).Map()
	ga := &ctap2.GetAssertionRequest{
		RPID:           "example.com",
		ClientDataHash: cdh[:],
		AllowList:      []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: credID}},
		Extensions:     gext,
	}
	tok.ProtectGetAssertion(ga)
	as, err := c.GetAssertion(ctx, ga)
	if err != nil {
		panic(err)
	}
	ad, _ := ctap2.ParseAuthData(as.AuthData)
	out, _ := ctap2.ParseExtensionOutputs(ad.Extensions)
	secret, _, err := hs.Outputs(out.HMACSecretOutput)
	fmt.Println(ad.Flags, len(secret), err)
	// Output:
	// true 7 true
	// UP,UV,ED 32 <nil>
}
