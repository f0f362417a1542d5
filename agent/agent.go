package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/redact"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/update"
)

// Options say which box to act on and how; package main fills them from the flags.
type Options struct {
	// Config is the box's config; when nil, New loads it with LoadConfig(ConfigPath,
	// StateDir).
	Config     *config.Config
	ConfigPath string
	// StateDir is the agent's own state (journal, fingerprints, logs, history).
	StateDir string
	// PM2Home is the home of the PM2 daemon the services run under.
	PM2Home string
	// PM2 is the pm2 program: a name looked up in PATH, or a path.
	PM2 string
	// Path is the PATH of the pipeline's commands and of the preflight; default
	// ToolPath(PM2).
	Path string
	// RotateSecrets replaces the secrets of an existing .env.
	RotateSecrets bool
	// DryRun plans and changes nothing.
	DryRun bool
	// Jobs bounds the steps run at once (0: as many as are ready).
	Jobs int
	// Logger is where the lifecycle logs; New wraps it so that no line shows a secret.
	// Default: discard.
	Logger *slog.Logger
}

// Agent is one box resolved from its Options: the recipe, its plan, the options of its
// pipeline runs and the secrets its logs must not show.
type Agent struct {
	o       Options
	cfg     *config.Config
	box     *setup.Box
	plan    *pipeline.Plan
	secrets *redact.Secrets
	log     *slog.Logger
}

// New resolves the box of o. It changes nothing on the box.
func New(o Options) (*Agent, error) {
	cfg := o.Config
	if cfg == nil {
		var err error
		if cfg, err = LoadConfig(o.ConfigPath, o.StateDir); err != nil {
			return nil, err
		}
	}
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, err
	}
	if o.PM2Home == "" {
		return nil, errors.New("no PM2 home given: name the PM2 daemon's home, e.g. /root/.pm2")
	}
	if o.PM2 == "" {
		o.PM2 = "pm2"
	}
	if o.Path == "" {
		o.Path = ToolPath(o.PM2)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.StateDir, o.Config = stateDir, cfg
	box, err := setup.NewBox(cfg, stateDir, o.PM2Home)
	if err != nil {
		return nil, err
	}
	box.RotateSecrets = o.RotateSecrets
	if exe, err := os.Executable(); err == nil {
		box.Launcher = exe
	}
	secrets := newSecrets(cfg)
	return &Agent{
		o: o, cfg: cfg, box: box, secrets: secrets,
		plan: box.Plan(o.Path, commandHome(stateDir), setup.ToolEnv(os.Environ())),
		log:  slog.New(redact.NewHandler(o.Logger.Handler(), secrets)),
	}, nil
}

// pipelineOptions are the options of one pipeline run on the box.
func (a *Agent) pipelineOptions() pipeline.Options {
	return pipeline.Options{Logger: a.log, DryRun: a.o.DryRun, Jobs: a.o.Jobs, PM2: pm2Factory(a.o.PM2)}
}

// pm2Factory is the pipeline's PM2 for the pm2 program bin (see pm2UnitDaemon).
func pm2Factory(bin string) func(home string) pipeline.PM2 {
	return func(home string) pipeline.PM2 { return pipeline.NewPM2(bin, home, pm2Options(home)...) }
}

// remember notes the box's PM2 home in the state dir, unless this is a dry run.
func (a *Agent) remember() error {
	if a.o.DryRun {
		return nil
	}
	return rememberPM2Home(a.plan.StateDir, a.plan.PM2Home)
}

// updateOptions are the update options of this box (for update and for finishing an
// interrupted one).
func (a *Agent) updateOptions() update.Options {
	return update.Options{Config: a.cfg, StateDir: a.plan.StateDir, PM2Home: a.plan.PM2Home,
		Path: a.plan.Path, Home: a.plan.Home, Env: a.plan.Env, Launcher: a.box.Launcher,
		Jobs: a.o.Jobs, Logger: a.log, PM2: pm2Factory(a.o.PM2)}
}

// recoverUpdate finishes an update that was interrupted (the trees may be mid-switch)
// before any pipeline runs on them.
func (a *Agent) recoverUpdate(ctx context.Context) error {
	if a.o.DryRun {
		return nil
	}
	_, err := update.Recover(ctx, a.updateOptions())
	return err
}

// ToolPath is the PATH for the commands the pipeline runs: the pm2 program's directory
// first (when pm2 is a path), then the agent's own PATH (systemd's default when empty).
func ToolPath(pm2 string) string {
	p := os.Getenv("PATH")
	if p == "" {
		p = systemdDefaultPath
	}
	if strings.Contains(pm2, "/") {
		if abs, err := filepath.Abs(pm2); err == nil {
			p = filepath.Dir(abs) + string(os.PathListSeparator) + p
		}
	}
	return p
}

// commandHome is HOME for the pipeline's commands: the caller's, or (under systemd, where
// there is none) the state directory, so npm and pnpm have a cache.
func commandHome(stateDir string) string {
	if h := os.Getenv("HOME"); h != "" {
		return h
	}
	return stateDir
}

// Rollback only rolls back an interrupted pipeline run in stateDir, with the pm2 program
// pm2; found says whether there was one.
func Rollback(ctx context.Context, stateDir, pm2 string, log *slog.Logger) (found bool, err error) {
	return pipeline.Recover(ctx, stateDir, pipeline.Options{Logger: log, PM2: pm2Factory(pm2)})
}
