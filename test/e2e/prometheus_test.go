package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/pm2"
)

// TestPrometheusScrapesAgent runs `livinity-agent run` on the demo tree (it onboards it,
// then supervises the five services), has a real Prometheus scrape it every second with
// the deploy alert rules loaded, and checks through Prometheus's HTTP API: all five
// services ready; kill -9 of nexus-core raises its crash restarts and its readiness dips
// and comes back, without touching the others; every dashboard query and alert rule
// evaluates; stopping the agent drops `up` to 0.
func TestPrometheusScrapesAgent(t *testing.T) {
	root := testenv.Root(t)
	d := NewDemo(t)
	path, pm2Bin, base, agentBin, tree, pm2Home, metricsAddr := d.PATH, d.PM2Bin, d.Base, d.Agent, d.Tree, d.PM2Home, d.MetricsAddr
	cfgPath := writeDemoConfig(t, base, tree)

	prom := StartPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: livinity
    static_configs:
      - targets: [%q]
`, filepath.Join(root, "deploy", "prometheus", "alerts.yml"), metricsAddr))

	// The agent: onboards the tree (first run), then supervises.
	agentLog := &testenv.Buffer{}
	agent := exec.Command(agentBin, "run",
		"--config", cfgPath, "--state-dir", filepath.Join(base, "state"), "--pm2-home", pm2Home,
		"--pm2", pm2Bin, "--runtime-dir", filepath.Join(base, "run"), "--metrics-listen", metricsAddr)
	agent.Env = append(os.Environ(), "PATH="+path, "PM2_HOME="+pm2Home)
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		t.Fatalf("start the agent: %v", err)
	}
	agentDone := make(chan error, 1)
	go func() { agentDone <- agent.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			agent.Process.Kill()
			<-agentDone
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", agentLog.String())
		}
	})
	agentAlive := func() {
		select {
		case err := <-agentDone:
			stopped = true
			t.Fatalf("the agent exited: %v\n%s", err, agentLog.String())
		default:
		}
	}

	// 1. Five services ready, as Prometheus sees them.
	start := time.Now()
	prom.WaitFor("5 services ready in Prometheus", 10*time.Minute, func() (bool, string) {
		agentAlive()
		s, err := prom.Query(`livinity_service_ready == 1`)
		if err != nil {
			return false, err.Error()
		}
		return len(s) == 5, fmt.Sprintf("%d services ready: %v", len(s), s)
	})
	t.Logf("onboarded and all ready after %v", time.Since(start).Round(time.Second))
	// the process that onboarded started afresh to supervise (the same pid: agentAlive),
	// adopting what it had onboarded rather than onboarding twice
	if err := inOrder(agentLog.String(), "running the onboarding pipeline", "onboarded; starting afresh",
		"already onboarded with this config; adopting", "supervising"); err != nil {
		t.Errorf("the agent's log after onboarding: %v", err)
	}
	if n := strings.Count(agentLog.String(), "running the onboarding pipeline"); n != 1 {
		t.Errorf("the onboarding pipeline ran %d times, want 1", n)
	}
	prom.WaitValue("livinity_agent_ready", `livinity_agent_ready`, time.Minute, func(v float64) bool { return v == 1 })
	if v, ok, err := prom.Scalar(`count(livinity_service_memory_bytes > 0)`); err != nil || !ok || v != 5 {
		t.Errorf("services with tree memory > 0: %v (present %v, err %v), want 5", v, ok, err)
	}
	if v, ok, err := prom.Scalar(`livinity_setup_last_run_success`); err != nil || !ok || v != 1 {
		t.Errorf("livinity_setup_last_run_success = %v (present %v, err %v), want 1", v, ok, err)
	}
	prom.WaitValue("probe checks of nexus-core", `sum(livinity_service_probe_duration_seconds_count{service="nexus-core"})`,
		time.Minute, func(v float64) bool { return v > 0 })

	// 2. kill -9 nexus-core: its crash restarts go up, readiness dips and returns, the other
	// services are not restarted.
	crashQ := `livinity_service_restarts_total{service="nexus-core",reason="crash"}`
	othersQ := `sum(livinity_service_restarts_total{service!="nexus-core"})`
	crashes0 := prom.WaitValue("nexus-core crash restarts", crashQ, time.Minute, func(float64) bool { return true })
	others0 := prom.WaitValue("other services' restarts", othersQ, time.Minute, func(float64) bool { return true })
	pid := appPID(t, pm2Home, "nexus-core")
	killedAt := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 nexus-core (pid %d): %v", pid, err)
	}
	t.Logf("killed nexus-core pid %d", pid)
	crashes := prom.WaitValue("nexus-core crash restarts to increase", crashQ, 2*time.Minute,
		func(v float64) bool { return v > crashes0 })
	t.Logf("crash restarts of nexus-core: %v -> %v, seen by Prometheus %v after the kill", crashes0, crashes, time.Since(killedAt).Round(time.Millisecond))
	// Prometheus records the dip (some scrape after the kill sees ready 0), then ready again.
	prom.WaitFor("a readiness dip of nexus-core, then ready again, in Prometheus", 2*time.Minute, func() (bool, string) {
		agentAlive()
		vals, err := prom.QueryRange(`livinity_service_ready{service="nexus-core"}`, killedAt, time.Now(), 250*time.Millisecond)
		if err != nil {
			return false, err.Error()
		}
		notReady := 0
		for _, v := range vals {
			if v == 0 {
				notReady++
			} else if notReady > 0 {
				t.Logf("nexus-core not ready in Prometheus for about %v, ready again %v after the kill",
					time.Duration(notReady)*250*time.Millisecond, time.Since(killedAt).Round(time.Second))
				return true, ""
			}
		}
		return false, fmt.Sprintf("values every 250 ms since the kill: %v", vals)
	})
	prom.WaitValue("livinity_agent_ready after the recovery", `livinity_agent_ready`, time.Minute, func(v float64) bool { return v == 1 })
	if v, _, err := prom.Scalar(othersQ); err != nil || v != others0 {
		t.Errorf("restarts of the other services: %v -> %v (err %v), want unchanged", others0, v, err)
	}
	if v, ok, err := prom.Scalar(`max_over_time(livinity_service_state{service="nexus-core",state="ready"}[1h]) - min_over_time(livinity_service_state{service="nexus-core",state="ready"}[1h])`); err != nil || !ok || v != 1 {
		t.Errorf("nexus-core's ready state series did not change through the kill: %v (present %v, err %v)", v, ok, err)
	}

	// 3. The dashboard's queries and the alert rules evaluate on the real data.
	checkDashboardQueries(t, prom, filepath.Join(root, "deploy", "grafana", "livinity.json"))
	checkRules(t, prom)

	// 4. Stop the agent: Prometheus's up series for it drops to 0.
	prom.WaitValue("up before the stop", `up{job="livinity"}`, time.Minute, func(v float64) bool { return v == 1 })
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-agentDone:
		stopped = true
		if err != nil {
			t.Errorf("the agent exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the agent did not exit within a minute of SIGTERM")
	}
	prom.WaitValue("up to drop to 0", `up{job="livinity"}`, time.Minute, func(v float64) bool { return v == 0 })
}

// writeDemoConfig writes a setup.json for the demo tree with free ports. nexus-core's
// readiness needs 3 successes 1 s apart, so that a restart keeps it not ready for a few
// seconds, longer than Prometheus's 1 s scrape interval.
func writeDemoConfig(t *testing.T, base, tree string) string {
	t.Helper()
	cfg := demo.Config(tree, 20)
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
	cfg.Agent.HealthTimeoutSeconds = 120
	cfg.Agent.Services = map[string]config.Service{
		"nexus-core": {
			Startup:   &config.Timing{PeriodSeconds: 1, TimeoutSeconds: 1},
			Liveness:  &config.Timing{PeriodSeconds: 1, TimeoutSeconds: 1},
			Readiness: &config.Timing{PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 3},
		},
	}
	b, err := cfg.MarshalIndent()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(b); err != nil {
		t.Fatalf("test config: %v", err)
	}
	p := filepath.Join(base, "setup.json")
	if err := atomicfile.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// appPID returns the pid PM2 reports for the named app.
func appPID(t *testing.T, pm2Home, name string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pm2.Dial(ctx, pm2Home)
	if err != nil {
		t.Fatalf("dial PM2: %v", err)
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		t.Fatalf("list PM2 apps: %v", err)
	}
	for _, p := range procs {
		if p.Name == name && p.PID > 0 {
			return p.PID
		}
	}
	t.Fatalf("PM2 has no running %s: %+v", name, procs)
	return 0
}

// checkDashboardQueries evaluates every panel query of the dashboard (Grafana variables
// replaced by match-all values) on the real Prometheus: each must evaluate, and the
// panels of the issue must return data.
func checkDashboardQueries(t *testing.T, prom *Prometheus, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	vars := strings.NewReplacer(`$instance`, `.*`, `$service`, `.*`, `$__rate_interval`, `1m`, `$__range`, `1h`)
	mustHaveData := regexp.MustCompile(`^(Service state|Ready|Memory vs limit|Probe latency|Agent scraped|All services ready)`)
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			q := vars.Replace(tg.Expr)
			s, err := prom.Query(q)
			if err != nil {
				t.Errorf("dashboard panel %q query %d does not evaluate: %v\n%s", p.Title, i, err, q)
				continue
			}
			if mustHaveData.MatchString(p.Title) && len(s) == 0 {
				t.Errorf("dashboard panel %q query %d returns no data:\n%s", p.Title, i, q)
			}
		}
	}
}

// checkRules waits until Prometheus has evaluated every rule of deploy/prometheus/alerts.yml
// without error, and checks that none fires on the healthy box (LivinityServiceNotReady and
// the others need minutes of trouble; the kill lasted seconds).
func checkRules(t *testing.T, prom *Prometheus) {
	t.Helper()
	rules, err := os.ReadFile(filepath.Join(testenv.Root(t), "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Count(string(rules), "- alert: ")
	prom.WaitFor("alert rules evaluated", time.Minute, func() (bool, string) {
		data, err := prom.API("/api/v1/rules", nil)
		if err != nil {
			return false, err.Error()
		}
		var d struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
					State     string `json:"state"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			return false, err.Error()
		}
		n := 0
		for _, g := range d.Groups {
			for _, r := range g.Rules {
				if r.Health == "err" {
					t.Fatalf("rule %s fails to evaluate: %s", r.Name, r.LastError)
				}
				if r.Health != "ok" {
					return false, fmt.Sprintf("rule %s health %q", r.Name, r.Health)
				}
				if r.State == "firing" {
					t.Errorf("alert %s fires on a healthy box", r.Name)
				}
				n++
			}
		}
		return n == want, fmt.Sprintf("%d rules evaluated, want %d (every rule of alerts.yml)", n, want)
	})
}

// inOrder reports the first of lines not found in log after the ones before it.
func inOrder(log string, lines ...string) error {
	rest := log
	for _, l := range lines {
		i := strings.Index(rest, l)
		if i < 0 {
			return fmt.Errorf("no %q after the lines before it", l)
		}
		rest = rest[i+len(l):]
	}
	return nil
}
