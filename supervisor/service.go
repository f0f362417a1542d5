package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/probe"
	"github.com/livinity/livinity-agent/supervisor/proctree"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// msg is one input of a service's loop; exactly one field is set.
type msg struct {
	proc       *pm2.Process // the app's record from a full list
	missing    bool         // the app is not in PM2's list
	restoring  bool         // with missing: a new daemon lacks it and the agent restores it
	event      *pm2.Event
	change     *probe.Change
	mem        *proctree.Usage
	daemonDown bool
	check      *checkResult // a single liveness or readiness check (see onResult)
	cpu        *cpuSample   // the tree's CPU over the last sampling interval
	control    *controlReq  // an operator's restart, stop or start (see control)
	pidExit    *pidExit     // the watched main pid exited (see exitwatch.go)
}

// checkResult is a single check that bears on readiness now: a failure, or a success
// while a failure is shown.
type checkResult struct {
	probe  probe.Type
	ok     bool
	detail string
}

// service owns one app's supervision: its probes, its restart policy and its entry in the
// store. Everything below is touched only by its run goroutine, except online.
type service struct {
	// listDown: a list said the instance is launching, waiting restart or stopping (the
	// probes are held); the next list that shows it online starts it over, whatever its
	// pid, as such a list may have been older than the online event that came before it.
	listDown bool
	name     string
	set      config.ResolvedService
	breachN  int
	store    *state.Store
	ctrl     Controller
	log      *slog.Logger
	observer ProbeObserver
	policy   *restartPolicy
	msgs     chan msg
	quit     chan struct{} // closed when run returns: workers stop sending
	clock    probe.Clock
	now      func() time.Time

	online   atomic.Bool             // PM2 says online; read by the process probe
	wobbly   atomic.Bool             // a single check failed and READY shows it
	curPID   atomic.Int32            // the instance's pid (0 unknown); read by the probes
	ownerPID atomic.Int32            // the instance last seen holding its port
	tree     atomic.Pointer[[]int32] // its process tree at the last memory sample
	sampler  *proctree.Sampler
	exits    exitWatch // the main pid's pidfd
	// stoppingByOperator is set while an operator's stop waits for PM2: the exit it brings
	// is not shown as a crash (see markExited)
	stoppingByOperator atomic.Bool
	// instanceAt is when the current instance was seen (with the monotonic reading, so
	// that a step of the wall clock changes nothing): a check that started before it
	// speaks of an earlier instance (see stale)
	instanceAt atomic.Pointer[time.Time]

	id, pid     int
	pm2Status   string
	baseline    int    // PM2's restart_time when first seen (-1 before)
	accounted   int    // restarts attributed since baseline
	maxSeen     int    // the highest restart_time seen: older lists are stale
	startTick   uint64 // the current instance's start time (/proc), to end its group
	expect      string
	crashed     bool // an unexpected exit awaits PM2's restart
	stopping    bool // PM2 is stopping the instance on someone's request
	lostDaemon  bool // the instance went down with the PM2 daemon
	startupDone bool
	startup     *probe.Worker
	liveness    *probe.Worker
	readiness   *probe.Worker
	breaches    int
	retry       <-chan time.Time
	retryReason string
	readySince  time.Time
	stableAt    <-chan time.Time // fires once the service has been ready for the policy's resetAfter
	lastEvent   time.Time

	// an operator's stop (livinity-agent stop): no probes, no restarts until start
	stopper Stopper
	persist func(name string, at time.Time) // records the stop (zero at: removes it); may be nil
	held    bool
	heldAt  time.Time
	heldPID int  // the instance the stop ended: a list still showing it is stale
	reHold  bool // a restored daemon (or one found at the agent's start) may run it: stop it again
}

// Controller restarts apps by pm_id; *pm2.Fallback is the real one.
type Controller interface {
	Restart(ctx context.Context, id int) error
}

// ProbeObserver receives every single check (for metrics).
type ProbeObserver interface {
	ObserveProbe(service, probeType string, d time.Duration, failed bool)
}

func (s *service) run(ctx context.Context) error {
	defer s.stopWorkers()
	defer close(s.quit)
	defer s.exits.stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-s.msgs:
			s.handle(ctx, m)
		case <-s.retry:
			s.retry = nil
			s.restart(ctx, s.retryReason)
		case <-s.stableAt:
			s.stableAt = nil
			if sv := s.snapshot(); sv.Ready {
				s.policy.stable(s.readySince, s.now())
			}
		}
	}
}

func (s *service) snapshot() state.Service {
	sv, _ := s.store.Service(s.name)
	return sv
}

func (s *service) update(fn func(*state.Service)) { s.store.Update(s.name, fn) }

// setPhase moves the service to a phase with a short reason.
func (s *service) setPhase(p state.Phase, detail string) {
	s.update(func(sv *state.Service) {
		sv.Phase, sv.Detail = p, detail
		if p != state.Ready {
			sv.Ready = false
		}
		if p != state.Backoff {
			sv.NextAttempt = time.Time{}
		}
	})
}

func (s *service) handle(ctx context.Context, m msg) {
	switch {
	case m.proc != nil:
		s.onProcess(ctx, *m.proc)
	case m.missing:
		if m.restoring && s.pid > 0 {
			s.lostDaemon = true // its instance went with the replaced daemon
		}
		s.id, s.pid = -1, 0
		s.curPID.Store(0)
		s.online.Store(false)
		s.holdAll()
		s.update(func(sv *state.Service) { sv.PM2Status = ""; noInstance(sv) })
		switch {
		case s.held:
			s.reHold = s.reHold || m.restoring
			s.setPhase(state.Stopped, s.heldDetail())
		case m.restoring:
			s.setPhase(state.Restarting, "the new PM2 daemon does not have it; the agent restores it")
		default:
			s.setPhase(state.Stopped, "not in PM2's process list")
		}
	case m.event != nil:
		s.onEvent(ctx, *m.event)
	case m.change != nil:
		s.onChange(ctx, *m.change)
	case m.mem != nil:
		s.onMemory(ctx, *m.mem)
	case m.daemonDown:
		s.online.Store(false)
		s.curPID.Store(0)
		s.baseline = -1 // the next daemon counts restarts from scratch
		s.holdAll()
		if s.pid != 0 {
			s.lostDaemon = true
		}
		s.retry = nil
		s.update(func(sv *state.Service) { sv.PM2Status = ""; noInstance(sv) })
		if s.held {
			s.reHold = true // the daemon brought back may run it again
			s.setPhase(state.Stopped, s.heldDetail())
			break
		}
		s.setPhase(state.Stopped, "the PM2 daemon is down")
	case m.check != nil:
		s.onCheck(*m.check)
	case m.cpu != nil:
		s.onCPU(*m.cpu)
	case m.control != nil:
		msg, err := s.onControl(ctx, m.control.action)
		m.control.reply <- controlReply{msg, err}
	case m.pidExit != nil:
		s.onPIDExit(*m.pidExit)
	}
}

// onProcess reconciles with PM2's record of the app.
func (s *service) onProcess(ctx context.Context, p pm2.Process) {
	s.account(p)
	s.id = p.ID
	s.pm2Status = string(p.Status)
	if p.Status == pm2.StatusOnline {
		s.curPID.Store(int32(p.PID))
	} else {
		s.curPID.Store(0)
	}
	s.update(func(sv *state.Service) {
		sv.PM2Status, sv.PM2Restarts = string(p.Status), p.RestartTime
		if p.Status == pm2.StatusOnline {
			sv.PID, sv.Started = p.PID, p.Started
		} else {
			noInstance(sv)
		}
	})
	switch p.Status {
	case pm2.StatusOnline:
		s.online.Store(true)
		if s.held {
			if p.PID != 0 && p.PID != s.pid {
				s.heldUp(ctx, p.PID)
			}
			break
		}
		if p.PID != 0 && (p.PID != s.pid || s.listDown) {
			if s.listDown {
				s.pid, s.listDown = 0, false // what that list held starts over
			}
			s.instanceUp(p.PID)
		}
	case pm2.StatusErrored:
		s.online.Store(false)
		s.pid = 0
		s.holdAll()
		if s.held {
			s.setPhase(state.Stopped, s.heldDetail())
			break
		}
		s.requestRestart(ctx, state.ReasonCrash, "PM2 gave up on it (errored)")
	case pm2.StatusStopped:
		s.online.Store(false)
		s.pid = 0
		s.holdAll()
		switch {
		case s.held:
			s.reHold = false // PM2 holds it stopped: a start from now on is someone's
			s.setPhase(state.Stopped, s.heldDetail())
		case s.expect == "" && s.retry == nil:
			s.setPhase(state.Stopped, "stopped in PM2")
		}
	default: // launching, waiting restart, stopping
		s.online.Store(false)
		s.holdAll()
		if s.held {
			s.setPhase(state.Stopped, s.heldDetail())
		} else if s.retry == nil {
			s.listDown = true
			s.setPhase(state.Restarting, "PM2: "+string(p.Status))
		}
	}
}

// account attributes PM2 restarts that no event explained (PM2's own max_memory_restart,
// a reload) to reason pm2, once events have had time to arrive. Counting starts over when
// the app is new to the agent: first sight, a new pm_id (re-created: PM2 numbers apps
// anew), or a new daemon (see daemonDown). A list older than what the service already
// saw (it queued behind events) is not evidence of anything.
func (s *service) account(p pm2.Process) {
	if s.baseline < 0 || p.ID != s.id {
		s.baseline, s.accounted, s.maxSeen = p.RestartTime, 0, p.RestartTime
		return
	}
	if p.RestartTime < s.maxSeen {
		return // stale
	}
	s.maxSeen = p.RestartTime
	if extra := p.RestartTime - s.baseline - s.accounted; extra > 0 && s.expect == "" && !s.crashed &&
		s.now().Sub(s.lastEvent) > 2*time.Second {
		s.count(state.ReasonPM2, extra)
	}
}

// count records n restarts for reason; they are in PM2's restart_time too.
func (s *service) count(reason string, n int) {
	s.accounted += n
	s.record(reason, n)
}

// record records n restarts for reason without accounting them against PM2's counter.
func (s *service) record(reason string, n int) {
	s.update(func(sv *state.Service) { sv.Restarts[reason] += uint64(n) })
	for range n {
		s.log.Info("restart counted", "service", s.name, "reason", reason) // one line a restart
	}
}

func (s *service) onEvent(ctx context.Context, e pm2.Event) {
	s.lastEvent = s.now()
	s.log.Debug("pm2 event", "service", s.name, "event", string(e.Kind), "status", string(e.Status),
		"restartTime", e.RestartTime, "manually", e.Manually)
	switch e.Kind {
	case pm2.EventExit:
		s.online.Store(false)
		s.holdAll()
		s.endInstance()
		s.update(func(sv *state.Service) {
			noInstance(sv)
			sv.LastExit = state.Exit{Code: e.ExitCode, Signal: e.Signal, At: e.At}
		})
		if s.lostDaemon || s.held {
			return
		}
		code := "code unknown"
		switch {
		case e.Signal != "":
			code = "signal " + e.Signal // PM2 reports exit code 0 for a kill -9
		case e.ExitCode != nil:
			code = fmt.Sprint("code ", *e.ExitCode)
		}
		switch {
		case s.expect != "":
		case e.Status == pm2.StatusStopping || (e.Status == pm2.StatusStopped && s.stopping):
			// stopped on purpose (pm2 restart/stop/reload: "stopping" comes first; a crash
			// sends one exit, "stopped"); a manual restart is counted when its
			// notification arrives
			s.stopping = true
			s.setPhase(state.Restarting, "stopped through PM2")
		default:
			s.crashed = true
			s.log.Warn("service exited", "service", s.name, "exit", code)
			s.setPhase(state.Restarting, "exited ("+code+"); PM2 restarts it")
		}
	case pm2.EventOnline:
		s.online.Store(true)
		if s.held {
			s.heldUp(ctx, -1)
			return
		}
		s.instanceUp(-1) // its pid comes with the next list
	case pm2.EventRestart:
		if e.Manually && s.expect == "" {
			s.count(state.ReasonManual, 1)
		}
	case pm2.EventStop:
		if e.Manually && s.expect == "" && !s.held {
			s.setPhase(state.Stopped, "stopped by hand")
		}
	case pm2.EventRestartOverlimit:
		s.log.Warn("PM2 gave up restarting the service", "service", s.name)
	}
}

// endInstance ends what is left of the instance that exited. PM2 starts each app in its
// own process group (pgid = the instance's pid) but signals only the main pid: a wrapper's
// child (tsx runs the real app as one) outlives a SIGKILL of the wrapper and keeps the
// port, so that every new instance fails to listen.
func (s *service) endInstance() {
	pid := int(s.curPID.Load())
	if pid <= 0 && s.pid > 0 {
		pid = s.pid
	}
	if pid <= 0 {
		return
	}
	if left := procfs.GroupMembers(pid, s.startTick); len(left) > 0 {
		s.log.Warn("ending processes the exited instance left running", "service", s.name, "pid", pid, "processes", len(left))
		procfs.KillGroup(pid, s.startTick)
	}
	s.curPID.Store(0)
}

// instanceUp starts watching a new instance: startup probe first, then liveness and
// readiness. A pid of -1 means "new, pid not known yet" (an online event carries none).
// A crash or a lost daemon that preceded it is counted now, when the restart happened.
func (s *service) instanceUp(pid int) {
	s.tree.Store(nil)
	if pid > 0 {
		s.startTick = procfs.StartTime(pid)
		s.watchExit(pid)
	}
	if pid > 0 && s.pid == -1 {
		s.pid = pid // the pid of the instance the online event announced
		return
	}
	switch {
	case s.lostDaemon:
		s.record(state.ReasonCrash, 1) // started by a new daemon: its restart_time knows nothing of it
	case s.crashed:
		s.count(state.ReasonCrash, 1)
	}
	s.crashed, s.lostDaemon, s.stopping, s.expect = false, false, false, ""
	s.wobbly.Store(false)
	at := s.now()
	s.instanceAt.Store(&at)
	s.pid = pid
	s.breaches = 0
	s.startupDone = false
	if !s.ensureWorkers() {
		s.setPhase(state.Unhealthy, "probes cannot run; see the log")
		return
	}
	s.liveness.Hold()
	s.readiness.Hold()
	s.startup.Hold()
	s.startup.Resume()
	s.setPhase(state.Starting, "waiting for the startup probe")
}

func (s *service) ensureWorkers() bool {
	if s.startup != nil {
		return true
	}
	spec := probe.FromConfig(s.set.Probe)
	check := probe.Owned(probe.Checker(spec, func(context.Context) (bool, error) { return s.online.Load(), nil }), spec, s.ownsPort)
	start := func(t probe.Type, tm config.Timing) *probe.Worker {
		w, err := probe.StartWorker(context.Background(), probe.WorkerConfig{
			Type:   t,
			Timing: probeTiming(tm),
			Check:  check,
			Clock:  s.clock,
			OnResult: func(r probe.Result) {
				s.onResult(t, r)
			},
			OnChange: func(c probe.Change) {
				select {
				case s.msgs <- msg{change: &c}:
				case <-s.quit:
				}
			},
		})
		if err != nil {
			// New validated the timings, so this cannot happen; say so loudly if it does
			s.log.Error("cannot start probe worker", "service", s.name, "probe", t.String(), "err", err)
			return nil
		}
		w.Hold()
		return w
	}
	st := start(probe.Startup, s.set.Startup)
	// liveness and readiness run the same check: a result less than half the shorter
	// period old serves both
	check = probe.Shared(check, min(s.set.Liveness.Period(), s.set.Readiness.Period())/2,
		s.instanceSeen)
	lv, rd := start(probe.Liveness, s.set.Liveness), start(probe.Readiness, s.set.Readiness)
	if st == nil || lv == nil || rd == nil {
		for _, w := range []*probe.Worker{st, lv, rd} {
			if w != nil {
				w.Stop()
			}
		}
		return false
	}
	s.startup, s.liveness, s.readiness = st, lv, rd
	return true
}

// stale reports whether r is of a check that started before the current instance was
// seen: its verdict was queued before the instance's start reset the workers, and is about
// an earlier instance (a readiness success of the one killed must not make the next ready).
func (s *service) stale(r probe.Result) bool { return r.At.Before(s.instanceSeen()) }

// instanceSeen is when the current instance was seen (the zero time before the first).
func (s *service) instanceSeen() time.Time {
	if at := s.instanceAt.Load(); at != nil {
		return *at
	}
	return time.Time{}
}

// ownsPort reports whether the service's process tree holds the listening socket on port:
// first with the tree of the last memory sample, then, if that does not show it (a new
// instance, a child that started since), with the tree measured now.
//
// Once an instance was seen holding its port, that is remembered until the instance is
// gone: no other process can take a port while it is held, and reading /proc/net/tcp on
// every probe cost milliseconds each on hosts with large connection tables.
func (s *service) ownsPort(ctx context.Context, port int) (bool, error) {
	pid := s.curPID.Load()
	if pid > 0 && s.ownerPID.Load() == pid {
		return true, nil
	}
	ok, err := s.checkOwner(port, pid)
	if ok && pid > 0 {
		s.ownerPID.Store(pid)
	}
	return ok, err
}

func (s *service) checkOwner(port int, pid int32) (bool, error) {
	if t := s.tree.Load(); t != nil {
		if ok, err := s.sampler.PortOwned(port, *t); ok || err != nil {
			return ok, err
		}
	}
	ok, tree, err := s.sampler.OwnsPort(pid, port)
	if tree != nil {
		s.tree.Store(&tree)
	}
	return ok, err
}

func probeTiming(t config.Timing) probe.Timing {
	return probe.Timing{InitialDelay: t.InitialDelay(), Period: t.Period(), Timeout: t.Timeout(),
		SuccessThreshold: t.SuccessThreshold, FailureThreshold: t.FailureThreshold}
}

func (s *service) onResult(t probe.Type, r probe.Result) {
	if s.observer != nil && r.Outcome != probe.Error && !r.Reused {
		s.observer.ObserveProbe(s.name, t.String(), r.Duration, r.Outcome != probe.Success)
	}
	if !s.online.Load() || s.stale(r) {
		return // a check that was in flight when the instance went: it says nothing now
	}
	pr := state.ProbeResult{Type: t.String(), OK: r.Outcome == probe.Success, Outcome: r.Outcome.String(),
		Duration: r.Duration, At: r.At}
	if r.Outcome != probe.Success {
		pr.Error = r.Detail
	}
	s.update(func(sv *state.Service) { sv.LastProbe = pr })
	// READY tells what is known now: a failed check shows at once, while restarts wait
	// for the failure threshold (see onCheck)
	if t == probe.Startup || r.Outcome == probe.Error || (r.Outcome == probe.Success && !s.wobbly.Load()) {
		return
	}
	select {
	case s.msgs <- msg{check: &checkResult{probe: t, ok: r.Outcome == probe.Success, detail: r.Detail}}:
	case <-s.quit:
	}
}

// onCheck shows a single failed liveness or readiness check of a ready service at once
// (unhealthy, not ready), and takes it back on the next successful one while the
// readiness verdict is still success. Restarts are still decided on the verdicts.
func (s *service) onCheck(c checkResult) {
	if s.expect != "" || !s.online.Load() || !s.startupDone || s.readiness == nil {
		return
	}
	sv := s.snapshot()
	switch {
	case !c.ok && sv.Phase == state.Ready:
		s.wobbly.Store(true)
		s.setPhase(state.Unhealthy, fmt.Sprintf("%s check failed: %s (restart after %d in a row)",
			c.probe, c.detail, s.set.Liveness.FailureThreshold))
	case c.ok && s.wobbly.Load() && sv.Phase == state.Unhealthy && s.readiness.State() == probe.StateSuccess &&
		s.liveness.State() != probe.StateFailure:
		s.wobbly.Store(false)
		s.update(func(sv *state.Service) { sv.Phase, sv.Ready, sv.Detail = state.Ready, true, "" })
	}
}

// noInstance clears what described the instance that is gone.
func noInstance(sv *state.Service) {
	sv.PID, sv.Started = 0, time.Time{}
	sv.MemoryBytes, sv.MemoryKind = 0, ""
	sv.CPUPercent, sv.CPUMeasured = 0, false
	sv.LastProbe = state.ProbeResult{}
}

func (s *service) holdAll() {
	for _, w := range []*probe.Worker{s.startup, s.liveness, s.readiness} {
		if w != nil {
			w.Hold()
		}
	}
}

func (s *service) stopWorkers() {
	for _, w := range []*probe.Worker{s.startup, s.liveness, s.readiness} {
		if w != nil {
			w.Stop()
		}
	}
}

func (s *service) onChange(ctx context.Context, c probe.Change) {
	if s.expect != "" || !s.online.Load() || s.held || (c.To != probe.StateUnknown && s.stale(c.Cause)) {
		return // a verdict about an instance that is going away, or one gone already
	}
	switch c.Type {
	case probe.Startup:
		switch c.To {
		case probe.StateSuccess:
			s.startupDone = true
			s.startup.Hold()
			s.liveness.Resume()
			s.readiness.Resume()
			s.setPhase(state.Starting, "started; waiting for readiness")
		case probe.StateFailure:
			s.requestRestart(ctx, state.ReasonProbe, "startup probe failed: "+c.Cause.Detail)
		}
	case probe.Liveness:
		if c.To == probe.StateFailure && s.startupDone {
			s.requestRestart(ctx, state.ReasonProbe, "liveness probe failed: "+c.Cause.Detail)
		}
	case probe.Readiness:
		if !s.startupDone {
			return
		}
		if c.To == probe.StateSuccess {
			s.wobbly.Store(false)
			s.readySince = s.now()
			if s.policy.restarts > 0 { // a timer, not a ticker: nothing to do while nothing changes
				s.stableAt = s.clock.After(s.policy.resetAfter)
			}
			s.update(func(sv *state.Service) { sv.Phase, sv.Ready, sv.Detail = state.Ready, true, "" })
		} else if c.To == probe.StateFailure {
			s.setPhase(state.Unhealthy, "readiness probe failing: "+c.Cause.Detail)
		}
	}
}

func (s *service) onMemory(ctx context.Context, u proctree.Usage) {
	if !s.online.Load() {
		return // measured before the instance went
	}
	s.tree.Store(&u.PIDs)
	s.update(func(sv *state.Service) { sv.MemoryBytes, sv.MemoryKind = u.Bytes, u.Kind })
	if s.expect != "" || s.retry != nil {
		return
	}
	if u.Bytes <= s.set.MemoryLimitBytes {
		s.breaches = 0
		return
	}
	s.breaches++
	s.log.Warn("service over its memory limit", "service", s.name, "bytes", u.Bytes, "kind", u.Kind,
		"limitBytes", s.set.MemoryLimitBytes, "check", s.breaches, "of", s.breachN)
	if s.breaches >= s.breachN {
		s.breaches = 0
		s.requestRestart(ctx, state.ReasonMemory, fmt.Sprintf("process tree %d MiB over the limit of %d MiB for %d checks",
			u.Bytes>>20, s.set.MemoryLimitBytes>>20, s.breachN))
	}
}

// requestRestart restarts the service now or, while backing off, when the policy allows.
func (s *service) requestRestart(ctx context.Context, reason, detail string) {
	if s.expect != "" || s.retry != nil || s.held {
		return // one restart at a time; none while the operator holds it stopped
	}
	s.log.Warn("service needs a restart", "service", s.name, "reason", reason, "detail", detail)
	wait := s.policy.next()
	if wait == 0 {
		s.restart(ctx, reason)
		return
	}
	s.retryReason = reason
	s.retry = s.clock.After(wait)
	due := s.now().Add(wait)
	s.update(func(sv *state.Service) {
		sv.Phase, sv.Ready, sv.NextAttempt = state.Backoff, false, due
		sv.Detail = fmt.Sprintf("%s; restart in %s", detail, wait.Round(100*time.Millisecond))
	})
}

func (s *service) restart(ctx context.Context, reason string) {
	if s.id < 0 {
		s.setPhase(state.Stopped, "cannot restart: not in PM2's process list")
		return
	}
	s.holdAll()
	s.expect = reason
	s.crashed = false
	s.setPhase(state.Restarting, "restarting ("+reason+")")
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err := s.ctrl.Restart(rctx, s.id)
	cancel()
	if err != nil {
		s.expect = ""
		s.log.Error("restart failed", "service", s.name, "reason", reason, "err", err)
		s.requestRestart(ctx, reason, "restart failed: "+err.Error())
		return
	}
	s.count(reason, 1)
	s.log.Info("service restarted", "service", s.name, "reason", reason)
}

// controlReq is an operator's request (state.ActionRestart, ActionStop, ActionStart),
// handled in the service's loop like everything else, so that it never races a restart
// the agent is making.
type controlReq struct {
	action string
	reply  chan controlReply // buffered: the loop never waits for the asker
}

type controlReply struct {
	msg string
	err error
}

// Stopper stops apps by pm_id; the supervisor's pm2Stopper is the real one.
type Stopper interface {
	Stop(ctx context.Context, id int) error
}

// controlTimeout bounds the PM2 call of one control request.
const controlTimeout = 20 * time.Second

func (s *service) onControl(ctx context.Context, action string) (string, error) {
	switch action {
	case state.ActionStop:
		return s.operatorStop(ctx)
	case state.ActionStart:
		return s.operatorStart(ctx)
	case state.ActionRestart:
		if s.held {
			msg, err := s.operatorStart(ctx)
			if err == nil {
				msg = "it was stopped by the operator: " + msg
			}
			return msg, err
		}
		return s.manualRestart(ctx)
	}
	return "", fmt.Errorf("%w %q", state.ErrUnknownAction, action)
}

// manualRestart restarts the service now through PM2, counted as manual. A restart the
// backoff was holding back is replaced by it; the backoff itself is neither advanced nor
// reset (the next automatic restart, if one is needed, waits as it would have).
func (s *service) manualRestart(ctx context.Context) (string, error) {
	if s.id < 0 {
		return "", fmt.Errorf("%w: %s is not in PM2's process list", state.ErrBusy, s.name)
	}
	if s.expect != "" {
		return "", fmt.Errorf("%w: %s is restarting already (%s); try again once it is up", state.ErrBusy, s.name, s.expect)
	}
	s.holdAll()
	s.expect = state.ReasonManual
	s.crashed = false
	s.setPhase(state.Restarting, "restarting (manual: livinity-agent restart)")
	rctx, cancel := context.WithTimeout(ctx, controlTimeout)
	err := s.ctrl.Restart(rctx, s.id)
	cancel()
	if err != nil {
		s.expect = ""
		s.log.Error("manual restart failed", "service", s.name, "err", err)
		s.resumeProbes("manual restart failed: " + err.Error())
		return "", fmt.Errorf("restart %s through PM2: %w", s.name, err)
	}
	if s.retry != nil {
		s.retry = nil // this restart is the one the backoff held back
		s.update(func(sv *state.Service) { sv.NextAttempt = time.Time{} })
	}
	s.count(state.ReasonManual, 1)
	s.log.Info("service restarted", "service", s.name, "reason", state.ReasonManual)
	return fmt.Sprintf("%s restarted (counted as manual); supervision goes on with its startup probe", s.name), nil
}

// resumeProbes lets the probes of a running instance go on after a control request that
// failed.
func (s *service) resumeProbes(detail string) {
	if !s.online.Load() || s.startup == nil {
		return
	}
	if s.startupDone {
		s.liveness.Resume()
		s.readiness.Resume()
	} else {
		s.startup.Resume()
	}
	s.setPhase(state.Unhealthy, detail)
}

// operatorStop stops the service through PM2 and holds it: no probes and no restarts
// until operatorStart (or someone starts it through PM2).
func (s *service) operatorStop(ctx context.Context) (string, error) {
	if s.held {
		return fmt.Sprintf("%s is stopped by the operator already (since %s)", s.name, s.heldAt.Format(time.RFC3339)), nil
	}
	if s.id < 0 {
		return "", fmt.Errorf("%w: %s is not in PM2's process list", state.ErrBusy, s.name)
	}
	s.holdAll()
	s.stoppingByOperator.Store(true)
	defer s.stoppingByOperator.Store(false)
	rctx, cancel := context.WithTimeout(ctx, controlTimeout)
	err := s.stopper.Stop(rctx, s.id)
	cancel()
	if err != nil {
		s.log.Error("stop failed", "service", s.name, "err", err)
		s.resumeProbes("stop failed: " + err.Error())
		return "", fmt.Errorf("stop %s through PM2: %w", s.name, err)
	}
	s.hold(s.now())
	s.online.Store(false)
	s.expect, s.crashed, s.stopping = "", false, false
	s.retry = nil
	s.breaches = 0
	s.log.Info("service stopped by the operator", "service", s.name)
	return fmt.Sprintf("%s stopped; the agent will not probe or restart it until `livinity-agent start %s`", s.name, s.name), nil
}

// hold records an operator's stop at `at`.
func (s *service) hold(at time.Time) {
	s.held, s.heldAt, s.heldPID = true, at, s.pid
	if s.persist != nil {
		s.persist(s.name, at)
	}
	s.update(func(sv *state.Service) {
		sv.OperatorStopped, sv.OperatorStoppedAt = true, at
		noInstance(sv)
	})
	s.setPhase(state.Stopped, s.heldDetail())
}

// release ends an operator's stop.
func (s *service) release() {
	s.held, s.reHold, s.heldAt, s.heldPID = false, false, time.Time{}, 0
	if s.persist != nil {
		s.persist(s.name, time.Time{})
	}
	s.update(func(sv *state.Service) { sv.OperatorStopped, sv.OperatorStoppedAt = false, time.Time{} })
}

func (s *service) heldDetail() string {
	return fmt.Sprintf("stopped by the operator at %s (livinity-agent stop); `livinity-agent start %s` resumes it",
		s.heldAt.Local().Format("2006-01-02 15:04:05"), s.name)
}

// heldUp handles an instance of a held service coming online (pid -1: an online event,
// the pid comes with the next list). After the agent's own restore of a lost daemon, or
// at the agent's start (the stop was recorded), it is stopped again: nobody asked for
// it. Otherwise someone started it through PM2 (pm2 start or restart): the operator's
// stop is over and supervision resumes.
func (s *service) heldUp(ctx context.Context, pid int) {
	if pid > 0 && pid == s.heldPID {
		return // a list older than the stop
	}
	if s.reHold {
		s.log.Warn("stopping again a service the operator stopped: PM2 started it without being asked",
			"service", s.name, "pid", pid)
		rctx, cancel := context.WithTimeout(ctx, controlTimeout)
		err := s.stopper.Stop(rctx, s.id)
		cancel()
		if err != nil {
			s.log.Error("could not stop the service again", "service", s.name, "err", err)
			return // the next list tries again
		}
		s.reHold = false
		s.online.Store(false)
		if pid > 0 {
			s.heldPID = pid
		}
		s.setPhase(state.Stopped, s.heldDetail())
		return
	}
	s.log.Info("a service the operator stopped was started through PM2; supervising it again", "service", s.name)
	s.release()
	s.instanceUp(pid)
}

// operatorStart starts the service through PM2 (pm2 restart of a stopped app) and ends
// an operator's stop; the new instance goes through its startup probe.
func (s *service) operatorStart(ctx context.Context) (string, error) {
	if !s.held && s.pm2Status == string(pm2.StatusOnline) && s.id >= 0 {
		return fmt.Sprintf("%s is running and supervised already", s.name), nil
	}
	if s.id < 0 {
		return "", fmt.Errorf("%w: %s is not in PM2's process list", state.ErrBusy, s.name)
	}
	if s.expect != "" {
		return "", fmt.Errorf("%w: %s is restarting already (%s)", state.ErrBusy, s.name, s.expect)
	}
	rctx, cancel := context.WithTimeout(ctx, controlTimeout)
	err := s.ctrl.Restart(rctx, s.id)
	cancel()
	if err != nil {
		s.log.Error("start failed", "service", s.name, "err", err)
		return "", fmt.Errorf("start %s through PM2: %w", s.name, err)
	}
	wasHeld := s.held
	s.release()
	s.retry = nil
	s.baseline = -1 // PM2 may count the start in restart_time: not a restart to attribute
	s.setPhase(state.Restarting, "started by the operator; waiting for the instance")
	s.log.Info("service started by the operator", "service", s.name, "wasStoppedByOperator", wasHeld)
	return fmt.Sprintf("%s started; supervision resumes with its startup probe", s.name), nil
}

// cpuSample is the tree's CPU over one sampling interval.
type cpuSample struct {
	percent float64 // of one core
	seconds float64 // CPU time used in the interval
}

func (s *service) onCPU(c cpuSample) {
	if !s.online.Load() {
		return // measured before the instance went
	}
	s.update(func(sv *state.Service) {
		sv.CPUPercent, sv.CPUMeasured = c.percent, true
		sv.CPUSeconds += c.seconds
	})
}
