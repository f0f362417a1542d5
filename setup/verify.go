package setup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/supervisor/probe"
	"github.com/livinity/livinity-agent/supervisor/proctree"
)

// errorLines is how many of a failing service's last error-log lines a failed
// verification quotes.
const errorLines = 8

// verify checks every started service with its probe until all are healthy or
// agent.healthTimeoutSeconds passes. A service left out (its optional build failed) is
// reported as skipped, not awaited. A service that never became healthy is named with
// PM2's restart count and the last lines of its own error log.
func (b *Box) verify(ctx context.Context, x *pipeline.Exec) error {
	started := map[string]bool{}
	for _, d := range b.available() {
		started[d.Name] = true
	}
	return b.Verify(ctx, x.PM2, started)
}

// Verify checks the started services (the others are reported skipped) and fills Health.
func (b *Box) Verify(ctx context.Context, pm pipeline.PM2, started map[string]bool) error {
	app := func(ctx context.Context, service string) (pipeline.App, bool, error) {
		apps, _, err := pm.Apps(ctx)
		for _, a := range apps {
			if a.Name == service {
				return a, true, err
			}
		}
		return pipeline.App{}, false, err
	}
	sampler := proctree.NewSampler("")
	var targets []HealthTarget
	var skipped []HealthResult
	for _, d := range b.defs {
		name := d.Name
		if !started[name] {
			skipped = append(skipped, HealthResult{Service: name, Probe: "-", Skipped: true,
				Detail: "skipped: a build it needs failed (optional service)"})
			continue
		}
		s := b.Config.ServiceSettings(name)
		spec := probe.FromConfig(s.Probe)
		online := func(ctx context.Context) (bool, error) {
			a, ok, err := app(ctx, name)
			return ok && a.Status == "online", err
		}
		// an answer counts only from the app's own process tree: another process on the
		// port (an old instance, another install) must not pass for this one
		owns := func(ctx context.Context, port int) (bool, error) {
			a, ok, err := app(ctx, name)
			if err != nil || !ok || a.Status != "online" {
				return false, err
			}
			owned, _, err := sampler.OwnsPort(int32(a.PID), port)
			return owned, err
		}
		targets = append(targets, HealthTarget{Service: name, Spec: spec, Timeout: s.Liveness.Timeout(),
			Check: probe.Owned(probe.Checker(spec, online), spec, owns)})
	}
	res, err := verifyHealth(ctx, targets, b.Config.Agent.HealthTimeout())
	if err != nil {
		// say why: PM2's restart count and the service's own last error lines
		logs := map[string]string{}
		for _, a := range b.Apps(b.defs) {
			logs[a.Name] = a.ErrorFile
		}
		var why []string
		for i := range res {
			r := &res[i]
			if r.OK {
				continue
			}
			if a, ok, _ := app(context.WithoutCancel(ctx), r.Service); ok {
				r.Restarts = a.Restarts
				r.PM2Status = a.Status
			}
			r.LogTail = lastLines(logs[r.Service], errorLines)
			line := fmt.Sprintf("%s: PM2 status %s, %d restarts", r.Service, orNone(r.PM2Status), r.Restarts)
			if r.LogTail != "" {
				line += "; its error log (" + filepath.Base(logs[r.Service]) + ") ends:\n      " +
					strings.ReplaceAll(r.LogTail, "\n", "\n      ")
			}
			why = append(why, line)
		}
		err = fmt.Errorf("%w\n    %s", err, strings.Join(why, "\n    "))
	}
	b.Health = append(res, skipped...)
	return err
}

// noise matches a log line that says nothing of the error: empty after PM2's timestamp, a
// stack frame, a brace.
var noise = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT[\d:]+: ?)?\s*(at .*|[{}\]\[]|)$`)

func orNone(s string) string {
	if s == "" {
		return "(not in PM2)"
	}
	return s
}

// lastLines returns the last n lines of the file at path that say something: blank lines,
// stack frames ("at f (file:1:2)") and lone braces are left out, so that a Node.js error's
// message shows rather than its stack ("" if unreadable).
func lastLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(data) > 64<<10 {
		data = data[len(data)-64<<10:]
	}
	var lines []string
	for _, l := range bytes.Split(data, []byte("\n")) {
		t := strings.TrimRight(string(l), "\r ")
		if noise.MatchString(t) {
			continue
		}
		lines = append(lines, t)
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
