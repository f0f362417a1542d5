// Package tick gives tickers whose ticks fall on whole multiples of their period on the
// wall clock. An idle daemon runs a dozen tickers of the same period (a probe worker per
// probe, the memory sampler, the PM2 loop, the kernel-event batch); started at arbitrary
// moments, each woke a thread and the runtime's monitor on its own, a dozen times a
// second. Aligned, they fall due together and the runtime runs them in one wake.
package tick

import (
	"sync"
	"time"
)

// Ticker delivers the time on C at every multiple of its period, dropping ticks for a
// slow reader, like a time.Ticker.
type Ticker struct {
	// C receives the ticks.
	C <-chan time.Time

	c      chan time.Time
	d      time.Duration
	mu     sync.Mutex
	t      *time.Timer
	closed bool
}

// New returns a ticker of period d (> 0). Its first tick is at the multiple of d nearest to
// one period from now — between d/2 and 3d/2 after New, d on average as with a
// time.Ticker — and every further one d after the one before. (Aligned to the first
// multiple at least d away instead, a probe's first retry after a failed check came up to
// a whole period late: a restarted service was seen ready 5 to 10 s after it was, with the
// default 5 s period.)
func New(d time.Duration) *Ticker {
	if d <= 0 {
		panic("tick: non-positive period") // as time.NewTicker: a programming error
	}
	c := make(chan time.Time, 1)
	t := &Ticker{C: c, c: c, d: d}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.t = time.AfterFunc(t.until(now, now.Add(d/2)), t.fire)
	return t
}

// until is the time from now to the first multiple of the period at or after from.
func (t *Ticker) until(now, from time.Time) time.Duration {
	next := from.Truncate(t.d) // on the wall clock: Truncate drops the monotonic reading
	if next.Before(from) {
		next = next.Add(t.d)
	}
	return next.Sub(now.Round(0))
}

func (t *Ticker) fire() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	now := time.Now()
	select {
	case t.c <- now:
	default:
	}
	// the next multiple after this one: half a period on, so that a timer that fired a
	// little early or late still lands on the multiple after the one it was set for
	t.t.Reset(t.until(now, now.Add(t.d/2)))
}

// Stop turns the ticker off; no tick is sent after it returns (one already sent may still
// be in C).
func (t *Ticker) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	t.t.Stop()
}
