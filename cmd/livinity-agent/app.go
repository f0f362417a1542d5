package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/livinity/livinity-agent/agent"
	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/systemd"
	"github.com/urfave/cli/v3"
)

// execute runs the CLI with args and returns the process's exit code; only main exits. An
// error is printed once, here.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := newApp(stdout, stderr).Run(ctx, args)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "livinity-agent: %v\n", err)
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// newApp is the CLI: every command, writing to stdout and stderr.
func newApp(stdout, stderr io.Writer) *cli.Command {
	app := &cli.Command{
		Name:                  "livinity-agent",
		Usage:                 "set up a LivOS home server and keep it running",
		Version:               moduleVersion() + " (revision " + revision() + ")",
		Writer:                stdout,
		ErrWriter:             stderr,
		Flags:                 globalFlags(),
		HideHelpCommand:       true,
		EnableShellCompletion: true,
		// `completion bash|zsh|fish|pwsh` prints the script; listed in the help
		ConfigureShellCompletionCommand: func(c *cli.Command) {
			c.Hidden = false
			c.OnUsageError = onUsageError
			for _, sub := range c.Commands {
				sub.OnUsageError = onUsageError
			}
			c.Usage = "print the shell completion script: source <(livinity-agent completion bash), or zsh, fish"
			c.Action = func(ctx context.Context, cmd *cli.Command) error {
				if cmd.Args().Len() == 0 {
					return cli.ShowSubcommandHelp(cmd)
				}
				return usagef(cmd, "%q is not a shell; use bash, zsh, fish or pwsh", cmd.Args().First())
			}
		},
		// a bad --log-level or --log-format is refused before any command runs
		Before: func(ctx context.Context, cmd *cli.Command) (context.Context, error) {
			_, err := newLogger(cmd, io.Discard)
			return ctx, err
		},
		Commands: []*cli.Command{
			onboardCommand(),
			runCommand(),
			statusCommand(),
			setupCommand(),
			checkCommand(),
			ecosystemCommand(),
			demoCommand(),
			wizardCommand(),
			versionCommand(),
			installCommand(),
			uninstallCommand(),
			execEnvCommand(),
			updateCommand(),
			historyCommand(),
			logsCommand(),
			restartCommand(), stopCommand(), startCommand(),
		},
		// errors are printed once, by main
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
	}
	wireUsage(app)
	return app
}

// newLogger builds the structured logger on w at the chosen level: logfmt lines (slog's
// text), in journald's form (priority prefixes, no timestamps) when w is connected to the
// journal, or JSON objects with --log-format json.
func newLogger(cmd *cli.Command, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmd.String(flagLogLevel))); err != nil {
		return nil, usagef(cmd, "--log-level: %q is not a level; use debug, info, warn or error", cmd.String(flagLogLevel))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := cmd.String(flagLogFormat); f {
	case "logfmt", "text":
		return slog.New(systemd.NewLogHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usagef(cmd, "--log-format: %q is not a format; use logfmt or json", f)
	}
}

// pm2Home resolves the PM2 home: the flag, else $PM2_HOME, else $HOME/.pm2. It never
// guesses further: without HOME the caller must say.
func pm2Home(cmd *cli.Command) (string, error) {
	if h := cmd.String(flagPM2Home); h != "" {
		return filepath.Abs(h)
	}
	if h := os.Getenv("PM2_HOME"); h != "" {
		return filepath.Abs(h)
	}
	if h := os.Getenv("HOME"); h != "" {
		return filepath.Join(h, ".pm2"), nil
	}
	return "", fmt.Errorf("--pm2-home: not set, and neither PM2_HOME nor HOME is set; pass --pm2-home (or LIVINITY_PM2_HOME) naming the PM2 daemon's home, e.g. /root/.pm2")
}

// agentOptions maps the global flags, and the pipeline flags of the commands that have
// them, to the box's agent.Options, logging to log. cfg is the config when the command
// has it already (the wizard's answers); otherwise agent.New loads --config, else the
// installed one, else the state dir's.
func agentOptions(cmd *cli.Command, cfg *config.Config, log *slog.Logger) (agent.Options, error) {
	home, err := pm2Home(cmd)
	if err != nil {
		return agent.Options{}, err
	}
	return agent.Options{
		Config: cfg, ConfigPath: cmd.String(flagConfig), StateDir: cmd.String(flagStateDir), PM2Home: home,
		PM2: cmd.String(flagPM2), RotateSecrets: cmd.Bool(flagRotateSecrets), DryRun: cmd.Bool(flagDryRun),
		Jobs: int(cmd.Int(flagJobs)), Logger: log,
	}, nil
}

// loadConfig reads --config, else the installed config, else the state dir's.
func loadConfig(cmd *cli.Command) (*config.Config, error) {
	return agent.LoadConfig(cmd.String(flagConfig), cmd.String(flagStateDir))
}
