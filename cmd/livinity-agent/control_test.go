package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// controlBox is the demo onboarded by the real binary under a real PM2 of its own, with
// nexus-worker replaced by an app whose child burns CPU, and the real binary's `run`
// supervising it with fast probes.
type controlBox struct {
	t                                          *testing.T
	cfgFile, stateDir, pm2Home, runtime, stopF string
	pm2Bin                                     string
	metrics                                    string
	agent                                      *exec.Cmd
	agentDone                                  chan struct{}
	logs                                       *testenv.Buffer
	env                                        []string
}

// burner idles in the main process while its child burns CPU in 50 ms bursts (about half
// a core) until the stop file exists: only the whole tree's CPU shows it.
const burner = `const { spawn } = require('child_process');
const stop = process.argv[2];
spawn(process.execPath, ['-e', ` + "`" + `
const fs = require('fs');
const end = Date.now() + 120000;
function burn() {
  const t = Date.now() + 50;
  while (Date.now() < t) {}
  if (Date.now() < end && !fs.existsSync(${JSON.stringify(stop)})) setTimeout(burn, 50);
}
burn();
` + "`" + `], { stdio: 'inherit' });
setInterval(() => {}, 1000);
`

func newControlBox(t *testing.T) *controlBox {
	t.Helper()
	fast := &config.Timing{PeriodSeconds: 0.5, TimeoutSeconds: 0.4, SuccessThreshold: 1, FailureThreshold: 3}
	b := &controlBox{t: t, pm2Bin: filepath.Join(testenv.ToolsBin(t), "pm2"), logs: &testenv.Buffer{}}
	b.metrics = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	root, cfgFile := demoConfig(t, func(c *config.Config) {
		c.Agent.Metrics.Listen = b.metrics
		if c.Agent.Services == nil {
			c.Agent.Services = map[string]config.Service{}
		}
		for _, name := range c.ServiceNames() {
			s := c.Agent.Services[name]
			s.Liveness, s.Readiness = fast, fast
			s.Startup = &config.Timing{PeriodSeconds: 0.25, TimeoutSeconds: 0.25, SuccessThreshold: 1, FailureThreshold: 240}
			c.Agent.Services[name] = s
		}
		c.Agent.RestartBackoff = config.Backoff{InitialSeconds: 0.2, Multiplier: 2, MaxSeconds: 1, ResetAfterSeconds: 600}
	})
	b.cfgFile = cfgFile
	b.stateDir = filepath.Join(testenv.ShortTempDir(t), "state")
	b.pm2Home = testenv.PM2Home(t, b.pm2Bin)
	b.runtime = testenv.ShortTempDir(t)
	b.env = []string{"PM2_HOME=" + b.pm2Home, "LIVINITY_STATE_DIR=" + b.stateDir, "LIVINITY_RUNTIME_DIR=" + b.runtime}
	if stdout, stderr, code := runBinary(t, b.env, "--config", cfgFile, "onboard"); code != 0 {
		t.Fatalf("onboard the demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	script := filepath.Join(root, "burner.js")
	b.stopF = filepath.Join(root, "burner.stop")
	if err := os.WriteFile(script, []byte(burner), 0o644); err != nil {
		t.Fatal(err)
	}
	b.pm2(t, "delete", "nexus-worker")
	b.pm2(t, "start", script, "--name", "nexus-worker", "--", b.stopF)
	b.pm2(t, "save", "--force")
	t.Cleanup(func() {
		os.WriteFile(b.stopF, nil, 0o644)
		if t.Failed() {
			t.Logf("agent log:\n%s", b.logs.String())
		}
	})
	b.startAgent(t)
	return b
}

func (b *controlBox) pm2(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.pm2Bin, args...)
	cmd.Env = append(os.Environ(), "PM2_HOME="+b.pm2Home, "PATH="+testenv.PATH(t))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pm2 %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// startAgent runs the real binary's `run` on the onboarded box (it adopts the running
// services) and waits until every service that is not stopped by the operator is ready.
func (b *controlBox) startAgent(t *testing.T) {
	t.Helper()
	cmd := exec.Command(agentBinary(t), "--config", b.cfgFile, "--state-dir", b.stateDir,
		"--pm2-home", b.pm2Home, "--runtime-dir", b.runtime, "--log-level", "debug", "run")
	cmd.Env = append(os.Environ(), "PATH="+testenv.PATH(t))
	cmd.Stdout, cmd.Stderr = b.logs, b.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b.agent, b.agentDone = cmd, make(chan struct{})
	done := b.agentDone
	go func() { cmd.Wait(); close(done) }()
	b.t.Cleanup(b.stopAgent)
	b.waitDoc(t, "the agent supervising, every service ready", 90*time.Second, func(st statusapi.Status) bool { return st.Ready })
}

func (b *controlBox) stopAgent() {
	if b.agent == nil {
		return
	}
	b.agent.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.agentDone:
	case <-time.After(15 * time.Second):
		b.agent.Process.Kill()
		<-b.agentDone
	}
	b.agent = nil
}

func (b *controlBox) status() (statusapi.Status, error) {
	return statusapi.Fetch(context.Background(), filepath.Join(b.runtime, statusapi.SocketName))
}

// waitDoc waits until the agent's status document satisfies cond and returns it.
func (b *controlBox) waitDoc(t testing.TB, what string, timeout time.Duration, cond func(statusapi.Status) bool) statusapi.Status {
	t.Helper()
	var st statusapi.Status
	testenv.WaitFor(t, what, timeout, func() bool {
		var err error
		st, err = b.status()
		return err == nil && cond(st)
	})
	return st
}

// held: nexus-mcp is stopped by the operator, as the agent reports it.
func held(st statusapi.Status) bool {
	sv := service(st, "nexus-mcp")
	return sv.State == "stopped" && sv.StoppedByOperator && !sv.Ready && sv.PID == 0
}

func service(st statusapi.Status, name string) statusapi.Service {
	for _, sv := range st.Services {
		if sv.Name == name {
			return sv
		}
	}
	return statusapi.Service{}
}

// pm2Proc is PM2's own record of the app.
func (b *controlBox) pm2Proc(t testing.TB, name string) pm2.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pm2.Dial(ctx, b.pm2Home)
	if err != nil {
		t.Fatalf("dial PM2: %v", err)
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		t.Fatalf("list PM2: %v", err)
	}
	for _, p := range procs {
		if p.Name == name {
			return p
		}
	}
	return pm2.Process{}
}

func (b *controlBox) scrape(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + b.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestControl drives restart, stop and start through the real binary against a running
// agent and a real PM2, and reads the CPU figures it reports.
func TestControl(t *testing.T) {
	b := newControlBox(t)
	run := func(args ...string) (string, string, int) {
		t.Helper()
		return runBinary(t, b.env, args...)
	}

	t.Run("cpu: the whole tree of a service burning CPU shows more than an idle one", func(t *testing.T) {
		var worker, memory statusapi.Service
		b.waitDoc(t, "CPU measured for nexus-worker and nexus-memory", 30*time.Second, func(st statusapi.Status) bool {
			worker, memory = service(st, "nexus-worker"), service(st, "nexus-memory")
			return worker.CPUPercent != nil && memory.CPUPercent != nil && *worker.CPUPercent >= 20
		})
		if *worker.CPUPercent < *memory.CPUPercent+15 || *memory.CPUPercent > 10 {
			t.Errorf("cpu: nexus-worker (a child burning half a core) %.1f %%, idle nexus-memory %.1f %%", *worker.CPUPercent, *memory.CPUPercent)
		}
		m := b.scrape(t)
		g := regexp.MustCompile(`(?m)^livinity_service_cpu_percent\{service="nexus-worker"\} ([0-9.e+]+)$`).FindStringSubmatch(m)
		if g == nil {
			t.Fatalf("no livinity_service_cpu_percent for nexus-worker:\n%s", grepLines(m, "cpu"))
		}
		if v, _ := strconv.ParseFloat(g[1], 64); v < 15 {
			t.Errorf("livinity_service_cpu_percent{nexus-worker} = %v, want the burn", v)
		}
		// the counter adds up the intervals: half a core for a few seconds
		seconds := regexp.MustCompile(`(?m)^livinity_service_cpu_seconds_total\{service="nexus-worker"\} ([0-9.e+]+)$`)
		testenv.WaitFor(t, "livinity_service_cpu_seconds_total of nexus-worker counting the burn", 30*time.Second, func() bool {
			g := seconds.FindStringSubmatch(b.scrape(t))
			v := 0.0
			if g != nil {
				v, _ = strconv.ParseFloat(g[1], 64)
			}
			return v >= 1
		})
		stdout, _, _ := run("status", "nexus-worker")
		if !regexp.MustCompile(`CPU +RESTARTS`).MatchString(stdout) || !regexp.MustCompile(`nexus-worker .* [0-9]+\.[0-9]% +0 `).MatchString(stdout) {
			t.Errorf("status table without the CPU column:\n%s", stdout)
		}
		os.WriteFile(b.stopF, nil, 0o644) // the burn is over
	})

	t.Run("an unknown service is refused with the names, exit 2", func(t *testing.T) {
		stdout, stderr, code := run("restart", "nexus")
		if code != exitUsage || stdout != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 ||
			!strings.Contains(stderr, `"nexus" is not a service; the services are livos, nexus-core, nexus-worker, nexus-memory, nexus-mcp`) {
			t.Errorf("restart nexus: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
		}
		if _, stderr, code := run("stop"); code != exitUsage {
			t.Errorf("stop without SERVICE: exit %d: %s", code, stderr)
		}
	})

	t.Run("restart is counted as manual, in status and in the metrics", func(t *testing.T) {
		before := b.pm2Proc(t, "nexus-core")
		stdout, stderr, code := run("restart", "nexus-core")
		if code != 0 || !strings.Contains(stdout, "nexus-core restarted") {
			t.Fatalf("restart nexus-core: exit %d\n%s%s", code, stdout, stderr)
		}
		st := b.waitDoc(t, "nexus-core ready again", 30*time.Second, func(st statusapi.Status) bool {
			sv := service(st, "nexus-core")
			return sv.Ready && sv.PID != 0 && sv.PID != before.PID
		})
		time.Sleep(3 * time.Second) // a restart PM2 counted that nobody explained would show as "pm2" by now
		st, _ = b.status()
		sv := service(st, "nexus-core")
		if sv.Restarts != (statusapi.Restarts{Manual: 1}) || sv.RestartsTotal != 1 {
			t.Errorf("nexus-core restarts after one manual restart: %+v (total %d)", sv.Restarts, sv.RestartsTotal)
		}
		if after := b.pm2Proc(t, "nexus-core"); after.RestartTime != before.RestartTime+1 {
			t.Errorf("PM2 restart_time %d → %d, want one restart", before.RestartTime, after.RestartTime)
		}
		m := b.scrape(t)
		if !strings.Contains(m, `livinity_service_restarts_total{reason="manual",service="nexus-core"} 1`) ||
			!strings.Contains(m, `livinity_service_restarts_total{reason="probe",service="nexus-core"} 0`) {
			t.Errorf("metrics do not count one manual restart of nexus-core:\n%s", grepLines(m, "restarts_total"))
		}
	})

	t.Run("stop holds: no probe, no restart, not even after PM2 brings it back", func(t *testing.T) {
		stdout, stderr, code := run("stop", "nexus-mcp")
		if code != 0 || !strings.Contains(stdout, "nexus-mcp stopped") {
			t.Fatalf("stop nexus-mcp: exit %d\n%s%s", code, stdout, stderr)
		}
		b.waitDoc(t, "nexus-mcp stopped by the operator", 10*time.Second, held)
		// eight probe periods and more than the failure threshold: a supervised service
		// this long without an answer would have been restarted
		time.Sleep(4 * time.Second)
		st, _ := b.status()
		sv := service(st, "nexus-mcp")
		if p := b.pm2Proc(t, "nexus-mcp"); p.Status != pm2.StatusStopped || !held(st) || sv.RestartsTotal != 0 || sv.LastProbe != nil {
			t.Fatalf("nexus-mcp after the stop: PM2 %s, agent %+v", p.Status, sv)
		}
		// an operator's stop does not make the box degraded; the service itself is not ready
		if !st.Ready {
			t.Errorf("the box is not ready with only an operator-stopped service down: %+v", st)
		}
		if stdout, _, code := run("status"); code != 0 || !strings.Contains(stdout, "stopped by the operator") {
			t.Errorf("status with nexus-mcp stopped by the operator: exit %d\n%s", code, stdout)
		}
		if _, _, code := run("status", "nexus-mcp"); code != statusExitDegraded {
			t.Errorf("status nexus-mcp: exit %d, want 1 (it is not ready)", code)
		}
		if m := b.scrape(t); !strings.Contains(m, `livinity_service_operator_stopped{service="nexus-mcp"} 1`) ||
			!strings.Contains(m, "livinity_agent_ready 1") {
			t.Errorf("metrics after the stop:\n%s", grepLines(m, "operator_stopped", "agent_ready"))
		}
		if _, _, code := run("stop", "nexus-mcp"); code != 0 {
			t.Errorf("a second stop: exit %d, want 0 (already stopped)", code)
		}

		// PM2 starts it without being asked (a resurrected list): the agent stops it again
		b.stopAgent()
		b.pm2(t, "restart", "nexus-mcp")
		if p := b.pm2Proc(t, "nexus-mcp"); p.Status != pm2.StatusOnline {
			t.Fatalf("pm2 restart nexus-mcp: %s", p.Status)
		}
		b.startAgent(t)
		testenv.WaitFor(t, "the agent stops nexus-mcp again", 20*time.Second, func() bool {
			return b.pm2Proc(t, "nexus-mcp").Status == pm2.StatusStopped
		})
		st = b.waitDoc(t, "nexus-mcp held after the agent's restart", 10*time.Second, held)
		if sv := service(st, "nexus-mcp"); sv.RestartsTotal != 0 {
			t.Errorf("nexus-mcp after the agent's restart: %+v", sv)
		}
	})

	t.Run("start resumes supervision from the startup probe", func(t *testing.T) {
		stdout, stderr, code := run("start", "nexus-mcp")
		if code != 0 || !strings.Contains(stdout, "nexus-mcp started") {
			t.Fatalf("start nexus-mcp: exit %d\n%s%s", code, stdout, stderr)
		}
		st := b.waitDoc(t, "nexus-mcp ready", 30*time.Second, func(st statusapi.Status) bool {
			sv := service(st, "nexus-mcp")
			return sv.Ready && !sv.StoppedByOperator && sv.PID != 0
		})
		sv := service(st, "nexus-mcp")
		if sv.RestartsTotal != 0 || sv.LastProbe == nil || b.pm2Proc(t, "nexus-mcp").Status != pm2.StatusOnline {
			t.Errorf("nexus-mcp after start: %+v", sv)
		}
		if raw, _ := os.ReadFile(filepath.Join(b.stateDir, supervisor.OperatorStopsFile)); strings.Contains(string(raw), "nexus-mcp") {
			t.Errorf("the stop is still recorded after start: %s", raw)
		}
		// supervised again: a kill -9 is a crash the agent sees and counts
		syscall.Kill(sv.PID, syscall.SIGKILL)
		b.waitDoc(t, "nexus-mcp crash counted and ready again", 30*time.Second, func(st statusapi.Status) bool {
			sv := service(st, "nexus-mcp")
			return sv.Restarts.Crash == 1 && sv.Ready
		})
		if stdout, _, code := run("start", "nexus-mcp"); code != 0 || !strings.Contains(stdout, "already") {
			t.Errorf("start of a running service: exit %d: %s", code, stdout)
		}
	})

	t.Run("stop holds through a PM2 daemon the agent brings back", func(t *testing.T) {
		if stdout, stderr, code := run("stop", "nexus-mcp"); code != 0 {
			t.Fatalf("stop nexus-mcp: exit %d\n%s%s", code, stdout, stderr)
		}
		b.waitDoc(t, "nexus-mcp stopped by the operator", 10*time.Second, held)
		pidFile := filepath.Join(b.pm2Home, "pm2.pid")
		raw, _ := os.ReadFile(pidFile)
		daemon, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || daemon <= 1 {
			t.Fatalf("PM2 daemon pid %q", raw)
		}
		const again = "stopping again a service the operator stopped"
		stopsBefore := strings.Count(b.logs.String(), again)
		syscall.Kill(daemon, syscall.SIGKILL)
		// the agent resurrects the saved list, which has nexus-mcp online
		b.waitDoc(t, "a new PM2 daemon with the other services ready", 90*time.Second, func(st statusapi.Status) bool {
			raw, _ := os.ReadFile(pidFile)
			now, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
			return now != daemon && now > 1 && st.Ready && st.Agent.PM2Connected
		})
		testenv.WaitFor(t, "nexus-mcp, which the resurrected list started, stopped again", 20*time.Second, func() bool {
			return strings.Count(b.logs.String(), again) > stopsBefore && b.pm2Proc(t, "nexus-mcp").Status == pm2.StatusStopped
		})
		b.waitDoc(t, "nexus-mcp held", 10*time.Second, held)
		if stdout, stderr, code := run("start", "nexus-mcp"); code != 0 {
			t.Fatalf("start nexus-mcp: exit %d\n%s%s", code, stdout, stderr)
		}
		b.waitDoc(t, "nexus-mcp ready", 30*time.Second, func(st statusapi.Status) bool { return service(st, "nexus-mcp").Ready })
	})

	t.Run("control is refused to a user who may only read the status, exit 4", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to run the binary as another user")
		}
		// a user in the socket's group (root's group here: no livinity group) reads the
		// status, and may not restart anything
		dir, err := os.MkdirTemp("", "lvctl")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		bin := filepath.Join(dir, "livinity-agent")
		raw, _ := os.ReadFile(agentBinary(t))
		os.WriteFile(bin, raw, 0o755)
		os.Chmod(b.runtime, 0o755)
		as := func(args ...string) (string, int) {
			cmd := exec.Command(bin, append([]string{"--runtime-dir", b.runtime}, args...)...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 0, NoSetGroups: true}}
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			return string(out), code
		}
		if out, code := as("status", "--json"); code != 0 && code != statusExitDegraded {
			t.Fatalf("status as uid 65534 in root's group: exit %d, want it read\n%s", code, out)
		}
		before := b.pm2Proc(t, "nexus-core")
		out, code := as("restart", "nexus-core")
		if code != controlExitRefused || !strings.Contains(out, "control is for root only") {
			t.Errorf("restart as uid 65534: exit %d\n%s", code, out)
		}
		if after := b.pm2Proc(t, "nexus-core"); after.PID != before.PID || after.RestartTime != before.RestartTime {
			t.Errorf("a refused restart restarted nexus-core: pid %d → %d", before.PID, after.PID)
		}
	})

	t.Run("without a running agent: exit 3", func(t *testing.T) {
		env := append(append([]string{}, b.env...), "LIVINITY_RUNTIME_DIR="+t.TempDir())
		_, stderr, code := runBinary(t, env, "restart", "nexus-core")
		if code != controlExitNotRunning || !strings.Contains(stderr, "agent not running") {
			t.Errorf("restart without the agent: exit %d: %s", code, stderr)
		}
	})
}

// grepLines keeps the lines of text holding any of words.
func grepLines(text string, words ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	b, _ := json.Marshal(out)
	return string(b)
}
