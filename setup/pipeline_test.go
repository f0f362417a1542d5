package setup_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/setup/envfile"
)

// managedKeys are the .env keys the pipeline writes for a config without channels.
var managedKeys = []string{"JWT_SECRET", "LIV_API_KEY", "REDIS_URL", "DATABASE_URL", "LIVOS_DOMAIN",
	"LIVOS_USE_HTTPS", "MCP_PORT", "API_PORT", "MEMORY_PORT", "NEXUS_API_URL", "MEMORY_SERVICE_URL",
	"LIVOS_BASE_DIR", "NEXUS_BASE_DIR", "NODE_ENV"}

func TestOnboardThenNoChangeRerun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "tree")
	_, err := f.run(ctx)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	if len(f.box.Health) != len(config.Default().ServiceNames()) {
		t.Fatalf("health results: %+v", f.box.Health)
	}
	for _, h := range f.box.Health {
		if !h.OK {
			t.Errorf("%s not healthy: %s", h.Service, h.Detail)
		}
	}
	apps := f.apps(ctx)
	online := map[string]int{}
	restarts := map[string]int{}
	for _, a := range apps {
		if a.Status == "online" {
			online[a.Name] = a.PID
		}
		restarts[a.Name] = a.RestartTime
	}
	for _, n := range config.Default().ServiceNames() {
		if online[n] == 0 {
			t.Errorf("app %s is not online: %+v", n, apps)
		}
	}
	if len(apps) != len(config.Default().ServiceNames()) {
		t.Errorf("want exactly %d PM2 apps, got %d", len(config.Default().ServiceNames()), len(apps))
	}

	envPath := filepath.Join(f.livos(), ".env")
	st, err := os.Stat(envPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf(".env mode = %v, want 0600", st.Mode().Perm())
	}
	env1, err := envfile.Read(envPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range managedKeys {
		if env1[k] == "" {
			t.Errorf(".env lacks %s", k)
		}
	}
	if link, err := os.Readlink(filepath.Join(f.nexus(), ".env")); err != nil || link != envPath {
		t.Errorf("nexus/.env link = %q, %v; want %s", link, err, envPath)
	}
	// the services got the .env in their environment: nexus-memory (which reads no .env
	// itself) authenticates with its key
	stats := fmt.Sprintf("http://127.0.0.1:%d/stats", f.cfg.Ports.Memory)
	if code := httpStatus(t, stats, ""); code != 401 {
		t.Errorf("nexus-memory /stats without a key = %d, want 401 (it runs without authentication)", code)
	}
	if code := httpStatus(t, stats, env1["LIV_API_KEY"]); code != 200 {
		t.Errorf("nexus-memory /stats with the .env's key = %d, want 200", code)
	}
	// path keys follow the trees: nothing of the services lands under /opt/nexus
	for k, want := range map[string]string{"NEXUS_LOGS_DIR": filepath.Join(f.nexus(), "logs"), "MEMORY_DATA_DIR": filepath.Join(f.nexus(), "data", "memory")} {
		if env1[k] != want {
			t.Errorf(".env %s = %q, want %q", k, env1[k], want)
		}
	}
	if _, err := os.Stat(filepath.Join(f.nexus(), "data", "memory", "memory-state.json")); err != nil {
		t.Errorf("nexus-memory did not write into the tree's data dir: %v", err)
	}
	// the tree's own ecosystem file is never the agent's
	tracked, _ := demo.FS.ReadFile("livos/ecosystem.config.cjs")
	if b, err := os.ReadFile(filepath.Join(f.livos(), "ecosystem.config.cjs")); err != nil || !bytes.Equal(b, tracked) || len(tracked) == 0 {
		t.Errorf("the tree's tracked ecosystem.config.cjs was changed (err %v)", err)
	}
	if _, err := os.Stat(f.box.EcosystemFile()); err != nil || filepath.Dir(f.box.EcosystemFile()) != f.state {
		t.Errorf("the agent's ecosystem is not in the state dir: %s (%v)", f.box.EcosystemFile(), err)
	}
	// PM2 listings shown to users must not carry the secrets (apps get the .env by path)
	cmd := exec.Command(f.pm2Bin, "jlist")
	cmd.Env = append(os.Environ(), "PM2_HOME="+f.pm2Home)
	jlist, err := cmd.Output()
	if err != nil {
		t.Fatalf("pm2 jlist: %v", err)
	}
	for _, k := range []string{"JWT_SECRET", "LIV_API_KEY"} {
		if strings.Contains(string(jlist), env1[k]) {
			t.Errorf("pm2 jlist shows the value of %s", k)
		}
	}

	// the re-run: nothing reinstalled or rebuilt, no app restarted, secrets kept
	res2, err := f.run(ctx)
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	for _, s := range res2.Steps {
		switch s.Step.ID {
		case setup.StepPM2Start, setup.StepVerify:
			// always run; they are idempotent by themselves
		default:
			if s.Status != pipeline.StatusSkipped {
				t.Errorf("re-run: step %s = %s, want skipped", s.Step.ID, s.Status)
			}
		}
	}
	env2, err := envfile.Read(envPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"JWT_SECRET", "LIV_API_KEY", "REDIS_URL", "DATABASE_URL"} {
		if env1[k] != env2[k] {
			t.Errorf("re-run changed %s", k)
		}
	}
	for _, a := range f.apps(ctx) {
		if a.RestartTime != restarts[a.Name] || a.PID != online[a.Name] {
			t.Errorf("re-run restarted %s (restarts %d→%d, pid %d→%d)", a.Name, restarts[a.Name], a.RestartTime, online[a.Name], a.PID)
		}
	}
	// no secret in anything the runs logged
	logs := f.logs.String()
	for _, k := range []string{"JWT_SECRET", "LIV_API_KEY", "REDIS_URL", "DATABASE_URL"} {
		if strings.Contains(logs, env1[k]) {
			t.Errorf("the pipeline log holds the value of %s", k)
		}
	}
	// a journal is never left behind by a finished run
	if _, err := os.Stat(filepath.Join(f.state, "journal.jsonl")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal left behind: %v", err)
	}
	if _, ok, _ := pipeline.LoadLastRun(f.state); !ok {
		t.Error("no last-run record")
	}
}

// TestPathsWithQuotesSpacesAndSubstitutions onboards a tree whose path holds a quote,
// double quotes, spaces and $(...): everything works and no shell ever interprets any of
// it. (A path with ', " and ` together cannot be written into a .env at all; the env step
// refuses it before anything is changed.)
func TestPathsWithQuotesSpacesAndSubstitutions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, `it's a "tree" $(touch PWNED)`)
	_, err := f.run(ctx)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, h := range f.box.Health {
		if !h.OK {
			t.Errorf("%s not healthy: %s", h.Service, h.Detail)
		}
	}
	base := filepath.Dir(f.root)
	err = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "PWNED") {
			t.Errorf("a shell ran a substitution from the path: %s exists", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{f.livos(), f.nexus(), os.TempDir(), testenv.Root(t)} {
		if _, err := os.Stat(filepath.Join(dir, "PWNED")); err == nil {
			t.Errorf("a shell ran a substitution from the path: %s/PWNED exists", dir)
		}
	}
	for _, a := range f.apps(ctx) {
		if a.Status != "online" {
			t.Errorf("%s is %s", a.Name, a.Status)
		}
	}
}

// httpStatus is the status of GET url (with X-API-Key when key is set), 0 on no answer.
func httpStatus(t *testing.T, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOptionalBuildFails: an optional service whose build fails is left out and reported
// skipped; the rest of the box onboards and is healthy.
func TestOptionalBuildFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "tree")
	appendFile(t, filepath.Join(f.nexus(), "packages", "worker", "src", "index.ts"), "\nexport const broken: number = \"not a number\";\n")
	res, err := f.run(ctx)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if st := res.Status("build-worker"); st != pipeline.StatusWarned {
		t.Errorf("build-worker = %s, want warned", st)
	}
	for _, h := range f.box.Health {
		switch {
		case h.Service == "nexus-worker" && !h.Skipped:
			t.Errorf("nexus-worker = %+v; want skipped, not awaited", h)
		case h.Service != "nexus-worker" && !h.OK:
			t.Errorf("%s not healthy: %s", h.Service, h.Detail)
		}
	}
	apps := f.apps(ctx)
	for _, a := range apps {
		if a.Name == "nexus-worker" {
			t.Errorf("nexus-worker was started though its build failed: %+v", a)
		}
	}
	if len(apps) != 4 {
		t.Errorf("%d PM2 apps, want the 4 that built", len(apps))
	}
}

// TestPythonService onboards a catalog whose nexus-memory is a Python service (a tree with
// server.py, as the original CLI assumed): its venv is built and it is started through
// `livinity-agent exec-env`, which gives it the .env although python has no --env-file.
func TestPythonService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "tree")
	launcher := testenv.BuildAgent(t, testenv.ShortTempDir(t))
	pkg := filepath.Join(f.nexus(), "packages", "pymem")
	if out, err := exec.Command("cp", "-r", filepath.Join(testenv.Root(t), "test", "fixtures", "python-memory"), pkg).CombinedOutput(); err != nil {
		t.Fatalf("copy the python fixture: %v\n%s", err, out)
	}
	f.cfg.Agent.Catalog = []config.CatalogEntry{{Name: "nexus-memory", Package: "pymem", Kind: config.RunPython, Script: "src/server.py"}}
	if err := f.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	plan := f.plan()
	f.box.Launcher = launcher
	res, err := pipeline.Run(ctx, plan, f.options())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if st := res.Status("venv-pymem"); st != pipeline.StatusDone {
		t.Errorf("venv-pymem = %s, want done", st)
	}
	if _, err := os.Stat(filepath.Join(pkg, "venv", "bin", "python3")); err != nil {
		t.Errorf("no venv: %v", err)
	}
	for _, h := range f.box.Health {
		if !h.OK {
			t.Errorf("%s not healthy: %s", h.Service, h.Detail)
		}
	}
	env, err := envfile.Read(filepath.Join(f.livos(), ".env"))
	if err != nil {
		t.Fatal(err)
	}
	stats := fmt.Sprintf("http://127.0.0.1:%d/stats", f.cfg.Ports.Memory)
	if code := httpStatus(t, stats, ""); code != 401 {
		t.Errorf("python memory /stats without a key = %d, want 401", code)
	}
	if code := httpStatus(t, stats, env["LIV_API_KEY"]); code != 200 {
		t.Errorf("python memory /stats with the .env's key = %d, want 200", code)
	}
	// PM2 holds the launcher and the file's path, never its values
	cmd := exec.Command(f.pm2Bin, "jlist")
	cmd.Env = append(os.Environ(), "PM2_HOME="+f.pm2Home)
	jlist, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(jlist), env["LIV_API_KEY"]) {
		t.Error("pm2 jlist shows LIV_API_KEY")
	}
	if !strings.Contains(string(jlist), "exec-env") {
		t.Error("nexus-memory is not started through exec-env")
	}
}

// TestHeadLayout onboards a demo-shaped tree of upstream's newer layout (nexus/ renamed
// liv/, four apps livos, liv-core, liv-worker, liv-memory) with the example config's
// catalog: the services are data.
func TestHeadLayout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "tree")
	liv := filepath.Join(f.root, "liv")
	if err := os.Rename(f.nexus(), liv); err != nil {
		t.Fatal(err)
	}
	// livinityd's file: dependency and the lockfile follow the rename
	replaceInFile(t, filepath.Join(f.livos(), "packages", "livinityd", "package.json"), "../../../nexus/", "../../../liv/")
	for i := 0; i < 3; i++ {
		replaceInFile(t, filepath.Join(f.livos(), "pnpm-lock.yaml"), "../nexus/", "../liv/")
	}
	example, err := config.Load(filepath.Join(testenv.Root(t), "deploy", "examples", "setup.liv-head.json"))
	if err != nil {
		t.Fatal(err)
	}
	f.cfg.Paths.NexusBaseDir = liv
	f.cfg.Agent.Catalog = example.Agent.Catalog
	f.cfg.Agent.Services = example.Agent.Services
	if err := f.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	want := []string{"liv-core", "liv-memory", "liv-worker", "livos"}
	var got []string
	for _, a := range f.apps(ctx) {
		if a.Status != "online" {
			t.Errorf("%s is %s", a.Name, a.Status)
		}
		got = append(got, a.Name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("PM2 apps = %q, want %q", got, want)
	}
	for _, h := range f.box.Health {
		if !h.OK {
			t.Errorf("%s not healthy: %s", h.Service, h.Detail)
		}
	}
	if _, err := os.Stat(filepath.Join(liv, "packages", "mcp-server", "dist")); err == nil {
		t.Error("mcp-server was built though no service of the catalog runs it")
	}
}

// TestRestartOnlyWhatChanged: what an app runs is the build output of the packages its
// package.json depends on. A core change restarts nexus-core and livinityd (which depends
// on @nexus/core), not the worker or mcp (which do not); a rebuild with the same output and
// a change of one service's memory limit restart nothing else.
func TestRestartOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "tree")
	if _, err := f.run(ctx); err != nil {
		t.Fatalf("first run: %v", err)
	}
	pids := func() map[string]int {
		out := map[string]int{}
		for _, a := range f.apps(ctx) {
			out[a.Name] = a.PID
		}
		return out
	}
	restarted := func(before map[string]int) []string {
		var out []string
		for n, pid := range pids() {
			if before[n] != pid {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	step := func(what string, change func(), want ...string) {
		t.Helper()
		before := pids()
		change()
		res, err := f.run(ctx)
		if err != nil {
			t.Fatalf("%s: run: %v", what, err)
		}
		if got := restarted(before); !slices.Equal(got, want) {
			t.Errorf("%s restarted %q, want %q", what, got, want)
		}
		_ = res
	}
	core := filepath.Join(f.nexus(), "packages", "core", "src", "index.ts")
	step("a change of nexus core", func() { appendFile(t, core, "\nexport const released = 2;\n") }, "livos", "nexus-core")
	// a file tsc does not compile: the build runs again and writes the same output
	step("a rebuild with the same output", func() {
		if err := os.WriteFile(filepath.Join(f.nexus(), "packages", "core", "NOTES.md"), []byte("notes\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	step("nexus-memory's memory limit", func() {
		f.cfg.Agent.Services = map[string]config.Service{"nexus-memory": {MemoryLimitMB: 300}}
	}, "nexus-memory")
}
