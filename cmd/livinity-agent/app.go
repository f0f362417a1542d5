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
		&cli.StringFlag{Name: flagRuntimeDir, Value: defaultRuntimeDir, Usage: "where the running agent's status socket lives",
			Sources: cli.EnvVars("LIVINITY_RUNTIME_DIR"), TakesFile: true},
	}
}

func newApp(stdout, stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:                  "livinity-agent",
		Usage:                 "set up a LivOS home server and keep it running",
		Version:               version,
		Writer:                stdout,
		ErrWriter:             stderr,
		Flags:                 globalFlags(),
		HideHelpCommand:       true,
		EnableShellCompletion: false,
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
		},
		// errors are printed once, by main
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
	}
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
	return fmt.Sprintf("livinity-agent %s (revision %s, %s)", version, revision(), runtime.Version())
}

// revision is the VCS revision the binary was built from: -ldflags "-X main.commit=...",
// else the Go build info, else "unknown".
func revision() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// newLogger builds the structured logger: slog text lines on w at the chosen level, in
// journald's form (priority prefixes, no timestamps) when w is connected to the journal.
func newLogger(cmd *cli.Command, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmd.String(flagLogLevel))); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not a level; use debug, info, warn or error", cmd.String(flagLogLevel))
	}
	return slog.New(systemd.NewLogHandler(w, &slog.HandlerOptions{Level: level})), nil
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
