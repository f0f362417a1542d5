package supervisor_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// forkLater is a service that forks a worker a while after it started; the worker holds
// 60 MiB and writes its pid to $CHILD_FILE.
const forkLater = `
import os, time
time.sleep(float(os.environ["FORK_AFTER"]))
if os.fork() == 0:
    b = bytearray(60 * 1024 * 1024)
    for i in range(0, len(b), 4096):
        b[i] = 1
    f = os.environ["CHILD_FILE"]
    open(f + ".tmp", "w").write(str(os.getpid()))
    os.rename(f + ".tmp", f)
while True:
    time.sleep(3600)
`

// TestLeakingWorkerSeenWithoutScanning: nexus-worker forks a worker 3 s after it started.
// The worker's memory is in the service's figure by the next period of the memory loop
// (0.5 s here), and while the services run the agent lists /proc no more (0 a second,
// counted), its trees coming from the proc connector.
func TestLeakingWorkerSeenWithoutScanning(t *testing.T) {
	testenv.Require(t, "python3")
	dir := t.TempDir()
	script := filepath.Join(dir, "forklater.py")
	if err := os.WriteFile(script, []byte(forkLater), 0o644); err != nil {
		t.Fatal(err)
	}
	childFile := filepath.Join(dir, "child.pid")
	f := newFixture(t, func(apps map[string]*app) {
		a := apps["nexus-worker"]
		a.Script, a.Interpreter = script, "python3"
		a.Env = map[string]string{"FORK_AFTER": "3", "CHILD_FILE": childFile}
	}, nil)
	f.waitPhase("nexus-worker", state.Ready, 30*time.Second)
	// the supervisor subscribes and seeds its table off its loop: give it the time
	for deadline := time.Now().Add(10 * time.Second); !f.sup.FollowsTrees() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !f.sup.FollowsTrees() {
		if os.Geteuid() != 0 {
			t.Skip("the proc connector needs root")
		}
		t.Fatalf("the supervisor does not follow process events as root; log:\n%s", f.logs.String())
	}
	scans0, from := f.sup.ProcScans(), time.Now()

	var child int
	testenv.WaitFor(t, "the worker's pid file", 30*time.Second, func() bool {
		b, err := os.ReadFile(childFile)
		if err == nil {
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return child > 0
	})
	forked := time.Now()
	t.Cleanup(func() { sendSignal(child, syscall.SIGKILL) })
	period := f.cfg.ServiceSettings("nexus-worker").Liveness.Period()
	var seen time.Duration
	testenv.WaitFor(t, "the worker's memory in nexus-worker's", 10*time.Second, func() bool {
		if f.service("nexus-worker").MemoryBytes >= 60<<20 {
			seen = time.Since(forked)
			return true
		}
		return false
	})
	t.Logf("worker %d ready (60 MiB) → in nexus-worker's memory: %s (memory loop period %s)", child, seen.Round(time.Millisecond), period)
	if seen > period+300*time.Millisecond {
		t.Errorf("the worker's memory took %s to be counted, more than a period (%s) and slack", seen, period)
	}
	time.Sleep(2 * time.Second)
	scans, took := f.sup.ProcScans()-scans0, time.Since(from)
	t.Logf("/proc listings while 5 services ran for %s: %d (%.2f/s)", took.Round(time.Millisecond), scans, float64(scans)/took.Seconds())
	if scans != 0 {
		t.Errorf("the agent listed /proc %d times in %s while following process events, want 0", scans, took)
	}
}
