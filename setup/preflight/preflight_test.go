package preflight

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
)

func testConfig(t *testing.T, minNode int, minDisk, minRAM float64) *config.Config {
	return &config.Config{
		Domain: "home.example.com",
		Paths:  config.Paths{LivosBaseDir: filepath.Join(t.TempDir(), "opt", "livos"), NexusBaseDir: "/opt/nexus"},
		Ports:  config.Ports{API: 3200, MCP: 3100, Memory: 3300, Livos: 8080},
		Agent: config.Agent{
			Preflight:            config.Preflight{MinNodeMajor: minNode, MinDiskGB: minDisk, MinRAMGB: minRAM},
			HealthTimeoutSeconds: 120,
			MemoryBreachChecks:   3,
			RestartBackoff:       config.Backoff{InitialSeconds: 1, Multiplier: 2, MaxSeconds: 300, ResetAfterSeconds: 600},
			Metrics:              config.Metrics{Listen: "127.0.0.1:9847"},
		},
	}
}

func find(t *testing.T, results []Result, name string) Result {
	t.Helper()
	for _, r := range results {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no %s result in %+v", name, results)
	return Result{}
}

// nodeMajor is the major version of the node on PATH, read independently of the package.
func nodeMajor(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("node", "-p", "process.versions.node.split('.')[0]").Output()
	if err != nil {
		t.Fatalf("node is required on PATH: %v", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNode(t *testing.T) {
	t.Parallel()
	major := nodeMajor(t)
	opts := Options{Path: testenv.PATH(t)}

	r := find(t, Run(context.Background(), testConfig(t, major, 0, 0), opts), NameNode)
	if r.Status != OK || !r.Critical || !strings.HasPrefix(r.Detail, "v"+strconv.Itoa(major)+".") {
		t.Errorf("min %d: %+v, want OK with the version", major, r)
	}

	r = find(t, Run(context.Background(), testConfig(t, major+2, 0, 0), opts), NameNode)
	want := "install Node.js " + strconv.Itoa(major+2) + " or later"
	if r.Status != Fail || !r.Critical || !strings.Contains(r.Detail, strconv.Itoa(major+2)+" or later is needed") || !strings.HasPrefix(r.Fix, want) {
		t.Errorf("min %d: %+v, want a critical FAIL with fix %q", major+2, r, want)
	}

	empty := t.TempDir()
	r = find(t, Run(context.Background(), testConfig(t, 22, 0, 0), Options{Path: empty}), NameNode)
	if r.Status != Fail || r.Detail != "node not found in PATH" || r.Fix == "" {
		t.Errorf("no node: %+v", r)
	}
}

func TestNodeTimeout(t *testing.T) {
	t.Parallel()
	// A node that never answers; only its hang matters, so a script stands in for it.
	dir := t.TempDir()
	hang := filepath.Join(dir, "node")
	sleep := "sleep 600." + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(hang, []byte("#!/bin/sh\n"+sleep+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := Options{Node: hang, CommandTimeout: 300 * time.Millisecond}.withDefaults().checkNode(context.Background(), 22, &config.Config{})
	if r.Status != Fail || !strings.Contains(r.Detail, "did not finish within 300ms") {
		t.Errorf("hanging node: %+v", r)
	}
	// The sleep was in the killed process group: nothing of it is left.
	out, _ := exec.Command("pgrep", "-f", sleep).Output()
	if len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("the hanging command survived: pids %s", out)
	}
}

func TestPM2(t *testing.T) {
	empty := t.TempDir()
	r := find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{Path: empty}), NamePM2)
	if r.Status != Fail || !r.Critical || r.Fix != "npm install -g pm2@7" {
		t.Errorf("pm2 missing: %+v, want a critical FAIL", r)
	}
	if err := Critical([]Result{r}); err == nil || !strings.Contains(err.Error(), "PM2 (pm2 not found in PATH; fix: npm install -g pm2@7)") {
		t.Errorf("Critical = %v", err)
	}

	for _, major := range []int{5, 7} {
		home := t.TempDir()
		t.Setenv("PM2_HOME", home)
		opts := Options{Path: testenv.PATH(t)}
		if major != 7 {
			opts.PM2 = testenv.PM2(t, major)
		}
		r := find(t, Run(context.Background(), testConfig(t, 0, 0, 0), opts), NamePM2)
		if r.Status != OK || !strings.HasPrefix(r.Detail, strconv.Itoa(major)+".") {
			t.Errorf("pm2 %d: %+v, want OK with its version", major, r)
		}
		// Checking must not start a daemon.
		if _, err := os.Stat(filepath.Join(home, "pm2.pid")); err == nil {
			t.Errorf("checking pm2 %d started a daemon", major)
		}
	}
}

// pythonConfig is testConfig with nexus-memory run as a python service.
func pythonConfig(t *testing.T) *config.Config {
	c := testConfig(t, 0, 0, 0)
	port := "memory"
	c.Agent.Catalog = []config.CatalogEntry{{Name: "nexus-memory", Kind: config.RunPython, Script: "src/server.py", Port: &port}}
	return c
}

func TestPython(t *testing.T) {
	r := find(t, Run(context.Background(), pythonConfig(t), Options{}), NamePython)
	if r.Status != OK || !strings.Contains(r.Detail, "with venv and ensurepip") {
		t.Errorf("python3 on PATH: %+v, want OK", r)
	}
	empty := t.TempDir()
	r = find(t, Run(context.Background(), pythonConfig(t), Options{Path: empty}), NamePython)
	if r.Status != Warn || r.Critical || !strings.Contains(r.Fix, "python3-venv") {
		t.Errorf("no python3: %+v, want WARN with a fix", r)
	}
	// LivOS itself has no python service: python is not looked for
	r = find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{Path: empty}), NamePython)
	if r.Status != OK || !strings.Contains(r.Detail, "not needed") {
		t.Errorf("no python service: %+v, want OK (not needed)", r)
	}
	// A real python3 that cannot import venv: a module of that name shadows the stdlib one.
	shadow := t.TempDir()
	if err := os.WriteFile(filepath.Join(shadow, "venv.py"), []byte("raise ImportError('no venv here')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PYTHONPATH", shadow)
	r = find(t, Run(context.Background(), pythonConfig(t), Options{}), NamePython)
	if r.Status != Warn || !strings.Contains(r.Detail, "ImportError: no venv here") {
		t.Errorf("python3 without venv: %+v, want WARN naming the import error", r)
	}
}

// TestNodeEngines: the trees' engines.node decides, whatever a lower minNodeMajor says.
func TestNodeEngines(t *testing.T) {
	t.Parallel()
	major := nodeMajor(t)
	c := testConfig(t, 1, 0, 0)
	if err := os.MkdirAll(c.Paths.LivosBaseDir, 0o755); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(c.Paths.LivosBaseDir, "package.json")
	write := func(rng string) {
		if err := os.WriteFile(manifest, []byte(`{"name":"livos","engines":{"node":"`+rng+`"}}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(">=" + strconv.Itoa(major+1) + ".0.0")
	r := find(t, Run(context.Background(), c, Options{Path: testenv.PATH(t)}), NameNode)
	if r.Status != Fail || !r.Critical || !strings.Contains(r.Detail, "the tree needs node >="+strconv.Itoa(major+1)) ||
		!strings.Contains(r.Detail, manifest) || !strings.Contains(r.Fix, "Node.js "+strconv.Itoa(major+1)) {
		t.Errorf("engines above this node: %+v, want a critical FAIL naming the range and the file", r)
	}
	write("^" + strconv.Itoa(major))
	if r := find(t, Run(context.Background(), c, Options{Path: testenv.PATH(t)}), NameNode); r.Status != OK {
		t.Errorf("engines ^%d with node %d: %+v, want OK", major, major, r)
	}
}

func TestDocker(t *testing.T) {
	t.Parallel()
	r := find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{}), NameDocker)
	if r.Status == Fail || r.Critical {
		t.Errorf("docker: %+v; it must never be a critical failure", r)
	}
	if r.Status != OK && r.Fix == "" {
		t.Errorf("docker %s without a fix: %+v", r.Status, r)
	}
	t.Logf("docker here: %s: %s", r.Status, r.Detail)

	empty := t.TempDir()
	r = find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{Path: empty}), NameDocker)
	if r.Status != Warn || !strings.Contains(r.Fix, "https://docs.docker.com/engine/install/") {
		t.Errorf("no docker: %+v", r)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	addr := testenv.StartRedis(t)
	r := find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{RedisAddr: addr}), NameRedis)
	if r.Status != OK || r.Detail != addr+" answers PING" || !r.Critical {
		t.Errorf("real redis: %+v", r)
	}

	// something that accepts connections but is not Redis
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r = find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{RedisAddr: l.Addr().String(), DialTimeout: 300 * time.Millisecond}), NameRedis)
	if r.Status != Fail || !strings.Contains(r.Detail, "does not answer PING") {
		t.Errorf("silent listener: %+v, want a FAIL", r)
	}

	closed := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	r = find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{RedisAddr: closed}), NameRedis)
	if r.Status != Fail || !r.Critical || !strings.Contains(r.Detail, "connection refused") ||
		!strings.Contains(r.Detail, "nexus-core") || !strings.Contains(r.Fix, "redis-server") {
		t.Errorf("closed port: %+v, want a critical FAIL naming who needs it, with a fix", r)
	}
	// a catalog without Redis users: only a warning
	c := testConfig(t, 0, 0, 0)
	c.Agent.Catalog = []config.CatalogEntry{{Name: "nexus-core", Needs: []string{}}, {Name: "nexus-worker", Disabled: true}, {Name: "nexus-mcp", Disabled: true}}
	r = find(t, Run(context.Background(), c, Options{RedisAddr: closed}), NameRedis)
	if r.Status != Warn || r.Critical || !strings.Contains(r.Detail, "(no service of the catalog needs it)") {
		t.Errorf("closed port, no service needs redis: %+v, want WARN saying no service needs it", r)
	}
}

func TestDBus(t *testing.T) {
	t.Parallel()
	bus := testenv.StartBus(t)
	r := find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{SystemBus: bus}), NameDBus)
	if r.Status != OK || !r.Critical || r.Detail != "system bus at "+bus {
		t.Errorf("real bus: %+v", r)
	}
	missing := filepath.Join(t.TempDir(), "system_bus_socket")
	r = find(t, Run(context.Background(), testConfig(t, 0, 0, 0), Options{SystemBus: missing}), NameDBus)
	if r.Status != Fail || !r.Critical || !strings.Contains(r.Detail, "no system bus at "+missing+" (needed by livos)") || !strings.Contains(r.Fix, "apt-get install -y dbus") {
		t.Errorf("no bus: %+v, want a critical FAIL naming livos, with a fix", r)
	}
}

func TestDisk(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, 0, 1e9, 0) // a billion GB
	existing := filepath.Dir(filepath.Dir(cfg.Paths.LivosBaseDir))
	r := find(t, Run(context.Background(), cfg, Options{}), NameDisk)
	if r.Status != Warn || !strings.Contains(r.Detail, "GB free at "+existing+"; 1e+09 GB recommended") || !strings.Contains(r.Fix, existing) {
		t.Errorf("huge minimum: %+v, want WARN measured at %s", r, existing)
	}
	r = find(t, Run(context.Background(), testConfig(t, 0, 0.001, 0), Options{DiskPath: "/"}), NameDisk)
	if r.Status != OK || !strings.HasSuffix(r.Detail, "GB free at /") {
		t.Errorf("tiny minimum: %+v, want OK", r)
	}
}

func TestMemory(t *testing.T) {
	t.Parallel()
	r := find(t, Run(context.Background(), testConfig(t, 0, 0, 1e9), Options{}), NameMemory)
	if r.Status != Warn || !strings.Contains(r.Detail, "GB total; 1e+09 GB recommended") {
		t.Errorf("huge minimum: %+v", r)
	}
	r = find(t, Run(context.Background(), testConfig(t, 0, 0, 0.001), Options{}), NameMemory)
	if r.Status != OK {
		t.Errorf("tiny minimum: %+v", r)
	}
}

func TestRunOrderAndCancel(t *testing.T) {
	t.Parallel()
	want := []string{NameNode, NamePM2, NamePython, NameDocker, NameRedis, NameDBus, NameDisk, NameMemory, NamePorts}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	results := Run(ctx, nil, Options{Path: testenv.PATH(t)})
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d", len(results), len(want))
	}
	for i, r := range results {
		if r.Name != want[i] {
			t.Errorf("result %d is %s, want %s", i, r.Name, want[i])
		}
	}
	// With the context already cancelled, the commands do not run.
	if r := results[0]; r.Status != Fail || !strings.Contains(r.Detail, "context canceled") {
		t.Errorf("node with a cancelled context: %+v", r)
	}
}

func TestCriticalAndFormat(t *testing.T) {
	t.Parallel()
	results := []Result{
		{Name: NameNode, Status: Fail, Detail: "v20.1.0 at /usr/bin/node; 22 or later is needed", Fix: "install Node.js 22 or later", Critical: true},
		{Name: NamePM2, Status: OK, Detail: "7.0.4 at /usr/bin/pm2", Critical: true},
		{Name: NameRedis, Status: Warn, Detail: "cannot connect", Fix: "start redis"},
	}
	err := Critical(results)
	if err == nil || !strings.Contains(err.Error(), "Node.js (v20.1.0") || strings.Contains(err.Error(), "PM2") || strings.Contains(err.Error(), "Redis") {
		t.Errorf("Critical = %v, want only Node.js named", err)
	}
	if err := Critical(results[1:]); err != nil {
		t.Errorf("Critical without critical failures = %v", err)
	}

	var b bytes.Buffer
	Format(&b, results, false)
	want := "" +
		"FAIL  Node.js (critical)  v20.1.0 at /usr/bin/node; 22 or later is needed\n" +
		"                          fix: install Node.js 22 or later\n" +
		"OK    PM2                 7.0.4 at /usr/bin/pm2\n" +
		"WARN  Redis               cannot connect\n" +
		"                          fix: start redis\n"
	if b.String() != want {
		t.Errorf("Format =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	Format(&b, results, true)
	if !strings.Contains(b.String(), "\x1b[31mFAIL\x1b[0m  Node.js (critical)") || !strings.Contains(b.String(), "\x1b[32mOK  \x1b[0m  PM2") {
		t.Errorf("colored Format =\n%q", b.String())
	}
}
