package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/internal/tick"
	"github.com/livinity/livinity-agent/supervisor/pidwatch"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/probe"
	"github.com/livinity/livinity-agent/supervisor/proctree"
	"github.com/livinity/livinity-agent/supervisor/state"
	"golang.org/x/sync/errgroup"
)

// Options configure a Supervisor.
type Options struct {
	Config  *config.Config
	PM2Home string
	// PM2Bin is the pm2 program: the fallback when the socket protocol misbehaves, and how
	// a dead daemon is brought back (pm2 resurrect).
	PM2Bin string
	// Ecosystem is started when PM2 must be brought back and has no saved process list.
	Ecosystem string
	// StartDaemon, if set, brings a dead daemon back under PM2Home instead of pm2
	// resurrect run by the agent (which would make the daemon the agent's child): under
	// systemd it starts livinity-pm2.service, which resurrects the saved list itself. It
	// returns once the daemon answers.
	StartDaemon func(ctx context.Context) error
	Store       *state.Store
	Logger      *slog.Logger
	// Observer, if set, receives every probe result (metrics).
	Observer ProbeObserver
	// Clock paces probes and restart timers; nil means the real clock.
	Clock probe.Clock
	// ReconcileEvery is the safety-net full process list (crashes are seen on the event bus
	// at once); default 5 s.
	ReconcileEvery time.Duration
	// StateDir is where the services an operator stopped through the agent are recorded
	// (OperatorStopsFile), so that the stop holds across an agent restart; default the
	// directory of Ecosystem (the pipeline writes the ecosystem file into the state dir),
	// and with neither the stops are not recorded.
	StateDir string
	// NoPIDWatch sees exits on PM2's bus only, without watching each main pid (the
	// benchmarks' baseline; also what happens on kernels without pidfd_open).
	NoPIDWatch bool
}

// Supervisor keeps the services of one PM2 daemon healthy. Create it with New and call
// Run once.
type Supervisor struct {
	opts      Options
	log       *slog.Logger
	services  []*service
	byName    map[string]*service
	ctrl      *pm2.Fallback
	cli       *pm2.CLI
	sampler   *proctree.Sampler
	memEvery  time.Duration
	heartbeat atomic.Int64

	stopsMu sync.Mutex
	stops   map[string]time.Time // services stopped by the operator, as recorded

	mu         sync.Mutex
	pids       map[string]instance // last known instances, for memory and orphan clean-up
	listed     map[string]bool     // supervised apps in the last list
	unreadable map[string]string   // per app, the unreadable fields last logged
}

type instance struct {
	pid   int
	start uint64
}

// New checks the options and prepares the services; nothing runs until Run.
func New(opts Options) (*Supervisor, error) {
	if opts.Config == nil || opts.Store == nil || opts.PM2Home == "" || opts.PM2Bin == "" {
		return nil, errors.New("supervisor: Config, Store, PM2Home and PM2Bin are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = probe.RealClock{}
	}
	if opts.ReconcileEvery <= 0 {
		opts.ReconcileEvery = 5 * time.Second
	}
	cli := &pm2.CLI{Bin: opts.PM2Bin, Home: opts.PM2Home}
	s := &Supervisor{
		opts: opts, log: opts.Logger, byName: map[string]*service{}, cli: cli,
		ctrl: pm2.NewFallback(opts.PM2Home, cli, opts.Logger), sampler: proctree.NewSampler(""),
		pids: map[string]instance{}, unreadable: map[string]string{}, memEvery: time.Hour,
	}
	if opts.StateDir == "" && opts.Ecosystem != "" {
		opts.StateDir = filepath.Dir(opts.Ecosystem)
	}
	s.opts.StateDir = opts.StateDir
	s.stops = loadStops(opts.StateDir, opts.Logger)
	for _, name := range opts.Config.ServiceNames() {
		set := opts.Config.ServiceSettings(name)
		for _, t := range []config.Timing{set.Startup, set.Liveness, set.Readiness} {
			if err := probeTiming(t).Validate(); err != nil {
				return nil, fmt.Errorf("supervisor: service %s: %w", name, err)
			}
		}
		if err := probe.FromConfig(set.Probe).Validate(); err != nil {
			return nil, fmt.Errorf("supervisor: service %s: %w", name, err)
		}
		sv := &service{
			name: name, set: set, breachN: opts.Config.Agent.MemoryBreachChecks, store: opts.Store,
			ctrl: s.ctrl, log: opts.Logger, observer: opts.Observer,
			policy: newRestartPolicy(opts.Config.Agent.RestartBackoff, nil),
			msgs:   make(chan msg, 256), quit: make(chan struct{}), clock: opts.Clock, now: time.Now, sampler: s.sampler,
			id: -1, baseline: -1,
			stopper: pm2Stopper{home: opts.PM2Home, cli: cli}, persist: s.recordStop,
		}
		opts.Store.Update(name, func(st *state.Service) {
			st.MemoryLimitBytes = set.MemoryLimitBytes
			st.Phase, st.Detail = state.Starting, "waiting for PM2's process list"
		})
		if at, ok := s.stops[name]; ok {
			// stopped by the operator before the agent (re)started: still held, and an
			// instance PM2 runs now is stopped again (see heldUp)
			sv.held, sv.heldAt, sv.reHold = true, at, true
			opts.Store.Update(name, func(st *state.Service) {
				st.OperatorStopped, st.OperatorStoppedAt = true, at
				st.Phase, st.Detail = state.Stopped, sv.heldDetail()
			})
		}
		s.services = append(s.services, sv)
		s.byName[name] = sv
		s.memEvery = min(s.memEvery, set.Liveness.Period())
	}
	s.heartbeat.Store(time.Now().UnixNano())
	return s, nil
}

// Heartbeat is when the supervision loop last went round (for the systemd watchdog: a
// stuck loop stops advancing it).
func (s *Supervisor) Heartbeat() time.Time { return time.Unix(0, s.heartbeat.Load()) }

// Run supervises until ctx ends. Stopping it never stops the services.
func (s *Supervisor) Run(ctx context.Context) error {
	defer s.ctrl.Close()
	defer s.opts.Store.SetControl(s.control)()
	if !s.opts.NoPIDWatch {
		pw, err := pidwatch.NewWatcher()
		if err != nil {
			s.log.Warn("exits are seen on PM2's bus only", "err", err)
		} else {
			defer pw.Close()
			if err := pw.ExitEvents(); err != nil {
				s.log.Info("exits are seen on pidfds and PM2's bus, not the kernel's exit events", "err", err)
			}
			for _, sv := range s.services {
				sv.exits.watcher = pw
			}
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	updates := make(chan pm2.Update, 64)
	w := &pm2.Watcher{Home: s.opts.PM2Home, Logger: s.log, BackOff: backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxInterval(time.Second),
		backoff.WithMaxElapsedTime(0)), Lister: s.ctrl}
	g.Go(func() error { w.Run(ctx, updates); return nil })
	for _, sv := range s.services {
		g.Go(func() error { return sv.run(ctx) })
	}
	g.Go(func() error { s.followTrees(ctx); return nil })
	g.Go(func() error { return s.sampleMemory(ctx) })
	g.Go(func() error { return s.loop(ctx, updates) })
	return g.Wait()
}

// listTimeout bounds the reconciling list: a daemon that does not answer within it is
// reported as not answering.
const listTimeout = 5 * time.Second

type listResult struct {
	procs []pm2.Process
	err   error
}

// strayAfter is how long a PM2 daemon may run without answering on its home's sockets
// before a recovery takes it for a stray (see strays.go).
const strayAfter = 10 * time.Second

// dyingDaemonRecheck is how soon a daemon that closed its bus but still takes connections
// on its RPC socket is looked at again.
const dyingDaemonRecheck = 200 * time.Millisecond

// maxStaleLists bounds how many lists in a row are asked for again because events came
// while they were under way (so that a storm of events cannot starve the services of lists).
const maxStaleLists = 3

// loop dispatches PM2's updates to the services, reconciles with a full list after events
// and periodically (off the loop, under listTimeout, so that a hung daemon neither stalls
// the loop nor goes unnoticed), and brings a dead daemon back. Only a daemon that is gone
// (nothing listens on its socket) is brought back; one that does not answer, or answers
// what cannot be decoded, is reported and left alone. A new daemon without the apps the
// last one ran (an operator's `pm2 ls` spawns an empty one) is a daemon restart: the apps
// are restored.
func (s *Supervisor) loop(ctx context.Context, updates <-chan pm2.Update) error {
	ticker := tick.New(time.Second) // with the other tickers of the second: one wake
	defer ticker.Stop()
	var (
		reconcile      <-chan time.Time
		recheck        <-chan time.Time // is the daemon gone, so that it must be brought back?
		lastList       time.Time
		connected      bool
		down           bool            // the services were told the daemon is gone
		expectBack     map[string]bool // apps the lost daemon ran, until a daemon lists them
		restoreAfter   time.Time
		recovering     bool
		startingDaemon bool               // the recovery under way is recoverDaemon
		gaveWay        bool               // and it was stopped for a restore
		stopRecover    context.CancelFunc = func() {}
		listing        bool
		listAsked      time.Time // when the list under way was asked for
		lastEvent      time.Time // when the last event arrived
		staleLists     int       // lists in a row asked for before the last event
		listDone       = make(chan listResult, 1)
		recoverDone    = make(chan error, 1)
		recoverWait    = backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Second),
			backoff.WithMaxInterval(30*time.Second), backoff.WithMaxElapsedTime(0))
	)
	startList := func() {
		lastList = time.Now()
		if listing {
			return
		}
		listing, listAsked = true, time.Now()
		go func() {
			lctx, cancel := context.WithTimeout(ctx, listTimeout)
			defer cancel()
			procs, err := s.ctrl.List(lctx)
			listDone <- listResult{procs, err}
		}()
	}
	onList := func(procs []pm2.Process) {
		seen := s.dispatchList(ctx, procs, expectBack)
		if expectBack == nil {
			return
		}
		var missing []string
		for name := range expectBack {
			if !seen[name] {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			expectBack = nil
			return
		}
		if recovering {
			if startingDaemon && !gaveWay {
				// a daemon answers, without the apps: a recovery still starting one (its
				// pm2 command may wait on the daemon someone else spawned) gives way to
				// restoring them
				s.log.Info("a PM2 daemon answers: restoring the apps into it instead", "home", s.opts.PM2Home)
				gaveWay = true
				stopRecover()
			}
			return
		}
		if time.Now().Before(restoreAfter) {
			return
		}
		slices.Sort(missing)
		recovering = true
		restoreAfter = time.Now().Add(recoverWait.NextBackOff())
		s.log.Warn("the PM2 daemon was replaced by one without the apps; restoring them", "home", s.opts.PM2Home, "missing", missing)
		rctx, cancel := context.WithCancel(ctx)
		stopRecover = cancel
		go func() { recoverDone <- s.restoreApps(rctx, missing) }()
	}
	for {
		s.heartbeat.Store(time.Now().UnixNano())
		select {
		case <-ctx.Done():
			return nil
		case u := <-updates:
			switch {
			case u.Snapshot != nil:
				connected, down, recheck = true, false, nil
				s.pm2State(true, "")
				onList(u.Snapshot)
				lastList = time.Now()
			case u.Event != nil:
				lastEvent = time.Now()
				s.dispatch(ctx, u.Event.Name, msg{event: u.Event})
				if reconcile == nil {
					reconcile = time.After(20 * time.Millisecond) // learn the new pid
				}
			case !u.Connected:
				connected = false
				if expectBack == nil {
					expectBack = s.listedNames()
				}
				if s.daemonGone() {
					s.daemonDown(ctx, u.Err)
					down = true
				} else {
					why := "the PM2 daemon does not answer: "
					if errors.Is(u.Err, pm2.ErrProtocol) {
						why = "the PM2 daemon's replies cannot be read: "
					}
					s.log.Warn("lost the PM2 connection; the daemon is still there", "home", s.opts.PM2Home, "err", u.Err)
					s.pm2State(false, why+errText(u.Err))
				}
				switch {
				case recovering || recheck != nil:
				case down:
					recheck = time.After(time.Second) // it may be restarting on its own
				default:
					// a daemon killed closes its bus a moment before its RPC socket: look
					// again soon
					recheck = time.After(dyingDaemonRecheck)
				}
			}
		case <-reconcile:
			reconcile = nil
			if connected {
				startList()
			}
		case <-ticker.C:
			if connected && time.Since(lastList) >= s.opts.ReconcileEvery {
				startList()
			}
		case r := <-listDone:
			listing = false
			switch {
			case !connected:
			case r.err == nil && listAsked.Before(lastEvent) && staleLists < maxStaleLists:
				// asked for before an event the services have seen, the list may say what
				// the event changed (PM2 answers on its RPC socket, events come on the bus:
				// no order between them): a list that says "waiting restart" after the
				// "online" event held a restarted service as restarting for good. Ask again.
				staleLists++
				startList()
			case r.err == nil:
				staleLists = 0
				s.pm2State(true, "")
				onList(r.procs)
			case errors.Is(r.err, pm2.ErrNoReply):
				s.log.Warn("the PM2 daemon does not answer", "home", s.opts.PM2Home, "err", r.err)
				s.pm2State(false, "the PM2 daemon does not answer: "+errText(r.err))
			case errors.Is(r.err, pm2.ErrDaemonNotRunning) || ctx.Err() != nil:
			default:
				s.log.Warn("cannot list PM2 apps", "err", r.err)
			}
		case <-recheck:
			recheck = nil
			if connected || recovering {
				break
			}
			if !s.daemonGone() {
				recheck = time.After(2 * time.Second) // hung, or just replaced: look again
				break
			}
			if !down {
				s.daemonDown(ctx, errors.New("nothing listens on its socket"))
				down = true
				recheck = time.After(time.Second) // it may be restarting on its own
				break
			}
			recovering, startingDaemon = true, true
			rctx, cancel := context.WithCancel(ctx)
			stopRecover = cancel
			go func() { recoverDone <- s.recoverDaemon(rctx) }()
		case err := <-recoverDone:
			recovering, startingDaemon = false, false
			stopRecover()
			switch {
			case connected:
				if err != nil && !gaveWay {
					s.log.Error("could not restore the PM2 apps", "err", err)
				}
				gaveWay = false
				startList() // does the daemon list them now?
			case err != nil:
				wait := recoverWait.NextBackOff()
				s.log.Error("could not bring the PM2 daemon back; retrying", "err", err, "in", wait)
				recheck = time.After(wait)
			}
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// pm2State records whether PM2 is connected and answering, and why not.
func (s *Supervisor) pm2State(ok bool, why string) {
	s.opts.Store.UpdateAgent(func(a *state.Agent) { a.PM2Connected, a.PM2Error = ok, why })
}

// daemonGone reports whether nothing listens on the daemon's RPC socket (a daemon that is
// there but does not answer is not gone).
func (s *Supervisor) daemonGone() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := pm2.Dial(ctx, s.opts.PM2Home)
	if err != nil {
		return errors.Is(err, pm2.ErrDaemonNotRunning)
	}
	c.Close()
	return false
}

// daemonDown tells the services the daemon is gone.
func (s *Supervisor) daemonDown(ctx context.Context, err error) {
	s.log.Warn("the PM2 daemon is gone", "home", s.opts.PM2Home, "err", err)
	s.pm2State(false, "the PM2 daemon is gone: "+errText(err))
	for _, sv := range s.services {
		s.dispatch(ctx, sv.name, msg{daemonDown: true})
	}
}

// listedNames is the set of supervised apps the last list showed.
func (s *Supervisor) listedNames() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.listed)
}

// dispatchList hands every service its record (or its absence) from a full list, and
// returns the supervised names it holds. An app in expectBack that the list lacks is being
// restored: its last instance stays known (it is an orphan to end) and its service is
// told so.
func (s *Supervisor) dispatchList(ctx context.Context, procs []pm2.Process, expectBack map[string]bool) map[string]bool {
	seen := map[string]bool{}
	s.mu.Lock()
	for _, p := range procs {
		if _, ok := s.byName[p.Name]; !ok || seen[p.Name] {
			continue
		}
		seen[p.Name] = true
		if p.Status == pm2.StatusOnline && p.PID > 0 {
			if prev, ok := s.pids[p.Name]; !ok || prev.pid != p.PID {
				s.pids[p.Name] = instance{pid: p.PID, start: procfs.StartTime(p.PID)}
			}
		} else {
			delete(s.pids, p.Name)
		}
		if f := strings.Join(p.Unreadable, ","); f != s.unreadable[p.Name] {
			s.unreadable[p.Name] = f
			if f != "" {
				s.log.Warn("PM2 reports fields of an unexpected type for an app; they are taken as unknown",
					"service", p.Name, "fields", f)
			}
		}
	}
	for name := range s.pids {
		if !seen[name] && !expectBack[name] {
			delete(s.pids, name)
		}
	}
	s.listed = seen
	s.mu.Unlock()
	for _, p := range procs {
		if _, ok := s.byName[p.Name]; ok {
			s.dispatch(ctx, p.Name, msg{proc: &p})
		}
	}
	for _, sv := range s.services {
		if !seen[sv.name] {
			s.dispatch(ctx, sv.name, msg{missing: true, restoring: expectBack[sv.name]})
		}
	}
	return seen
}

// restoreApps brings back apps a new daemon does not have: it ends what is left of their
// last instances, then resurrects the saved list and, for what that did not bring back,
// starts them from the ecosystem file.
func (s *Supervisor) restoreApps(ctx context.Context, names []string) error {
	s.killOrphansOf(names)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := os.Stat(filepath.Join(s.opts.PM2Home, "dump.pm2")); err == nil {
		if err := s.cli.Resurrect(ctx); err != nil {
			return err
		}
		procs, err := s.ctrl.List(ctx)
		if err != nil {
			return err
		}
		left := map[string]bool{}
		for _, n := range names {
			left[n] = true
		}
		for _, p := range procs {
			delete(left, p.Name)
		}
		names = slices.Sorted(maps.Keys(left))
		if len(names) == 0 {
			return nil
		}
	}
	if s.opts.Ecosystem == "" {
		return fmt.Errorf("apps %s are not in the saved process list and there is no ecosystem file", strings.Join(names, ", "))
	}
	s.log.Warn("starting the apps from the ecosystem file", "ecosystem", s.opts.Ecosystem, "apps", names)
	return s.cli.StartEcosystem(ctx, s.opts.Ecosystem, names...)
}

// killOrphansOf ends the process trees of the named apps' last known instances that still
// run (the same pid with the same start time).
func (s *Supervisor) killOrphansOf(names []string) {
	s.mu.Lock()
	pids := map[string]instance{}
	for _, n := range names {
		if in, ok := s.pids[n]; ok {
			pids[n] = in
			delete(s.pids, n)
		}
	}
	s.mu.Unlock()
	if len(pids) == 0 {
		return
	}
	s.endTrees(pids, "ending a service left running by the replaced PM2 daemon")
}

// endTrees kills the process tree of each recorded instance that still runs (the same
// process: pid and start time), logging why.
func (s *Supervisor) endTrees(pids map[string]instance, why string) {
	table, err := s.sampler.ScanAll()
	if err != nil {
		return
	}
	for name, in := range pids {
		if !procfs.Alive(in.pid, in.start) {
			continue
		}
		u, err := table.Memory(int32(in.pid))
		if err != nil {
			continue
		}
		s.log.Warn(why, "service", name, "pid", in.pid, "processes", len(u.PIDs))
		for _, p := range u.PIDs {
			syscall.Kill(int(p), syscall.SIGKILL)
		}
	}
}

func (s *Supervisor) dispatch(ctx context.Context, name string, m msg) {
	sv, ok := s.byName[name]
	if !ok {
		return
	}
	select {
	case sv.msgs <- m:
	case <-ctx.Done():
	}
}

// fullMemoryEvery is how often a service's PSS is measured (smaps_rollup, about a hundred
// times the cost of statm: a tenth of the agent's CPU at 10 s) while its RSS stays under
// the limit and within a tenth of what it was at the last measurement.
const fullMemoryEvery = 30 * time.Second

// sample is a service's last PSS measurement.
type sample struct {
	usage proctree.Usage
	pid   int
	rss   uint64 // the tree's RSS at the time
	at    time.Time
}

// sampleMemory checks every service's memory once per (shortest) probe period: one scan
// of /proc finds each tree (a new child is seen at once) and statm gives its RSS. PSS,
// what is reported and what a restart is decided on, is measured when the RSS is over the
// limit (PSS is never above RSS, so under it nothing can be over), when the RSS moved by
// a tenth, for a new instance, and every fullMemoryEvery.
func (s *Supervisor) sampleMemory(ctx context.Context) error {
	t := s.opts.Clock.NewTicker(s.memEvery)
	defer t.Stop()
	first := s.opts.Clock.After(250 * time.Millisecond) // a figure soon after start
	last := map[string]sample{}
	cpuLast := map[string]cpuMark{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-first:
		case <-t.C():
		}
		s.mu.Lock()
		pids := make(map[string]instance, len(s.pids))
		for k, v := range s.pids {
			pids[k] = v
		}
		s.mu.Unlock()
		for name := range last {
			if _, ok := pids[name]; !ok {
				delete(last, name)
			}
		}
		if len(pids) == 0 {
			continue
		}
		table, err := s.sampler.Scan()
		if err != nil {
			s.log.Warn("cannot scan /proc for memory", "err", err)
			continue
		}
		for name := range cpuLast {
			if _, ok := pids[name]; !ok {
				delete(cpuLast, name)
			}
		}
		for name, in := range pids {
			tree := table.Tree(int32(in.pid))
			if tree == nil {
				delete(last, name)
				continue // gone since the last list; the bus says what happened
			}
			if c, ok := cpuOf(cpuLast, name, in.pid, tree, time.Now()); ok {
				s.dispatch(ctx, name, msg{cpu: &c})
			}
			rss, _ := s.sampler.RSS(tree)
			prev, ok := last[name]
			if ok && prev.pid == in.pid && time.Since(prev.at) < fullMemoryEvery &&
				rss <= s.byName[name].set.MemoryLimitBytes && !movedByATenth(prev.rss, rss) {
				u := prev.usage
				s.dispatch(ctx, name, msg{mem: &u})
				continue
			}
			u, err := table.Memory(int32(in.pid))
			if err != nil {
				delete(last, name)
				continue
			}
			last[name] = sample{usage: u, pid: in.pid, rss: rss, at: time.Now()}
			s.dispatch(ctx, name, msg{mem: &u})
		}
	}
}

func movedByATenth(a, b uint64) bool {
	d := max(a, b) - min(a, b)
	return d*10 > a
}

// recoverDaemon brings a dead PM2 daemon back: it first ends what is left of the old
// instances (apps that are not Node.js outlive a SIGKILLed daemon and would hold their
// ports), then resurrects the saved process list — or starts the ecosystem when there is
// none. This is the one place where the agent starts a daemon, under its own PM2 home:
// through Options.StartDaemon when set (the daemon's unit resurrects the list), else with
// the pm2 program.
func (s *Supervisor) recoverDaemon(ctx context.Context) error {
	s.killOrphans()
	// nothing answers on the home's sockets: a daemon of the home that has run for a while
	// lost them (two were started at once) and serves no one; one just starting (its
	// unit's, an operator's) is given the time to bind them
	s.endStrayDaemons(strayAfter)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	dump := filepath.Join(s.opts.PM2Home, "dump.pm2")
	_, noDump := os.Stat(dump)
	if s.opts.StartDaemon != nil {
		s.log.Warn("bringing the PM2 daemon back through its unit", "home", s.opts.PM2Home)
		if err := s.opts.StartDaemon(ctx); err != nil {
			return err
		}
		if noDump == nil {
			return nil // the unit resurrected the saved list
		}
	}
	if noDump == nil {
		s.log.Warn("bringing the PM2 daemon back from its saved process list", "home", s.opts.PM2Home)
		return s.cli.Resurrect(ctx)
	}
	if s.opts.Ecosystem == "" {
		return fmt.Errorf("no saved process list at %s and no ecosystem file to start", dump)
	}
	s.log.Warn("bringing the PM2 daemon back from the ecosystem file", "home", s.opts.PM2Home, "ecosystem", s.opts.Ecosystem)
	return s.cli.StartEcosystem(ctx, s.opts.Ecosystem)
}

// killOrphans ends the process trees of the last known instances that still run.
func (s *Supervisor) killOrphans() {
	s.mu.Lock()
	pids := s.pids
	s.pids = map[string]instance{}
	s.mu.Unlock()
	s.endTrees(pids, "ending a service left running by the dead PM2 daemon")
}

// control hands an operator's command to the service's loop and waits for its answer.
func (s *Supervisor) control(ctx context.Context, c state.Command) (string, error) {
	sv, ok := s.byName[c.Service]
	if !ok {
		return "", fmt.Errorf("%w %q", state.ErrUnknownService, c.Service)
	}
	req := &controlReq{action: c.Action, reply: make(chan controlReply, 1)}
	select {
	case sv.msgs <- msg{control: req}:
	case <-sv.quit:
		return "", state.ErrNotSupervising
	case <-ctx.Done():
		return "", fmt.Errorf("%s %s: %w", c.Action, c.Service, ctx.Err())
	}
	select {
	case r := <-req.reply:
		return r.msg, r.err
	case <-sv.quit:
		return "", state.ErrNotSupervising
	case <-ctx.Done():
		return "", fmt.Errorf("%s %s: no answer from the supervision loop in time (it may still be done): %w", c.Action, c.Service, ctx.Err())
	}
}

// OperatorStopsFile is the file in the state dir that records the services an operator
// stopped through the agent: a JSON object of service name to the time of the stop.
const OperatorStopsFile = "operator-stops.json"

func loadStops(dir string, log *slog.Logger) map[string]time.Time {
	stops := map[string]time.Time{}
	if dir == "" {
		return stops
	}
	b, err := os.ReadFile(filepath.Join(dir, OperatorStopsFile))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("cannot read the services stopped by the operator; none is held", "err", err)
		}
		return stops
	}
	if err := json.Unmarshal(b, &stops); err != nil {
		log.Warn("cannot read the services stopped by the operator; none is held",
			"file", filepath.Join(dir, OperatorStopsFile), "err", err)
		return map[string]time.Time{}
	}
	return stops
}

// recordStop records (or, with a zero at, forgets) an operator's stop of a service.
func (s *Supervisor) recordStop(name string, at time.Time) {
	if s.opts.StateDir == "" {
		return
	}
	s.stopsMu.Lock()
	defer s.stopsMu.Unlock()
	if at.IsZero() {
		delete(s.stops, name)
	} else {
		s.stops[name] = at.UTC()
	}
	b, _ := json.MarshalIndent(s.stops, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(s.opts.StateDir, OperatorStopsFile), append(b, '\n'), 0o644); err != nil {
		s.log.Warn("cannot record the services stopped by the operator; the stop will not outlive the agent", "err", err)
	}
}

// pm2Stopper stops an app over PM2's RPC socket, or with `pm2 stop` when the socket does
// not speak the protocol (never while the daemon is simply not running: that command
// would start one).
type pm2Stopper struct {
	home string
	cli  *pm2.CLI
}

func (p pm2Stopper) Stop(ctx context.Context, id int) error {
	c, err := pm2.Dial(ctx, p.home)
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Stop(ctx, id)
	if err == nil {
		c.Notify(ctx, id, "stop") // as `pm2 stop` does: PM2's own log and bus say who stopped it
		return nil
	}
	if !errors.Is(err, pm2.ErrProtocol) && !errors.As(err, new(*pm2.RemoteError)) {
		return err
	}
	cmd := exec.CommandContext(ctx, p.cli.Bin, "stop", strconv.Itoa(id))
	cmd.Env = append(os.Environ(), "PM2_HOME="+p.home)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pm2 stop %d: %w: %s", id, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// treeTicks sums utime, stime, cutime and cstime over the tree. The children's times
// count what finished children used (a reaped child's time moves into its parent's
// cutime), so the sum does not drop when a child of the tree exits.
func treeTicks(pids []int32) uint64 {
	var sum uint64
	for _, p := range pids {
		if st, ok := procfs.ReadStat(int(p)); ok {
			sum += st.UTime + st.STime + st.CUTime + st.CSTime
		}
	}
	return sum
}

// cpuMark is a service's tree CPU time at one sample.
type cpuMark struct {
	pid   int
	ticks uint64
	at    time.Time
}

// cpuOf returns the tree's CPU over the interval since the last mark of the same instance
// (and records the new mark); ok is false for an instance seen for the first time.
func cpuOf(last map[string]cpuMark, name string, pid int, tree []int32, now time.Time) (cpuSample, bool) {
	ticks := treeTicks(tree)
	prev, ok := last[name]
	last[name] = cpuMark{pid: pid, ticks: ticks, at: now}
	dt := now.Sub(prev.at).Seconds()
	if !ok || prev.pid != pid || dt <= 0 {
		return cpuSample{}, false
	}
	used := 0.0
	if ticks > prev.ticks { // a child that left the tree (reparented) can make it drop
		used = float64(ticks-prev.ticks) / procfs.TicksPerSecond
	}
	return cpuSample{percent: used / dt * 100, seconds: used}, true
}
