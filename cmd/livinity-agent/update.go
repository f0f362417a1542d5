package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/livinity/livinity-agent/agent"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/update"
	"github.com/urfave/cli/v3"
)

func updateCommand() *cli.Command {
	return &cli.Command{
		Name:  "update",
		Usage: "build a new release beside the live one, switch to it, health-check it, and put the old one back on any failure",
		Description: "The new release is --dir DIR (holding livos/ and nexus/), or --ref REF of the git repository\n" +
			"--source (default: the origin of the git checkout the LivOS tree is in). The previous release\n" +
			"is kept beside the trees (<tree>.prev), so a rollback needs no network and no rebuild.",
		Flags:  updateFlags(),
		Action: runUpdate,
	}
}

func updateSource(cmd *cli.Command, livos string) (update.Source, error) {
	dir, ref, repo := cmd.String(flagDir), cmd.String(flagRef), cmd.String(flagSource)
	switch {
	case dir != "" && (ref != "" || repo != ""):
		return update.Source{}, errors.New("--dir and --ref/--source: give one source of the new release, not both")
	case dir != "":
		abs, err := filepath.Abs(dir)
		if err != nil {
			return update.Source{}, err
		}
		for _, t := range []string{"livos", "nexus"} {
			if st, err := os.Stat(filepath.Join(abs, t)); err != nil || !st.IsDir() {
				return update.Source{}, fmt.Errorf("--dir %s: no %s/ directory in it; want a directory holding the new livos/ and nexus/ trees", dir, t)
			}
		}
		return update.Source{Dir: abs}, nil
	case ref == "":
		return update.Source{}, errors.New("no new release given: pass --ref REF (with --source URL, or from the tree's own git origin) or --dir DIR")
	}
	if repo == "" {
		out, err := execOutput(livos, "git", "config", "--get", "remote.origin.url")
		if err != nil || strings.TrimSpace(out) == "" {
			return update.Source{}, fmt.Errorf("--source: not given, and %s is not in a git checkout with an origin; pass --source URL", livos)
		}
		repo = strings.TrimSpace(out)
	}
	return update.Source{Repo: repo, Ref: ref}, nil
}

// runUpdate is `update`: the release from the flags, then Agent.Update with its progress
// drawn on a terminal.
func runUpdate(ctx context.Context, cmd *cli.Command) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	src, err := updateSource(cmd, cfg.Paths.LivosBaseDir)
	if err != nil {
		return err
	}
	out := cmd.Root().Writer
	log, err := newLogger(cmd, cmd.Root().ErrWriter)
	if err != nil {
		return err
	}
	o, err := agentOptions(cmd, cfg, log)
	if err != nil {
		return err
	}
	a, err := agent.New(o)
	if err != nil {
		return err
	}
	var prog *progress
	if isTerminal(out) {
		prog = newProgress(out, colorOn(out), terminalWidth(out))
	}
	dryRun := cmd.Bool(flagDryRun)
	res, err := a.Update(ctx, agent.UpdateOptions{Source: src, DryRun: dryRun, Observe: func(e pipeline.Event) {
		if prog != nil {
			prog.Observe(e)
		}
	}})
	if prog != nil {
		prog.Close()
	}
	if res != nil && dryRun {
		printUpdatePlan(out, res)
	}
	if res != nil && len(res.Health) > 0 {
		printHealth(out, res.Health)
	}
	if err != nil {
		return err
	}
	if !dryRun {
		fmt.Fprintf(out, "updated %s -> %s in %s; restarted: %s\n", orDash(res.Record.From), res.Record.To,
			(time.Duration(res.Record.DurationSeconds * float64(time.Second))).Round(100*time.Millisecond), orNone(res.Restart))
	}
	return nil
}

func printUpdatePlan(w io.Writer, res *update.Result) {
	fmt.Fprintf(w, "new release: %s (from %s)\n", res.Record.To, orDash(res.Record.From))
	fmt.Fprintf(w, "services that would restart: %s\n", orNone(res.Restart))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tWOULD")
	for _, s := range res.Steps {
		would := "run"
		if s.Status == pipeline.StatusSkipped {
			would = "skip (unchanged)"
		}
		fmt.Fprintf(tw, "%s\t%s\n", s.Step.Title, would)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "(as onboarded)"
	}
	return s
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// execOutput runs a program in dir and returns its standard output.
func execOutput(dir, name string, args ...string) (string, error) {
	c := exec.Command(name, args...)
	c.Dir = dir
	b, err := c.Output()
	return string(b), err
}
