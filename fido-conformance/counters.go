package conformance

import "slices"

// mgCounts returns the signCount of n assertions of c, in order.
func mgCounts(t *T, c *mgCred, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		resp := mgAssert(t, c)
		out[i] = mgAuthData(t, "getAssertion", resp.AuthData).SignCount
	}
	return out
}

// mgSkipZeroCounters skips the case when every count is 0: the key does not
// implement signature counters, which WebAuthn §6.1.1 allows.
func mgSkipZeroCounters(t *T, counts ...uint32) {
	if !slices.ContainsFunc(counts, func(c uint32) bool { return c != 0 }) {
		t.Skipf("key does not implement signature counters (every signCount is 0)")
	}
}

func init() {
	register(
		Case{ID: "CN-1", Area: AreaCounters, Presence: true,
			Requirement: "CTAP 2.1 §6.2.2 step 12 (increment the signature counter); WebAuthn §6.1.1",
			Description: "signCount increases strictly between two assertions of the same credential",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("cn1"), false)
				counts := mgCounts(t, c, 2)
				mgSkipZeroCounters(t, append(counts, c.SignCount)...)
				if counts[1] <= counts[0] {
					t.Errorf("signCount of the second assertion: observed %d after %d, expected more than %d", counts[1], counts[0], counts[0])
				}
			}},
		Case{ID: "CN-2", Area: AreaCounters, Presence: true,
			Requirement: "WebAuthn §6.1.1 (the counter of a new credential, then incremented by each assertion)",
			Description: "a new credential's first assertion has a signCount above the one in its makeCredential authData",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("cn2"), false)
				counts := mgCounts(t, c, 1)
				mgSkipZeroCounters(t, c.SignCount, counts[0])
				t.Logf("makeCredential signCount %d, first assertion %d", c.SignCount, counts[0])
				if counts[0] <= c.SignCount {
					t.Errorf("signCount of the first assertion: observed %d, expected more than makeCredential's %d", counts[0], c.SignCount)
				}
			}},
		Case{ID: "CN-3", Area: AreaCounters, Presence: true,
			Requirement: "WebAuthn §6.1.1 (signCount 0 means the authenticator has no counter)",
			Description: "once a key shows a signature counter, no assertion carries signCount 0",
			Run: func(t *T) {
				mgCTAP2(t)
				c := mgMake(t, mgRPID("cn3"), false)
				counts := mgCounts(t, c, 3)
				mgSkipZeroCounters(t, append(counts, c.SignCount)...)
				for i, n := range counts {
					if n == 0 {
						t.Errorf("signCount of assertion %d: observed 0 (counts %v, makeCredential %d), expected non-zero from a key with counters", i+1, counts, c.SignCount)
					}
				}
			}},
		Case{ID: "CN-4", Area: AreaCounters, Presence: true,
			Requirement: "WebAuthn §6.1.1 (the counter never goes back); CTAP 2.1 §6.2.2 step 12",
			Description: "signCount keeps increasing across a power cycle",
			Run: func(t *T) {
				mgCTAP2(t)
				if t.Target().PowerCycle == nil {
					t.Skipf("the target cannot be power-cycled")
				}
				c := mgMake(t, mgRPID("cn4"), false)
				before := mgCounts(t, c, 1)[0]
				if err := t.Target().PowerCycle(t.Context()); err != nil {
					t.Fatalf("power cycle: %v", err)
				}
				after := mgCounts(t, c, 1)[0]
				mgSkipZeroCounters(t, c.SignCount, before, after)
				if after <= before {
					t.Errorf("signCount after a power cycle: observed %d, expected more than %d from before it", after, before)
				}
				t.Logf("signCount %d before, %d after the power cycle", before, after)
			}},
	)
}
