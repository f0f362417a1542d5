package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/setup/envfile"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// realLivOS is the real LivOS trees' directory beside the repository (shared/livos-real).
func realLivOS(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(testenv.Root(t), "..", "shared", "livos-real")
	if _, err := os.Stat(filepath.Join(dir, "prepare.sh")); err != nil {
		if os.Getenv("LIVINITY_REQUIRE_REAL_LIVOS") != "" {
			t.Fatalf("the real LivOS trees are required here (LIVINITY_REQUIRE_REAL_LIVOS is set) but %s is missing: %v", dir, err)
		}
		t.Skipf("SKIPPED: the real LivOS trees (%s) are not beside this clone; this test onboards the real LivOS and is never skipped in .ci/run", dir)
	}
	return dir
}

// livosBox is one real LivOS tree onboarded by the built agent.
type livosBox struct {
	t                          *testing.T
	base, agent, cfgPath       string
	state, pm2Home, pm2Bin, rt string
	path                       string
	cfg                        *config.Config
}

func (b *livosBox) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(b.agent, append([]string{"--config", b.cfgPath, "--state-dir", b.state,
		"--pm2-home", b.pm2Home, "--pm2", b.pm2Bin, "--runtime-dir", b.rt}, args...)...)
	// the operator's environment: the proxy's CA must reach npm and pnpm
	cmd.Env = append(os.Environ(), "PATH="+b.path)
	return cmd
}

// agentRun runs the agent to its end and returns its combined output and how long it took.
func (b *livosBox) agentRun(args ...string) (string, time.Duration, error) {
	start := time.Now()
	out, err := b.cmd(args...).CombinedOutput()
	return string(out), time.Since(start), err
}

func (b *livosBox) writeConfig() {
	data, err := b.cfg.MarshalIndent()
	if err != nil {
		b.t.Fatal(err)
	}
	if _, err := config.Parse(data); err != nil {
		b.t.Fatalf("test config: %v", err)
	}
	if err := atomicfile.WriteFile(b.cfgPath, data, 0o600); err != nil {
		b.t.Fatal(err)
	}
}

func (b *livosBox) apps() map[string]pm2.Process {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pm2.Dial(ctx, b.pm2Home)
	if err != nil {
		return nil
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		b.t.Fatalf("list PM2 apps: %v", err)
	}
	out := map[string]pm2.Process{}
	for _, p := range procs {
		out[p.Name] = p
	}
	return out
}

func get(url string, header ...string) (int, string) {
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	return resp.StatusCode, body.String()
}

// TestRealLivOS onboards the real LivOS source (upstream 3f96764, shared/livos-real) unaided
// on Node 22 with Redis and a D-Bus system bus, then re-runs it, kills every service under
// `run`, and rolls back a failed release.
func TestRealLivOS(t *testing.T) {
	src := realLivOS(t)
	testenv.Require(t, "npm", "python3")
	testenv.LivOSRedis(t)
	testenv.SystemBus(t)
	base := testenv.ShortTempDir(t)
	b := &livosBox{t: t, base: base, cfgPath: filepath.Join(base, "setup.json"), state: filepath.Join(base, "state"),
		rt: filepath.Join(base, "run"), pm2Bin: filepath.Join(testenv.ToolsBin(t), "pm2")}
	b.path = testenv.Node22Bin(t) + string(os.PathListSeparator) + testenv.PATH(t)
	b.agent = testenv.BuildAgent(t, base)
	b.pm2Home = testenv.PM2Home(t, b.pm2Bin)
	trees := filepath.Join(base, "trees")
	if out, err := exec.Command("bash", filepath.Join(src, "prepare.sh"), trees).CombinedOutput(); err != nil {
		t.Fatalf("prepare.sh: %v\n%s", err, out)
	}
	cfg := config.Default()
	cfg.Domain = "localhost"
	cfg.Paths = config.Paths{LivosBaseDir: filepath.Join(trees, "livos"), NexusBaseDir: filepath.Join(trees, "nexus")}
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
	cfg.Agent.Preflight.MinDiskGB, cfg.Agent.Preflight.MinRAMGB = 1, 1
	cfg.Agent.HealthTimeoutSeconds = 180
	cfg.Agent.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	b.cfg = cfg
	b.writeConfig()
	optBefore := listTree(t, "/opt")
	trackedEco := fileHash(t, filepath.Join(cfg.Paths.LivosBaseDir, "ecosystem.config.cjs"))

	// 1. onboard unaided
	out, took, err := b.agentRun("onboard")
	if err != nil {
		t.Fatalf("onboard: %v\n%s", err, out)
	}
	t.Logf("first onboarding of the real tree: %s\n%s", took.Round(time.Second), lastN(out, 12))
	apps := b.apps()
	for _, name := range cfg.ServiceNames() {
		if a, ok := apps[name]; !ok || a.Status != "online" {
			t.Errorf("%s is not online under PM2: %+v", name, a)
		}
	}
	p := cfg.Ports
	for _, c := range []struct{ url, want string }{
		{fmt.Sprintf("http://127.0.0.1:%d/api/health", p.API), `"status":"ok"`},
		{fmt.Sprintf("http://127.0.0.1:%d/health", p.MCP), `"status":"ok"`},
		{fmt.Sprintf("http://127.0.0.1:%d/health", p.Memory), `"status":"ok"`},
		{fmt.Sprintf("http://127.0.0.1:%d/", p.Livos), "<html"},
	} {
		if code, body := get(c.url); code != 200 || !strings.Contains(body, c.want) {
			t.Errorf("GET %s = %d %.200q; want 200 with %q", c.url, code, body, c.want)
		}
	}
	env, err := envfile.Read(filepath.Join(cfg.Paths.LivosBaseDir, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	stats := fmt.Sprintf("http://127.0.0.1:%d/stats", p.Memory)
	if code, _ := get(stats); code != 401 {
		t.Errorf("nexus-memory GET /stats without X-API-Key = %d, want 401 (it runs without authentication)", code)
	}
	if code, body := get(stats, "X-API-Key", env["LIV_API_KEY"]); code != 200 {
		t.Errorf("nexus-memory GET /stats with the .env's key = %d %.200q, want 200", code, body)
	}
	if after := listTree(t, "/opt"); !equalSets(optBefore, after) {
		t.Errorf("onboarding wrote under /opt: %v", newPaths(optBefore, after))
	}
	if fileHash(t, filepath.Join(cfg.Paths.LivosBaseDir, "ecosystem.config.cjs")) != trackedEco {
		t.Error("the tree's own ecosystem.config.cjs was changed")
	}
	secrets := []string{env["JWT_SECRET"], env["LIV_API_KEY"], env["REDIS_URL"], env["DATABASE_URL"]}
	jl := exec.Command(b.pm2Bin, "jlist")
	jl.Env = append(os.Environ(), "PM2_HOME="+b.pm2Home)
	jlist, err := jl.Output()
	if err != nil {
		t.Fatalf("pm2 jlist: %v", err)
	}
	dump, _ := os.ReadFile(filepath.Join(b.pm2Home, "dump.pm2"))
	noSecrets(t, secrets, map[string]string{"the agent's output": out, "pm2 jlist": string(jlist), "dump.pm2": string(dump)})

	// 2. a no-op re-run restarts nothing
	pids := map[string]int{}
	for n, a := range b.apps() {
		pids[n] = a.PID
	}
	out, took, err = b.agentRun("setup")
	if err != nil {
		t.Fatalf("no-op re-run: %v\n%s", err, out)
	}
	t.Logf("no-op re-run of the real tree: %s", took.Round(10*time.Millisecond))
	for n, a := range b.apps() {
		if a.PID != pids[n] || a.Status != "online" {
			t.Errorf("the no-op re-run restarted %s (pid %d -> %d, %s)", n, pids[n], a.PID, a.Status)
		}
	}
	noSecrets(t, secrets, map[string]string{"the re-run's output": out})

	// 3. kill -9 of each service, recovered under run
	run := b.cmd("run")
	var runLog testenv.Buffer
	run.Stdout, run.Stderr = &runLog, &runLog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { run.Wait(); close(done) }()
	defer func() {
		run.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			run.Process.Kill()
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", lastN(runLog.String(), 60))
		}
	}()
	sock := filepath.Join(b.rt, statusapi.SocketName)
	allReady := func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := statusapi.Fetch(ctx, sock)
		if err != nil {
			return false, err.Error()
		}
		var bad []string
		for _, s := range st.Services {
			if !s.Ready {
				bad = append(bad, s.Name+" "+s.State)
			}
		}
		return st.Ready && len(bad) == 0, strings.Join(bad, ", ")
	}
	Poll(t, "all services ready under run", 3*time.Minute, allReady)
	for _, name := range cfg.ServiceNames() {
		old := b.apps()[name].PID
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 %s (pid %d): %v", name, old, err)
		}
		start := time.Now()
		Poll(t, name+" back after kill -9", 3*time.Minute, func() (bool, string) {
			a := b.apps()[name]
			if a.PID == old || a.PID == 0 || a.Status != "online" {
				return false, fmt.Sprintf("pid %d %s", a.PID, a.Status)
			}
			return allReady()
		})
		t.Logf("kill -9 %s: ready again after %s", name, time.Since(start).Round(100*time.Millisecond))
	}
	run.Process.Signal(syscall.SIGTERM)
	<-done
	noSecrets(t, secrets, map[string]string{"the agent's log under run": runLog.String()})

	// 4. a failed release: livinityd throws at start; the run fails naming its error and
	// leaves the trees as they were before it
	cli := filepath.Join(cfg.Paths.LivosBaseDir, "packages", "livinityd", "source", "cli.ts")
	orig, err := os.ReadFile(cli)
	if err != nil {
		t.Fatal(err)
	}
	const boom = "release check: livinityd refuses to start"
	// after the shebang line, which must stay first
	head, rest, _ := bytes.Cut(orig, []byte("\n"))
	broken := slices.Concat(head, []byte("\nthrow new Error('"+boom+"');\n"), rest)
	if err := os.WriteFile(cli, broken, 0o644); err != nil {
		t.Fatal(err)
	}
	b.cfg.Agent.HealthTimeoutSeconds = 20
	b.writeConfig()
	// what the running services write while they run is theirs; all of the run's own
	// changes must be undone
	live := []string{"livos/logs", "livos/data", "nexus/logs", "nexus/data"}
	before := testenv.Snapshot(t, trees, live...)
	out, _, err = b.agentRun("setup")
	if err == nil {
		t.Fatalf("a release whose livinityd throws at start onboarded:\n%s", out)
	}
	if !strings.Contains(out, boom) || !strings.Contains(out, "livos: PM2 status") {
		t.Errorf("the failure does not quote livinityd's own error %q:\n%s", boom, lastN(out, 30))
	}
	if !strings.Contains(out, "kept in "+filepath.Join(b.state, "failed-runs")) {
		t.Errorf("the failure does not name where the failed run's logs are kept:\n%s", lastN(out, 10))
	}
	testenv.SameTree(t, before, testenv.Snapshot(t, trees, live...))
	noSecrets(t, secrets, map[string]string{"the failed run's output": out})

	// and with the source mended the box is whole again
	if err := os.WriteFile(cli, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := b.agentRun("setup"); err != nil {
		t.Fatalf("setup after mending livinityd: %v\n%s", err, lastN(out, 30))
	}
	if code, _ := get(fmt.Sprintf("http://127.0.0.1:%d/", p.Livos)); code != 200 {
		t.Errorf("livinityd does not answer after the mended release: %d", code)
	}

	// 5. updates of the real tree: a release that changes only nexus core restarts
	// nexus-core and livinityd (which depends on @nexus/core) and nothing else; a release
	// whose livinityd throws at start is rolled back to the previous one, which answers
	b.cfg.Agent.HealthTimeoutSeconds = 120
	b.writeConfig()
	if out, _, err := b.agentRun("setup"); err != nil {
		t.Fatalf("setup: %v\n%s", err, lastN(out, 20))
	}
	release := func(name string, change func(dir string)) string {
		dir := filepath.Join(base, name)
		for _, tr := range []string{"livos", "nexus"} {
			copySources(t, filepath.Join(trees, tr), filepath.Join(dir, tr))
		}
		change(dir)
		return dir
	}
	pidsOf := func() map[string]int {
		out := map[string]int{}
		for n, a := range b.apps() {
			out[n] = a.PID
		}
		return out
	}
	pidsBefore := pidsOf()
	good := release("release2", func(dir string) {
		f := filepath.Join(dir, "nexus", "packages", "core", "src", "index.ts")
		src, _ := os.ReadFile(f)
		os.WriteFile(f, append(src, "\nexport const releaseMarker = 2;\n"...), 0o644)
	})
	out, took, err = b.agentRun("update", "--dir", good)
	if err != nil {
		t.Fatalf("update to a core-only release: %v\n%s", err, lastN(out, 30))
	}
	t.Logf("core-only update of the real tree: %s\n%s", took.Round(time.Second), lastN(out, 3))
	after := pidsOf()
	var restarted []string
	for n := range after {
		if after[n] != pidsBefore[n] {
			restarted = append(restarted, n)
		}
	}
	sort.Strings(restarted)
	if strings.Join(restarted, ",") != "livos,nexus-core" {
		t.Errorf("the core-only update restarted %q, want livos and nexus-core", restarted)
	}
	pidsBefore = after
	bad := release("release3", func(dir string) {
		f := filepath.Join(dir, "livos", "packages", "livinityd", "source", "cli.ts")
		src, _ := os.ReadFile(f)
		head, rest, _ := bytes.Cut(src, []byte("\n"))
		os.WriteFile(f, slices.Concat(head, []byte("\nthrow new Error('"+boom+"');\n"), rest), 0o644)
	})
	b.cfg.Agent.HealthTimeoutSeconds = 20
	b.writeConfig()
	out, took, err = b.agentRun("update", "--dir", bad)
	if err == nil || !strings.Contains(out, boom) || !strings.Contains(out, "previous release") {
		t.Fatalf("update to a release whose livinityd throws: %v; want a rollback quoting its error\n%s", err, lastN(out, 30))
	}
	t.Logf("rolled-back update of the real tree: %s\n%s", took.Round(time.Second), lastN(out, 2))
	after = pidsOf()
	for _, n := range []string{"nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"} {
		if after[n] != pidsBefore[n] {
			t.Errorf("%s was restarted by a release that did not change it", n)
		}
	}
	if code, _ := get(fmt.Sprintf("http://127.0.0.1:%d/", p.Livos)); code != 200 {
		t.Errorf("the previous livinityd does not answer after the rollback: %d", code)
	}
	hist, _, _ := b.agentRun("history")
	t.Logf("history:\n%s", hist)
}

// copySources copies a tree without what installs, builds and the running box put in it.
func copySources(t *testing.T, src, dst string) {
	t.Helper()
	skip := map[string]bool{"node_modules": true, "dist": true, ".git": true, "data": true, "logs": true, "node-compile-cache": true, "generated-tabler-icons": true}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if skip[d.Name()] || d.Name() == ".env" || strings.HasPrefix(d.Name(), ".livinity-") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			return nil // links are the pipeline's (ui, .env)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func noSecrets(t *testing.T, secrets []string, where map[string]string) {
	t.Helper()
	for name, text := range where {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("%s holds a secret of the .env (%d chars)", name, len(s))
			}
		}
	}
}

func lastN(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fileHash(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// listTree lists every path under root (nothing when it does not exist).
func listTree(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			out[p] = true
		}
		return nil
	})
	return out
}

func equalSets(a, b map[string]bool) bool {
	return len(newPaths(a, b)) == 0 && len(newPaths(b, a)) == 0
}

func newPaths(before, after map[string]bool) []string {
	var out []string
	for p := range after {
		if !before[p] {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
