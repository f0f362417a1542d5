package supervisor

import (
	"errors"
	"fmt"
	"time"

	"github.com/livinity/livinity-agent/supervisor/pidwatch"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// exitWatch is the watch on a service's current instance's main pid (its pidfd and the
// proc connector's exit events, see pidwatch): the first source of an exit (a fraction of
// a millisecond after it), ahead of PM2's bus, which stays the second source and the one
// that says why (exit code, signal, a stop on purpose) and is all there is when pidfds are
// not available.
type exitWatch struct {
	watcher *pidwatch.Watcher // the supervisor's, set by Run; nil: PM2's bus alone
	w       *pidwatch.Watch
}

// pidExit is a watched main pid that exited.
type pidExit struct {
	pid int
	at  time.Time
}

func (e *exitWatch) stop() {
	e.w.Stop()
	e.w = nil
}

// watchExit starts watching the main pid of the instance PM2 lists, if it is the process
// PM2 started then (its start time within pidwatch.Tolerance of pm_uptime, which the list
// just stored): a pid reused since is never watched.
func (s *service) watchExit(pid int) {
	if s.exits.watcher == nil {
		return
	}
	s.exits.stop()
	started := s.snapshot().Started
	if started.IsZero() {
		return // PM2 did not say when it started it: no way to tell a reused pid
	}
	w, err := s.exits.watcher.Start(pid, started, func(pid int, at time.Time) {
		s.markExited(pid, at)
		select {
		case s.msgs <- msg{pidExit: &pidExit{pid: pid, at: at}}:
		case <-s.quit:
		}
	})
	switch {
	case err == nil:
		s.exits.w = w
	case errors.Is(err, pidwatch.ErrNotSame):
		s.log.Warn("not watching the pid PM2 lists: another process has it", "service", s.name, "err", err)
	case errors.Is(err, pidwatch.ErrGone):
		// exited before it could be watched: the bus says so
	default:
		s.exits.watcher = nil
		s.log.Warn("cannot watch the main pid; exits are seen on PM2's bus only", "service", s.name, "err", err)
	}
}

// markExited shows the exit of the watched main pid in the store at once, from the
// watcher's goroutine that saw it, on the CPU where the process died: handed to the
// service's goroutine first, it would wait for another thread to be woken, on a CPU that
// may be idle (milliseconds on a virtual machine). Only an instance the store shows
// running with that pid is marked, unless an operator's stop is under way (an exit the
// agent expects finds the phase restarting or stopped already); onPIDExit does the rest
// on the service's goroutine and writes the same.
func (s *service) markExited(pid int, at time.Time) {
	if s.stoppingByOperator.Load() {
		return
	}
	s.store.Update(s.name, func(sv *state.Service) {
		if sv.PID != pid || (sv.Phase != state.Starting && sv.Phase != state.Ready && sv.Phase != state.Unhealthy &&
			sv.Phase != state.Backoff) {
			return
		}
		showExited(sv, pid, at)
	})
}

// showExited is what the state says of a main pid seen exiting at `at`, until PM2's exit
// event tells why: down, no instance, PM2 restarts it.
func showExited(sv *state.Service, pid int, at time.Time) {
	noInstance(sv)
	sv.LastExit = state.Exit{At: at}
	sv.Phase, sv.Ready, sv.Detail, sv.NextAttempt = state.Restarting, false, exitedDetail(pid), time.Time{}
}

func exitedDetail(pid int) string { return fmt.Sprintf("down: pid %d exited; PM2 restarts it", pid) }

// onPIDExit shows an unexpected exit of the instance at once: down, PM2 restarts it. Why
// it exited (and whether it was a stop on purpose, which the bus tells) comes with PM2's
// exit event, which then completes LastExit and the detail and counts the crash. An exit
// the agent expects (its own restart or stop) or during a stop through PM2 or with a lost
// daemon is left to the bus as before.
func (s *service) onPIDExit(e pidExit) {
	if e.pid <= 0 || e.pid != s.pid || !s.online.Load() {
		return // an earlier instance, or the bus was first
	}
	// once the state shows the exit: closing the pidfd waits for its reader goroutine, and
	// the kernel's exit filter is compiled anew without the pid
	defer s.exits.stop()
	if s.lostDaemon || s.expect != "" || s.stopping {
		return
	}
	s.online.Store(false)
	s.holdAll()
	s.update(func(sv *state.Service) { showExited(sv, e.pid, e.at) })
}
