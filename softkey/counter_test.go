package softkey

import (
	"math"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
)

// TestCounterIncreases: one global counter, strictly increasing over makeCredential,
// getAssertion and getNextAssertion, whatever the credential.
func TestCounterIncreases(t *testing.T) {
	clock := newClock()
	a := newSoftkey(t, Config{Now: clock.Now})
	var counts []uint32
	add := func(ad *ctap2.AuthData) { counts = append(counts, ad.SignCount) }

	c1 := makeCredential(t, a, mcRequest("a.example", []byte("u1")))
	add(c1.auth)
	c2 := makeCredential(t, a, residentRequest("b.example", []byte("u2"), ctap2.AlgEdDSA))
	add(c2.auth)
	for range 3 {
		_, ad := getAssertion(t, a, gaRequest("a.example", c1.id))
		add(ad)
		_, ad = getAssertion(t, a, gaRequest("b.example", c2.id))
		add(ad)
	}
	for _, acc := range makeAccounts(t, a, clock, "c.example", 2) {
		add(acc.auth)
	}
	_, ad := getAssertion(t, a, gaRequest("c.example"))
	add(ad)
	_, ad = getNextAssertion(t, a)
	add(ad)
	for i := 1; i < len(counts); i++ {
		if counts[i] <= counts[i-1] {
			t.Fatalf("signCounts %v are not strictly increasing", counts)
		}
	}
	if counts[0] == 0 {
		t.Error("first signCount is 0, which means \"no counter\" to an RP")
	}
}

// TestCounterAfterClose: a clean shutdown writes back the exact value, so the next
// run continues right above it.
func TestCounterAfterClose(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{})
	c := makeCredential(t, a, mcRequest("a.example", []byte("u")))
	var last uint32
	for range 5 {
		last = signCountOf(t, a, "a.example", c.id)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newSoftkeyOn(t, st, Config{})
	if got := signCountOf(t, b, "a.example", c.id); got != last+1 {
		t.Errorf("first signCount after a restart %d, want %d", got, last+1)
	}
}

// TestCounterAfterCrash: without Close the counter resumes above the reserved
// ceiling, so no value is ever handed out twice or goes backwards.
func TestCounterAfterCrash(t *testing.T) {
	for _, n := range []int{0, 1, counterBlock - 1, counterBlock, counterBlock + 1, 2*counterBlock + 5} {
		st := persistentStore()
		a := newSoftkeyOn(t, st, Config{})
		c := makeCredential(t, a, mcRequest("a.example", []byte("u")))
		highest := c.auth.SignCount
		for range n {
			highest = signCountOf(t, a, "a.example", c.id)
		}
		// Crash: a is abandoned without Close; a new run opens the same state.
		b := newSoftkeyOn(t, st, Config{})
		got := signCountOf(t, b, "a.example", c.id)
		if got <= highest {
			t.Errorf("after %d signatures and a crash: signCount %d, not above %d", n+1, got, highest)
		}
		if got > highest+counterBlock+1 {
			t.Errorf("after %d signatures and a crash: signCount %d skips more than a block past %d", n+1, got, highest)
		}
		// And the second run's own crash is survived the same way.
		again := newSoftkeyOn(t, st, Config{})
		if g := signCountOf(t, again, "a.example", c.id); g <= got {
			t.Errorf("after a second crash: signCount %d, not above %d", g, got)
		}
	}
}

// TestCounterCeilingWrites: the persisted ceiling is written once per counterBlock
// signatures, not per signature.
func TestCounterCeilingWrites(t *testing.T) {
	st := persistentStore()
	a := newSoftkeyOn(t, st, Config{})
	c := makeCredential(t, a, mcRequest("a.example", []byte("u"), ctap2.AlgEdDSA))
	const signatures = 3*counterBlock + 10 // including the makeCredential
	for range signatures - 1 {
		signCountOf(t, a, "a.example", c.id)
	}
	writes := st.ceilingWrites.Load()
	if most := int64((signatures + counterBlock - 1) / counterBlock); writes > most || writes == 0 {
		t.Errorf("%d ceiling writes for %d signatures, want 1..%d", writes, signatures, most)
	}
	ceiling, _ := st.CounterCeiling()
	if ceiling < signatures {
		t.Errorf("persisted ceiling %d is below the %d values handed out", ceiling, signatures)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := st.ceilingWrites.Load(); got != writes+1 {
		t.Errorf("Close made %d ceiling writes, want 1", got-writes)
	}
	if ceiling, _ := st.CounterCeiling(); ceiling != signatures {
		t.Errorf("ceiling after Close %d, want the exact count %d", ceiling, signatures)
	}
}

// TestCounterTop: at the top of the range the counter sticks at MaxUint32 instead
// of wrapping to small values an RP would accept again.
func TestCounterTop(t *testing.T) {
	st := persistentStore()
	if err := st.SetCounterCeiling(math.MaxUint32 - 2); err != nil {
		t.Fatal(err)
	}
	a := newSoftkeyOn(t, st, Config{})
	c := makeCredential(t, a, mcRequest("a.example", []byte("u")))
	want := []uint32{math.MaxUint32, math.MaxUint32, math.MaxUint32}
	if c.auth.SignCount != math.MaxUint32-1 {
		t.Errorf("signCount %d, want %d", c.auth.SignCount, uint32(math.MaxUint32-1))
	}
	for i, w := range want {
		if got := signCountOf(t, a, "a.example", c.id); got != w {
			t.Errorf("signature %d: signCount %d, want %d", i, got, w)
		}
	}
}
