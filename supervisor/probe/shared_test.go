package probe

import (
	"context"
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
