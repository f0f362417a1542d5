package main

import (
	"time"

	"github.com/urfave/cli/v3"
)

// Every flag of the CLI is here, and every one also reads a LIVINITY_* variable (a
// systemd EnvironmentFile sets any of them; flags_test.go holds every command to it). The
// flags are made afresh for every app, since a parsed flag keeps its value.

const (
	defaultStateDir   = "/var/lib/livinity-agent"
	defaultRuntimeDir = "/run/livinity-agent"
)

// Flag names.
const (
	// global
	flagConfig     = "config"
	flagStateDir   = "state-dir"
	flagPM2Home    = "pm2-home"
	flagPM2        = "pm2"
	flagLogLevel   = "log-level"
	flagLogFormat  = "log-format"
	flagRuntimeDir = "runtime-dir"
	// onboard, setup, demo, update
	flagRotateSecrets = "rotate-secrets"
	flagDryRun        = "dry-run"
	flagJobs          = "jobs"
	flagRollback      = "rollback"
	flagDir           = "dir"
	// run
	flagMetricsListen = "metrics-listen"
	// update
	flagRef    = "ref"
	flagSource = "source"
	// status, check, history
	flagJSON     = "json"
	flagWatch    = "watch"
	flagInterval = "interval"
	// logs
	flagFollow = "follow"
	flagLines  = "lines"
	flagSince  = "since"
	flagStep   = "step"
	// install, uninstall
	flagInstallTimeout = "timeout"
	flagPurge          = "purge"
	flagKeepServices   = "keep-services"
	// wizard, exec-env
	flagOutput  = "output"
	flagEnvFile = "env-file"
)

// globalFlags apply to every command.
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

// jobsFlag bounds the pipeline steps run at once.
func jobsFlag(usage string) cli.Flag {
	return &cli.IntFlag{Name: flagJobs, Usage: usage, Sources: cli.EnvVars("LIVINITY_JOBS")}
}

// pipelineFlags are the flags of the commands that run the onboarding pipeline: onboard,
// setup and demo.
func pipelineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagRotateSecrets, Usage: "replace the secrets of an existing .env (logs every user out)",
			Sources: cli.EnvVars("LIVINITY_ROTATE_SECRETS")},
		&cli.BoolFlag{Name: flagDryRun, Usage: "print the plan and change nothing",
			Sources: cli.EnvVars("LIVINITY_DRY_RUN")},
		jobsFlag("steps run at once at most (0: as many as are ready; 1: one after another)"),
	}
}

func setupFlags() []cli.Flag {
	return append(pipelineFlags(),
		&cli.BoolFlag{Name: flagRollback, Usage: "only roll back an interrupted run, then exit",
			Sources: cli.EnvVars("LIVINITY_ROLLBACK")})
}

func demoFlags() []cli.Flag {
	return append(pipelineFlags(),
		&cli.StringFlag{Name: flagDir, Value: ".demo", Usage: "scratch directory for the demo tree, its config, state and PM2 home",
			Sources: cli.EnvVars("LIVINITY_DEMO_DIR"), TakesFile: true})
}

func runFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagMetricsListen, Usage: "address of /metrics, /healthz, /readyz (default: agent.metrics.listen)",
			Sources: cli.EnvVars("LIVINITY_METRICS_LISTEN")},
		jobsFlag("pipeline steps run at once at most (0: as many as are ready)"),
	}
}

func updateFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagRef, Usage: "git branch, tag or commit of the new release", Sources: cli.EnvVars("LIVINITY_UPDATE_REF")},
		&cli.StringFlag{Name: flagSource, Usage: "git repository (URL or path) holding livos/ and nexus/ at its top", Sources: cli.EnvVars("LIVINITY_UPDATE_SOURCE")},
		&cli.StringFlag{Name: flagDir, Usage: "directory holding the new livos/ and nexus/ trees", Sources: cli.EnvVars("LIVINITY_UPDATE_DIR")},
		&cli.BoolFlag{Name: flagDryRun, Usage: "say what would change and which services would restart; change nothing", Sources: cli.EnvVars("LIVINITY_DRY_RUN")},
		jobsFlag("steps run at once at most (0: as many as are ready)"),
	}
}

// jsonFlag prints a command's outcome as JSON; what says what it prints.
func jsonFlag(what string) cli.Flag {
	return &cli.BoolFlag{Name: flagJSON, Usage: what, Sources: cli.EnvVars("LIVINITY_JSON")}
}

func statusFlags() []cli.Flag {
	return []cli.Flag{
		jsonFlag("print the status document as JSON (schema in the README)"),
		&cli.BoolFlag{Name: flagWatch, Aliases: []string{"w"}, Usage: "refresh until interrupted",
			Sources: cli.EnvVars("LIVINITY_STATUS_WATCH")},
		&cli.DurationFlag{Name: flagInterval, Value: time.Second, Usage: "refresh period; implies --watch",
			Sources: cli.EnvVars("LIVINITY_STATUS_INTERVAL")},
	}
}

func checkFlags() []cli.Flag {
	return []cli.Flag{jsonFlag("print the outcome as JSON: config, valid, error, pm2Home, ok and every check's name, status, critical, detail and fix")}
}

func historyFlags() []cli.Flag {
	return []cli.Flag{jsonFlag("print the records as a JSON array")}
}

func logsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagFollow, Aliases: []string{"f"}, Usage: "keep printing new lines until interrupted",
			Sources: cli.EnvVars("LIVINITY_LOGS_FOLLOW")},
		&cli.IntFlag{Name: flagLines, Aliases: []string{"n"}, Value: 50, Usage: "the last N lines (in all; 0: all of them); with --since and without -n, every line since",
			Sources: cli.EnvVars("LIVINITY_LOGS_LINES")},
		&cli.DurationFlag{Name: flagSince, Usage: "only lines from the last D (e.g. 10m, 2h)",
			Sources: cli.EnvVars("LIVINITY_LOGS_SINCE")},
		&cli.StringFlag{Name: flagStep, Usage: "a pipeline step's log (env, livos-install, build-ui, pm2-start, verify, ...) instead of a service's",
			Sources: cli.EnvVars("LIVINITY_LOGS_STEP")},
	}
}

func installFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: flagInstallTimeout, Value: time.Hour,
			Usage:   "how long to follow the agent before giving up (it keeps going in the background)",
			Sources: cli.EnvVars("LIVINITY_INSTALL_TIMEOUT")},
	}
}

func uninstallFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: flagPurge, Usage: "also remove the config (/etc/livinity) and the agent's state (/var/lib/livinity-agent)",
			Sources: cli.EnvVars("LIVINITY_PURGE")},
		&cli.BoolFlag{Name: flagKeepServices, Usage: "remove only the agent: livinity-pm2.service stays installed, enabled and running " +
			"(the services keep running and come back at boot), and so does the binary, the python services' launcher",
			Sources: cli.EnvVars("LIVINITY_KEEP_SERVICES")},
	}
}

func wizardFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Usage: "the setup.json to write (replaced if it exists)",
			Sources: cli.EnvVars("LIVINITY_WIZARD_OUTPUT"), TakesFile: true},
	}
}

func execEnvFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagEnvFile, Usage: "the .env file", Required: true,
			Sources: cli.EnvVars("LIVINITY_ENV_FILE")},
	}
}
