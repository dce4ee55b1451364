package softkey

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// TestRoundTrip makes a credential of every algorithm, resident and not, verifies
// the packed self attestation with ctap2's verifier and an assertion with the
// attested key.
func TestRoundTrip(t *testing.T) {
	for _, alg := range []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA, ctap2.AlgES384} {
		for _, rk := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/rk=%v", alg, rk), func(t *testing.T) {
				st := store.NewMemory(store.Meta{})
				aaguid := st.Meta().AAGUID
				a := newSoftkeyOn(t, st, Config{})
				userID := []byte("user-1")
				req := mcRequest("a.example", userID, alg)
				if rk {
					req = residentRequest("a.example", userID, alg)
				}

				st2, body := call(t, a, ctap2.CmdMakeCredential, req)
				wantStatus(t, "makeCredential", st2, ctap2.StatusOK)
				if keys := rawMap[int](t, body); len(keys) != 3 {
					t.Errorf("makeCredential reply has keys %v, want exactly fmt, authData, attStmt", keys)
				}
				var resp ctap2.MakeCredentialResponse
				if err := ctap2.Unmarshal(body, &resp); err != nil {
					t.Fatal(err)
				}
				if resp.Fmt != ctap2.FormatPacked {
					t.Errorf("fmt %q, want packed", resp.Fmt)
				}
				res, err := resp.VerifyAttestation(req.ClientDataHash)
				if err != nil {
					t.Fatalf("attestation: %v", err)
				}
				if res.Type != ctap2.AttestationSelf {
					t.Errorf("attestation type %v, want self", res.Type)
				}
				if _, err := resp.VerifyAttestation(hashOf("another challenge")); err == nil {
					t.Error("attestation verifies over a different clientDataHash")
				}
				ad, err := resp.ParseAuthData()
				if err != nil {
					t.Fatal(err)
				}
				if ad.Flags != ctap2.FlagUP|ctap2.FlagAT {
					t.Errorf("makeCredential flags %v, want UP,AT", ad.Flags)
				}
				if ad.RPIDHash != ctap2.RPIDHash("a.example") {
					t.Error("makeCredential rpIdHash is not SHA-256(rp.id)")
				}
				if ad.Attested.AAGUID != aaguid || a.AAGUID() != aaguid {
					t.Errorf("attested AAGUID %x, store's %x", ad.Attested.AAGUID, aaguid)
				}
				credID, key, err := resp.CredentialKey()
				if err != nil {
					t.Fatal(err)
				}
				if key.Alg != alg {
					t.Errorf("credential key alg %v, want %v", key.Alg, alg)
				}
				if len(credID) > maxCredentialIDLength {
					t.Errorf("credential ID of %d bytes exceeds the advertised %d", len(credID), maxCredentialIDLength)
				}
				n, _ := st.CountCredentials()
				if want := map[bool]int{false: 0, true: 1}[rk]; n != want {
					t.Errorf("store holds %d credentials, want %d", n, want)
				}

				ga := gaRequest("a.example", credID)
				gresp, gad := getAssertion(t, a, ga)
				if err := gresp.Verify(key, ga.ClientDataHash); err != nil {
					t.Fatalf("assertion signature: %v", err)
				}
				if err := gresp.Verify(key, hashOf("other")); err == nil {
					t.Error("assertion verifies over a different clientDataHash")
				}
				if gad.Flags != ctap2.FlagUP {
					t.Errorf("getAssertion flags %v, want UP", gad.Flags)
				}
				if gad.RPIDHash != ctap2.RPIDHash("a.example") {
					t.Error("getAssertion rpIdHash is not SHA-256(rpId)")
				}
				if gad.SignCount <= ad.SignCount {
					t.Errorf("signCount %d after makeCredential's %d", gad.SignCount, ad.SignCount)
				}
				if !bytes.Equal(gresp.Credential.ID, credID) {
					t.Errorf("assertion credential %x, want %x", gresp.Credential.ID, credID)
				}
				if gresp.NumberOfCredentials != 0 {
					t.Errorf("numberOfCredentials %d with an allowList", gresp.NumberOfCredentials)
				}
				switch {
				case rk && (gresp.User == nil || !bytes.Equal(gresp.User.ID, userID)):
					t.Errorf("resident assertion user %+v, want id %q", gresp.User, userID)
				case !rk && gresp.User != nil:
					t.Errorf("non-resident assertion carries a user %+v", gresp.User)
				}

				if rk {
					// Discoverable: the same credential without an allowList.
					dresp, _ := getAssertion(t, a, gaRequest("a.example"))
					if !bytes.Equal(dresp.Credential.ID, credID) {
						t.Errorf("discoverable assertion credential %x, want %x", dresp.Credential.ID, credID)
					}
					if err := dresp.Verify(key, hashOf("ga a.example")); err != nil {
						t.Errorf("discoverable assertion signature: %v", err)
					}
				}
			})
		}
	}
}

// TestGoAPI checks that the typed methods behave like HandleCBOR.
func TestGoAPI(t *testing.T) {
	a := newSoftkey(t, Config{})
	ctx := t.Context()
	req := residentRequest("a.example", []byte("u"), ctap2.AlgEdDSA)
	resp, err := a.MakeCredential(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	id, key, err := resp.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	ga := gaRequest("a.example", id)
	gresp, err := a.GetAssertion(ctx, ga)
	if err != nil {
		t.Fatal(err)
	}
	if err := gresp.Verify(key, ga.ClientDataHash); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetAssertion(ctx, gaRequest("b.example", id)); err != ctap2.ErrNoCredentials {
		t.Errorf("cross-RP GetAssertion: %v, want %v", err, ctap2.ErrNoCredentials)
	}
	if _, err := a.GetNextAssertion(ctx); err != ctap2.ErrNotAllowed {
		t.Errorf("GetNextAssertion: %v, want %v", err, ctap2.ErrNotAllowed)
	}
	i, err := a.Info()
	if err != nil {
		t.Fatal(err)
	}
	if aaguid := a.AAGUID(); !bytes.Equal(i.AAGUID, aaguid[:]) {
		t.Errorf("Info AAGUID %x, want %x", i.AAGUID, a.AAGUID())
	}
	if err := a.Selection(ctx); err != nil {
		t.Errorf("Selection: %v", err)
	}
	if err := a.Reset(ctx); err != nil {
		t.Errorf("Reset: %v", err)
	}
	if _, err := a.GetAssertion(ctx, ga); err != ctap2.ErrNoCredentials {
		t.Errorf("GetAssertion after Reset: %v, want %v", err, ctap2.ErrNoCredentials)
	}
}
