package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/livinity/livinity-agent/internal/redact"
	"github.com/livinity/livinity-agent/metrics"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/supervisor"
	"github.com/livinity/livinity-agent/supervisor/state"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/systemd"
	"github.com/urfave/cli/v3"
	"golang.org/x/sync/errgroup"
)

const flagMetricsListen = "metrics-listen"

func runCommand() *cli.Command {
	return &cli.Command{
		Name: "run",
		Usage: "onboard if needed (first run, or the config changed), then supervise the services " +
			"until SIGTERM; stopping the agent never stops the services",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagMetricsListen, Usage: "address of /metrics, /healthz, /readyz (default: agent.metrics.listen)",
				Sources: cli.EnvVars("LIVINITY_METRICS_LISTEN")},
			&cli.IntFlag{Name: flagJobs, Usage: "pipeline steps run at once at most (0: as many as are ready)",
				Sources: cli.EnvVars("LIVINITY_JOBS")},
		},
		Action: runAgent,
	}
}

func runAgent(ctx context.Context, cmd *cli.Command) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	secrets := newSecrets(cfg)
	baseLog, err := newLogger(cmd, cmd.Root().ErrWriter)
	if err != nil {
		return err
	}
	log := slog.New(redact.NewHandler(baseLog.Handler(), secrets))
	store := state.New(state.Agent{Version: version, Started: time.Now()}, cfg.ServiceNames())
	notifier := systemd.NewNotifier(log)
	listen := cmd.String(flagMetricsListen)
	if listen == "" {
		listen = cfg.Agent.Metrics.Listen
	}
	runtimeDir, err := filepath.Abs(cmd.String(flagRuntimeDir))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(runtimeDir, 0o755); err != nil {
		return fmt.Errorf("create runtime dir (--runtime-dir): %w", err)
	}

	// the pm2 program is what brings a dead daemon back: a wrong one must fail now, not
	// when PM2 dies
	if _, err := exec.LookPath(cmd.String(flagPM2)); err != nil {
		return fmt.Errorf("--pm2 %q (LIVINITY_PM2): %w: install PM2 (npm install -g pm2) or pass --pm2 with the path of the pm2 program",
			cmd.String(flagPM2), err)
	}
	ob, err := newOnboarding(cmd, cfg, log)
	if err != nil {
		return err
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
	m := metrics.New(metrics.Options{Store: store, Version: version, Revision: revision(), StateDir: ob.plan.StateDir,
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
		defer notifier.Stopping()
		if !onboardUntilDone(gctx, ob, store, secrets, notifier, log) {
			return nil // stopped while onboarding
		}
		s, err := supervisor.New(supervisor.Options{
			Config: cfg, PM2Home: ob.plan.PM2Home, PM2Bin: cmd.String(flagPM2), Ecosystem: ob.box.EcosystemFile(),
			Store: store, Logger: log, Observer: m, StartDaemon: pm2StartDaemon(ob.plan.PM2Home),
		})
		if err != nil {
			return err
		}
		sup.Store(s)
		log.Info("supervising", "services", len(cfg.ServiceNames()), "pm2Home", ob.plan.PM2Home, "metrics", listen)
		notifier.Ready()
		return s.Run(gctx)
	})
	err = g.Wait()
	log.Info("agent stopped; the services keep running")
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// onboardUntilDone runs onboardIfNeeded until it succeeds, retrying a failed pipeline
// (which was rolled back) under a backoff of 1 to 30 minutes. After the first failure the
// agent tells systemd it is up: it keeps serving status and metrics, where the failure is
// visible (setup.ok false, livinity_setup_last_run_success 0). It reports false when ctx
// ended first.
func onboardUntilDone(ctx context.Context, ob *onboarding,
	store *state.Store, secrets *redact.Secrets, notifier *systemd.Notifier, log *slog.Logger) bool {
	retry := backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Minute),
		backoff.WithMaxInterval(30*time.Minute), backoff.WithMaxElapsedTime(0))
	for {
		err := onboardIfNeeded(ctx, ob, store, secrets, notifier, log)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		wait := retry.NextBackOff()
		log.Error("onboarding failed; serving status and metrics, and trying again", "err", err, "in", wait)
		notifier.Ready()
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// onboardIfNeeded runs the pipeline when the box was never onboarded, when the config
// changed since the last successful run, or when the last run failed; otherwise it adopts
// the running services. An interrupted run is always finished first.
func onboardIfNeeded(ctx context.Context, ob *onboarding,
	store *state.Store, secrets *redact.Secrets, notifier *systemd.Notifier, log *slog.Logger) error {
	cfg, plan, opts := ob.box.Config, ob.plan, ob.opts
	if err := ob.recoverUpdate(ctx); err != nil {
		return err
	}
	if _, err := pipeline.Recover(ctx, plan.StateDir, opts); err != nil {
		return err
	}
	last, ok, err := pipeline.LoadLastRun(plan.StateDir)
	if err != nil {
		return err
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
		store.UpdateAgent(func(a *state.Agent) {
			a.Setup = state.Setup{Ran: true, OK: true, At: last.At, DurationSeconds: last.DurationSeconds}
		})
		return nil
	}
	log.Info("running the onboarding pipeline", "why", reason)
	opts.Observe = func(e pipeline.Event) {
		learnSecrets(secrets, ob.box, e)
		if e.Status == pipeline.StatusRunning && e.Note == "" {
			step := fmt.Sprintf("step %d/%d %s", e.Index, e.Total, e.Step.Title)
			store.UpdateAgent(func(a *state.Agent) { a.Setup.Step = step })
			notifier.Status("onboarding: " + step)
			// systemd waits for READY=1; each step may take up to its own timeout
			notifier.ExtendTimeout(max(e.Step.Timeout, cfg.Agent.HealthTimeout()) + time.Minute)
		}
	}
	res, err := pipeline.Run(ctx, plan, opts)
	recordOnboarding(ob, res, err, secrets, log)
	setupState := state.Setup{Ran: true, OK: err == nil, At: time.Now()}
	if res != nil {
		setupState.DurationSeconds = res.Duration.Seconds()
	}
	if err != nil {
		setupState.Error = secrets.String(err.Error())
	}
	store.UpdateAgent(func(a *state.Agent) { a.Setup = setupState })
	if err != nil {
		return errors.New(secrets.String(err.Error()))
	}
	return saveConfig(plan.StateDir, cfg)
}
