package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/history"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/redact"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/setup/envfile"
	"github.com/livinity/livinity-agent/update"
	"github.com/urfave/cli/v3"
	"golang.org/x/term"
)

// savedConfig is where every successful pipeline run keeps the config it used, so that
// `run` and a later `setup` find it without --config.
const savedConfig = "setup.json"

func pipelineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagRotateSecrets, Usage: "replace the secrets of an existing .env (logs every user out)",
			Sources: cli.EnvVars("LIVINITY_ROTATE_SECRETS")},
		&cli.BoolFlag{Name: flagDryRun, Usage: "print the plan and change nothing",
			Sources: cli.EnvVars("LIVINITY_DRY_RUN")},
		&cli.IntFlag{Name: flagJobs, Usage: "steps run at once at most (0: as many as are ready; 1: one after another)",
			Sources: cli.EnvVars("LIVINITY_JOBS")},
	}
}

func onboardCommand() *cli.Command {
	return &cli.Command{
		Name:  "onboard",
		Usage: "set up this box: asks on a terminal, or reads --config; then runs the pipeline",
		Flags: pipelineFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			var cfg *config.Config
			var err error
			switch {
			case cmd.String(flagConfig) != "":
				cfg, err = config.Load(cmd.String(flagConfig))
			case term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())):
				cfg, err = runWizard(ctx, os.Stdin, cmd.Root().Writer)
			default:
				err = errors.New("no terminal to ask on and no --config: pass --config FILE (see deploy/examples/setup.json)")
			}
			if err != nil {
				return err
			}
			return runPipeline(ctx, cmd, cfg)
		},
	}
}

func setupCommand() *cli.Command {
	return &cli.Command{
		Name:  "setup",
		Usage: "run the pipeline again from --config (default: the config of the last successful run)",
		Flags: append(pipelineFlags(),
			&cli.BoolFlag{Name: flagRollback, Usage: "only roll back an interrupted run, then exit",
				Sources: cli.EnvVars("LIVINITY_ROLLBACK")}),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Bool(flagRollback) {
				return rollbackOnly(ctx, cmd)
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return runPipeline(ctx, cmd, cfg)
		},
	}
}

// loadConfig reads --config, else /etc/livinity/setup.json, else the config of the last
// successful run.
func loadConfig(cmd *cli.Command) (*config.Config, error) {
	if path := cmd.String(flagConfig); path != "" {
		return config.Load(path)
	}
	saved := filepath.Join(cmd.String(flagStateDir), savedConfig)
	for _, path := range []string{defaultConfig, saved} {
		if _, err := os.Stat(path); err == nil {
			return config.Load(path)
		}
	}
	return nil, fmt.Errorf("no --config given, and neither %s nor a saved config at %s exists: pass --config FILE", defaultConfig, saved)
}

func rollbackOnly(ctx context.Context, cmd *cli.Command) error {
	log, err := newLogger(cmd, cmd.Root().ErrWriter)
	if err != nil {
		return err
	}
	bin := cmd.String(flagPM2)
	found, err := pipeline.Recover(ctx, cmd.String(flagStateDir), pipeline.Options{
		Logger: log, PM2: func(home string) pipeline.PM2 { return pipeline.NewPM2(bin, home, pm2Options(home)...) },
	})
	if err != nil {
		return err
	}
	if found {
		fmt.Fprintln(cmd.Root().Writer, "rolled back the interrupted run")
	} else {
		fmt.Fprintln(cmd.Root().Writer, "nothing to roll back")
	}
	return nil
}

// runPipeline runs preflight, then the onboarding pipeline, with progress on a terminal
// and structured log lines otherwise.
func runPipeline(ctx context.Context, cmd *cli.Command, cfg *config.Config) error {
	out := cmd.Root().Writer
	stateDir, err := filepath.Abs(cmd.String(flagStateDir))
	if err != nil {
		return err
	}
	tty := isTerminal(out)
	color := tty && os.Getenv("NO_COLOR") == ""

	secrets := newSecrets(cfg)
	// on a terminal the progress display owns the screen and the log goes to a file
	logW := cmd.Root().ErrWriter
	if tty && !cmd.Bool(flagDryRun) {
		if err := os.MkdirAll(filepath.Join(stateDir, "logs"), 0o700); err != nil {
			return fmt.Errorf("create state dir: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(stateDir, "logs", "pipeline.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("open pipeline log: %w", err)
		}
		defer f.Close()
		logW = f
		fmt.Fprintf(out, "log: %s\n", f.Name())
	}
	baseLog, err := newLogger(cmd, logW)
	if err != nil {
		return err
	}
	log := slog.New(redact.NewHandler(baseLog.Handler(), secrets))

	if err := runPreflight(ctx, preflightOptions(cmd), cfg, out, color, log); err != nil {
		return err
	}

	ob, err := newOnboarding(cmd, cfg, log)
	if err != nil {
		return err
	}
	var prog *progress
	if tty {
		prog = newProgress(out, color, terminalWidth(out))
	}
	ob.opts.Observe = func(e pipeline.Event) {
		learnSecrets(secrets, ob.box, e)
		if prog != nil {
			prog.Observe(e)
		}
	}
	if err := ob.recoverUpdate(ctx); err != nil {
		return err
	}
	res, err := pipeline.Run(ctx, ob.plan, ob.opts)
	if prog != nil {
		prog.Close()
	}
	if !ob.opts.DryRun {
		recordOnboarding(ob, res, err, secrets, log)
	}
	if len(ob.box.Health) > 0 {
		printHealth(out, ob.box.Health)
	}
	if err != nil {
		return errors.New(secrets.String(err.Error()))
	}
	if ob.opts.DryRun {
		if !tty {
			printPlan(out, res)
		}
		return nil
	}
	if err := saveConfig(stateDir, cfg); err != nil {
		return err
	}
	fmt.Fprintf(out, "onboarding finished in %s: %d services healthy\n", res.Duration.Round(100*time.Millisecond), countHealthy(ob.box.Health))
	return nil
}

// newSecrets is the set of values kept out of logs: the config's secrets and those of the
// existing .env.
func newSecrets(cfg *config.Config) *redact.Secrets {
	secrets := &redact.Secrets{}
	secrets.Add(cfg.Secrets()...)
	secrets.Add(envSecrets(cfg, filepath.Join(cfg.Paths.LivosBaseDir, ".env"))...)
	return secrets
}

// learnSecrets adds the secrets of a freshly written .env to secrets.
func learnSecrets(secrets *redact.Secrets, box *setup.Box, e pipeline.Event) {
	if e.Step.ID == setup.StepEnv && e.Status == pipeline.StatusDone {
		secrets.Add(envSecrets(box.Config, box.EnvFile())...)
	}
}

// envSecrets are the secret values of the .env at path: building the .env again from it
// keeps its secrets, and Env.Secrets names them (ports and paths are not secrets).
func envSecrets(cfg *config.Config, path string) []string {
	existing, err := envfile.Read(path)
	if err != nil || len(existing) == 0 {
		return nil
	}
	env, err := envfile.Build(cfg, existing, false, nil)
	if err != nil {
		return nil
	}
	return env.Secrets()
}

// onboarding is one pipeline run of the LivOS recipe: the box, its plan and the options.
type onboarding struct {
	box  *setup.Box
	plan *pipeline.Plan
	opts pipeline.Options
}

// newOnboarding resolves the box, plan and options of a pipeline run from the flags.
func newOnboarding(cmd *cli.Command, cfg *config.Config, log *slog.Logger) (*onboarding, error) {
	stateDir, err := filepath.Abs(cmd.String(flagStateDir))
	if err != nil {
		return nil, err
	}
	home, err := pm2Home(cmd)
	if err != nil {
		return nil, err
	}
	box, err := setup.NewBox(cfg, stateDir, home)
	if err != nil {
		return nil, err
	}
	if !cmd.Bool(flagDryRun) {
		// check, status and logs find this box's daemon by it
		if err := rememberPM2Home(stateDir, home); err != nil {
			return nil, err
		}
	}
	box.RotateSecrets = cmd.Bool(flagRotateSecrets)
	if exe, err := os.Executable(); err == nil {
		box.Launcher = exe
	}
	plan := box.Plan(toolPath(cmd), commandHome(stateDir), setup.ToolEnv(os.Environ()))
	bin := cmd.String(flagPM2)
	opts := pipeline.Options{
		Logger: log, DryRun: cmd.Bool(flagDryRun), Jobs: int(cmd.Int(flagJobs)),
		PM2: func(home string) pipeline.PM2 { return pipeline.NewPM2(bin, home, pm2Options(home)...) },
	}
	return &onboarding{box: box, plan: plan, opts: opts}, nil
}

// commandHome is HOME for the pipeline's commands: the caller's, or (under systemd, where
// there is none) the state directory, so npm and pnpm have a cache.
func commandHome(stateDir string) string {
	if h := os.Getenv("HOME"); h != "" {
		return h
	}
	return stateDir
}

func saveConfig(stateDir string, cfg *config.Config) error {
	b, err := cfg.MarshalIndent()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, savedConfig), append(b, '\n'), 0o600)
}

func printHealth(w io.Writer, hs []setup.HealthResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCHECK\tHEALTHY\tAFTER\tLATENCY\tDETAIL")
	for _, h := range hs {
		ok := "no"
		switch {
		case h.OK:
			ok = "yes"
		case h.Skipped:
			ok = "skipped"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Service, h.Probe, ok,
			h.After.Round(10*time.Millisecond), h.Latency.Round(100*time.Microsecond), h.Detail)
	}
	tw.Flush()
}

func printPlan(w io.Writer, res *pipeline.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTEP\tWOULD\tOPTIONAL\tUNDO")
	for i, s := range res.Steps {
		would := "run"
		if s.Status == pipeline.StatusSkipped {
			would = "skip (unchanged)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%s\n", i+1, s.Step.Title, would, s.Step.Optional, s.Step.Undo)
	}
	tw.Flush()
}

func countHealthy(hs []setup.HealthResult) int {
	n := 0
	for _, h := range hs {
		if h.OK {
			n++
		}
	}
	return n
}

// terminalWidth is the number of columns of the terminal w, or 0 when unknown.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil {
			return cols
		}
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// updateOptions are the update options of this box (for update and for finishing an
// interrupted one).
func (ob *onboarding) updateOptions() update.Options {
	return update.Options{Config: ob.box.Config, StateDir: ob.plan.StateDir, PM2Home: ob.plan.PM2Home,
		Path: ob.plan.Path, Home: ob.plan.Home, Env: ob.plan.Env, Launcher: ob.box.Launcher,
		Jobs: ob.opts.Jobs, Logger: ob.opts.Logger, PM2: ob.opts.PM2}
}

// recoverUpdate finishes an update that was interrupted (the trees may be mid-switch)
// before any pipeline runs on them.
func (ob *onboarding) recoverUpdate(ctx context.Context) error {
	if ob.opts.DryRun {
		return nil
	}
	_, err := update.Recover(ctx, ob.updateOptions())
	return err
}

// recordOnboarding adds a pipeline run to the box's history (secrets redacted).
func recordOnboarding(ob *onboarding, res *pipeline.Result, err error, secrets *redact.Secrets, log *slog.Logger) {
	r := history.Record{Kind: history.KindOnboard, At: time.Now(), To: update.Revision(ob.plan.StateDir), Outcome: history.Success}
	if res != nil {
		r.At = r.At.Add(-res.Duration)
		r.DurationSeconds = res.Duration.Seconds()
		for _, s := range res.Steps {
			r.Steps = append(r.Steps, history.Step{ID: s.Step.ID, Status: string(s.Status), Seconds: s.Duration.Seconds()})
		}
	}
	if err != nil {
		r.Outcome, r.Error = history.RolledBack, secrets.String(err.Error())
		if res == nil {
			r.Outcome = history.Failed
		}
	}
	r.Services = map[string]string{}
	for _, h := range ob.box.Health {
		switch {
		case h.Skipped:
			r.Services[h.Service] = "skipped"
		case h.OK:
			r.Services[h.Service] = "healthy"
		default:
			r.Services[h.Service] = "unhealthy"
		}
	}
	if herr := history.Append(ob.plan.StateDir, r); herr != nil {
		log.Warn("could not record the onboarding in the history", "err", herr)
	}
}
