package probe

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestSharedReusesRecentResultsButNotErrors(t *testing.T) {
	calls := 0
	outcome := Success
	check := Shared(func(context.Context) Result {
		calls++
		return Result{Outcome: outcome, At: time.Now()}
	}, 200*time.Millisecond)
	ctx := context.Background()
	if r := check(ctx); r.Reused || calls != 1 {
		t.Fatalf("first call: reused=%v calls=%d", r.Reused, calls)
	}
	if r := check(ctx); !r.Reused || r.Outcome != Success || calls != 1 {
		t.Fatalf("second call within the window: reused=%v outcome=%v calls=%d", r.Reused, r.Outcome, calls)
	}
	time.Sleep(250 * time.Millisecond)
	outcome = Error
	if r := check(ctx); r.Reused || r.Outcome != Error || calls != 2 {
		t.Fatalf("after the window: reused=%v outcome=%v calls=%d", r.Reused, r.Outcome, calls)
	}
	// the error is not kept: the next call checks again
	outcome = Failure
	if r := check(ctx); r.Reused || r.Outcome != Failure || calls != 3 {
		t.Fatalf("after an error: reused=%v outcome=%v calls=%d", r.Reused, r.Outcome, calls)
	}
}

// Liveness and readiness workers resumed together call at the same instant: the second
// caller waits for the first one's check instead of running its own.
func TestSharedJoinsACheckInFlight(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	outcome := Success
	check := Shared(func(context.Context) Result {
		calls.Add(1)
		<-release
		return Result{Outcome: outcome, At: time.Now()}
	}, time.Nanosecond) // nothing is fresh: only joining can spare a check
	results := make(chan Result, 2)
	var entered atomic.Int32
	callTwice := func() {
		entered.Store(0)
		for range 2 {
			go func() { entered.Add(1); results <- check(context.Background()) }()
		}
		// both callers are on their way and one check runs: give the other the moment it
		// needs to join it
		for entered.Load() < 2 || calls.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
	}
	callTwice()
	close(release)
	a, b := <-results, <-results
	if n := calls.Load(); n != 1 {
		t.Fatalf("two callers at once ran %d checks, want 1", n)
	}
	if a.Reused == b.Reused || a.Outcome != Success || b.Outcome != Success {
		t.Fatalf("want one result checked and one reused, both success: %+v, %+v", a, b)
	}

	// an error is not handed to the caller that joined: it checks for itself
	outcome = Error
	release = make(chan struct{})
	calls.Store(0)
	callTwice()
	close(release)
	a, b = <-results, <-results
	if n := calls.Load(); n != 2 || a.Reused || b.Reused {
		t.Fatalf("after a shared error: %d checks (want 2: the joiner's own), reused %v/%v (want neither)", n, a.Reused, b.Reused)
	}
}
