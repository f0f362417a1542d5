package supervisor_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/supervisor/pidwatch"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// TestExitSeenWithoutTheBus kills a service while its PM2 daemon is frozen (SIGSTOP): the
// bus cannot say anything, yet the agent's state shows the service down at once, from the
// pidfd on its main pid. Once the daemon runs again, PM2 restarts the service as always
// and its exit event completes the story: the signal, and one crash counted.
func TestExitSeenWithoutTheBus(t *testing.T) {
	if err := pidwatch.Supported(); err != nil {
		t.Skip(err)
	}
	const target = "nexus-core"
	f := newFixture(t, nil, nil)
	before := f.procs()
	p := before[target]
	if p.PID <= 0 {
		t.Fatalf("%s has no pid in PM2's list (%+v): nothing to kill", target, p)
	}
	if st, ok := procfs.ReadStat(p.PID); ok {
		t.Logf("PM2's pm_uptime %s, the process started %s (%s later)", p.Started.Format(time.StampMilli),
			procfs.StartedAt(st.StartTime).Format(time.StampMilli), procfs.StartedAt(st.StartTime).Sub(p.Started))
	}
	b, err := os.ReadFile(filepath.Join(f.home, "pm2.pid"))
	if err != nil {
		t.Fatal(err)
	}
	daemon, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || daemon <= 1 {
		t.Fatalf("PM2's pid file says %q (%v)", b, err) // kill(0) would stop this test's own group
	}
	changes, cancel := f.store.Subscribe()
	defer cancel()

	if err := sendSignal(daemon, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			sendSignal(daemon, syscall.SIGCONT)
		}
	}
	defer thaw()
	killed := time.Now()
	if err := sendSignal(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// well before the liveness probe (period 0.5 s, 3 failures) could restart it
	var seen state.Change
	deadline := time.After(400 * time.Millisecond)
	for seen.At.IsZero() {
		select {
		case c := <-changes:
			if c.Service == target && c.To == state.Restarting {
				seen = c
			}
		case <-deadline:
			t.Fatal("with PM2's daemon frozen, the kill did not reach the state within 400 ms: the pidfd source does not work")
		}
	}
	sv := f.service(target)
	t.Logf("kill -9 → state %s (%q) with the daemon frozen: %s", sv.Phase, sv.Detail, seen.At.Sub(killed))
	if !strings.HasPrefix(sv.Detail, "down: pid "+strconv.Itoa(p.PID)) || sv.PID != 0 || sv.LastExit.Signal != "" {
		t.Errorf("while the bus is silent: detail %q, pid %d, last exit %+v; want down, no pid, no signal yet", sv.Detail, sv.PID, sv.LastExit)
	}
	thaw()

	sv = f.waitPhase(target, state.Ready, 30*time.Second)
	if sv.Restarts[state.ReasonCrash] != 1 {
		t.Errorf("restarts = %v, want one crash", sv.Restarts)
	}
	if sv.LastExit.Signal != "SIGKILL" {
		t.Errorf("last exit = %+v, want PM2's word: SIGKILL", sv.LastExit)
	}
	if sv.PID == p.PID || sv.PID == 0 {
		t.Errorf("pid after recovery = %d (before %d)", sv.PID, p.PID)
	}
	f.untouched(before, others(target)...)
}
