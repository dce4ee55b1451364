package softkey

import (
	"fmt"
	"math"

	"github.com/ctapkit/ctapkit/softkey/store"
)

// counterBlock is how far ahead the persisted ceiling runs. One durable write buys
// this many signatures; a crash skips at most this many values, and never reuses one.
const counterBlock = 1024

// signCounter is the softkey's global signature counter. The store holds a ceiling
// that no handed-out value exceeds; the counter restarts from it after a crash, so
// it only ever moves forwards, at the cost of one write per counterBlock signatures
// instead of one per signature.
type signCounter struct {
	st      store.Store
	value   uint32
	ceiling uint32
	frozen  bool // Faults.FrozenCounter: stays at its first non-zero value
}

func newSignCounter(st store.Store) (*signCounter, error) {
	c, err := st.CounterCeiling()
	if err != nil {
		return nil, fmt.Errorf("reading signature counter: %w", err)
	}
	return &signCounter{st: st, value: c, ceiling: c}, nil
}

// next returns the next counter value, reserving a new block first when needed.
// At the top of the range it stays at math.MaxUint32, which RPs read as a
// possibly cloned authenticator rather than as a wrapped-around counter.
func (c *signCounter) next() (uint32, error) {
	if c.value == math.MaxUint32 || (c.frozen && c.value > 0) {
		return c.value, nil
	}
	if c.value >= c.ceiling {
		ceiling := uint32(min(uint64(c.value)+counterBlock, math.MaxUint32))
		if err := c.st.SetCounterCeiling(ceiling); err != nil {
			return 0, fmt.Errorf("reserving signature counter values: %w", err)
		}
		c.ceiling = ceiling
	}
	c.value++
	return c.value, nil
}

// close writes back the exact value, so a clean shutdown skips nothing.
func (c *signCounter) close() error {
	if c.value == c.ceiling {
		return nil
	}
	if err := c.st.SetCounterCeiling(c.value); err != nil {
		return fmt.Errorf("saving signature counter: %w", err)
	}
	c.ceiling = c.value
	return nil
}
