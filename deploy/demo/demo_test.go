package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
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

	"github.com/livinity/livinity-agent/internal/testenv"
)

// TestDemoTree installs, builds and runs the extracted tree with the real tools, the way the
// onboarding pipeline does, and runs every service the way the real tree's ecosystem file
// does (working directory, interpreter, script, arguments), with its settings in the
// process environment. It checks that every service answers and stops cleanly.
func TestDemoTree(t *testing.T) {
	env := toolEnv(t)
	dir := t.TempDir()
	if err := Extract(dir); err != nil {
		t.Fatal(err)
	}
	livos := filepath.Join(dir, "livos")
	nexus := filepath.Join(dir, "nexus")
	livinityd := filepath.Join(livos, "packages", "livinityd")
	ui := filepath.Join(livos, "packages", "ui")
	opt := optSnapshot()

	step := func(dir string, args ...string) {
		t.Helper()
		start := time.Now()
		runStep(t, dir, env, args...)
		t.Logf("%s: %s (%v)", filepath.Base(dir), strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	}

	step(livos, "pnpm", "install", "--frozen-lockfile")
	// pnpm 9 runs the UI's own postinstall, which writes files no manifest declares.
	if n := countFiles(t, filepath.Join(ui, "public", "generated-icons")); n == 0 {
		t.Errorf("pnpm install did not run @livos/ui's postinstall: no files in packages/ui/public/generated-icons")
	}
	// tsx is livinityd's dependency, not the workspace root's.
	if _, err := os.Stat(filepath.Join(livinityd, "node_modules", ".bin", "tsx")); err != nil {
		t.Errorf("packages/livinityd/node_modules/.bin/tsx: %v", err)
	}
	if _, err := os.Stat(filepath.Join(livos, "node_modules", ".bin", "tsx")); err == nil {
		t.Errorf("livos/node_modules/.bin/tsx exists: tsx must be a dependency of packages/livinityd only")
	}
	// pnpm copied @nexus/core ("file:../../../nexus/packages/core") into its virtual store
	// at install time, before core was built: the copy has no dist/.
	installedCore, err := filepath.EvalSymlinks(filepath.Join(livinityd, "node_modules", "@nexus", "core"))
	if err != nil {
		t.Fatal(err)
	}
	wantCore, err := filepath.EvalSymlinks(filepath.Join(livos, filepath.FromSlash(installedCorePath)))
	if err != nil || installedCore != wantCore {
		t.Fatalf("livinityd's @nexus/core resolves to %s, want %s (%v)", installedCore, installedCorePath, err)
	}
	if _, err := os.Stat(filepath.Join(installedCore, "dist")); err == nil {
		t.Fatalf("%s/dist exists right after pnpm install", installedCorePath)
	}

	step(livos, "pnpm", "--filter", "@livos/config", "build")
	step(livos, "pnpm", "--filter", "@livos/ui", "build")
	if n := countFiles(t, filepath.Join(ui, "node-compile-cache")); n == 0 {
		t.Errorf("the UI build left no file in packages/ui/node-compile-cache")
	}
	step(nexus, "npm", "ci", "--no-audit", "--no-fund")
	for _, pkg := range []string{"core", "worker", "mcp-server", "memory"} {
		step(nexus, "npm", "run", "build", "--workspace=packages/"+pkg)
	}
	// Worker and mcp-server carry their own env and fault code, as in the real tree.
	for _, pkg := range []string{"worker", "mcp-server", "memory"} {
		files, _ := filepath.Glob(filepath.Join(nexus, "packages", pkg, "dist", "*.js"))
		for _, f := range files {
			if b, _ := os.ReadFile(f); importsCore.Match(b) {
				t.Errorf("%s imports @nexus/core", f)
			}
		}
	}

	livinitydArgs := func(data string, port int) []string {
		return []string{"node_modules/.bin/tsx", "source/cli.ts", "--data-directory", data, "--port", strconv.Itoa(port)}
	}

	// Before core's dist/ is copied into the installed copy, livinityd cannot start.
	out, code := runExit(t, livinityd, env, livinitydArgs(filepath.Join(t.TempDir(), "data"), testenv.FreePort(t))...)
	if code == 0 || !strings.Contains(out, "ERR_MODULE_NOT_FOUND") || !strings.Contains(out, "@nexus/core/dist/lib.js") {
		t.Errorf("livinityd before the copy of core's dist: exit %d, output %q; want ERR_MODULE_NOT_FOUND for @nexus/core/dist/lib.js", code, out)
	}
	// The pipeline's copy (as upstream's install.sh does) and its link, which lets
	// livinityd serve the built UI.
	copyDir(t, filepath.Join(nexus, "packages", "core", "dist"), filepath.Join(installedCore, "dist"))
	if err := os.Symlink("../ui/dist", filepath.Join(livinityd, "ui")); err != nil {
		t.Fatal(err)
	}

	signals := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}

	t.Run("livinityd", func(t *testing.T) {
		page, err := os.ReadFile(filepath.Join(ui, "src", "index.html"))
		if err != nil {
			t.Fatal(err)
		}
		for _, sig := range signals {
			port := testenv.FreePort(t)
			data := filepath.Join(t.TempDir(), "data")
			p := start(t, livinityd, env, livinitydArgs(data, port)...)
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			health := p.get(t, base+"/health")
			var h struct{ Status, Product, NexusCore string }
			if err := json.Unmarshal(health, &h); err != nil || h.Status != "ok" || h.Product != "LivOS" || h.NexusCore != "0.1.0" {
				t.Errorf("GET /health = %s (%v), want status ok, product LivOS from @livos/config and nexusCore 0.1.0 from @nexus/core/lib", health, err)
			}
			if got := p.get(t, base+"/"); !bytes.Equal(got, page) {
				t.Errorf("GET / = %q, want the built UI page", got)
			}
			state, err := os.ReadFile(filepath.Join(data, "livinityd-state.json"))
			if err != nil || !strings.Contains(string(state), `"port":`+strconv.Itoa(port)) {
				t.Errorf("state file in the data directory: %q, %v", state, err)
			}
			p.stop(t, sig, "livinityd: LivOS listening")
		}
	})

	t.Run("nexus-core", func(t *testing.T) {
		for _, sig := range signals {
			port := testenv.FreePort(t)
			logs := filepath.Join(t.TempDir(), "logs")
			p := start(t, nexus, append(env, "API_PORT="+strconv.Itoa(port), "JWT_SECRET=demo-secret-in-env", "NEXUS_LOGS_DIR="+logs),
				"node", "packages/core/dist/index.js")
			if got := p.get(t, fmt.Sprintf("http://127.0.0.1:%d/api/health", port)); string(got) != `{"status":"ok"}` {
				t.Errorf("GET /api/health = %s", got)
			}
			p.waitOutput(t, "nexus-core: listening")
			p.stop(t, sig, "nexus-core: listening")
			if b, err := os.ReadFile(filepath.Join(logs, "nexus.log")); err != nil || !strings.Contains(string(b), "nexus-core: listening") {
				t.Errorf("NEXUS_LOGS_DIR/nexus.log: %q, %v; want the start line", b, err)
			}
		}
		opt.check(t)
	})

	t.Run("nexus-core-refuses-to-start", func(t *testing.T) {
		port := strconv.Itoa(testenv.FreePort(t))
		logs := filepath.Join(t.TempDir(), "logs")
		cases := map[string]struct {
			env  []string
			want string
		}{
			"no JWT_SECRET": {[]string{"API_PORT=" + port}, "JWT_SECRET is not set"},
			"no API_PORT":   {[]string{"JWT_SECRET=x"}, "API_PORT is not set"},
			"bad API_PORT":  {[]string{"JWT_SECRET=x", "API_PORT=http"}, `API_PORT="http" is not a port number`},
		}
		for name, c := range cases {
			out, code := runExit(t, nexus, append(env, append(c.env, "NEXUS_LOGS_DIR="+logs)...), "node", "packages/core/dist/index.js")
			if code != 1 || !strings.Contains(out, c.want) {
				t.Errorf("%s: exit %d, output %q; want exit 1 and %q", name, code, out, c.want)
			}
		}
		if _, err := os.Stat(logs); err == nil {
			t.Errorf("nexus-core created NEXUS_LOGS_DIR although it refused to start")
		}
	})

	t.Run("nexus-mcp", func(t *testing.T) {
		for _, sig := range signals {
			port := testenv.FreePort(t)
			p := start(t, nexus, append(env, "MCP_PORT="+strconv.Itoa(port)), "node", "packages/mcp-server/dist/index.js")
			if got := p.get(t, fmt.Sprintf("http://127.0.0.1:%d/health", port)); !strings.Contains(string(got), `"status":"ok"`) {
				t.Errorf("GET /health = %s", got)
			}
			p.stop(t, sig, "nexus-mcp: listening")
		}
		out, code := runExit(t, nexus, env, "node", "packages/mcp-server/dist/index.js")
		if code != 1 || !strings.Contains(out, "MCP_PORT is not set") {
			t.Errorf("without MCP_PORT: exit %d, output %q; want exit 1 naming MCP_PORT", code, out)
		}
	})

	t.Run("nexus-worker", func(t *testing.T) {
		for _, sig := range signals {
			p := start(t, nexus, append(env, "WORKER_INTERVAL_MS=20"), "node", "packages/worker/dist/index.js")
			p.waitOutput(t, "nexus-worker: tick 2")
			p.stop(t, sig, "nexus-worker: started")
		}
	})

	t.Run("nexus-memory", func(t *testing.T) {
		const key = "memory-key-in-env"
		for _, sig := range signals {
			port := testenv.FreePort(t)
			data := filepath.Join(t.TempDir(), "memory")
			p := start(t, nexus, append(env, "MEMORY_PORT="+strconv.Itoa(port), "MEMORY_DATA_DIR="+data, "LIV_API_KEY="+key),
				"node", "packages/memory/dist/index.js")
			checkMemory(t, p, port, key)
			p.stop(t, sig, "nexus-memory: listening")
			if b, err := os.ReadFile(filepath.Join(data, "memory-state.json")); err != nil || !strings.Contains(string(b), `"port":`+strconv.Itoa(port)) {
				t.Errorf("MEMORY_DATA_DIR/memory-state.json: %q, %v", b, err)
			}
		}
		// Without LIV_API_KEY the service runs without authentication (as upstream's does):
		// the agent must give it the key in its environment.
		port := testenv.FreePort(t)
		p := start(t, nexus, append(env, "MEMORY_PORT="+strconv.Itoa(port), "MEMORY_DATA_DIR="+t.TempDir()),
			"node", "packages/memory/dist/index.js")
		checkMemory(t, p, port, "")
		p.waitOutput(t, "authentication is disabled")
		p.stop(t, syscall.SIGTERM, "nexus-memory: listening")

		out, code := runExit(t, nexus, append(env, "MEMORY_PORT=http", "MEMORY_DATA_DIR="+t.TempDir()), "node", "packages/memory/dist/index.js")
		if code != 1 || !strings.Contains(out, `MEMORY_PORT="http" is not a port number`) {
			t.Errorf("with MEMORY_PORT=http: exit %d, output %q; want exit 1 naming MEMORY_PORT", code, out)
		}
		opt.check(t)
	})

	// nexus core, worker and mcp read ./.env in their working directory themselves (the
	// environment wins); nexus-memory never reads it.
	t.Run("nexus-env-file", func(t *testing.T) {
		const secret = "s3cret-from-dotenv"
		corePort, mcpEnvPort, mcpFilePort, memoryPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
		envFile := filepath.Join(nexus, ".env")
		content := "# written by the test\nexport JWT_SECRET=\"" + secret + "\"\n" +
			"MCP_PORT=" + strconv.Itoa(mcpFilePort) + "\nWORKER_INTERVAL_MS=20\nLIV_API_KEY=key-in-dotenv\n" +
			"NEXUS_LOGS_DIR=" + filepath.Join(t.TempDir(), "logs") + "\n"
		if err := os.WriteFile(envFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(envFile) })

		core := start(t, nexus, append(env, "API_PORT="+strconv.Itoa(corePort)), "node", "packages/core/dist/index.js")
		core.get(t, fmt.Sprintf("http://127.0.0.1:%d/api/health", corePort))
		if out := core.stop(t, syscall.SIGTERM, "nexus-core: listening"); strings.Contains(out, secret) {
			t.Errorf("nexus-core printed JWT_SECRET's value: %q", out)
		}

		mcp := start(t, nexus, env, "node", "packages/mcp-server/dist/index.js")
		mcp.get(t, fmt.Sprintf("http://127.0.0.1:%d/health", mcpFilePort))
		mcp.stop(t, syscall.SIGTERM, "nexus-mcp: listening")
		mcp = start(t, nexus, append(env, "MCP_PORT="+strconv.Itoa(mcpEnvPort)), "node", "packages/mcp-server/dist/index.js")
		mcp.get(t, fmt.Sprintf("http://127.0.0.1:%d/health", mcpEnvPort))
		mcp.stop(t, syscall.SIGTERM, "nexus-mcp: listening")

		worker := start(t, nexus, env, "node", "packages/worker/dist/index.js")
		worker.waitOutput(t, "nexus-worker: tick 2")
		worker.stop(t, syscall.SIGTERM, "nexus-worker: started, ticking every 20 ms")

		memory := start(t, nexus, append(env, "MEMORY_PORT="+strconv.Itoa(memoryPort), "MEMORY_DATA_DIR="+t.TempDir()),
			"node", "packages/memory/dist/index.js")
		checkMemory(t, memory, memoryPort, "") // LIV_API_KEY from .env is not used
		memory.stop(t, syscall.SIGTERM, "nexus-memory: listening")
		opt.check(t)
	})

	// The chaos soak's fault hook: SIGUSR2 makes a Node service start a child that grows
	// by leakMiBPerTick every 100 ms; the child ends with its parent.
	t.Run("leak-hook", func(t *testing.T) {
		services := []struct {
			name, script, startLine string
			env                     []string
		}{
			{"nexus-core", "packages/core/dist/index.js", "nexus-core: listening", []string{"API_PORT=" + strconv.Itoa(testenv.FreePort(t)), "JWT_SECRET=x", "NEXUS_LOGS_DIR=" + t.TempDir()}},
			{"nexus-worker", "packages/worker/dist/index.js", "nexus-worker: started", nil},
			{"nexus-mcp", "packages/mcp-server/dist/index.js", "nexus-mcp: listening", []string{"MCP_PORT=" + strconv.Itoa(testenv.FreePort(t))}},
			{"nexus-memory", "packages/memory/dist/index.js", "nexus-memory: listening", []string{"MEMORY_PORT=" + strconv.Itoa(testenv.FreePort(t)), "MEMORY_DATA_DIR=" + t.TempDir(), "LIV_API_KEY=x"}},
		}
		leakLine := regexp.MustCompile(`SIGUSR2 received, child (\d+) leaks 8 MiB every 100 ms`)
		for _, sv := range services {
			p := start(t, nexus, append(env, sv.env...), "node", sv.script)
			p.waitOutput(t, sv.startLine)
			if err := p.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			p.waitOutput(t, "SIGUSR2 received")
			m := leakLine.FindStringSubmatch(p.out.String())
			if m == nil {
				t.Fatalf("%s: no leak line matching %s in %q", sv.name, leakLine, p.out.String())
			}
			child, _ := strconv.Atoi(m[1])
			testenv.WaitFor(t, sv.name+"'s leaking child to hold 64 MiB", waitLimit, func() bool {
				return rssKiB(child) >= 64<<10
			})
			p.stop(t, syscall.SIGTERM, sv.startLine)
			testenv.WaitFor(t, sv.name+"'s leaking child to end with its parent", waitLimit, func() bool {
				return syscall.Kill(child, 0) == syscall.ESRCH
			})
		}
	})

	// Nothing of the above touched the tree's own ecosystem file.
	want, err := FS.ReadFile("livos/ecosystem.config.cjs")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(livos, "ecosystem.config.cjs")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("livos/ecosystem.config.cjs changed (%v)", err)
	}
}

// TestPythonMemoryFixture runs test/fixtures/python-memory/src/server.py, the Python-kind
// nexus-memory, with python3 and checks the same contract as the demo's TypeScript one.
func TestPythonMemoryFixture(t *testing.T) {
	env := toolEnv(t)
	fixture, err := filepath.Abs(filepath.Join("..", "..", "test", "fixtures", "python-memory"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(fixture, "src", "requirements.txt")); err != nil || fi.Size() != 0 {
		t.Errorf("src/requirements.txt must exist and list nothing: %v", err)
	}
	opt := optSnapshot()
	const key = "python-key"
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		port := testenv.FreePort(t)
		data := filepath.Join(t.TempDir(), "memory")
		p := start(t, fixture, append(env, "MEMORY_PORT="+strconv.Itoa(port), "MEMORY_DATA_DIR="+data, "LIV_API_KEY="+key),
			"python3", "src/server.py")
		checkMemory(t, p, port, key)
		p.stop(t, sig, "nexus-memory: listening")
		if b, err := os.ReadFile(filepath.Join(data, "memory-state.json")); err != nil || !strings.Contains(string(b), `"port": `+strconv.Itoa(port)) {
			t.Errorf("MEMORY_DATA_DIR/memory-state.json: %q, %v", b, err)
		}
	}
	port := testenv.FreePort(t)
	p := start(t, fixture, append(env, "MEMORY_PORT="+strconv.Itoa(port), "MEMORY_DATA_DIR="+t.TempDir()), "python3", "src/server.py")
	checkMemory(t, p, port, "")
	p.stop(t, syscall.SIGTERM, "nexus-memory: listening")

	out, code := runExit(t, fixture, append(env, "MEMORY_PORT=http", "MEMORY_DATA_DIR="+t.TempDir()), "python3", "src/server.py")
	if code != 1 || !strings.Contains(out, "MEMORY_PORT='http' is not a port number") {
		t.Errorf("with MEMORY_PORT=http: exit %d, output %q; want exit 1 naming MEMORY_PORT", code, out)
	}
	opt.check(t)
}

// importsCore matches a static or dynamic import of @nexus/core in built JavaScript.
var importsCore = regexp.MustCompile(`(from\s*|import\s*\(\s*|import\s+)["']@nexus/core`)

// installedCorePath is where pnpm puts livinityd's copy of @nexus/core, relative to livos/:
// packages/livinityd/node_modules/@nexus/core is a symlink to it. Core's built dist/ must
// be copied to <this>/dist before livinityd can start.
const installedCorePath = "node_modules/.pnpm/@nexus+core@file+..+nexus+packages+core/node_modules/@nexus/core"

// checkMemory checks a running nexus-memory's HTTP contract. With key set, GET /stats needs
// the header X-API-Key: key; with key empty, the service must run without authentication.
func checkMemory(t *testing.T, p *service, port int, key string) {
	t.Helper()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if got := p.get(t, base+"/health"); string(got) != `{"status":"ok"}` {
		t.Errorf("GET /health = %s, want {\"status\":\"ok\"}", got)
	}
	if key == "" {
		if code, body := request(t, base+"/stats", ""); code != http.StatusOK || body != `{"memories":0}` {
			t.Errorf("GET /stats without LIV_API_KEY = %d %s, want 200 {\"memories\":0} (no authentication)", code, body)
		}
		return
	}
	for _, bad := range []string{"", "wrong-" + key} {
		if code, body := request(t, base+"/stats", bad); code != http.StatusUnauthorized || body != `{"error":"unauthorized"}` {
			t.Errorf("GET /stats with X-API-Key %q = %d %s, want 401 {\"error\":\"unauthorized\"}", bad, code, body)
		}
	}
	if code, body := request(t, base+"/stats", key); code != http.StatusOK || body != `{"memories":0}` {
		t.Errorf("GET /stats with the key = %d %s, want 200 {\"memories\":0}", code, body)
	}
}

// request sends one GET, with the header X-API-Key unless key is empty, and returns the
// status and body.
func request(t *testing.T, url, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// optPaths are where the services write when MEMORY_DATA_DIR and NEXUS_LOGS_DIR are unset.
var optPaths = []string{"/opt/nexus/logs", "/opt/nexus/logs/nexus.log", "/opt/nexus/data/memory", "/opt/nexus/data/memory/memory-state.json"}

type optState map[string]string

// optSnapshot records what exists at optPaths (with size and modification time).
func optSnapshot() optState {
	s := optState{}
	for _, p := range optPaths {
		if fi, err := os.Stat(p); err == nil {
			s[p] = fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return s
}

// check fails the test if anything at optPaths appeared or changed since the snapshot.
func (s optState) check(t *testing.T) {
	t.Helper()
	now := optSnapshot()
	for _, p := range optPaths {
		if now[p] != s[p] {
			t.Errorf("%s was written (before: %q, now: %q): a service ignored MEMORY_DATA_DIR or NEXUS_LOGS_DIR", p, s[p], now[p])
		}
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// copyDir copies the regular files and directories under src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

// rssKiB is the resident set of pid in KiB from /proc/<pid>/status; 0 when unreadable.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// toolEnv returns the environment for the tools: the project's tools first on PATH, and none
// of the variables the services read, so that the caller's environment cannot leak in.
func toolEnv(t *testing.T) []string {
	path := testenv.PATH(t)
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "PATH", "JWT_SECRET", "API_PORT", "MCP_PORT", "MEMORY_PORT", "WORKER_INTERVAL_MS",
			"LIV_API_KEY", "MEMORY_DATA_DIR", "NEXUS_LOGS_DIR":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+path)
	for _, tool := range []string{"node", "npm", "pnpm", "python3"} {
		if _, err := lookPath(tool, path); err != nil {
			t.Fatalf("%s is required on PATH (%s): %v", tool, path, err)
		}
	}
	return env
}

func lookPath(file, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// command builds a command run in dir; a relative program name is resolved against dir.
func command(ctx context.Context, dir string, env []string, args ...string) *exec.Cmd {
	name := args[0]
	if strings.Contains(name, "/") && !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	} else if p, err := lookPath(name, envValue(env, "PATH")); err == nil {
		name = p
	}
	cmd := exec.CommandContext(ctx, name, args[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

func runStep(t *testing.T, dir string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if out, err := command(ctx, dir, env, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s (in %s): %v\n%s", strings.Join(args, " "), dir, err, out)
	}
}

// runExit runs a service that is expected to exit on its own and returns its output and
// exit code.
func runExit(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := command(ctx, dir, env, args...).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("run %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

type service struct {
	cmd  *exec.Cmd
	out  *testenv.Buffer
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

const waitLimit = 30 * time.Second

// start runs a long-lived service; its process group is killed when the test ends.
func start(t *testing.T, dir string, env []string, args ...string) *service {
	t.Helper()
	s := &service{out: &testenv.Buffer{}, done: make(chan struct{})}
	s.cmd = command(context.Background(), dir, env, args...)
	s.cmd.Stdout = s.out
	s.cmd.Stderr = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
	return s
}

// get polls url until it answers 200 and returns the body.
func (s *service) get(t *testing.T, url string) []byte {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(waitLimit)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			t.Fatalf("service exited before answering %s: %v\n%s", url, s.err, s.out)
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return body
			}
			last = fmt.Sprintf("status %d, body %q, %v", resp.StatusCode, body, rerr)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("GET %s did not answer 200 within %v (last: %s)\n%s", url, waitLimit, last, s.out)
	return nil
}

// waitOutput polls the service's output until it contains want.
func (s *service) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(s.out.String(), want) {
		select {
		case <-s.done:
			t.Fatalf("service exited before logging %q: %v\n%s", want, s.err, s.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not log %q within %v\n%s", want, waitLimit, s.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends sig to the service's main process (as PM2 does) and checks that it exits 0
// and logged its start line. It returns the output.
func (s *service) stop(t *testing.T, sig syscall.Signal, startLine string) string {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("send %v: %v", sig, err)
	}
	select {
	case <-s.done:
	case <-time.After(waitLimit):
		t.Fatalf("service did not exit within %v of %v\n%s", waitLimit, sig, s.out)
	}
	out := s.out.String()
	if s.err != nil {
		t.Errorf("after %v: %v, want exit 0\n%s", sig, s.err, out)
	}
	if !strings.Contains(out, startLine) {
		t.Errorf("output lacks the start line %q:\n%s", startLine, out)
	}
	return out
}
