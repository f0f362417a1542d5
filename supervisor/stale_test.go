package supervisor

import (
	"context"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/supervisor/probe"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// A verdict queued by a check that started before the current instance was seen (the last
// check of the instance just killed) does not count for the new one: it neither ends its
// startup nor makes it ready; the same verdict from a check of the new instance does.
func TestVerdictsOfAnEarlierInstanceAreDropped(t *testing.T) {
	worker := func(typ probe.Type) *probe.Worker {
		w, err := probe.StartWorker(context.Background(), probe.WorkerConfig{Type: typ,
			Timing: probe.Timing{Period: time.Hour, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 1},
			Check:  func(context.Context) probe.Result { return probe.Result{Outcome: probe.Error, At: time.Now()} }})
		if err != nil {
			t.Fatal(err)
		}
		w.Hold()
		t.Cleanup(w.Stop)
		return w
	}
	s := &service{name: "nexus-core", store: state.New(state.Agent{}, []string{"nexus-core"}), now: time.Now,
		policy:  newRestartPolicy(config.Default().Agent.RestartBackoff, nil),
		startup: worker(probe.Startup), liveness: worker(probe.Liveness), readiness: worker(probe.Readiness)}
	s.online.Store(true)
	before := time.Now()
	seen := before.Add(time.Millisecond)
	s.instanceAt.Store(&seen)
	after := seen.Add(time.Millisecond)
	ctx := context.Background()
	success := func(typ probe.Type, at time.Time) probe.Change {
		return probe.Change{Type: typ, From: probe.StateUnknown, To: probe.StateSuccess, Cause: probe.Result{Outcome: probe.Success, At: at}}
	}

	s.onChange(ctx, success(probe.Startup, before))
	if s.startupDone {
		t.Fatal("a startup success of a check begun before the instance was seen ended its startup")
	}
	s.onChange(ctx, success(probe.Startup, after))
	if !s.startupDone {
		t.Fatal("a startup success of the instance's own check did not end its startup")
	}
	s.onChange(ctx, success(probe.Readiness, before))
	if sv := s.snapshot(); sv.Ready {
		t.Fatal("a readiness success of a check begun before the instance was seen made it ready")
	}
	s.onChange(ctx, success(probe.Readiness, after))
	if sv := s.snapshot(); !sv.Ready || sv.Phase != state.Ready {
		t.Fatalf("the instance's own readiness success did not make it ready: %+v", sv)
	}
}
