package conformance

import (
	"bytes"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
)

// authenticatorReset cases (CTAP 2.1 §6.6). The area runs last: a reset wipes
// every credential, the PIN (Target.PIN is cleared) and the settings.

func init() {
	register(
		Case{ID: "RS-1", Area: AreaReset, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §6.6 (reset within 10 s of power-up)",
			Description: "reset right after a power cycle succeeds and removes credentials, the PIN and large blobs",
			Run: func(t *T) {
				if t.Target().PowerCycle == nil {
					t.Skipf("the target cannot power-cycle the key (no Target.PowerCycle), and reset is only accepted right after power-up")
				}
				// Something to lose: a discoverable and a non-discoverable credential
				// (and a large blob), made without cleanups, since the reset is the
				// cleanup.
				rp := freshRPID("rs1")
				ids := [][]byte{credBeforeReset(t, rp, "rs1", true), credBeforeReset(t, rp, "rs1", false)}
				largeBlobs, _ := t.Info().Option("largeBlobs")
				if largeBlobs && pinKnown(t) {
					ser := lbWithEntry(t, ctap2.InitialLargeBlobArray(), 64)
					t.Must("writing a large blob before the reset",
						t.Client().WriteSerializedLargeBlobArray(t.Context(), t.PINToken(ctap2.PermLargeBlobWrite, ""), ser))
				}

				t.Must("power cycle", t.Target().PowerCycle(t.Context()))
				err := t.Client().Reset(t.Context())
				if !t.ExpectStatus("reset right after a power cycle", err, ctap2.StatusOK) {
					return
				}
				t.Target().PIN = ""

				info := refreshInfo(t)
				if set, supported := info.Option("clientPin"); supported && set {
					t.Errorf("getInfo clientPin after reset: observed true, expected false (no PIN)")
				}
				if _, ok := info.Option("clientPin"); ok {
					if n, _ := pinRetries(t); n != ctap2.MaxPINRetries {
						t.Errorf("pinRetries after reset: observed %d, expected %d", n, ctap2.MaxPINRetries)
					}
				}
				for i, id := range ids {
					_, err := t.Client().GetAssertion(t.Context(), silent(assertRequest(rp, id)))
					t.ExpectStatus([]string{"getAssertion for the discoverable credential after reset", "getAssertion for the non-discoverable credential after reset"}[i], err, ctap2.ErrNoCredentials)
				}
				_, err = t.Client().GetAssertion(t.Context(), silent(assertRequest(rp)))
				t.ExpectStatus("getAssertion without allowList after reset", err, ctap2.ErrNoCredentials)
				if largeBlobs {
					if ser := lbRead(t); !bytes.Equal(ser, ctap2.InitialLargeBlobArray()) {
						t.Errorf("large-blob array after reset: observed %x, expected the empty array %x", ser, ctap2.InitialLargeBlobArray())
					}
				}
			}},
		Case{ID: "RS-2", Area: AreaReset, Destructive: true, Presence: true, Requirement: "CTAP 2.1 §6.6 (reset refused later than 10 s after power-up)",
			Description: "reset long after power-up is refused with NOT_ALLOWED",
			Run: func(t *T) {
				// The window is measured on the key's own clock from power-up.
				// Without control of that clock the suite cannot know how long ago
				// a key it did not power-cycle came up, and waiting out the window
				// would cost every run more than 10 s and still wipe the key if it
				// is wrongly accepted.
				if t.Target().AdvanceClock == nil {
					t.Skipf("needs control of the key's clock to get past the reset window, which the target does not offer")
				}
				// Something the refused reset must leave alone.
				rp := freshRPID("rs2")
				id := credBeforeReset(t, rp, "rs2", false)
				t.Target().AdvanceClock(11 * time.Second)
				err := t.Client().Reset(t.Context())
				if !t.ExpectStatus("reset 11 s after power-up", err, ctap2.ErrNotAllowed) {
					if err == nil {
						t.Target().PIN = "" // it did wipe the key
					}
					return
				}
				_, err = t.Client().GetAssertion(t.Context(), silent(assertRequest(rp, id)))
				t.ExpectStatus("getAssertion after the refused reset", err, ctap2.StatusOK)
			}},
	)
}

// credBeforeReset makes a credential for a reset case to check afterwards and
// returns its ID. It registers no cleanup: the reset (or its refusal) is the
// point.
func credBeforeReset(t *T, rp, user string, rk bool) []byte {
	req := credRequest(rp, testUser(user), rk, nil)
	if tok := mcToken(t, rp, rk); tok != nil {
		tok.ProtectMakeCredential(req)
	}
	resp, err := t.Client().MakeCredential(t.Context(), req)
	t.Must("makeCredential before the reset", err)
	ad, err := resp.ParseAuthData()
	t.Must("parsing authData", err)
	if ad.Attested == nil {
		t.Fatalf("makeCredential authData: observed no attested credential data, expected it")
	}
	return ad.Attested.CredentialID
}
