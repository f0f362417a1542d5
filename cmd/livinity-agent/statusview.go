package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

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
		{"MEMORY (TREE)", ""}, {"CPU", ""}, {"RESTARTS", ""}, {"LAST PROBE", ""}, {"NEXT RETRY", ""}}}
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
			{cpuText(sv.CPUPercent), ""},
			{restartsText(sv.Restarts, sv.RestartsTotal), ""},
			probeCell(sv.LastProbe),
			{nextRetryText(sv.NextAttemptInSeconds), ""},
		})
	}
	writeTable(w, rows, color)
	n := countReady(doc)
	summary := statusCell{fmt.Sprintf("%d/%d services ready", n, len(doc.Services)), "32"}
	if held := countOperatorStopped(doc); held > 0 {
		summary.text += fmt.Sprintf(" (%d stopped by the operator: livinity-agent start SERVICE)", held)
	}
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

// cpuText is the tree's CPU in percent of one core ("12.5%", "150.0%"), or "-" when not
// measured.
func cpuText(p *float64) string {
	if p == nil {
		return "-"
	}
	return strconv.FormatFloat(*p, 'f', 1, 64) + "%"
}

// countOperatorStopped is how many services the operator holds stopped (livinity-agent
// stop): they do not make the box degraded.
func countOperatorStopped(doc statusapi.Status) int {
	n := 0
	for _, sv := range doc.Services {
		if sv.StoppedByOperator {
			n++
		}
	}
	return n
}
