package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/setup/preflight"
	"github.com/urfave/cli/v3"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "validate --config and run the preflight checks; changes nothing",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.String(flagConfig) == "" {
				return fmt.Errorf("--config: required; pass the setup.json to check")
			}
			cfg, err := config.Load(cmd.String(flagConfig))
			if err != nil {
				return err
			}
			out := cmd.Root().Writer
			fmt.Fprintf(out, "%s: valid\n", cmd.String(flagConfig))
			results := preflight.Run(ctx, cfg, preflightOptions(cmd))
			preflight.Format(out, results, isTerminal(out) && os.Getenv("NO_COLOR") == "")
			return preflight.Critical(results)
		},
	}
}

func preflightOptions(cmd *cli.Command) preflight.Options {
	home, _ := pm2Home(cmd) // without one, every held port counts as a conflict
	return preflight.Options{Path: toolPath(cmd), PM2: cmd.String(flagPM2), PM2Home: home}
}

// runPreflight checks the machine before the pipeline changes anything: a critical failure
// stops here; the rest are shown (on a terminal) or logged, and the pipeline goes on.
func runPreflight(ctx context.Context, cmd *cli.Command, cfg *config.Config, out io.Writer, color bool, log *slog.Logger) error {
	results := preflight.Run(ctx, cfg, preflightOptions(cmd))
	if isTerminal(out) {
		preflight.Format(out, results, color)
	}
	for _, r := range results {
		log.Info("preflight", "check", r.Name, "status", string(r.Status), "detail", r.Detail, "fix", r.Fix)
	}
	return preflight.Critical(results)
}
