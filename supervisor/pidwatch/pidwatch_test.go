package pidwatch

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/supervisor/procconn"
)

func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func started(t *testing.T, pid int) time.Time {
	t.Helper()
	st, ok := procfs.ReadStat(pid)
	if !ok {
		t.Fatalf("pid %d is gone", pid)
	}
	return procfs.StartedAt(st.StartTime)
}

// newWatcher is a Watcher for one test.
func newWatcher(t *testing.T) *Watcher {
	t.Helper()
	w, err := NewWatcher()
	if err != nil {
		t.Skip(err) // a kernel before 5.3: the supervisor relies on PM2's bus alone
	}
	t.Cleanup(w.Close)
	return w
}

// TestExitIsSeen: a killed process (not reaped: its parent, like PM2's daemon for an app,
// looks later) is reported at once, with its pid.
func TestExitIsSeen(t *testing.T) {
	pw := newWatcher(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	seen := make(chan time.Time, 1)
	w, err := pw.Start(pid, started(t, pid), func(p int, at time.Time) {
		if p != pid {
			t.Errorf("onExit for pid %d, want %d", p, pid)
		}
		seen <- at
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if w.StartTicks != procfs.StartTime(pid) {
		t.Errorf("StartTicks = %d, want %d", w.StartTicks, procfs.StartTime(pid))
	}
	select {
	case <-seen:
		t.Fatal("reported an exit of a running process")
	case <-time.After(100 * time.Millisecond):
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-seen:
		t.Logf("kill → exit seen: %s", at.Sub(killed))
	case <-time.After(5 * time.Second):
		t.Fatal("the exit was not reported")
	}
}

// TestStartTimeMismatchIsNotWatched: a pid whose process started at another time than the
// caller expects is refused.
func TestStartTimeMismatchIsNotWatched(t *testing.T) {
	pw := newWatcher(t)
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	for _, off := range []time.Duration{-time.Hour, -2 * Tolerance, 2 * Tolerance} {
		w, err := pw.Start(pid, started(t, pid).Add(off), func(int, time.Time) { t.Error("onExit called") })
		if !errors.Is(err, ErrNotSame) {
			w.Stop()
			t.Errorf("expected start %s off: err = %v, want ErrNotSame", off, err)
		}
	}
}

// TestReusedPIDIsNotWatched makes the kernel give an exited process's pid to a new one
// (ns_last_pid, as root) more than Tolerance after the first started, and watches the pid
// with the first process's start time, as PM2's list would still report it: it is
// refused, and the new process is not taken for the old.
func TestReusedPIDIsNotWatched(t *testing.T) {
	pw := newWatcher(t)
	if os.Geteuid() != 0 {
		t.Skip("setting ns_last_pid needs root")
	}
	var reused *exec.Cmd
	var oldStart time.Time
	for attempt := 0; attempt < 20 && reused == nil; attempt++ {
		old := exec.Command("sleep", "60")
		if err := old.Start(); err != nil {
			t.Fatal(err)
		}
		pid := old.Process.Pid
		oldStart = started(t, pid)
		old.Process.Kill()
		old.Wait()
		time.Sleep(Tolerance + 100*time.Millisecond)
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Skipf("cannot set ns_last_pid: %v", err)
		}
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if c.Process.Pid == pid {
			reused = c
			break
		}
		c.Process.Kill() // another process took the pid first: again
		c.Wait()
	}
	if reused == nil {
		t.Fatal("could not get a pid reused in 20 attempts")
	}
	defer func() { reused.Process.Kill(); reused.Wait() }()
	pid := reused.Process.Pid
	t.Logf("pid %d reused: the first started %s, the new one %s", pid, oldStart.Format(time.StampMicro),
		started(t, pid).Format(time.StampMicro))
	w, err := pw.Start(pid, oldStart, func(int, time.Time) { t.Error("onExit called for the reused pid") })
	if !errors.Is(err, ErrNotSame) {
		w.Stop()
		t.Fatalf("watching the reused pid with the exited process's start: err = %v, want ErrNotSame", err)
	}
	// the same pid with its own start time is watched
	w, err = pw.Start(pid, started(t, pid), func(int, time.Time) {})
	if err != nil {
		t.Fatalf("the new process itself: %v", err)
	}
	w.Stop()
}

// TestGoneAndStopped: a reaped pid is refused; a stopped watch reports nothing.
func TestGoneAndStopped(t *testing.T) {
	pw := newWatcher(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Start(cmd.Process.Pid, time.Time{}, func(int, time.Time) {}); !errors.Is(err, ErrGone) {
		t.Errorf("a reaped pid: err = %v, want ErrGone", err)
	}
	c := startSleep(t)
	called := make(chan int, 1)
	w, err := pw.Start(c.Process.Pid, time.Time{}, func(p int, _ time.Time) { called <- p })
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	w.Stop()
	c.Process.Kill()
	select {
	case <-called:
		t.Error("a stopped watch reported the exit")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestExitEventsAlone: with the pidfds not waited on, a killed process is still reported
// at once, from the proc connector's exit events; a clean exit is not theirs to report.
func TestExitEventsAlone(t *testing.T) {
	pw := newWatcher(t)
	if err := pw.ExitEvents(); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("as root, the exit events must be available: %v", err)
		}
		t.Skip(err)
	}
	pw.noPidfdWait = true
	cmd := startSleep(t)
	seen := make(chan time.Time, 1)
	if _, err := pw.Start(cmd.Process.Pid, started(t, cmd.Process.Pid), func(_ int, at time.Time) { seen <- at }); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	cmd.Process.Kill()
	select {
	case at := <-seen:
		t.Logf("kill → exit event: %s", at.Sub(killed))
	case <-time.After(5 * time.Second):
		t.Fatal("the kill was not reported by the exit events")
	}

	clean := exec.Command("sleep", "0.2")
	if err := clean.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := pw.Start(clean.Process.Pid, time.Time{}, func(int, time.Time) { seen <- time.Now() }); err != nil {
		t.Fatal(err)
	}
	clean.Wait()
	select {
	case <-seen:
		t.Error("a clean exit was reported by the exit events")
	case <-time.After(300 * time.Millisecond):
	}
}

// TestEarlierExitEventIsIgnored: an exit event the kernel sent before the watched process
// started is of an earlier process with the pid.
func TestEarlierExitEventIsIgnored(t *testing.T) {
	pw := newWatcher(t)
	pw.noPidfdWait = true
	cmd := startSleep(t)
	pid := cmd.Process.Pid
	seen := make(chan struct{}, 1)
	if _, err := pw.Start(pid, started(t, pid), func(int, time.Time) { seen <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	startedMono := time.Duration(procfs.StartTime(pid)) * (time.Second / procfs.TicksPerSecond)
	pw.onExitEvent(procconn.Exit{PID: int32(pid), Code: 9, Mono: startedMono - time.Millisecond})
	select {
	case <-seen:
		t.Fatal("an exit event from before the process started was taken for its exit")
	case <-time.After(50 * time.Millisecond):
	}
	pw.onExitEvent(procconn.Exit{PID: int32(pid), Code: 9, Mono: startedMono + time.Second})
	select {
	case <-seen:
	case <-time.After(time.Second):
		t.Fatal("an exit event after the start was not reported")
	}
}
