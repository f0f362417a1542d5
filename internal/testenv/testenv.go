// Package testenv finds the real tools the tests run against (PM2, pnpm, tsc, node, python3)
// and gives each test its own PM2 daemon home that is torn down afterwards. Tests fail, not
// skip, when a tool is missing: scripts/install-tools.sh installs them.
package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Root returns the repository root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ToolsBin returns the project-local tools directory (.tools/bin) after checking that the
// default tools are installed there.
func ToolsBin(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(Root(t), ".tools", "bin")
	for _, tool := range []string{"pm2", "pnpm", "tsc"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			t.Fatalf("testenv: %s is not installed in %s: run scripts/install-tools.sh", tool, bin)
		}
	}
	return bin
}

// PATH returns a PATH value with the project-local tools first, then the process's PATH.
func PATH(t testing.TB) string {
	t.Helper()
	return ToolsBin(t) + string(os.PathListSeparator) + os.Getenv("PATH")
}

// PM2 returns the pm2 binary of the given major version (5, 6 or 7).
func PM2(t testing.TB, major int) string {
	t.Helper()
	p := filepath.Join(Root(t), ".tools", "pm2-"+strconv.Itoa(major), "node_modules", ".bin", "pm2")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: pm2 %d is not installed at %s: run scripts/install-tools.sh", major, p)
	}
	return p
}

// Require fails the test unless every named program is on PATH.
func Require(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("testenv: %s is required on PATH: %v", p, err)
		}
	}
}

// ShortTempDir returns a fresh directory with a short path, removed after the test. Unix
// socket paths are limited to 107 bytes, and t.TempDir() paths grow with the test's name,
// so PM2 homes live here.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "lv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// PM2Home returns a fresh PM2_HOME for one test. At cleanup the daemon started under it,
// if any, is killed with pm2Bin kill and, failing that, by the pid in pm2.pid; the apps it
// ran are killed by the process group PM2 gave them.
func PM2Home(t testing.TB, pm2Bin string) string {
	t.Helper()
	home := filepath.Join(ShortTempDir(t), "pm2")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { KillPM2(home, pm2Bin) })
	return home
}

// KillPM2 stops the PM2 daemon under home (and its apps). Safe when none runs.
func KillPM2(home, pm2Bin string) {
	pidFile := filepath.Join(home, "pm2.pid")
	if _, err := os.Stat(pidFile); err != nil {
		return
	}
	cmd := exec.Command(pm2Bin, "kill")
	cmd.Env = append(os.Environ(), "PM2_HOME="+home)
	done := make(chan struct{})
	go func() { cmd.Run(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	}
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePort returns a loopback TCP port that was free a moment ago and that it has not
// returned before in this process (the kernel may hand the same free port to two calls in a
// row, and one config would then name it twice).
func FreePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !given[port] {
			given[port] = true
			return port
		}
	}
}

// Buffer is a bytes.Buffer that is safe for concurrent writers (a logger shared by
// goroutines, a child's stdout and stderr).
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor polls cond every 20 ms until it holds; after timeout it fails the test, naming
// what it waited for.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BuildAgent builds the livinity-agent binary into dir (created if needed) and returns its
// path; the Go build cache makes a second build cheap.
func BuildAgent(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "livinity-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/livinity-agent")
	cmd.Dir = Root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: build the agent: %v\n%s", err, out)
	}
	return bin
}

// ChildEnv is this process's environment for a program a test starts (the agent, a
// supervisor): path as PATH, then extra, and nothing that would make it believe it runs
// under systemd (NOTIFY_SOCKET, WATCHDOG_*, ...) or take another PM2 home or agent config.
func ChildEnv(path string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "PM2_HOME", k == "JOURNAL_STREAM", k == "NOTIFY_SOCKET", k == "INVOCATION_ID",
			strings.HasPrefix(k, "WATCHDOG_"), strings.HasPrefix(k, "LIVINITY_"):
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "PATH="+path), extra...)
}
