package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/livinity/livinity-agent/agent"
	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup/preflight"
	"github.com/urfave/cli/v3"
	"golang.org/x/term"
)

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
			return onboardBox(ctx, cmd, cfg)
		},
	}
}

// onboardBox onboards the box with cfg through agent.Onboard (preflight, then the
// pipeline), with the checks and the progress drawn on a terminal and structured log lines
// otherwise.
func onboardBox(ctx context.Context, cmd *cli.Command, cfg *config.Config) error {
	out := cmd.Root().Writer
	stateDir, err := filepath.Abs(cmd.String(flagStateDir))
	if err != nil {
		return err
	}
	tty := isTerminal(out)
	color := colorOn(out)

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
	log, err := newLogger(cmd, logW)
	if err != nil {
		return err
	}
	o, err := agentOptions(cmd, cfg, log)
	if err != nil {
		return err
	}
	var prog *progress
	hooks := agent.Hooks{
		Preflight: func(results []preflight.Result) {
			if tty {
				preflight.Format(out, results, color)
			}
			if preflight.Critical(results) == nil && tty {
				prog = newProgress(out, color, terminalWidth(out))
			}
		},
		Observe: func(e pipeline.Event) {
			if prog != nil {
				prog.Observe(e)
			}
		},
	}
	res, err := agent.Onboard(ctx, o, hooks)
	if prog != nil {
		prog.Close()
	}
	if res != nil && len(res.Health) > 0 {
		printHealth(out, res.Health)
	}
	if err != nil {
		return err
	}
	if o.DryRun {
		if !tty {
			printPlan(out, res.Pipeline)
		}
		return nil
	}
	fmt.Fprintf(out, "onboarding finished in %s: %d services healthy\n", res.Pipeline.Duration.Round(100*time.Millisecond), countHealthy(res.Health))
	return nil
}
