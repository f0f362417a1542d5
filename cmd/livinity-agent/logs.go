package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/livinity/livinity-agent/setup/ecosystem"
	"github.com/urfave/cli/v3"
)

const (
	// ecosystemFile is the PM2 ecosystem file the pipeline writes in the state dir.
	ecosystemFile = "ecosystem.config.cjs"
	// logsPoll is how often -f looks for new lines.
	logsPoll = 200 * time.Millisecond
	// pm2TimeLayout is the prefix PM2 writes before each line of an app with `time: true`
	// (its log_date_format default), in the daemon's local time, followed by ": ".
	pm2TimeLayout = "2006-01-02T15:04:05"
)

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		ArgsUsage: "[SERVICE]",
		Usage:     "show a service's output and errors (PM2's log files), all services' interleaved without SERVICE, or a pipeline step's log (--step)",
		Description: "Reads the log files the PM2 ecosystem names (<state-dir>/ecosystem.config.cjs, or the\n" +
			"config's when there is none yet or --config is given): each line is prefixed with its\n" +
			"service, and with \":err\" when it is from the service's error log. --step NAME shows\n" +
			"<state-dir>/logs/NAME.log, the output of that step of the last pipeline run. Works\n" +
			"whether the agent runs or not; -f follows until interrupted.",
		Flags:         logsFlags(),
		Action:        runLogs,
		ShellComplete: completeServices,
	}
}

// completeServices completes a SERVICE argument with the names the ecosystem knows (a flag
// with the command's flags).
func completeServices(ctx context.Context, cmd *cli.Command) {
	if args := cmd.Args().Slice(); len(args) > 0 && strings.HasPrefix(args[len(args)-1], "-") {
		cli.DefaultCompleteWithFlags(ctx, cmd)
		return
	}
	apps, _, err := ecosystemApps(cmd)
	if err != nil {
		return
	}
	for _, a := range apps {
		fmt.Fprintln(cmd.Root().Writer, a.Name)
	}
}

// logSource is one log file and the label its lines are printed with.
type logSource struct {
	label, path string
	// stamped: PM2 writes a timestamp before each line
	stamped bool
}

func runLogs(ctx context.Context, cmd *cli.Command) error {
	out, errw := cmd.Root().Writer, cmd.Root().ErrWriter
	if cmd.Args().Len() > 1 {
		return usagef(cmd, "logs takes one SERVICE at most, got %q", strings.Join(cmd.Args().Slice(), " "))
	}
	if cmd.Int(flagLines) < 0 {
		return usagef(cmd, "--lines: %d is negative; want 0 (all) or more", cmd.Int(flagLines))
	}
	var sources []logSource
	if step := cmd.String(flagStep); step != "" || cmd.IsSet(flagStep) {
		if cmd.Args().Len() > 0 {
			return usagef(cmd, "give a SERVICE or --step, not both")
		}
		src, err := stepSource(cmd, step)
		if err != nil {
			return err
		}
		sources = []logSource{src}
	} else {
		apps, from, err := ecosystemApps(cmd)
		if err != nil {
			return err
		}
		if len(apps) == 0 {
			return fmt.Errorf("logs: %s names no services", from)
		}
		if name := cmd.Args().First(); name != "" {
			i := slices.IndexFunc(apps, func(a ecosystem.App) bool { return a.Name == name })
			if i < 0 {
				names := make([]string, len(apps))
				for i, a := range apps {
					names[i] = a.Name
				}
				return usagef(cmd, "%q is not a service; the services are %s", name, strings.Join(names, ", "))
			}
			apps = apps[i : i+1]
		}
		for _, a := range apps {
			sources = append(sources, logSource{label: a.Name, path: a.OutFile, stamped: a.Time})
			if a.ErrorFile != "" && a.ErrorFile != a.OutFile {
				sources = append(sources, logSource{label: a.Name + ":err", path: a.ErrorFile, stamped: a.Time})
			}
		}
	}

	limit := int(cmd.Int(flagLines))
	if cmd.IsSet(flagSince) && !cmd.IsSet(flagLines) {
		limit = 0
	}
	var since time.Time
	if d := cmd.Duration(flagSince); d > 0 {
		since = time.Now().Add(-d)
	}
	width := 0
	for _, s := range sources {
		width = max(width, len(s.label))
	}
	prefix := func(s logSource) string {
		if len(sources) == 1 && cmd.IsSet(flagStep) {
			return "" // one step's log: its own lines
		}
		return fmt.Sprintf("%-*s | ", width, s.label)
	}

	offsets := make([]int64, len(sources))
	var lines []logLine
	for i, s := range sources {
		ls, end, err := tailFile(s, limit, since)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !cmd.Bool(flagFollow) {
				fmt.Fprintf(errw, "%s: no log yet at %s\n", s.label, s.path)
			}
		case err != nil:
			return fmt.Errorf("logs: %w", err)
		}
		for j := range ls {
			ls[j].src = i
		}
		lines = append(lines, ls...)
		offsets[i] = end
	}
	// interleaved by time; a file's own lines keep their order
	sort.SliceStable(lines, func(a, b int) bool {
		if !lines[a].at.Equal(lines[b].at) {
			return lines[a].at.Before(lines[b].at)
		}
		return lines[a].within < lines[b].within
	})
	if limit > 0 && len(lines) > limit {
		lines = lines[len(lines)-limit:]
	}
	for _, l := range lines {
		fmt.Fprintf(out, "%s%s\n", prefix(sources[l.src]), l.text)
	}
	if !cmd.Bool(flagFollow) {
		return nil
	}
	return followLogs(ctx, out, sources, offsets, prefix)
}

// stepSource is the log of the pipeline step name; an unknown step is refused with the
// steps that have logs.
func stepSource(cmd *cli.Command, name string) (logSource, error) {
	dir := filepath.Join(cmd.String(flagStateDir), "logs")
	var steps []string
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			if n, ok := strings.CutSuffix(e.Name(), ".log"); ok && e.Type().IsRegular() {
				steps = append(steps, n)
			}
		}
	}
	if name != "" && slices.Contains(steps, name) {
		return logSource{label: name, path: filepath.Join(dir, name+".log")}, nil
	}
	if len(steps) == 0 {
		return logSource{}, fmt.Errorf("logs --step: no step logs in %s: no pipeline has run with this state dir (--state-dir)", dir)
	}
	return logSource{}, usagef(cmd, "--step: %q is not a step with a log in %s; the steps are %s", name, dir, strings.Join(steps, ", "))
}

// ecosystemApps are the PM2 apps whose logs to read: the config's with --config, else the
// ecosystem file the last onboarding wrote in the state dir, else the saved or default
// config's.
func ecosystemApps(cmd *cli.Command) ([]ecosystem.App, string, error) {
	file := filepath.Join(cmd.String(flagStateDir), ecosystemFile)
	if !cmd.IsSet(flagConfig) {
		b, err := os.ReadFile(file)
		if err == nil {
			apps, err := parseEcosystem(b)
			if err != nil {
				return nil, "", fmt.Errorf("logs: %s: %w", file, err)
			}
			return apps, file, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("logs: %w", err)
		}
	}
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, "", fmt.Errorf("logs: no ecosystem file at %s (no onboarding with this --state-dir yet), and %w", file, err)
	}
	return ecosystem.Apps(cfg, cfg.Services(), ecosystem.Options{}), "the config", nil
}

// parseEcosystem reads the apps out of an ecosystem file the agent wrote:
// `module.exports = { apps: [...] };` with the array as JSON (ecosystem.Render).
func parseEcosystem(b []byte) ([]ecosystem.App, error) {
	const head = "module.exports = { apps: "
	i := bytes.Index(b, []byte(head))
	j := bytes.LastIndex(b, []byte("};"))
	if i < 0 || j < i {
		return nil, errors.New("not an ecosystem file written by livinity-agent (no `module.exports = { apps: [...] };`)")
	}
	var apps []ecosystem.App
	if err := json.Unmarshal(bytes.TrimSpace(b[i+len(head):j]), &apps); err != nil {
		return nil, fmt.Errorf("decode its apps: %w", err)
	}
	return apps, nil
}

// logLine is one line of a log and when it was written (PM2's timestamp; else the last
// one before it in its file; else, in an unstamped file, the file's modification time).
type logLine struct {
	at time.Time
	// within is the line's place among its file's lines of the same second, from 0 to 1:
	// PM2's timestamps have whole seconds, and two streams written in turn are shown in turn
	within float64
	text   string
	src    int
}

// lineTime parses PM2's "2006-01-02T15:04:05: " prefix.
func lineTime(line string) (time.Time, bool) {
	if len(line) < len(pm2TimeLayout)+1 || line[len(pm2TimeLayout)] != ':' {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation(pm2TimeLayout, line[:len(pm2TimeLayout)], time.Local)
	return t, err == nil
}

// tailFile returns the last limit lines of s (all with limit 0) written at or after since,
// and the file's size, where following starts.
func tailFile(s logSource, limit int, since time.Time) ([]logLine, int64, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	size := fi.Size()
	if !s.stamped && !since.IsZero() && fi.ModTime().Before(since) {
		return nil, size, nil // nothing in it is that recent
	}
	// read back from the end until limit lines are in (or the file is)
	chunk := int64(64 << 10)
	var data []byte
	for {
		start := max(0, size-chunk)
		data = make([]byte, size-start)
		if _, err := f.ReadAt(data, start); err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("read %s: %w", s.path, err)
		}
		if start == 0 {
			break
		}
		// the first line may be cut; it is dropped below
		if limit > 0 && since.IsZero() && bytes.Count(data, []byte("\n")) > limit+1 {
			data = data[bytes.IndexByte(data, '\n')+1:]
			break
		}
		chunk *= 4
	}
	// a last line without its newline is still being written: following picks it up whole
	end := size
	if k := bytes.LastIndexByte(data, '\n'); k < len(data)-1 {
		end -= int64(len(data) - 1 - k)
		data = data[:k+1]
	}
	var lines []logLine
	var at time.Time
	if !s.stamped {
		at = fi.ModTime()
	}
	for _, text := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if text == "" && len(data) == 0 {
			break
		}
		if t, ok := lineTime(text); ok && s.stamped {
			at = t
		}
		if !since.IsZero() && s.stamped && at.Before(since) {
			continue
		}
		lines = append(lines, logLine{at: at, text: cleanLogLine(text)})
	}
	if limit > 0 && len(lines) > limit {
		lines = lines[len(lines)-limit:]
	}
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && lines[j].at.Equal(lines[i].at) {
			j++
		}
		for k := i; k < j; k++ {
			lines[k].within = (float64(k-i) + 0.5) / float64(j-i)
		}
		i = j
	}
	return lines, end, nil
}

// followLogs prints what is appended to the sources from offsets on, every logsPoll, until
// ctx ends. A file that shrank was truncated or replaced (a new pipeline run, a log
// rotation) and is read again from its start; one that appears is read from its start.
func followLogs(ctx context.Context, out io.Writer, sources []logSource, offsets []int64, prefix func(logSource) string) error {
	partial := make([][]byte, len(sources))
	tick := time.NewTicker(logsPoll)
	defer tick.Stop()
	for {
		for i, s := range sources {
			data, next, err := readFrom(s.path, offsets[i])
			if err != nil {
				continue // not there (yet), or unreadable for now
			}
			if next < offsets[i] || len(data) == 0 && next == 0 {
				partial[i] = nil
			}
			offsets[i] = next
			buf := append(partial[i], data...)
			k := bytes.LastIndexByte(buf, '\n')
			if k < 0 {
				partial[i] = buf
				continue
			}
			for _, text := range strings.Split(string(buf[:k]), "\n") {
				fmt.Fprintf(out, "%s%s\n", prefix(s), cleanLogLine(text))
			}
			partial[i] = append([]byte(nil), buf[k+1:]...)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// readFrom reads path from offset to its end; when the file is shorter than offset it
// was truncated or replaced, and is read from its start.
func readFrom(path string, offset int64) ([]byte, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, offset, err
	}
	if fi.Size() < offset {
		offset = 0
	}
	data := make([]byte, fi.Size()-offset)
	n, err := f.ReadAt(data, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, offset, err
	}
	return data[:n], offset + int64(n), nil
}

// cleanLogLine keeps a service's line from moving the cursor or recoloring the operator's
// terminal: control characters but tab become spaces.
func cleanLogLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSuffix(s, "\r"))
}
