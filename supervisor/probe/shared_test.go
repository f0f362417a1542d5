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
	}, 200*time.Millisecond, nil)
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
	}, time.Nanosecond, nil) // nothing is fresh: only joining can spare a check
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

// A result of a check that started before the bound (the instance then is not the one
// running now) is neither reused nor handed to a caller that joined its check.
func TestSharedIgnoresResultsFromBeforeTheBound(t *testing.T) {
	var calls atomic.Int32
	var bound atomic.Int64
	release := make(chan struct{}, 1)
	check := Shared(func(context.Context) Result {
		calls.Add(1)
		at := time.Now()
		<-release
		return Result{Outcome: Success, At: at}
	}, time.Hour, func() time.Time { return time.Unix(0, bound.Load()) })
	release <- struct{}{}
	if r := check(context.Background()); r.Reused || calls.Load() != 1 {
		t.Fatalf("first call: reused=%v calls=%d", r.Reused, calls.Load())
	}
	bound.Store(time.Now().UnixNano()) // a new instance
	release <- struct{}{}
	if r := check(context.Background()); r.Reused || calls.Load() != 2 {
		t.Fatalf("a result from before the bound was reused: reused=%v calls=%d", r.Reused, calls.Load())
	}
	// a check under way when the bound moves: the caller that joined it checks anew
	bound.Store(time.Now().UnixNano()) // nothing cached is usable: the next caller checks
	first := make(chan Result, 1)
	go func() { first <- check(context.Background()) }()
	for calls.Load() != 3 {
		time.Sleep(time.Millisecond)
	}
	joined := make(chan Result, 1)
	go func() { joined <- check(context.Background()) }()
	time.Sleep(20 * time.Millisecond) // let it join
	bound.Store(time.Now().UnixNano())
	release <- struct{}{}
	<-first
	release <- struct{}{}
	if r := <-joined; r.Reused || calls.Load() != 4 {
		t.Fatalf("the joiner got a result from before the bound: reused=%v calls=%d", r.Reused, calls.Load())
	}
}
