package metrics_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/metrics"
)

// promtool returns the promtool binary or fails the test saying how to install it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is required (Debian package prometheus): run scripts/install-packages.sh: %v", err)
	}
	return p
}

// runPromtool runs promtool with args (and stdin) in dir and returns its combined output.
func runPromtool(t *testing.T, dir string, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPromtoolCheckMetrics lints a live scrape of a server with every kind of series
// present: promtool must report nothing.
func TestPromtoolCheckMetrics(t *testing.T) {
	m := metrics.New(metrics.Options{Store: knownStore(), Version: "1.2.3", Revision: "abc"})
	m.ObserveProbe("nexus-core", "liveness", 2*time.Millisecond, false)
	m.ObserveProbe("nexus-core", "readiness", 3*time.Second, true)
	base := serve(t, m.Handler())
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, name := range []string{"livinity_service_probe_duration_seconds_bucket", "livinity_host_memory_total_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
	out, err := runPromtool(t, t.TempDir(), []byte(body), "check", "metrics")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestPromtoolDeploy checks the deploy/prometheus files: both configs (with the file_sd
// target files), the rules, and the rules' unit tests (firing and not firing cases).
func TestPromtoolDeploy(t *testing.T) {
	dir := filepath.Join(testenv.Root(t), "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "config", "prometheus.yml"},
		{"check", "config", "prometheus-fleet.yml"}, // also parses targets/*.yml
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		out, err := runPromtool(t, dir, nil, args...)
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}
