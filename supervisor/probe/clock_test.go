package probe

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when the test calls Advance. It records what the
// Worker asked of it ("after 10s", "ticker 1s") so tests can check the schedule.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	timers   []*fakeTimer
	requests []string
}

type fakeTimer struct {
	at      time.Time
	period  time.Duration // 0 for After
	ch      chan time.Time
	stopped bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) add(d, period time.Duration, what string) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), period: period, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.requests = append(c.requests, fmt.Sprintf("%s %s", what, d))
	return t
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time { return c.add(d, 0, "after").ch }

func (c *fakeClock) NewTicker(d time.Duration) Ticker {
	return fakeTicker{c: c, t: c.add(d, d, "ticker")}
}

type fakeTicker struct {
	c *fakeClock
	t *fakeTimer
}

func (f fakeTicker) C() <-chan time.Time { return f.t.ch }
func (f fakeTicker) Stop() {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	f.t.stopped = true
}

// Advance moves the clock and fires what is due; like time.Ticker, a tick is dropped
// when the previous one has not been read.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		for !t.stopped && !t.at.After(c.now) {
			select {
			case t.ch <- t.at:
			default:
			}
			if t.period == 0 {
				t.stopped = true
				break
			}
			t.at = t.at.Add(t.period)
		}
	}
}

// Requests returns what was asked of the clock so far.
func (c *fakeClock) Requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.requests...)
}

// waitFor polls cond until it holds, failing the test after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// WaitRequests waits until the clock has been asked for n timers or tickers in all.
func (c *fakeClock) WaitRequests(t *testing.T, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d clock requests", n), func() bool { return len(c.Requests()) >= n })
}

// WaitDrained waits until every fired tick or timer has been read.
func (c *fakeClock) WaitDrained(t *testing.T) {
	t.Helper()
	waitFor(t, "the worker to read its ticks", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, tm := range c.timers {
			if !tm.stopped && len(tm.ch) > 0 {
				return false
			}
		}
		return true
	})
}
