package supervisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// TestStrayDaemonIsEnded: an operator's pm2 command started a second daemon of the home
// while the first ran (PM2's own Daemon.js, as `pm2 ls` starts one when it finds none): it
// cannot bind the sockets, stays, and has written its pid into pm2.pid. When the real
// daemon then dies, the agent's recovery must end the stray and leave the home one daemon,
// answering on its sockets, with every service back. Before, the recovery started a third
// daemon beside the stray.
func TestStrayDaemonIsEnded(t *testing.T) {
	f := newFixture(t, nil, nil)
	real := f.daemonPID()
	pm2, err := filepath.EvalSymlinks(f.bin)
	if err != nil {
		t.Fatal(err)
	}
	stray := exec.Command("node", filepath.Join(filepath.Dir(filepath.Dir(pm2)), "lib", "Daemon.js"))
	stray.Env = append(os.Environ(), "PM2_HOME="+f.home, "PATH="+testenv.PATH(t))
	stray.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var out testenv.Buffer
	stray.Stdout, stray.Stderr = &out, &out
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { stray.Wait(); close(done) }()
	t.Cleanup(func() {
		stray.Process.Kill()
		<-done
	})
	testenv.WaitFor(t, "the stray daemon to take pm2.pid", 10*time.Second, func() bool {
		return procfs.IsPM2Daemon(stray.Process.Pid, f.home) && f.daemonPID() == stray.Process.Pid
	})
	// a recovery takes a daemon that does not answer for a stray only after 10 s
	time.Sleep(11 * time.Second)
	if ds := procfs.PM2Daemons(f.home); len(ds) != 2 {
		t.Fatalf("daemons of the home before the death: %v, want the real %d and the stray %d\n%s", ds, real, stray.Process.Pid, out.String())
	}

	before := f.procs()
	if err := sendSignal(real, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// every service ready again in a new instance (the state says ready until the death
	// is seen)
	testenv.WaitFor(t, "every service ready in a new instance", 60*time.Second, func() bool {
		for _, name := range config.Default().ServiceNames() {
			if sv := f.service(name); sv.Phase != state.Ready || sv.PID == 0 || sv.PID == before[name].PID {
				return false
			}
		}
		return true
	})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Errorf("the stray daemon %d still runs", stray.Process.Pid)
	}
	var ds []int
	testenv.WaitFor(t, "one daemon of the home", 10*time.Second, func() bool {
		ds = procfs.PM2Daemons(f.home)
		return len(ds) == 1
	})
	if slices.Contains(ds, real) || slices.Contains(ds, stray.Process.Pid) {
		t.Fatalf("daemons of the home after the recovery: %v, want one new one", ds)
	}
	if got := f.daemonPID(); got != ds[0] {
		t.Errorf("pm2.pid names %d, want the daemon %d", got, ds[0])
	}
	for name, p := range f.procs() {
		if st, ok := procfs.ReadStat(p.PID); !ok || st.PPID != ds[0] {
			t.Errorf("%s (pid %d) is not a child of the home's daemon %d", name, p.PID, ds[0])
		}
	}
}
