package supervisor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// fixture runs the five services as small test apps under a real PM2 daemon of its own,
// and a supervisor watching them.
type fixture struct {
	t     testing.TB
	bin   string
	home  string
	eco   string
	cfg   *config.Config
	store *state.Store
	logs  *testenv.Buffer
	sup   *supervisor.Supervisor
	stop  context.CancelFunc
	done  chan error
}

type app struct {
	Name        string            `json:"name"`
	Script      string            `json:"script"`
	Interpreter string            `json:"interpreter,omitempty"`
	Cwd         string            `json:"cwd"`
	Env         map[string]string `json:"env"`
	Autorestart bool              `json:"autorestart"`
	MaxRestarts int               `json:"max_restarts,omitempty"`
	MinUptime   int               `json:"min_uptime,omitempty"`
	KillTimeout int               `json:"kill_timeout"`
}

// newFixture starts the apps and the supervisor and waits until every service is ready.
// tweakApps and tweakCfg (either may be nil) adjust the apps and the config first.
func newFixture(t testing.TB, tweakApps func(map[string]*app), tweakCfg func(*config.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, bin: testenv.PM2(t, 7), logs: &testenv.Buffer{}}
	f.home = testenv.PM2Home(t, f.bin)
	apps := filepath.Join(testenv.Root(t), "supervisor", "testdata", "apps")
	cfg := config.Default()
	cfg.Domain = "localhost"
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
	web := func(name string, port int) *app {
		return &app{Name: name, Script: filepath.Join(apps, "web.js"), Cwd: apps, Autorestart: true,
			KillTimeout: 1000, Env: map[string]string{"PORT": strconv.Itoa(port)}}
	}
	set := map[string]*app{
		"livos":        web("livos", cfg.Ports.Livos),
		"nexus-core":   web("nexus-core", cfg.Ports.API),
		"nexus-mcp":    web("nexus-mcp", cfg.Ports.MCP),
		"nexus-worker": {Name: "nexus-worker", Script: filepath.Join(apps, "idle.js"), Cwd: apps, Autorestart: true, KillTimeout: 1000, Env: map[string]string{}},
		"nexus-memory": {Name: "nexus-memory", Script: filepath.Join(apps, "web.py"), Interpreter: "python3", Cwd: apps,
			Autorestart: true, KillTimeout: 1000, Env: map[string]string{"PORT": strconv.Itoa(cfg.Ports.Memory)}},
	}
	// fast probes so that the tests take seconds: period 0.5 s, timeout 0.3 s, 3 failures
	fast := &config.Timing{PeriodSeconds: 0.5, TimeoutSeconds: 0.3, SuccessThreshold: 1, FailureThreshold: 3}
	cfg.Agent.Services = map[string]config.Service{}
	for _, name := range config.Default().ServiceNames() {
		cfg.Agent.Services[name] = config.Service{
			Startup:   &config.Timing{PeriodSeconds: 0.2, TimeoutSeconds: 0.2, SuccessThreshold: 1, FailureThreshold: 100},
			Liveness:  fast,
			Readiness: fast,
		}
	}
	cfg.Agent.Services["nexus-core"] = withProbe(cfg.Agent.Services["nexus-core"], &config.Probe{Kind: "http", Path: "/health"})
	cfg.Agent.RestartBackoff = config.Backoff{InitialSeconds: 0.2, Multiplier: 2, MaxSeconds: 1, ResetAfterSeconds: 600}
	if tweakApps != nil {
		tweakApps(set)
	}
	if tweakCfg != nil {
		tweakCfg(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	list := []*app{}
	for _, name := range config.Default().ServiceNames() {
		list = append(list, set[name])
	}
	b, _ := json.MarshalIndent(map[string]any{"apps": list}, "", "  ")
	f.eco = filepath.Join(t.TempDir(), "test.config.cjs")
	if err := os.WriteFile(f.eco, append([]byte("module.exports = "), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	f.pm2("start", f.eco)
	f.pm2("save", "--force")

	f.store = state.New(state.Agent{Version: "test"}, config.Default().ServiceNames())
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sup, err := supervisor.New(supervisor.Options{Config: cfg, PM2Home: f.home, PM2Bin: f.bin, Ecosystem: f.eco,
		Store: f.store, Logger: log, ReconcileEvery: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.sup = sup
	ctx, cancel := context.WithCancel(context.Background())
	f.stop, f.done = cancel, make(chan error, 1)
	go func() { f.done <- sup.Run(ctx) }()
	t.Cleanup(func() {
		f.stopSupervisor()
		if t.Failed() || os.Getenv("LIVINITY_TEST_LOGS") != "" {
			t.Logf("supervisor log:\n%s", f.logs.String())
		}
	})
	wantReady := config.Default().ServiceNames()
	if tweakApps != nil {
		wantReady = nil // the caller waits for what it needs
	}
	for _, name := range wantReady {
		f.waitPhase(name, state.Ready, 30*time.Second)
	}
	return f
}

func withProbe(s config.Service, p *config.Probe) config.Service { s.Probe = p; return s }

func (f *fixture) stopSupervisor() {
	if f.stop == nil {
		return
	}
	f.stop()
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		f.t.Error("the supervisor did not stop within 10 s")
	}
	f.stop = nil
}

func (f *fixture) pm2(args ...string) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, f.bin, args...)
	cmd.Env = append(os.Environ(), "PM2_HOME="+f.home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		f.t.Fatalf("pm2 %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// procs lists the daemon's apps by name.
func (f *fixture) procs() map[string]pm2.Process {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pm2.Dial(ctx, f.home)
	if err != nil {
		return nil
	}
	defer c.Close()
	list, err := c.List(ctx)
	if err != nil {
		return nil
	}
	out := map[string]pm2.Process{}
	for _, p := range list {
		out[p.Name] = p
	}
	return out
}

func (f *fixture) service(name string) state.Service {
	sv, _ := f.store.Snapshot().Service(name)
	return sv
}

func (f *fixture) waitPhase(name string, p state.Phase, timeout time.Duration) state.Service {
	f.t.Helper()
	var sv state.Service
	testenv.WaitFor(f.t, name+" "+string(p), timeout, func() bool {
		sv = f.service(name)
		return sv.Phase == p && (p != state.Ready || sv.Ready)
	})
	return sv
}

func (f *fixture) restarts() map[string]uint64 {
	out := map[string]uint64{}
	for _, sv := range f.store.Snapshot().Services {
		for _, n := range sv.Restarts {
			out[sv.Name] += n
		}
	}
	return out
}

// untouched checks that the named services kept their pids and were never restarted.
func (f *fixture) untouched(before map[string]pm2.Process, names ...string) {
	f.t.Helper()
	now := f.procs()
	rs := f.restarts()
	for _, n := range names {
		if now[n].PID != before[n].PID || now[n].RestartTime != before[n].RestartTime || rs[n] != 0 {
			f.t.Errorf("healthy service %s was restarted: pid %d→%d, pm2 restarts %d→%d, agent restarts %d",
				n, before[n].PID, now[n].PID, before[n].RestartTime, now[n].RestartTime, rs[n])
		}
	}
}

// sendSignal is syscall.Kill for a process a test found, refusing a pid of 0 or less:
// kill(0, sig) signals the test's own process group (a SIGSTOP of a pid a failed list left
// at 0 froze a whole test run once).
func sendSignal(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return fmt.Errorf("refusing to send %v to pid %d: the test did not find the process", sig, pid)
	}
	return syscall.Kill(pid, sig)
}
