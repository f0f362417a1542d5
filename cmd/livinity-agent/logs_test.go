package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/setup/ecosystem"
)

// talker prints a numbered line to stdout and one to stderr every 50 ms.
const talker = `let n = 0;
console.log("hello from " + process.env.NAME);
setInterval(() => { n++; console.log(process.env.NAME + " out " + n); console.error(process.env.NAME + " err " + n); }, 50);
`

// logsBox starts two apps that print, alpha and beta, under a real PM2 from an ecosystem
// file in the state dir, as the pipeline writes it; gamma is named there but not started,
// its output file written by hand. No agent runs.
func logsBox(t *testing.T) (stateDir string, env []string) {
	t.Helper()
	pm2 := filepath.Join(testenv.ToolsBin(t), "pm2")
	home := testenv.PM2Home(t, pm2)
	root := testenv.ShortTempDir(t)
	stateDir = filepath.Join(root, "state")
	logDir := filepath.Join(root, "logs")
	for _, d := range []string{stateDir, logDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "talker.js"), []byte(talker), 0o644); err != nil {
		t.Fatal(err)
	}
	var apps []ecosystem.App
	for _, name := range []string{"alpha", "beta", "gamma"} {
		apps = append(apps, ecosystem.App{Name: name, Script: "talker.js", Interpreter: "node", Cwd: root,
			Env: map[string]string{"NAME": name}, Autorestart: true, KillTimeout: 1000,
			OutFile: filepath.Join(logDir, name+"-out.log"), ErrorFile: filepath.Join(logDir, name+"-error.log"),
			LogFile: filepath.Join(logDir, name+"-combined.log"), Time: true})
	}
	b, err := ecosystem.Render(apps)
	if err != nil {
		t.Fatal(err)
	}
	eco := filepath.Join(stateDir, ecosystemFile)
	if err := os.WriteFile(eco, b, 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour).Format(pm2TimeLayout)
	recent := time.Now().Add(-time.Minute).Format(pm2TimeLayout)
	os.WriteFile(filepath.Join(logDir, "gamma-out.log"), []byte(old+": gamma old line\n"+recent+": gamma recent line\n"), 0o644)
	start := exec.Command(pm2, "start", eco, "--only", "alpha,beta")
	start.Env = append(os.Environ(), "PM2_HOME="+home, "PATH="+testenv.PATH(t))
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("pm2 start: %v\n%s", err, out)
	}
	testenv.WaitFor(t, "both apps to have printed 15 lines", 30*time.Second, func() bool {
		for _, n := range []string{"alpha", "beta"} {
			b, _ := os.ReadFile(filepath.Join(logDir, n+"-error.log"))
			if !strings.Contains(string(b), n+" err 15\n") {
				return false
			}
		}
		return true
	})
	return stateDir, []string{"LIVINITY_STATE_DIR=" + stateDir}
}

func TestLogs(t *testing.T) {
	stateDir, env := logsBox(t)

	// one service: its output and its errors, PM2's timestamps kept
	stdout, stderr, code := runBinary(t, env, "logs", "alpha", "-n", "6")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 6 {
		t.Fatalf("logs alpha -n 6: exit %d, %d lines:\n%s\n%s", code, len(lines), stdout, stderr)
	}
	var outs, errs int
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "alpha     | ") && strings.Contains(l, ": alpha out "):
			outs++
		case strings.HasPrefix(l, "alpha:err | ") && strings.Contains(l, ": alpha err "):
			errs++
		default:
			t.Errorf("line %q is not alpha's, with its stream and PM2's timestamp", l)
		}
	}
	if outs == 0 || errs == 0 {
		t.Errorf("want output and errors interleaved, got %d and %d:\n%s", outs, errs, stdout)
	}

	// all services, each line with its name (gamma's lines are older than the last 40)
	stdout, _, code = runBinary(t, env, "logs", "-n", "40")
	if strings.Contains(stdout, "gamma") {
		t.Errorf("logs -n 40: gamma's hour-old lines are not among the last 40:\n%s", stdout)
	}
	stdout, _, code = runBinary(t, env, "logs", "-n", "0")
	for _, want := range []string{"alpha     | ", "alpha:err | ", "beta      | ", "beta:err  | ", "gamma     | "} {
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("logs (all): exit %d, no line prefixed %q:\n%s", code, want, stdout)
		}
	}

	// --since: only what is recent enough
	stdout, _, _ = runBinary(t, env, "logs", "gamma", "--since", "1h")
	if !strings.Contains(stdout, "gamma recent line") || strings.Contains(stdout, "gamma old line") {
		t.Errorf("logs gamma --since 1h:\n%s", stdout)
	}
	stdout, _, _ = runBinary(t, env, "logs", "gamma", "-n", "0")
	if !strings.Contains(stdout, "gamma old line") {
		t.Errorf("logs gamma -n 0 (all):\n%s", stdout)
	}

	// an unknown service is refused with the names
	_, stderr, code = runBinary(t, env, "logs", "delta")
	if code != exitUsage || !strings.Contains(stderr, `"delta" is not a service; the services are alpha, beta, gamma`) {
		t.Errorf("logs delta: exit %d: %s", code, stderr)
	}

	// the shell completes SERVICE with the names
	stdout, _, _ = runBinary(t, env, "logs", "--generate-shell-completion")
	if stdout != "alpha\nbeta\ngamma\n" {
		t.Errorf("logs completions = %q; want the three names", stdout)
	}
	if stdout, _, _ = runBinary(t, env, "logs", "--fo", "--generate-shell-completion"); !strings.Contains(stdout, "--follow") {
		t.Errorf("logs --fo completions = %q; want --follow", stdout)
	}

	// a pipeline step's log
	os.MkdirAll(filepath.Join(stateDir, "logs"), 0o700)
	os.WriteFile(filepath.Join(stateDir, "logs", "build-ui.log"), []byte("vite v5\nbuilt in 3s\n"), 0o600)
	stdout, _, code = runBinary(t, env, "logs", "--step", "build-ui")
	if code != 0 || stdout != "vite v5\nbuilt in 3s\n" {
		t.Errorf("logs --step build-ui: exit %d:\n%q", code, stdout)
	}
	_, stderr, code = runBinary(t, env, "logs", "--step", "build-iu")
	if code != exitUsage || !strings.Contains(stderr, "the steps are build-ui") {
		t.Errorf("logs --step build-iu: exit %d: %s", code, stderr)
	}
}

// TestLogsFollow: -f prints the lines a service writes after it started, and ends on
// SIGINT with exit 0.
func TestLogsFollow(t *testing.T) {
	_, env := logsBox(t)
	cmd := exec.Command(agentBinary(t), "logs", "beta", "-f", "-n", "1")
	cmd.Env = append(append(os.Environ(), "PATH="+testenv.PATH(t)), env...)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	testenv.WaitFor(t, "30 lines followed", 20*time.Second, func() bool { return strings.Count(out.String(), "\n") >= 30 })
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("logs -f after SIGINT: %v\n%s", err, out.String())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("logs -f did not stop on SIGINT")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	outs, errs := 0, 0
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "beta     | "):
			outs++
		case strings.HasPrefix(l, "beta:err | "):
			errs++
		default:
			t.Errorf("followed line %q is not beta's", l)
		}
	}
	if outs < 5 || errs < 5 {
		t.Errorf("followed %d output and %d error lines; want both streams:\n%s", outs, errs, out.String())
	}
}
