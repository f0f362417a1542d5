package demo

import (
	"bytes"
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

	"github.com/livinity/livinity-agent/internal/testenv"
)

// TestDemoTree installs, builds and runs the extracted tree with the real tools, the way the
// onboarding pipeline does, and checks that every service answers and stops cleanly.
func TestDemoTree(t *testing.T) {
	env := toolEnv(t)
	dir := t.TempDir()
	if err := Extract(dir); err != nil {
		t.Fatal(err)
	}
	livos := filepath.Join(dir, "livos")
	nexus := filepath.Join(dir, "nexus")

	steps := []struct {
		dir  string
		args []string
	}{
		{livos, []string{"pnpm", "install", "--frozen-lockfile"}},
		{livos, []string{"pnpm", "--filter", "@livos/config", "build"}},
		{livos, []string{"pnpm", "--filter", "@livos/ui", "build"}},
		{nexus, []string{"npm", "ci", "--no-audit", "--no-fund"}},
		{nexus, []string{"npm", "run", "build", "--workspace=packages/core"}},
		{nexus, []string{"npm", "run", "build", "--workspace=packages/worker"}},
		{nexus, []string{"npm", "run", "build", "--workspace=packages/mcp-server"}},
		{nexus, []string{"python3", "-m", "venv", "packages/memory/venv"}},
		{nexus, []string{"packages/memory/venv/bin/pip", "install", "--no-input", "-r", "packages/memory/src/requirements.txt"}},
	}
	for _, s := range steps {
		start := time.Now()
		runStep(t, s.dir, env, s.args...)
		t.Logf("%s: %s (%v)", filepath.Base(s.dir), strings.Join(s.args, " "), time.Since(start).Round(time.Millisecond))
	}
	// The pipeline's link, which lets livinityd serve the built UI.
	if err := os.Symlink("../ui/dist", filepath.Join(livos, "packages", "livinityd", "ui")); err != nil {
		t.Fatal(err)
	}

	signals := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}

	t.Run("livinityd", func(t *testing.T) {
		page, err := os.ReadFile(filepath.Join(livos, "packages", "ui", "src", "index.html"))
		if err != nil {
			t.Fatal(err)
		}
		for _, sig := range signals {
			port := testenv.FreePort(t)
			data := filepath.Join(t.TempDir(), "data")
			p := start(t, livos, env, "node_modules/.bin/tsx", "packages/livinityd/source/cli.ts",
				"--data-directory", data, "--port", strconv.Itoa(port))
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			health := p.get(t, base+"/health")
			var h struct{ Status, Product string }
			if err := json.Unmarshal(health, &h); err != nil || h.Status != "ok" || h.Product != "LivOS" {
				t.Errorf("GET /health = %s (%v), want status ok and product LivOS from @livos/config", health, err)
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
			p := start(t, nexus, append(env, "API_PORT="+strconv.Itoa(port), "JWT_SECRET=demo-secret-in-env"),
				"node", "packages/core/dist/index.js")
			if got := p.get(t, fmt.Sprintf("http://127.0.0.1:%d/api/health", port)); string(got) != `{"status":"ok"}` {
				t.Errorf("GET /api/health = %s", got)
			}
			p.stop(t, sig, "nexus-core: listening")
		}
	})

	t.Run("nexus-core-env-file", func(t *testing.T) {
		const secret = "s3cret-from-dotenv"
		envFile := filepath.Join(nexus, ".env")
		content := "# written by the test\nexport JWT_SECRET=\"" + secret + "\"\n"
		if err := os.WriteFile(envFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(envFile) })
		port := testenv.FreePort(t)
		p := start(t, nexus, append(env, "API_PORT="+strconv.Itoa(port)), "node", "packages/core/dist/index.js")
		p.get(t, fmt.Sprintf("http://127.0.0.1:%d/api/health", port))
		out := p.stop(t, syscall.SIGTERM, "nexus-core: listening")
		if strings.Contains(out, secret) {
			t.Errorf("nexus-core printed JWT_SECRET's value: %q", out)
		}
	})

	t.Run("nexus-core-refuses-to-start", func(t *testing.T) {
		port := strconv.Itoa(testenv.FreePort(t))
		cases := map[string]struct {
			env  []string
			want string
		}{
			"no JWT_SECRET": {[]string{"API_PORT=" + port}, "JWT_SECRET is not set"},
			"no API_PORT":   {[]string{"JWT_SECRET=x"}, "API_PORT is not set"},
			"bad API_PORT":  {[]string{"JWT_SECRET=x", "API_PORT=http"}, `API_PORT="http" is not a port number`},
		}
		for name, c := range cases {
			out, code := runExit(t, nexus, append(env, c.env...), "node", "packages/core/dist/index.js")
			if code != 1 || !strings.Contains(out, c.want) {
				t.Errorf("%s: exit %d, output %q; want exit 1 and %q", name, code, out, c.want)
			}
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

	// The chaos soak's fault hook: SIGUSR2 makes a Node service start a child that grows
	// by leakMiBPerTick every 100 ms; the child ends with its parent.
	t.Run("leak-hook", func(t *testing.T) {
		services := []struct {
			name, script, startLine string
			env                     []string
		}{
			{"nexus-core", "packages/core/dist/index.js", "nexus-core: listening", []string{"API_PORT=" + strconv.Itoa(testenv.FreePort(t)), "JWT_SECRET=x"}},
			{"nexus-worker", "packages/worker/dist/index.js", "nexus-worker: started", nil},
			{"nexus-mcp", "packages/mcp-server/dist/index.js", "nexus-mcp: listening", []string{"MCP_PORT=" + strconv.Itoa(testenv.FreePort(t))}},
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

	t.Run("nexus-memory", func(t *testing.T) {
		for _, sig := range signals {
			port := testenv.FreePort(t)
			p := start(t, nexus, append(env, "MEMORY_PORT="+strconv.Itoa(port)),
				"packages/memory/venv/bin/python", "packages/memory/src/server.py")
			if got := p.get(t, fmt.Sprintf("http://127.0.0.1:%d/health", port)); !strings.Contains(string(got), `"status": "ok"`) {
				t.Errorf("GET /health = %s", got)
			}
			p.stop(t, sig, "nexus-memory: listening")
		}
		out, code := runExit(t, nexus, env, "packages/memory/venv/bin/python", "packages/memory/src/server.py")
		if code != 1 || !strings.Contains(out, "MEMORY_PORT is not set") {
			t.Errorf("without MEMORY_PORT: exit %d, output %q; want exit 1 naming MEMORY_PORT", code, out)
		}
	})
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
		case "PATH", "JWT_SECRET", "API_PORT", "MCP_PORT", "MEMORY_PORT", "WORKER_INTERVAL_MS":
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
