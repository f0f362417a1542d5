package setup_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/supervisor/pm2"
)

// fixture is one copy of the demo tree with its own state dir, PM2 home and ports.
type fixture struct {
	t       *testing.T
	root    string // holds livos/ and nexus/
	state   string
	pm2Home string
	pm2Bin  string
	cfg     *config.Config
	logs    *testenv.Buffer
	box     *setup.Box // of the last run
}

// newFixture extracts the demo tree under a fresh directory whose name ends in treeName.
func newFixture(t *testing.T, treeName string) *fixture {
	t.Helper()
	base := testenv.ShortTempDir(t)
	root := filepath.Join(base, treeName)
	if err := demo.Extract(root); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, root: root, state: filepath.Join(base, "state"), pm2Bin: filepath.Join(testenv.ToolsBin(t), "pm2"), logs: &testenv.Buffer{}}
	f.pm2Home = testenv.PM2Home(t, f.pm2Bin)
	cfg := demo.Config(root, 20)
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
	cfg.Agent.HealthTimeoutSeconds = 60
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pipeline log:\n%s", f.logs.String())
		}
	})
	return f
}

func (f *fixture) livos() string { return f.cfg.Paths.LivosBaseDir }
func (f *fixture) nexus() string { return f.cfg.Paths.NexusBaseDir }

// plan makes a new box of the fixture's config and returns its plan.
func (f *fixture) plan() *pipeline.Plan {
	f.t.Helper()
	box, err := setup.NewBox(f.cfg, f.state, f.pm2Home)
	if err != nil {
		f.t.Fatal(err)
	}
	f.box = box
	return box.Plan(testenv.PATH(f.t), os.Getenv("HOME"), setup.ToolEnv(os.Environ()))
}

func (f *fixture) options() pipeline.Options {
	return pipeline.Options{
		Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		PM2:    func(home string) pipeline.PM2 { return pipeline.NewPM2(f.pm2Bin, home) },
	}
}

func (f *fixture) run(ctx context.Context) (*pipeline.Result, error) {
	f.t.Helper()
	return pipeline.Run(ctx, f.plan(), f.options())
}

// apps lists the PM2 apps through the native client; nil when no daemon runs.
func (f *fixture) apps(ctx context.Context) []pm2.Process {
	f.t.Helper()
	c, err := pm2.Dial(ctx, f.pm2Home)
	if err != nil {
		return nil
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		f.t.Fatalf("list PM2 apps: %v", err)
	}
	return procs
}

func snapshot(t *testing.T, root string) map[string]string { return testenv.Snapshot(t, root) }

func sameTree(t *testing.T, before, after map[string]string) {
	t.Helper()
	testenv.SameTree(t, before, after)
}

// noProcessesIn fails the test if a process still runs from the tree (its command line
// or working directory under root): a rollback must leave nothing running.
func noProcessesIn(t *testing.T, root string) {
	t.Helper()
	testenv.WaitFor(t, "no process running from "+root, 5*time.Second, func() bool {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
			if st, ok := procfs.ReadStat(mustAtoi(e.Name())); ok && st.State == "Z" {
				continue
			}
			if strings.Contains(string(cmdline), root) || strings.HasPrefix(cwd, root) {
				t.Logf("still running from the tree: pid %s: %s", e.Name(), strings.ReplaceAll(string(cmdline), "\x00", " "))
				return false
			}
		}
		return true
	})
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }
