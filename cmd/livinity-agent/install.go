package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/livinity/livinity-agent/agent"
	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/setup/preflight"
	"github.com/urfave/cli/v3"
	"golang.org/x/term"
)

func installCommand() *cli.Command {
	return &cli.Command{
		Name: "install",
		Usage: "install the agent as a systemd service and the PM2 daemon that runs the services as " +
			"another (livinity-pm2.service; config from --config or asked on a terminal), start them and " +
			"follow the onboarding until every service is ready (or exit 1 at the first failed onboarding, with its error: the agent keeps retrying); on an installed box, upgrade the binary " +
			"and restart the agent (the services keep running; a daemon an earlier version ran in the " +
			"agent's unit is moved into livinity-pm2.service without a restart)",
		Flags:  installFlags(),
		Action: runInstall,
	}
}

// runInstall is `install`: the config (--config, the installed one, or the wizard's), the
// preflight with the units' PM2 home, then agent.Install.
func runInstall(ctx context.Context, cmd *cli.Command) error {
	if err := agent.RequireSystemdRoot("install"); err != nil {
		return err
	}
	out := cmd.Root().Writer
	log, err := newLogger(cmd, cmd.Root().ErrWriter)
	if err != nil {
		return err
	}
	cfg, source, err := installConfigFrom(ctx, cmd)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "config: %s\n", source)
	home, err := installPM2Home(cmd)
	if err != nil {
		return err
	}
	// ports held by the box's own apps (an upgrade) are fine
	opts := preflightOptions(cmd)
	opts.PM2Home = home
	results, err := agent.Preflight(ctx, cfg, opts, log)
	if isTerminal(out) {
		preflight.Format(out, results, colorOn(out))
	}
	if err != nil {
		return err
	}
	return agent.Install(ctx, agent.InstallOptions{
		Config: cfg, PM2Home: home, PM2: cmd.String(flagPM2), RuntimeDir: cmd.String(flagRuntimeDir),
		Timeout: cmd.Duration(flagInstallTimeout), Logger: log,
		Say: func(line string) { fmt.Fprintln(out, line) },
	})
}

// installPM2Home is the PM2 home the units get: --pm2-home, else the one the installed
// units have (an upgrade keeps it), else agent.UnitPM2Home.
func installPM2Home(cmd *cli.Command) (string, error) {
	if cmd.IsSet(flagPM2Home) {
		return pm2Home(cmd)
	}
	return agent.InstalledPM2Home(), nil
}

// installConfigFrom picks the config: --config, else the installed one (an upgrade), else
// the wizard on a terminal.
func installConfigFrom(ctx context.Context, cmd *cli.Command) (*config.Config, string, error) {
	if p := cmd.String(flagConfig); p != "" {
		cfg, err := config.Load(p)
		return cfg, p, err
	}
	if _, err := os.Stat(agent.DefaultConfig); err == nil {
		cfg, err := config.Load(agent.DefaultConfig)
		return cfg, agent.DefaultConfig + " (installed)", err
	}
	if term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())) {
		cfg, err := runWizard(ctx, os.Stdin, cmd.Root().Writer)
		return cfg, "answers to the wizard", err
	}
	return nil, "", errors.New("install: no terminal to ask on and no --config: pass --config FILE (see deploy/examples/setup.json)")
}
