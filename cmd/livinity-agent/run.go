package main

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/livinity/livinity-agent/agent"
	"github.com/urfave/cli/v3"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name: "run",
		Usage: "onboard if needed (first run, or the config changed), then supervise the services " +
			"until SIGTERM; stopping the agent never stops the services",
		Flags:  runFlags(),
		Action: runAgent,
	}
}

// startAfresh replaces the process with a new run of this program, with the same
// arguments and environment (the same pid, so systemd's unit and its watchdog go on): run
// does it after an onboarding, so that the supervising process carries nothing of the
// onboarding (agent.RunOptions.StartAfresh). main sets it; a run inside another program
// (the tests) supervises in its own process.
var startAfresh func() error

// runAgent is `run`: agent.Run with the flags.
func runAgent(ctx context.Context, cmd *cli.Command) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	// the pm2 program is what brings a dead daemon back: a wrong one must fail now, not
	// when PM2 dies
	if _, err := exec.LookPath(cmd.String(flagPM2)); err != nil {
		return fmt.Errorf("--pm2 %q (LIVINITY_PM2): %w: install PM2 (npm install -g pm2) or pass --pm2 with the path of the pm2 program",
			cmd.String(flagPM2), err)
	}
	log, err := newLogger(cmd, cmd.Root().ErrWriter)
	if err != nil {
		return err
	}
	o, err := agentOptions(cmd, cfg, log)
	if err != nil {
		return err
	}
	return agent.Run(ctx, o, agent.RunOptions{
		MetricsListen: cmd.String(flagMetricsListen), RuntimeDir: cmd.String(flagRuntimeDir),
		Version: version, Revision: revision(), StartAfresh: startAfresh,
	})
}
