package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v3"

	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/proctree"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// Exit codes of the status command, after the LSB's for init scripts' status action.
const (
	statusExitReady      = 0
	statusExitDegraded   = 1
	statusExitNotRunning = 3
	statusExitUnknown    = 4
)

const (
	flagJSON     = "json"
	flagWatch    = "watch"
	flagInterval = "interval"

	minStatusInterval = 100 * time.Millisecond
	// statusPM2Timeout bounds the fallback's talk with the PM2 daemon.
	statusPM2Timeout = 5 * time.Second
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		ArgsUsage: "[SERVICE]",
		Usage:     "show the running agent's services (exit 0 all ready, 1 degraded, 3 agent not running, 4 unreadable)",
		Description: "Reads the running agent's live state from <runtime-dir>/status.sock. When no agent\n" +
			"answers there, shows PM2's own view of the apps instead (read over PM2's socket of the\n" +
			"box's PM2 home: --pm2-home, else the last onboarding's with --state-dir, else the installed\n" +
			"unit's; no PM2 daemon is ever started) and exits with 3. With SERVICE, only that service.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: flagJSON, Usage: "print the status document as JSON (schema in the README)",
				Sources: cli.EnvVars("LIVINITY_JSON")},
			&cli.BoolFlag{Name: flagWatch, Aliases: []string{"w"}, Usage: "refresh until interrupted",
				Sources: cli.EnvVars("LIVINITY_STATUS_WATCH")},
			&cli.DurationFlag{Name: flagInterval, Value: time.Second, Usage: "refresh period; implies --watch",
				Sources: cli.EnvVars("LIVINITY_STATUS_INTERVAL")},
		},
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
	color := tty && os.Getenv("NO_COLOR") == ""
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
	doc, err = pm2Status(ctx, home)
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

// pm2Status builds a status document from PM2's process list, read over the daemon's RPC
// socket under home, with each process tree's memory. It never starts a daemon.
func pm2Status(ctx context.Context, home string) (statusapi.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, statusPM2Timeout)
	defer cancel()
	c, err := pm2.Dial(ctx, home)
	if err != nil {
		return statusapi.Status{}, err
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		return statusapi.Status{}, err
	}
	now := time.Now()
	table, _ := proctree.NewSampler("").Scan() // without /proc, memory stays unmeasured
	doc := statusapi.Status{
		Schema:   statusapi.SchemaVersion,
		Source:   statusapi.SourcePM2,
		At:       now.UTC(),
		Services: make([]statusapi.Service, 0, len(procs)),
	}
	for _, p := range procs {
		sv := statusapi.Service{
			Name:        p.Name,
			State:       statusapi.StateUnknown,
			PM2Status:   string(p.Status),
			PM2Restarts: p.RestartTime,
		}
		if p.Status == pm2.StatusOnline && p.PID > 0 {
			sv.PID = p.PID
			if !p.Started.IsZero() {
				sv.UptimeSeconds = max(now.Sub(p.Started).Round(time.Millisecond).Seconds(), 0)
			}
			if table != nil {
				if u, err := table.Memory(int32(p.PID)); err == nil {
					sv.MemoryBytes, sv.MemoryKind = u.Bytes, u.Kind
				}
			}
		}
		doc.Services = append(doc.Services, sv)
	}
	return doc, nil
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

// statusCell is one table cell: text and an SGR color code ("" for none).
type statusCell struct{ text, color string }

// renderStatus writes the human view of doc.
func renderStatus(w io.Writer, doc statusapi.Status, color bool) {
	if doc.Source == statusapi.SourcePM2 {
		renderPM2Status(w, doc, color)
		return
	}
	if doc.Agent != nil {
		fmt.Fprintln(w, agentLine(*doc.Agent, color))
	}
	rows := [][]statusCell{{{"SERVICE", ""}, {"STATE", ""}, {"READY", ""}, {"PID", ""}, {"UPTIME", ""},
		{"MEMORY (TREE)", ""}, {"RESTARTS", ""}, {"LAST PROBE", ""}, {"NEXT RETRY", ""}}}
	for _, sv := range doc.Services {
		ready := statusCell{"no", "31"}
		if sv.Ready {
			ready = statusCell{"yes", "32"}
		}
		rows = append(rows, []statusCell{
			{cleanText(sv.Name), ""},
			{cleanText(sv.State), stateColor(sv.State)},
			ready,
			{pidText(sv.PID), ""},
			{uptimeText(sv.PID, sv.UptimeSeconds), ""},
			{memoryText(sv.MemoryBytes, sv.MemoryKind), ""},
			{restartsText(sv.Restarts, sv.RestartsTotal), ""},
			probeCell(sv.LastProbe),
			{nextRetryText(sv.NextAttemptInSeconds), ""},
		})
	}
	writeTable(w, rows, color)
	n := countReady(doc)
	summary := statusCell{fmt.Sprintf("%d/%d services ready", n, len(doc.Services)), "32"}
	if !doc.Ready {
		summary.color = "31"
	}
	fmt.Fprintln(w, paintStatus(color, summary.color, summary.text))
	for _, sv := range doc.Services {
		if !sv.Ready && sv.Detail != "" {
			fmt.Fprintf(w, "  %s: %s\n", cleanText(sv.Name), cleanText(sv.Detail))
		}
		if e := sv.LastExit; e != nil && !sv.Ready {
			how := "exited by itself"
			switch {
			case e.Signal != "":
				how = "killed by " + cleanText(e.Signal)
			case e.Code != nil:
				how = fmt.Sprintf("exited with code %d", *e.Code)
			}
			fmt.Fprintf(w, "  %s: last instance %s at %s\n", cleanText(sv.Name), how, e.At.Local().Format(time.TimeOnly))
		}
	}
}

func renderPM2Status(w io.Writer, doc statusapi.Status, color bool) {
	if len(doc.Services) == 0 {
		fmt.Fprintln(w, "PM2 manages no apps")
		return
	}
	rows := [][]statusCell{{{"SERVICE", ""}, {"PM2 STATUS", ""}, {"PID", ""}, {"UPTIME", ""},
		{"MEMORY (TREE)", ""}, {"PM2 RESTARTS", ""}}}
	online := 0
	for _, sv := range doc.Services {
		c := "33"
		switch pm2.Status(sv.PM2Status) {
		case pm2.StatusOnline:
			c = "32"
			online++
		case pm2.StatusErrored, pm2.StatusStopped:
			c = "31"
		}
		rows = append(rows, []statusCell{
			{cleanText(sv.Name), ""},
			{cleanText(sv.PM2Status), c},
			{pidText(sv.PID), ""},
			{uptimeText(sv.PID, sv.UptimeSeconds), ""},
			{memoryText(sv.MemoryBytes, sv.MemoryKind), ""},
			{strconv.Itoa(sv.PM2Restarts), ""},
		})
	}
	writeTable(w, rows, color)
	fmt.Fprintf(w, "%d/%d apps online; readiness unknown (the agent runs the probes)\n", online, len(doc.Services))
}

// agentLine is "agent 1.2.3, up 2h30m, setup ok in 4m33s, pm2 connected".
func agentLine(a statusapi.Agent, color bool) string {
	parts := []string{"agent " + cleanText(a.Version)}
	if a.Started != nil {
		parts = append(parts, "up "+durationText(a.UptimeSeconds))
	}
	s := a.Setup
	switch {
	case s.Step != "":
		parts = append(parts, paintStatus(color, "33", "setup running: step "+cleanText(s.Step)))
	case !s.Ran:
		parts = append(parts, "setup not run (services adopted)")
	case s.OK:
		parts = append(parts, paintStatus(color, "32", "setup ok in "+durationText(s.DurationSeconds)))
	default:
		parts = append(parts, paintStatus(color, "31", "setup failed: "+truncateText(cleanText(s.Error), 120)))
	}
	switch {
	case a.PM2Connected:
		parts = append(parts, "pm2 connected")
	case a.PM2Error != "":
		parts = append(parts, paintStatus(color, "31", "pm2: "+truncateText(cleanText(a.PM2Error), 120)))
	default:
		parts = append(parts, paintStatus(color, "31", "pm2 disconnected"))
	}
	return strings.Join(parts, ", ")
}

func stateColor(state string) string {
	switch state {
	case "ready":
		return "32"
	case "starting", "restarting", "backoff":
		return "33"
	case "unhealthy", "stopped":
		return "31"
	}
	return ""
}

func pidText(pid int) string {
	if pid <= 0 {
		return "-"
	}
	return strconv.Itoa(pid)
}

func uptimeText(pid int, secs float64) string {
	if pid <= 0 {
		return "-"
	}
	return durationText(secs)
}

// durationText is a short human duration: 42s, 4m12s, 2h05m, 3d04h.
func durationText(secs float64) string {
	s := int64(secs)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// latencyText is a probe latency: 0.4ms, 12ms, 2.0s.
func latencyText(secs float64) string {
	ms := secs * 1000
	switch {
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	case ms < 1000:
		return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(secs, 'f', 1, 64) + "s"
}

func memoryText(b uint64, kind string) string {
	if b == 0 {
		return "-"
	}
	const unit = 1024
	v, suffix := float64(b), "B"
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	text := strconv.FormatFloat(v, 'f', 1, 64) + " " + suffix
	if suffix == "B" {
		text = strconv.FormatUint(b, 10) + " B"
	}
	if kind != "" {
		text += " " + cleanText(kind)
	}
	return text
}

// restartsText is "0" or "3 (crash 2, probe 1)".
func restartsText(r statusapi.Restarts, total uint64) string {
	var parts []string
	for _, kv := range []struct {
		name string
		n    uint64
	}{{"crash", r.Crash}, {"probe", r.Probe}, {"memory", r.Memory}, {"pm2", r.PM2}, {"manual", r.Manual}} {
		if kv.n > 0 {
			parts = append(parts, kv.name+" "+strconv.FormatUint(kv.n, 10))
		}
	}
	if len(parts) == 0 {
		return strconv.FormatUint(total, 10)
	}
	return strconv.FormatUint(total, 10) + " (" + strings.Join(parts, ", ") + ")"
}

func probeCell(p *statusapi.Probe) statusCell {
	switch {
	case p == nil:
		return statusCell{"-", ""}
	case p.OK:
		return statusCell{"ok " + latencyText(p.LatencySeconds), "32"}
	case p.Error != "":
		return statusCell{cleanText(p.Outcome) + ": " + truncateText(cleanText(p.Error), 60), "31"}
	}
	return statusCell{cleanText(p.Outcome) + " " + latencyText(p.LatencySeconds), "31"}
}

func nextRetryText(in *float64) string {
	switch {
	case in == nil:
		return "-"
	case *in <= 0:
		return "due"
	}
	return "in " + durationText(*in)
}

// writeTable writes rows with columns padded to their widest cell, two spaces apart.
// Colors wrap the padded text so that escape sequences do not upset the alignment.
func writeTable(w io.Writer, rows [][]statusCell, color bool) {
	var widths []int
	for _, row := range rows {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		b.Reset()
		for i, c := range row {
			text := c.text
			if i < len(row)-1 {
				text += strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text)+2)
			}
			b.WriteString(paintStatus(color, c.color, text))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// paintStatus wraps s in an SGR color when color is on.
func paintStatus(color bool, code, s string) string {
	if !color || code == "" {
		return s
	}
	trimmed := strings.TrimRight(s, " ")
	return "\x1b[" + code + "m" + trimmed + "\x1b[0m" + s[len(trimmed):]
}

// cleanText replaces control characters (which could move the cursor or recolor the
// terminal: probe errors may quote what a service answered) with spaces.
func cleanText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
}

// truncateText shortens s to n runes, marking the cut with an ellipsis.
func truncateText(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
