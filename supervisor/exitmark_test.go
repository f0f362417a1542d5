package supervisor

import (
	"testing"
	"time"

	"github.com/livinity/livinity-agent/supervisor/state"
)

// markExited, called from the exit watcher's goroutine, shows the exit of the instance the
// store shows running with that pid, and leaves alone an exit the agent expects (its own
// restart or an operator's stop), an earlier instance's and a lost daemon's.
func TestMarkExitedOnlyMarksTheRunningInstance(t *testing.T) {
	const name = "nexus-core"
	cases := []struct {
		what     string
		phase    state.Phase
		pid      int // in the store
		operator bool
		marked   bool
	}{
		{"a ready instance", state.Ready, 42, false, true},
		{"an instance in backoff", state.Backoff, 42, false, true},
		{"a starting instance", state.Starting, 42, false, true},
		{"another pid (an earlier instance's exit)", state.Ready, 43, false, false},
		{"the agent's own restart (restarting already)", state.Restarting, 42, false, false},
		{"a lost daemon (stopped)", state.Stopped, 42, false, false},
		{"an operator's stop under way", state.Ready, 42, true, false},
	}
	for _, c := range cases {
		s := &service{name: name, store: state.New(state.Agent{}, []string{name})}
		s.store.Update(name, func(sv *state.Service) { sv.Phase, sv.PID, sv.Ready = c.phase, c.pid, c.phase == state.Ready })
		s.stoppingByOperator.Store(c.operator)
		at := time.Now()
		s.markExited(42, at)
		sv := s.snapshot()
		marked := sv.Phase == state.Restarting && c.phase != state.Restarting
		if marked != c.marked {
			t.Errorf("%s: phase %s -> %s (%q); marked %v, want %v", c.what, c.phase, sv.Phase, sv.Detail, marked, c.marked)
		}
		if marked && (sv.Ready || sv.PID != 0 || !sv.LastExit.At.Equal(at) || sv.Detail != exitedDetail(42)) {
			t.Errorf("%s: marked as %+v; want not ready, no pid, the exit's time and detail", c.what, sv)
		}
	}
}
