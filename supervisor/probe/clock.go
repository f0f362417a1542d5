package probe

import (
	"time"

	"github.com/livinity/livinity-agent/internal/tick"
)

// Clock is the time source of a Worker; tests pass a fake one so that thresholds can be
// tested without sleeping.
type Clock interface {
	// NewTicker returns a ticker that fires every d, dropping ticks for slow readers.
	NewTicker(d time.Duration) Ticker
	// After returns a channel that receives once, d from now.
	After(d time.Duration) <-chan time.Time
}

// Ticker is the part of *time.Ticker a Worker uses.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// RealClock is the Clock of package time.
type RealClock struct{}

// NewTicker returns a tick.Ticker: its ticks fall on the multiples of d, with every other
// ticker of the period, the first between d/2 and 3d/2 from now.
func (RealClock) NewTicker(d time.Duration) Ticker { return realTicker{tick.New(d)} }

// After wraps time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type realTicker struct{ t *tick.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }
