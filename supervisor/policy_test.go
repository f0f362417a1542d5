package supervisor

import (
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

// TestRestartPolicyGrowsCapsAndResets drives a service that crashes at start forever: the
// delays grow by the multiplier within the jitter bounds, stop growing at the cap, never
// end, and start over after a stable period.
func TestRestartPolicyGrowsCapsAndResets(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	p := newRestartPolicy(config.Backoff{InitialSeconds: 1, Multiplier: 2, MaxSeconds: 300, ResetAfterSeconds: 600}, clock)
	if d := p.next(); d != 0 {
		t.Fatalf("first restart waits %s, want 0", d)
	}
	want := 1 * time.Second
	for i := 0; i < 30; i++ {
		d := p.next()
		lo := time.Duration(float64(want) * (1 - jitter))
		hi := time.Duration(float64(want) * (1 + jitter))
		if d < lo || d > hi {
			t.Fatalf("restart %d waits %s, want %s ±25%% [%s, %s]", i+2, d, want, lo, hi)
		}
		clock.t = clock.t.Add(d) // the service crashes again right away
		want *= 2
		if want > 300*time.Second {
			want = 300 * time.Second
		}
	}
	// still running well after less than resetAfter: no reset
	p.stable(clock.t, clock.t.Add(599*time.Second))
	if d := p.next(); d < 225*time.Second {
		t.Fatalf("backoff reset too early: %s", d)
	}
	p.stable(clock.t, clock.t.Add(600*time.Second))
	if d := p.next(); d != 0 {
		t.Fatalf("after a stable period the first restart waits %s, want 0", d)
	}
	if d := p.next(); d < 750*time.Millisecond || d > 1250*time.Millisecond {
		t.Fatalf("after reset the second restart waits %s, want 1s ±25%%", d)
	}
}
