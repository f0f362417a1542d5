package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/livinity/livinity-agent/agent"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// Exit codes of the status command, after the LSB's for init scripts' status action.
const (
	statusExitReady      = 0
	statusExitDegraded   = 1
	statusExitNotRunning = 3
	statusExitUnknown    = 4
)

// minStatusInterval is the shortest --interval.
const minStatusInterval = 100 * time.Millisecond

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		ArgsUsage: "[SERVICE]",
		Usage:     "show the running agent's services (exit 0 all ready, 1 degraded, 3 agent not running, 4 unreadable)",
		Description: "Reads the running agent's live state from <runtime-dir>/status.sock. When no agent\n" +
			"answers there, shows PM2's own view of the apps instead (read over PM2's socket of the\n" +
			"box's PM2 home: --pm2-home, else the last onboarding's with --state-dir, else the installed\n" +
			"unit's; no PM2 daemon is ever started) and exits with 3. With SERVICE, only that service.",
		Flags:         statusFlags(),
		Action:        runStatus,
		ShellComplete: completeServices,
	}
}

// statusReading is one look at the agent (or, without it, at PM2).
type statusReading struct {
	doc   statusapi.Status
	has   bool     // doc is worth showing
	notes []string // what the reader has to say first, e.g. that the agent is not running
	code  int
	err   string // the exit message for a non-zero code
}

// exit turns the reading into the command's result.
func (r statusReading) exit() error {
	if r.code == statusExitReady {
		return nil
	}
	return cli.Exit(r.err, r.code)
}

func runStatus(ctx context.Context, cmd *cli.Command) error {
	out := cmd.Root().Writer
	errw := cmd.Root().ErrWriter
	asJSON := cmd.Bool(flagJSON)
	interval := cmd.Duration(flagInterval)
	watch := cmd.Bool(flagWatch) || cmd.IsSet(flagInterval)
	if interval < minStatusInterval {
		return fmt.Errorf("--interval: %s is too short; use %s or more, e.g. --interval 2s", interval, minStatusInterval)
	}
	sock := filepath.Join(cmd.String(flagRuntimeDir), statusapi.SocketName)
	tty := isTerminal(out)
	color := colorOn(out)
	name, err := statusService(cmd)
	if err != nil {
		return err
	}
	look := func() statusReading { return narrowStatus(cmd, readStatus(ctx, cmd, sock), name) }
	show := func(r statusReading) {
		if asJSON {
			for _, n := range r.notes {
				fmt.Fprintln(errw, n)
			}
			if r.has {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.Encode(r.doc)
			}
			return
		}
		for _, n := range r.notes {
			fmt.Fprintln(out, paintStatus(color, "33", n))
		}
		if r.has {
			renderStatus(out, r.doc, color)
		}
	}

	if !watch {
		r := look()
		show(r)
		return r.exit()
	}

	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var last statusReading
	for n := 0; ; n++ {
		r := look()
		if r.code == exitUsage {
			return r.exit() // an unknown SERVICE stays unknown
		}
		if ctx.Err() != nil && n > 0 {
			return last.exit() // interrupted while reading: the last complete look stands
		}
		switch {
		case tty && !asJSON:
			fmt.Fprint(out, "\x1b[H\x1b[2J")
		case n > 0 && !asJSON:
			fmt.Fprintln(out)
		}
		if !asJSON {
			fmt.Fprintf(out, "%s  (every %s)\n", time.Now().Format("2006-01-02 15:04:05"), interval)
		}
		show(r)
		last = r
		select {
		case <-ctx.Done():
			return last.exit()
		case <-ticker.C:
		}
	}
}

// readStatus asks the agent; when it is not running, PM2.
func readStatus(ctx context.Context, cmd *cli.Command, sock string) statusReading {
	doc, err := statusapi.Fetch(ctx, sock)
	switch {
	case err == nil:
		r := statusReading{doc: doc, has: true}
		if !doc.Ready {
			r.code = statusExitDegraded
			r.err = fmt.Sprintf("degraded: %d of %d services ready", countReady(doc), len(doc.Services))
		}
		return r
	case !errors.Is(err, statusapi.ErrNotRunning):
		return statusReading{code: statusExitUnknown, err: err.Error()}
	}

	r := statusReading{code: statusExitNotRunning, err: "agent not running"}
	home, _, err := configuredPM2Home(cmd) // the box's: --pm2-home, the state dir's, the unit's
	if err != nil {
		r.notes = append(r.notes, fmt.Sprintf("agent not running (nothing answers on %s); cannot look for PM2 either: %v", sock, err))
		return r
	}
	doc, err = agent.PM2Status(ctx, home)
	switch {
	case errors.Is(err, pm2.ErrDaemonNotRunning):
		r.notes = append(r.notes, fmt.Sprintf("agent not running (nothing answers on %s), and no PM2 daemon runs either (nothing answers on %s)",
			sock, pm2.RPCSocket(home)))
	case err != nil:
		r.notes = append(r.notes, fmt.Sprintf("agent not running (nothing answers on %s); PM2 could not be read either: %v", sock, err))
	default:
		r.doc, r.has = doc, true
		r.notes = append(r.notes, fmt.Sprintf("agent not running (nothing answers on %s); showing PM2's view (PM2_HOME %s)", sock, home))
	}
	return r
}

func countReady(doc statusapi.Status) int {
	n := 0
	for _, sv := range doc.Services {
		if sv.Ready {
			n++
		}
	}
	return n
}
