package metrics_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/livinity/livinity-agent/metrics"
	"github.com/livinity/livinity-agent/supervisor/state"
)

var serviceNames = []string{"livos", "nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"}

// knownStore returns a store in a fixed state: livos and nexus-core ready, nexus-worker
// backing off after crashes, nexus-memory restarted for memory and starting; nexus-mcp
// never reported (stopped, no memory limit). The last setup run succeeded.
func knownStore() *state.Store {
	s := state.New(state.Agent{Version: "1.2.3", PM2Connected: true}, serviceNames)
	s.UpdateAgent(func(a *state.Agent) {
		a.Setup = state.Setup{Ran: true, OK: true, At: time.Unix(1700000000, 500_000_000), DurationSeconds: 42.25}
	})
	s.Update("livos", func(sv *state.Service) {
		sv.PM2Status, sv.PID, sv.Phase, sv.Ready = "online", 100, state.Ready, true
		sv.MemoryBytes, sv.MemoryKind, sv.MemoryLimitBytes = 123456789, "pss", 500<<20
	})
	s.Update("nexus-core", func(sv *state.Service) {
		sv.PM2Status, sv.PID, sv.Phase, sv.Ready = "online", 101, state.Ready, true
		sv.MemoryBytes, sv.MemoryKind, sv.MemoryLimitBytes = 2048, "rss", 1<<30
		sv.Restarts[state.ReasonProbe] = 2
		sv.Restarts[state.ReasonManual] = 1
	})
	s.Update("nexus-worker", func(sv *state.Service) {
		sv.PM2Status, sv.Phase, sv.Detail = "errored", state.Backoff, "crashed 3 times"
		sv.MemoryLimitBytes = 500 << 20
		sv.Restarts[state.ReasonCrash] = 3
	})
	s.Update("nexus-memory", func(sv *state.Service) {
		sv.PM2Status, sv.PID, sv.Phase = "online", 103, state.Starting
		sv.MemoryBytes, sv.MemoryLimitBytes = 1000, 500<<20
		sv.Restarts[state.ReasonMemory] = 1
		sv.Restarts[state.ReasonPM2] = 4
	})
	return s
}

// the golden exposition of knownStore, for every livinity_ series but the host's.
const goldenState = `
# HELP livinity_agent_ready Whether every supervised service (leaving out those an operator stopped through the agent) is ready and PM2 is connected (1) or not (0), from the agent's state.
# TYPE livinity_agent_ready gauge
livinity_agent_ready 0
# HELP livinity_pm2_up Whether the agent is connected to the PM2 daemon and it answers (1), or it is gone, hung (calls time out) or its replies cannot be read (0).
# TYPE livinity_pm2_up gauge
livinity_pm2_up 1
# HELP livinity_service_memory_bytes Memory of the service's whole process tree (main PID and all descendants) in bytes: PSS from /proc/<pid>/smaps_rollup, or RSS where smaps_rollup is unreadable.
# TYPE livinity_service_memory_bytes gauge
livinity_service_memory_bytes{service="livos"} 1.23456789e+08
livinity_service_memory_bytes{service="nexus-core"} 2048
livinity_service_memory_bytes{service="nexus-mcp"} 0
livinity_service_memory_bytes{service="nexus-memory"} 1000
livinity_service_memory_bytes{service="nexus-worker"} 0
# HELP livinity_service_memory_limit_bytes The agent's memory limit for the service's process tree in bytes (memoryLimitMB in the agent config); above it for consecutive checks the agent restarts the service.
# TYPE livinity_service_memory_limit_bytes gauge
livinity_service_memory_limit_bytes{service="livos"} 5.24288e+08
livinity_service_memory_limit_bytes{service="nexus-core"} 1.073741824e+09
livinity_service_memory_limit_bytes{service="nexus-memory"} 5.24288e+08
livinity_service_memory_limit_bytes{service="nexus-worker"} 5.24288e+08
# HELP livinity_service_ready Whether the service passes its readiness probe (1) or not (0), as debounced by the agent.
# TYPE livinity_service_ready gauge
livinity_service_ready{service="livos"} 1
livinity_service_ready{service="nexus-core"} 1
livinity_service_ready{service="nexus-mcp"} 0
livinity_service_ready{service="nexus-memory"} 0
livinity_service_ready{service="nexus-worker"} 0
# HELP livinity_service_restarts_total Restarts of the service the agent did or observed since the agent started, by reason (crash, probe, memory, pm2, manual).
# TYPE livinity_service_restarts_total counter
livinity_service_restarts_total{reason="crash",service="livos"} 0
livinity_service_restarts_total{reason="crash",service="nexus-core"} 0
livinity_service_restarts_total{reason="crash",service="nexus-mcp"} 0
livinity_service_restarts_total{reason="crash",service="nexus-memory"} 0
livinity_service_restarts_total{reason="crash",service="nexus-worker"} 3
livinity_service_restarts_total{reason="manual",service="livos"} 0
livinity_service_restarts_total{reason="manual",service="nexus-core"} 1
livinity_service_restarts_total{reason="manual",service="nexus-mcp"} 0
livinity_service_restarts_total{reason="manual",service="nexus-memory"} 0
livinity_service_restarts_total{reason="manual",service="nexus-worker"} 0
livinity_service_restarts_total{reason="memory",service="livos"} 0
livinity_service_restarts_total{reason="memory",service="nexus-core"} 0
livinity_service_restarts_total{reason="memory",service="nexus-mcp"} 0
livinity_service_restarts_total{reason="memory",service="nexus-memory"} 1
livinity_service_restarts_total{reason="memory",service="nexus-worker"} 0
livinity_service_restarts_total{reason="pm2",service="livos"} 0
livinity_service_restarts_total{reason="pm2",service="nexus-core"} 0
livinity_service_restarts_total{reason="pm2",service="nexus-mcp"} 0
livinity_service_restarts_total{reason="pm2",service="nexus-memory"} 4
livinity_service_restarts_total{reason="pm2",service="nexus-worker"} 0
livinity_service_restarts_total{reason="probe",service="livos"} 0
livinity_service_restarts_total{reason="probe",service="nexus-core"} 2
livinity_service_restarts_total{reason="probe",service="nexus-mcp"} 0
livinity_service_restarts_total{reason="probe",service="nexus-memory"} 0
livinity_service_restarts_total{reason="probe",service="nexus-worker"} 0
# HELP livinity_service_state The agent's supervision state of the service: 1 for the current state, 0 for the others.
# TYPE livinity_service_state gauge
livinity_service_state{service="livos",state="backoff"} 0
livinity_service_state{service="livos",state="ready"} 1
livinity_service_state{service="livos",state="restarting"} 0
livinity_service_state{service="livos",state="starting"} 0
livinity_service_state{service="livos",state="stopped"} 0
livinity_service_state{service="livos",state="unhealthy"} 0
livinity_service_state{service="nexus-core",state="backoff"} 0
livinity_service_state{service="nexus-core",state="ready"} 1
livinity_service_state{service="nexus-core",state="restarting"} 0
livinity_service_state{service="nexus-core",state="starting"} 0
livinity_service_state{service="nexus-core",state="stopped"} 0
livinity_service_state{service="nexus-core",state="unhealthy"} 0
livinity_service_state{service="nexus-mcp",state="backoff"} 0
livinity_service_state{service="nexus-mcp",state="ready"} 0
livinity_service_state{service="nexus-mcp",state="restarting"} 0
livinity_service_state{service="nexus-mcp",state="starting"} 0
livinity_service_state{service="nexus-mcp",state="stopped"} 1
livinity_service_state{service="nexus-mcp",state="unhealthy"} 0
livinity_service_state{service="nexus-memory",state="backoff"} 0
livinity_service_state{service="nexus-memory",state="ready"} 0
livinity_service_state{service="nexus-memory",state="restarting"} 0
livinity_service_state{service="nexus-memory",state="starting"} 1
livinity_service_state{service="nexus-memory",state="stopped"} 0
livinity_service_state{service="nexus-memory",state="unhealthy"} 0
livinity_service_state{service="nexus-worker",state="backoff"} 1
livinity_service_state{service="nexus-worker",state="ready"} 0
livinity_service_state{service="nexus-worker",state="restarting"} 0
livinity_service_state{service="nexus-worker",state="starting"} 0
livinity_service_state{service="nexus-worker",state="stopped"} 0
livinity_service_state{service="nexus-worker",state="unhealthy"} 0
# HELP livinity_service_up Whether PM2 reports the service online (1) or not (0), as last seen by the agent over PM2's bus and process list.
# TYPE livinity_service_up gauge
livinity_service_up{service="livos"} 1
livinity_service_up{service="nexus-core"} 1
livinity_service_up{service="nexus-mcp"} 0
livinity_service_up{service="nexus-memory"} 1
livinity_service_up{service="nexus-worker"} 0
# HELP livinity_setup_duration_seconds How long the last recorded onboarding pipeline run took, in seconds, whether it succeeded or not; absent before any run.
# TYPE livinity_setup_duration_seconds gauge
livinity_setup_duration_seconds 42.25
# HELP livinity_setup_last_run_success Whether the last recorded onboarding pipeline run succeeded (1) or failed (0); absent before any run is recorded.
# TYPE livinity_setup_last_run_success gauge
livinity_setup_last_run_success 1
# HELP livinity_setup_last_success_timestamp_seconds When the last recorded onboarding pipeline run ended, in Unix seconds, if it succeeded; absent when it failed or before any run.
# TYPE livinity_setup_last_success_timestamp_seconds gauge
livinity_setup_last_success_timestamp_seconds 1.7000000005e+09
`

var stateNames = []string{
	"livinity_agent_ready", "livinity_pm2_up", "livinity_service_memory_bytes", "livinity_service_memory_limit_bytes",
	"livinity_service_ready", "livinity_service_restarts_total", "livinity_service_state",
	"livinity_service_up", "livinity_setup_duration_seconds", "livinity_setup_last_run_success",
	"livinity_setup_last_success_timestamp_seconds",
}

func TestGoldenState(t *testing.T) {
	m := metrics.New(metrics.Options{Store: knownStore(), Version: "1.2.3", Revision: "abc123"})
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(goldenState), stateNames...); err != nil {
		t.Fatal(err)
	}
}

func TestGoldenBuildInfo(t *testing.T) {
	m := metrics.New(metrics.Options{Store: knownStore(), Version: "1.2.3", Revision: "abc123"})
	want := fmt.Sprintf(`
# HELP livinity_agent_build_info A metric with a constant '1' value labeled by the agent's version, the Go version it was built with and its source revision.
# TYPE livinity_agent_build_info gauge
livinity_agent_build_info{goversion=%q,revision="abc123",version="1.2.3"} 1
`, runtime.Version())
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "livinity_agent_build_info"); err != nil {
		t.Fatal(err)
	}
	m = metrics.New(metrics.Options{Store: knownStore()})
	want = strings.ReplaceAll(strings.ReplaceAll(want, `"abc123"`, `"unknown"`), `"1.2.3"`, `"unknown"`)
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "livinity_agent_build_info"); err != nil {
		t.Fatal(err)
	}
}

func TestGoldenProbes(t *testing.T) {
	m := metrics.New(metrics.Options{Store: knownStore()})
	m.ObserveProbe("nexus-core", "liveness", 300*time.Microsecond, false)
	m.ObserveProbe("nexus-core", "liveness", 3*time.Millisecond, false)
	m.ObserveProbe("nexus-core", "liveness", 2*time.Second, true)
	m.ObserveProbe("nexus-core", "readiness", 700*time.Microsecond, false)
	m.ObserveProbe("livos", "startup", 10*time.Second, true)
	want := `
# HELP livinity_service_probe_duration_seconds Duration of single health checks (startup, liveness and readiness probes run by the agent) in seconds.
# TYPE livinity_service_probe_duration_seconds histogram
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.0005"} 1
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.001"} 1
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.0025"} 1
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.005"} 2
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.01"} 2
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.025"} 2
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.05"} 2
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.1"} 2
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.25"} 2
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="0.5"} 2
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="1"} 2
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="2.5"} 3
livinity_service_probe_duration_seconds_bucket{probe="liveness",service="nexus-core",le="+Inf"} 3
livinity_service_probe_duration_seconds_sum{probe="liveness",service="nexus-core"} 2.0033
livinity_service_probe_duration_seconds_count{probe="liveness",service="nexus-core"} 3
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.0005"} 0
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.001"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.0025"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.005"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.01"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.025"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.05"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.1"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.25"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="0.5"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="1"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="2.5"} 1
livinity_service_probe_duration_seconds_bucket{probe="readiness",service="nexus-core",le="+Inf"} 1
livinity_service_probe_duration_seconds_sum{probe="readiness",service="nexus-core"} 0.0007
livinity_service_probe_duration_seconds_count{probe="readiness",service="nexus-core"} 1
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.0005"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.001"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.0025"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.005"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.01"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.025"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.05"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.1"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.25"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="0.5"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="1"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="2.5"} 0
livinity_service_probe_duration_seconds_bucket{probe="startup",service="livos",le="+Inf"} 1
livinity_service_probe_duration_seconds_sum{probe="startup",service="livos"} 10
livinity_service_probe_duration_seconds_count{probe="startup",service="livos"} 1
# HELP livinity_service_probe_failures_total Single health checks run by the agent that failed: the service answered badly or not at all (errors of the probe itself are not counted).
# TYPE livinity_service_probe_failures_total counter
livinity_service_probe_failures_total{probe="liveness",service="nexus-core"} 1
livinity_service_probe_failures_total{probe="readiness",service="nexus-core"} 0
livinity_service_probe_failures_total{probe="startup",service="livos"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"livinity_service_probe_duration_seconds", "livinity_service_probe_failures_total"); err != nil {
		t.Fatal(err)
	}
}

// TestSetupSeries: nothing before a run is recorded; after a failed run, success 0 and the
// duration, but no success time.
func TestSetupSeries(t *testing.T) {
	s := state.New(state.Agent{}, []string{"livos"})
	m := metrics.New(metrics.Options{Store: s})
	setupNames := []string{"livinity_setup_duration_seconds", "livinity_setup_last_run_success", "livinity_setup_last_success_timestamp_seconds"}
	n, err := testutil.GatherAndCount(m.Registry(), setupNames...)
	if err != nil || n != 0 {
		t.Fatalf("before any run: %d setup series (err %v), want none", n, err)
	}
	s.UpdateAgent(func(a *state.Agent) {
		a.Setup = state.Setup{Ran: true, OK: false, At: time.Unix(1700000000, 0), DurationSeconds: 3.5, Error: "step 7 failed"}
	})
	want := `
# HELP livinity_setup_duration_seconds How long the last recorded onboarding pipeline run took, in seconds, whether it succeeded or not; absent before any run.
# TYPE livinity_setup_duration_seconds gauge
livinity_setup_duration_seconds 3.5
# HELP livinity_setup_last_run_success Whether the last recorded onboarding pipeline run succeeded (1) or failed (0); absent before any run is recorded.
# TYPE livinity_setup_last_run_success gauge
livinity_setup_last_run_success 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), setupNames...); err != nil {
		t.Fatal(err)
	}
}

// TestHostMemory compares the host series with /proc/meminfo.
func TestHostMemory(t *testing.T) {
	m := metrics.New(metrics.Options{Store: knownStore()})
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "livinity_host_") {
			got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	memTotal := meminfo(t, "MemTotal")
	if got["livinity_host_memory_total_bytes"] != float64(memTotal) {
		t.Errorf("livinity_host_memory_total_bytes = %v, /proc/meminfo MemTotal = %d", got["livinity_host_memory_total_bytes"], memTotal)
	}
	avail, ok := got["livinity_host_memory_available_bytes"]
	if !ok || avail <= 0 || avail > float64(memTotal) {
		t.Errorf("livinity_host_memory_available_bytes = %v (present %v), want in (0, %d]", avail, ok, memTotal)
	}
}

// meminfo returns a /proc/meminfo field in bytes.
func meminfo(t *testing.T, field string) uint64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if ok && name == field {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("no %s in /proc/meminfo", field)
	return 0
}

// TestNoPIDLabel: no series of the agent carries a pid label.
func TestNoPIDLabel(t *testing.T) {
	m := metrics.New(metrics.Options{Store: knownStore()})
	m.ObserveProbe("livos", "liveness", time.Millisecond, false)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "pid" {
					t.Errorf("%s has a pid label", mf.GetName())
				}
			}
		}
	}
}

// serve runs a Server for m on a real loopback listener; it stops at cleanup.
func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &metrics.Server{Handler: h}
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHealthz(t *testing.T) {
	var alive atomic.Bool
	alive.Store(true)
	base := serve(t, metrics.New(metrics.Options{Store: knownStore(), Alive: alive.Load}).Handler())
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("alive: /healthz = %d %q, want 200 ok", code, body)
	}
	alive.Store(false)
	if code, body := get(t, base+"/healthz"); code != 503 {
		t.Fatalf("not alive: /healthz = %d %q, want 503", code, body)
	}
	resp, err := http.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz = %d, want 405", resp.StatusCode)
	}
}

func TestReadyz(t *testing.T) {
	s := knownStore()
	base := serve(t, metrics.New(metrics.Options{Store: s}).Handler())

	code, body := get(t, base+"/readyz")
	if code != 503 {
		t.Fatalf("some not ready: /readyz = %d, want 503", code)
	}
	var r metrics.Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("decode /readyz body %q: %v", body, err)
	}
	want := []metrics.NotReady{
		{Service: "nexus-worker", State: "backoff", Detail: "crashed 3 times"},
		{Service: "nexus-memory", State: "starting"},
		{Service: "nexus-mcp", State: "stopped"},
	}
	if r.Ready || fmt.Sprint(r.NotReady) != fmt.Sprint(want) {
		t.Fatalf("/readyz = %+v, want not ready with %+v", r, want)
	}

	for _, n := range serviceNames {
		s.Update(n, func(sv *state.Service) { sv.Phase, sv.Ready = state.Ready, true })
	}
	code, body = get(t, base+"/readyz")
	if code != 200 || strings.TrimSpace(body) != `{"ready":true,"notReady":[]}` {
		t.Fatalf("all ready: /readyz = %d %s, want 200 {\"ready\":true,\"notReady\":[]}", code, body)
	}

	// every service answers, but PM2 does not: not ready, and why
	s.UpdateAgent(func(a *state.Agent) {
		a.PM2Connected, a.PM2Error = false, "the PM2 daemon does not answer: no reply"
	})
	code, body = get(t, base+"/readyz")
	if code != 503 || !strings.Contains(body, `"pm2Error":"the PM2 daemon does not answer: no reply"`) {
		t.Fatalf("PM2 hung: /readyz = %d %s, want 503 naming the PM2 error", code, body)
	}
}

// TestServerRun: Run listens on Addr, serves, and returns nil when its context ends.
func TestServerRun(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &metrics.Server{Addr: addr, Handler: metrics.New(metrics.Options{Store: knownStore()}).Handler()}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), "livinity_agent_ready 0") {
				t.Fatalf("/metrics lacks livinity_agent_ready 0:\n%s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s never answered: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		t.Fatal("server still answers after Run returned")
	}
}

// TestServerAddressInUse: the error names the address and the settings that chose it.
func TestServerAddressInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := &metrics.Server{Addr: l.Addr().String(), Handler: http.NotFoundHandler()}
	err = srv.Run(context.Background())
	if err == nil {
		t.Fatal("Run on a used address returned nil")
	}
	for _, want := range []string{l.Addr().String(), "already in use", "agent.metrics.listen", "--metrics-listen"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	srv.Addr = "127.0.0.1:notaport"
	if err := srv.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "127.0.0.1:notaport") {
		t.Errorf("bad address: error %v, want one naming the address", err)
	}
}

// TestServerShutdownBounded: a request that never ends does not hold up the shutdown
// beyond ShutdownTimeout; it is cut off.
func TestServerShutdownBounded(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &metrics.Server{Handler: hang, ShutdownTimeout: 100 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()

	reqErr := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + l.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
		}
		reqErr <- err
	}()
	<-entered
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended and the shutdown timeout passed")
	}
	if err := <-reqErr; err == nil {
		t.Fatal("the hanging request completed; it should have been cut off")
	}
}

// TestConcurrentScrapes: 100 scrapers while the store changes; run with -race.
func TestConcurrentScrapes(t *testing.T) {
	s := knownStore()
	m := metrics.New(metrics.Options{Store: s})
	base := serve(t, m.Handler())

	ctx, cancel := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ctx.Err() == nil; i++ {
			n := serviceNames[i%len(serviceNames)]
			s.Update(n, func(sv *state.Service) {
				sv.Phase = state.Phases[i%len(state.Phases)]
				sv.Ready = sv.Phase == state.Ready
				sv.MemoryBytes = uint64(i)
				sv.Restarts[state.Reasons[i%len(state.Reasons)]]++
			})
			m.ObserveProbe(n, "liveness", time.Duration(i%1000)*time.Microsecond, i%7 == 0)
		}
	}()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	errs := make(chan error, 100)
	for g := 0; g < 100; g++ {
		go func() {
			for i := 0; i < 5; i++ {
				resp, err := client.Get(base + "/metrics")
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					errs <- err
					return
				case resp.StatusCode != 200:
					errs <- fmt.Errorf("status %d", resp.StatusCode)
					return
				case strings.Count(string(b), "livinity_service_up{") != len(serviceNames):
					errs <- fmt.Errorf("scrape without %d livinity_service_up series:\n%s", len(serviceNames), b)
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 100; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	cancel()
	<-writerDone
}

// TestCPUAndOperatorStopSeries: the CPU gauge is there only for a running, measured
// service; the CPU counter and the operator-stop gauge for every service; a service the
// operator stopped does not make the agent not ready.
func TestCPUAndOperatorStopSeries(t *testing.T) {
	s := state.New(state.Agent{Version: "1.2.3", PM2Connected: true}, []string{"livos", "nexus-core", "nexus-mcp"})
	s.Update("livos", func(sv *state.Service) {
		sv.PM2Status, sv.PID, sv.Phase, sv.Ready = "online", 100, state.Ready, true
		sv.CPUPercent, sv.CPUMeasured, sv.CPUSeconds = 42.5, true, 12.25
	})
	s.Update("nexus-core", func(sv *state.Service) {
		sv.PM2Status, sv.PID, sv.Phase, sv.Ready = "online", 101, state.Ready, true // not measured yet
	})
	s.Update("nexus-mcp", func(sv *state.Service) {
		sv.PM2Status, sv.Phase, sv.OperatorStopped, sv.CPUSeconds = "stopped", state.Stopped, true, 3
	})
	m := metrics.New(metrics.Options{Store: s})
	want := `
# HELP livinity_agent_ready Whether every supervised service (leaving out those an operator stopped through the agent) is ready and PM2 is connected (1) or not (0), from the agent's state.
# TYPE livinity_agent_ready gauge
livinity_agent_ready 1
# HELP livinity_service_cpu_percent CPU use of the service's whole process tree over the agent's last sampling interval, in percent of one core (utime+stime, with finished children's, from /proc/<pid>/stat); absent while not running or not yet measured.
# TYPE livinity_service_cpu_percent gauge
livinity_service_cpu_percent{service="livos"} 42.5
# HELP livinity_service_cpu_seconds_total CPU time used by the service's whole process trees while the agent watched them, in seconds, over all instances since the agent started; rate() of it is the cores used.
# TYPE livinity_service_cpu_seconds_total counter
livinity_service_cpu_seconds_total{service="livos"} 12.25
livinity_service_cpu_seconds_total{service="nexus-core"} 0
livinity_service_cpu_seconds_total{service="nexus-mcp"} 3
# HELP livinity_service_operator_stopped Whether an operator stopped the service through the agent (livinity-agent stop) and the agent holds it stopped (1) or not (0).
# TYPE livinity_service_operator_stopped gauge
livinity_service_operator_stopped{service="livos"} 0
livinity_service_operator_stopped{service="nexus-core"} 0
livinity_service_operator_stopped{service="nexus-mcp"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "livinity_agent_ready",
		"livinity_service_cpu_percent", "livinity_service_cpu_seconds_total", "livinity_service_operator_stopped"); err != nil {
		t.Fatal(err)
	}
}
