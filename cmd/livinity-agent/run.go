package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/livinity/livinity-agent/internal/redact"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/setup/config"
	"github.com/livinity/livinity-agent/supervisor"
	"github.com/livinity/livinity-agent/supervisor/state"
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
	store := state.New(state.Agent{Version: version, Started: time.Now()}, config.ServiceNames)

	plan, opts, err := newPipeline(cmd, cfg, log)
	if err != nil {
		return err
	}
	if err := onboardIfNeeded(ctx, cmd, cfg, plan, opts, store, secrets, log); err != nil {
		return err
	}
	sup, err := supervisor.New(supervisor.Options{
		Config: cfg, PM2Home: plan.PM2Home, PM2Bin: cmd.String(flagPM2), Ecosystem: plan.EcosystemFile(),
		Store: store, Logger: log,
	})
	if err != nil {
		return err
	}
	log.Info("supervising", "services", len(config.ServiceNames), "pm2Home", plan.PM2Home)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sup.Run(gctx) })
	err = g.Wait()
	log.Info("agent stopped; the services keep running")
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// onboardIfNeeded runs the pipeline when the box was never onboarded, when the config
// changed since the last successful run, or when the last run failed; otherwise it adopts
// the running services. An interrupted run is always finished first.
func onboardIfNeeded(ctx context.Context, cmd *cli.Command, cfg *config.Config, plan *setup.Plan, opts setup.Options,
	store *state.Store, secrets *redact.Secrets, log *slog.Logger) error {
	if _, err := setup.Recover(ctx, plan.StateDir, opts); err != nil {
		return err
	}
	last, ok, err := setup.LoadLastRun(plan.StateDir)
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
	opts.Observe = func(e setup.Event) {
		learnSecrets(secrets, plan, e)
		if e.Status == setup.StatusRunning {
			step := fmt.Sprintf("step %d/%d %s", e.Index, e.Total, e.Step.Title)
			store.UpdateAgent(func(a *state.Agent) { a.Setup.Step = step })
		}
	}
	res, err := setup.Run(ctx, plan, opts)
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
