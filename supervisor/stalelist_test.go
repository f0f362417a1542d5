package supervisor_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// TestStaleListDoesNotHoldARestartedService: PM2 answers lists on its RPC socket and sends
// events on its bus, with no order between the two, so a list asked for before a crash's
// "online" event can arrive after it and say "waiting restart". Such a list held the
// restarted service (probes held, phase restarting) for good in a CI soak: every later
// list showed the same pid online, and nothing started it over. After a late list, the
// next one that shows the instance online must bring it back to ready.
func TestStaleListDoesNotHoldARestartedService(t *testing.T) {
	f := newFixture(t, nil, nil)
	stale := f.procs()
	if err := sendSignal(stale["nexus-core"].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		sv := f.service("nexus-core")
		if sv.Phase == state.Ready && sv.PID != stale["nexus-core"].PID && sv.PID != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nexus-core did not recover from the kill: %+v", sv)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// the list from before the kill, as PM2 had it while the restart was pending
	var late []pm2.Process
	for _, p := range stale {
		if p.Name == "nexus-core" {
			p.Status, p.PID = pm2.StatusWaitingRestart, 0
		}
		late = append(late, p)
	}
	f.sup.DispatchList(context.Background(), late)
	held := f.waitPhase("nexus-core", state.Restarting, 5*time.Second)
	t.Logf("after the late list: %s (%s)", held.Phase, held.Detail)
	// the supervisor lists every second (ReconcileEvery): the next list shows it online
	sv := f.waitPhase("nexus-core", state.Ready, 10*time.Second)
	if sv.Restarts[state.ReasonCrash] != 1 {
		t.Errorf("restarts = %v, want the one crash (the late list is no restart)", sv.Restarts)
	}
}
