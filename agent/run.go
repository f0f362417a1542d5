package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/livinity/livinity-agent/internal/footprint"
	"github.com/livinity/livinity-agent/metrics"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/supervisor"
	"github.com/livinity/livinity-agent/supervisor/state"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/systemd"
	"golang.org/x/sync/errgroup"
)

// RunOptions are run's own options, beside the box's.
type RunOptions struct {
	// MetricsListen is the address of /metrics, /healthz and /readyz; default the config's
	// agent.metrics.listen.
	MetricsListen string
	// RuntimeDir is where the status socket lives (created if needed).
	RuntimeDir string
	// Version and Revision are the agent's, for the status and the metrics.
	Version, Revision string

	// StartAfresh, when set, is called after an onboarding this process ran has succeeded
	// and everything Run started has stopped (the status socket and /metrics closed, no
	// STOPPING sent to systemd); the command replaces the process with a new run of the
	// program, the same pid. That run finds the box onboarded and adopts the services, so
	// that supervision carries nothing of the onboarding: not the heap it grew, nor the
	// program pages the pipeline's code was read into. It returns only when it failed; Run
	// then supervises in this process.
	StartAfresh func() error

	// retry is the backoff between failed onboardings (tests shorten it); default
	// onboardRetry.
	retry func() backoff.BackOff
}

// onboardRetry is the backoff between failed onboardings: 1 minute, doubling up to 30
// minutes, never giving up.
func onboardRetry() backoff.BackOff {
	return backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Minute),
		backoff.WithMaxInterval(30*time.Minute), backoff.WithMaxElapsedTime(0))
}

// Run is the agent's life under systemd (or in a terminal): it serves the status socket,
// the metrics and systemd's watchdog from the start, onboards the box when it needs it
// (see the package doc: when, and how a failure is retried), then supervises the services
// until ctx ends (after an onboarding, through r.StartAfresh when it is set). Stopping it
// never stops the services.
func Run(ctx context.Context, o Options, r RunOptions) error {
	for {
		err := run(ctx, o, r)
		if !errors.Is(err, errOnboarded) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		err = r.StartAfresh()
		if o.Logger != nil {
			o.Logger.Warn("could not start afresh after the onboarding; supervising in this process", "err", err)
		}
		r.StartAfresh = nil
	}
}

// errOnboarded ends run after an onboarding when Run is to start afresh.
var errOnboarded = errors.New("onboarded; starting afresh")

// run is one life of Run: until ctx ends, or until an onboarding succeeded when
// r.StartAfresh is set (errOnboarded).
func run(ctx context.Context, o Options, r RunOptions) error {
	if o.Config == nil {
		cfg, err := LoadConfig(o.ConfigPath, o.StateDir)
		if err != nil {
			return err
		}
		o.Config = cfg
	}
	cfg := o.Config
	runtimeDir, err := filepath.Abs(r.RuntimeDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(runtimeDir, 0o755); err != nil {
		return fmt.Errorf("create runtime dir (--runtime-dir): %w", err)
	}
	a, err := New(o)
	if err != nil {
		return err
	}
	// check, status and logs find this box's daemon by it
	if err := a.remember(); err != nil {
		return err
	}
	log := a.log
	store := state.New(state.Agent{Version: r.Version, Started: time.Now()}, cfg.ServiceNames())
	notifier := systemd.NewNotifier(log)
	listen := r.MetricsListen
	if listen == "" {
		listen = cfg.Agent.Metrics.Listen
	}
	retry := r.retry
	if retry == nil {
		retry = onboardRetry
	}
	// the watchdog runs from the start: while onboarding, progress is the heartbeat; then
	// the supervision loop's
	var sup atomic.Pointer[supervisor.Supervisor]
	heartbeat := func() time.Time {
		if s := sup.Load(); s != nil {
			return s.Heartbeat()
		}
		return time.Now()
	}
	// metrics and status serve from the start, so that onboarding — and a failed one —
	// can be watched
	m := metrics.New(metrics.Options{Store: store, Version: r.Version, Revision: r.Revision, StateDir: a.plan.StateDir,
		Alive: func() bool { return time.Since(heartbeat()) < 10*time.Second }, Logger: log})
	g, gctx := errgroup.WithContext(ctx)
	// SIGHUP (the terminal that ran the agent closed, or systemctl reload) would end the
	// agent without a word and leave its status socket behind: it is logged and the agent
	// keeps running; a changed config takes effect at the next start
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				log.Warn("SIGHUP received; the agent keeps running (a changed config takes effect when it is restarted)")
			}
		}
	})
	g.Go(func() error { return notifier.RunWatchdog(gctx, heartbeat) })
	g.Go(func() error { return (&metrics.Server{Addr: listen, Handler: m.Handler(), Logger: log}).Run(gctx) })
	g.Go(func() error {
		return (&statusapi.Server{Path: filepath.Join(runtimeDir, statusapi.SocketName), Store: store, Logger: log}).Run(gctx)
	})
	g.Go(func() error { return notifier.RunStatus(gctx, store) })
	g.Go(func() error {
		onboarded, ok := a.onboardUntilDone(gctx, retry(), store, notifier)
		if ok && onboarded && r.StartAfresh != nil {
			log.Info("onboarded; starting afresh to supervise, without what the onboarding used")
			return errOnboarded
		}
		defer notifier.Stopping()
		if !ok {
			return nil // stopped while onboarding
		}
		s, err := supervisor.New(supervisor.Options{
			Config: cfg, PM2Home: a.plan.PM2Home, PM2Bin: a.o.PM2, Ecosystem: a.box.EcosystemFile(), StateDir: a.plan.StateDir,
			Store: store, Logger: log, Observer: m, StartDaemon: pm2StartDaemon(a.plan.PM2Home),
		})
		if err != nil {
			return err
		}
		sup.Store(s)
		log.Info("supervising", "services", len(cfg.ServiceNames()), "pm2Home", a.plan.PM2Home, "metrics", listen)
		notifier.Ready()
		g.Go(func() error { trimOnce(gctx, log); return nil })
		return s.Run(gctx)
	})
	err = g.Wait()
	if errors.Is(err, errOnboarded) {
		return err
	}
	log.Info("agent stopped; the services keep running")
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// onboardUntilDone runs onboardIfNeeded until it succeeds, retrying a failed onboarding
// (a critical preflight check, or a pipeline that was rolled back) under retry. After the
// first failure the agent tells systemd it is up: it keeps serving status and metrics,
// where the failure is visible (setup.ok false, livinity_setup_last_run_success 0). It
// reports whether an onboarding ran (false: the services were adopted), and ok false
// when ctx ended first.
func (a *Agent) onboardUntilDone(ctx context.Context, retry backoff.BackOff, store *state.Store, notifier *systemd.Notifier) (onboarded, ok bool) {
	for {
		ran, err := a.onboardIfNeeded(ctx, store, notifier)
		if err == nil {
			return ran, true
		}
		if ctx.Err() != nil {
			return false, false
		}
		wait := retry.NextBackOff()
		var pf *PreflightError
		what := "onboarding failed"
		if errors.As(err, &pf) {
			what = "onboarding failed in the preflight (nothing was changed)"
		}
		a.log.Error(what+"; serving status and metrics, and trying again", "err", err, "in", wait)
		notifier.Ready()
		select {
		case <-ctx.Done():
			return false, false
		case <-time.After(wait):
		}
	}
}

// onboardIfNeeded onboards (Agent.Onboard: preflight, then the pipeline) when the box was
// never onboarded, when the config changed since the last successful run, or when the
// last run failed; otherwise it adopts the running services. An interrupted update or
// run is always finished first. It reports whether it onboarded.
func (a *Agent) onboardIfNeeded(ctx context.Context, store *state.Store, notifier *systemd.Notifier) (bool, error) {
	cfg, log := a.cfg, a.log
	if err := a.recoverUpdate(ctx); err != nil {
		return false, err
	}
	if _, err := pipeline.Recover(ctx, a.plan.StateDir, a.pipelineOptions()); err != nil {
		return false, err
	}
	last, ok, err := pipeline.LoadLastRun(a.plan.StateDir)
	if err != nil {
		return false, err
	}
	reason := ""
	switch {
	case !ok:
		reason = "first run"
	case last.ConfigFingerprint != cfg.Fingerprint():
		reason = "the config changed since the last successful run"
	case !last.OK:
		reason = "the last run failed"
	}
	if reason == "" {
		log.Info("already onboarded with this config; adopting the running services", "lastRun", last.At)
		store.UpdateAgent(func(s *state.Agent) {
			s.Setup = state.Setup{Ran: true, OK: true, At: last.At, DurationSeconds: last.DurationSeconds}
		})
		return false, nil
	}
	log.Info("running the onboarding pipeline", "why", reason)
	res, err := a.Onboard(ctx, Hooks{Observe: func(e pipeline.Event) {
		if e.Status == pipeline.StatusRunning && e.Note == "" {
			step := fmt.Sprintf("step %d/%d %s", e.Index, e.Total, e.Step.Title)
			store.UpdateAgent(func(s *state.Agent) { s.Setup.Step = step })
			notifier.Status("onboarding: " + step)
			// systemd waits for READY=1; each step may take up to its own timeout
			notifier.ExtendTimeout(max(e.Step.Timeout, cfg.Agent.HealthTimeout()) + time.Minute)
		}
	}})
	setupState := state.Setup{Ran: true, OK: err == nil, At: time.Now()}
	if res != nil && res.Pipeline != nil {
		setupState.DurationSeconds = res.Pipeline.Duration.Seconds()
	}
	if err != nil {
		setupState.Error = a.secrets.String(err.Error())
	}
	store.UpdateAgent(func(s *state.Agent) { s.Setup = setupState })
	return true, err
}

// trimAfter is how long supervision runs before the agent gives back, once, what its
// start alone used: the onboarding's garbage, and the program's pages that every linked
// package's init, the pipeline and the interactive commands' code touched (see
// internal/footprint). It is not done again: a page it evicts is read back from the disk
// the next time its code runs, and trimming every minute (tried) evicted the code of the
// rare paths each time — an exit's handling above all, which then waited for the disk:
// hundreds of major faults a minute, crash → state p99 6 to 12 ms instead of 2.
const trimAfter = 3 * time.Second

// daemonGCPercent is the supervising agent's GOGC (unless GOGC is set): its live heap is
// a megabyte or two, so a collection every quarter of that costs little CPU and keeps the
// heap near what is live.
const daemonGCPercent = 25

// trimOnce sets the daemon's GOGC and, trimAfter later, gives back the memory only the
// start touched, unless ctx ends first.
func trimOnce(ctx context.Context, log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(trimAfter):
	}
	if n, err := footprint.Trim(); err != nil {
		log.Debug("could not page out the program's pages the start used", "err", err)
	} else {
		log.Debug("paged out the program's pages the start used", "programBytes", n)
	}
}
