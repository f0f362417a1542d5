package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/livinity/livinity-agent/systemd"
	"github.com/urfave/cli/v3"
)

// version and commit are set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

const (
	defaultStateDir   = "/var/lib/livinity-agent"
	defaultConfig     = "/etc/livinity/setup.json"
	defaultRuntimeDir = "/run/livinity-agent"
)

// Flag names shared by several commands.
const (
	flagConfig        = "config"
	flagStateDir      = "state-dir"
	flagPM2Home       = "pm2-home"
	flagPM2           = "pm2"
	flagLogLevel      = "log-level"
	flagLogFormat     = "log-format"
	flagRotateSecrets = "rotate-secrets"
	flagDryRun        = "dry-run"
	flagRollback      = "rollback"
	flagJobs          = "jobs"
	flagRuntimeDir    = "runtime-dir"
)

// globalFlags apply to every command; each reads a LIVINITY_* variable too.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagConfig, Aliases: []string{"c"}, Usage: "setup.json to use",
			Sources: cli.EnvVars("LIVINITY_CONFIG"), TakesFile: true},
		&cli.StringFlag{Name: flagStateDir, Value: defaultStateDir, Usage: "the agent's own state (journal, fingerprints, logs)",
			Sources: cli.EnvVars("LIVINITY_STATE_DIR"), TakesFile: true},
		&cli.StringFlag{Name: flagPM2Home, Usage: "PM2_HOME of the daemon the services run under (default: $PM2_HOME, else $HOME/.pm2)",
			Sources: cli.EnvVars("LIVINITY_PM2_HOME")},
		&cli.StringFlag{Name: flagPM2, Value: "pm2", Usage: "the pm2 program (a name looked up in PATH, or a path)",
			Sources: cli.EnvVars("LIVINITY_PM2")},
		&cli.StringFlag{Name: flagLogLevel, Value: "info", Usage: "debug, info, warn or error",
			Sources: cli.EnvVars("LIVINITY_LOG_LEVEL")},
		&cli.StringFlag{Name: flagLogFormat, Value: "logfmt", Usage: "logfmt (key=value lines) or json (one object a line)",
			Sources: cli.EnvVars("LIVINITY_LOG_FORMAT")},
		&cli.StringFlag{Name: flagRuntimeDir, Value: defaultRuntimeDir, Usage: "where the running agent's status socket lives",
			Sources: cli.EnvVars("LIVINITY_RUNTIME_DIR"), TakesFile: true},
	}
}

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
		},
		// errors are printed once, by main
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
	}
	wireUsage(app)
	return app
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version and build information",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			fmt.Fprintln(cmd.Root().Writer, versionLine())
			return nil
		},
	}
}

func versionLine() string {
	return fmt.Sprintf("livinity-agent %s (revision %s, %s)", moduleVersion(), revision(), runtime.Version())
}

// moduleVersion is the agent's version: -ldflags "-X main.version=...", else the module
// version in the build info (a tag or pseudo-version: `go install ...@v1.2.3`, or a build in
// a git checkout with -buildvcs), else "dev".
func moduleVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// revision is the VCS revision the binary was built from: -ldflags "-X main.commit=...",
// else the build info's vcs.revision (with "-dirty" when the tree had changes), else
// "unknown".
func revision() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	return "unknown"
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

// toolPath is the PATH for the commands the pipeline runs: the pm2 program's directory
// first (when given as a path), then the agent's own PATH.
func toolPath(cmd *cli.Command) string {
	p := os.Getenv("PATH")
	if p == "" {
		p = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if bin := cmd.String(flagPM2); strings.Contains(bin, "/") {
		if abs, err := filepath.Abs(bin); err == nil {
			p = filepath.Dir(abs) + string(os.PathListSeparator) + p
		}
	}
	return p
}
