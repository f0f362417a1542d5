package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/livinity/livinity-agent/agent"
	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/setup/preflight"
	"github.com/urfave/cli/v3"
)

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "validate --config and run the preflight checks; changes nothing",
		Description: "Validates the config, checks that its LivOS and Nexus trees exist, and runs the\n" +
			"preflight. On a box that runs already, ports held by its own PM2 apps are fine: the PM2\n" +
			"home is --pm2-home, else the one the last onboarding with --state-dir used, else the\n" +
			"installed unit's, else $PM2_HOME or $HOME/.pm2. Exit 1 when a critical check fails.",
		Flags:  checkFlags(),
		Action: runCheck,
	}
}

// checkReport is check's outcome; --json prints it.
type checkReport struct {
	Config        string        `json:"config"`
	Valid         bool          `json:"valid"`
	Error         string        `json:"error,omitempty"`
	PM2Home       string        `json:"pm2Home,omitempty"`
	PM2HomeSource string        `json:"pm2HomeSource,omitempty"`
	Checks        []checkResult `json:"checks"`
	OK            bool          `json:"ok"`
}

type checkResult struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Critical bool   `json:"critical"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
}

// namePaths is the check that the config's trees exist.
const namePaths = "Paths"

func runCheck(ctx context.Context, cmd *cli.Command) error {
	path := cmd.String(flagConfig)
	if path == "" {
		return usagef(cmd, "--config: required; pass the setup.json to check")
	}
	out := cmd.Root().Writer
	asJSON := cmd.Bool(flagJSON)
	report := checkReport{Config: path, Checks: []checkResult{}}
	printJSON := func() {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.Encode(report)
	}
	cfg, err := config.Load(path)
	if err != nil {
		if asJSON {
			report.Error = err.Error()
			printJSON()
		}
		return err
	}
	report.Valid = true
	opts := preflightOptions(cmd)
	home, source, err := configuredPM2Home(cmd)
	if err == nil {
		opts.PM2Home, report.PM2Home, report.PM2HomeSource = home, home, source
	}
	results := append([]preflight.Result{checkPaths(cfg)}, preflight.Run(ctx, cfg, opts)...)
	critical := preflight.Critical(results)
	report.OK = critical == nil
	for _, r := range results {
		report.Checks = append(report.Checks, checkResult{Name: r.Name, Status: string(r.Status), Critical: r.Critical, Detail: r.Detail, Fix: r.Fix})
	}
	if asJSON {
		printJSON()
	} else {
		fmt.Fprintf(out, "%s: valid\n", path)
		if report.PM2Home != "" {
			fmt.Fprintf(out, "PM2 home %s (from %s)\n", report.PM2Home, report.PM2HomeSource)
		}
		preflight.Format(out, results, colorOn(out))
	}
	return critical
}

// checkPaths fails when a tree the config names is not a directory: onboarding would fail
// at its first step.
func checkPaths(cfg *config.Config) preflight.Result {
	r := preflight.Result{Name: namePaths, Critical: true, Status: preflight.OK}
	var missing []string
	for _, p := range []struct{ key, dir string }{
		{"paths.livosBaseDir", cfg.Paths.LivosBaseDir}, {"paths.nexusBaseDir", cfg.Paths.NexusBaseDir},
	} {
		fi, err := os.Stat(p.dir)
		switch {
		case err != nil:
			missing = append(missing, fmt.Sprintf("%s %s does not exist", p.key, p.dir))
		case !fi.IsDir():
			missing = append(missing, fmt.Sprintf("%s %s is not a directory", p.key, p.dir))
		}
	}
	if len(missing) > 0 {
		r.Status, r.Detail = preflight.Fail, strings.Join(missing, "; ")
		r.Fix = "put the LivOS and Nexus trees there (git clone), or point paths in the config at them"
		return r
	}
	r.Detail = "the LivOS tree " + cfg.Paths.LivosBaseDir + " and the Nexus tree " + cfg.Paths.NexusBaseDir + " exist"
	return r
}

// preflightOptions are the preflight's options from the flags: the tools' PATH, the pm2
// program and the PM2 home.
func preflightOptions(cmd *cli.Command) preflight.Options {
	home, _ := pm2Home(cmd) // without one, every held port counts as a conflict
	return preflight.Options{Path: agent.ToolPath(cmd.String(flagPM2)), PM2: cmd.String(flagPM2), PM2Home: home}
}
