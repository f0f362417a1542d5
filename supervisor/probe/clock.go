package probe

import "time"

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

// NewTicker wraps time.NewTicker.
func (RealClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

// After wraps time.After.
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }
