package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
)

// TestMain removes the binary agentBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if agentPath != "" {
		os.RemoveAll(filepath.Dir(agentPath))
	}
	os.Exit(code)
}

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// agentBinary is the real livinity-agent binary, built once per test run (with the VCS
// stamp, which `version` reads).
func agentBinary(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lvbin")
		if err != nil {
			agentErr = err
			return
		}
		agentPath = filepath.Join(dir, "livinity-agent")
		cmd := exec.Command("go", "build", "-buildvcs=true", "-o", agentPath, "./cmd/livinity-agent")
		cmd.Dir = testenv.Root(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = errors.New("build the agent: " + err.Error() + "\n" + string(out))
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

// runBinary runs the real binary with the tools on PATH and returns its output and exit code.
func runBinary(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(agentBinary(t), args...)
	cmd.Env = append(append(os.Environ(), "PATH="+testenv.PATH(t), "NO_COLOR=1"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestExitCodes: a command line the agent does not understand exits 2 with one line naming
// the problem and the nearest name; 3 stays status's "agent not running".
func TestExitCodes(t *testing.T) {
	runtime := t.TempDir()
	home := filepath.Join(testenv.ShortTempDir(t), "pm2") // no daemon runs there
	env := []string{"LIVINITY_RUNTIME_DIR=" + runtime, "LIVINITY_PM2_HOME=" + home}
	_, cfg := demoConfig(t, nil)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"mistyped command", []string{"stauts"}, 2, `"stauts" is not a command (did you mean "status"?)`},
		{"unknown command", []string{"frobnicate"}, 2, `"frobnicate" is not a command; see`},
		{"mistyped flag", []string{"status", "--jsno"}, 2, "--jsno is not a flag of livinity-agent status (did you mean --json?)"},
		{"mistyped global flag", []string{"--stat-dir", "/tmp", "history"}, 2, "(did you mean --state-dir?)"},
		{"bad flag value", []string{"onboard", "--jobs", "many"}, 2, `invalid value "many"`},
		{"argument to a command that takes none", []string{"history", "extra"}, 2, `history takes no arguments, got "extra"`},
		{"unknown shell", []string{"completion", "tcsh"}, 2, `"tcsh" is not a shell`},
		{"flag of a shell", []string{"completion", "bash", "--zsh"}, 2, "--zsh is not a flag of livinity-agent completion bash"},
		{"bad log format", []string{"--log-format", "yaml", "history"}, 2, `--log-format: "yaml" is not a format`},
		{"bad log level", []string{"--log-level", "loud", "history"}, 2, `--log-level: "loud" is not a level`},
		{"agent not running", []string{"status"}, 3, "agent not running"},
		{"invalid config", []string{"--config", "/nonexistent/setup.json", "check"}, 1, "/nonexistent/setup.json"},
		{"valid config", []string{"--config", cfg, "check"}, 0, ""},
		{"version", []string{"version"}, 0, ""},
		{"help", []string{"--help"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runBinary(t, env, tc.args...)
			if code != tc.code {
				t.Fatalf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("%v: stderr lacks %q:\n%s", tc.args, tc.want, stderr)
			}
			if tc.code == exitUsage {
				if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || stdout != "" {
					t.Errorf("%v: a usage error is one line on stderr and nothing on stdout; got stdout %q, stderr:\n%s", tc.args, stdout, stderr)
				}
				if !strings.Contains(stderr, "--help`") {
					t.Errorf("%v: no hint to --help: %s", tc.args, stderr)
				}
			}
		})
	}
}

// TestCompletionLoadsInBash sources the bash script in a real bash and asks it for the
// completions of "livinity-agent sta", which the binary answers. Without the
// bash-completion package (which an interactive shell has), its one helper the script
// calls is stood in for.
func TestCompletionLoadsInBash(t *testing.T) {
	bin := agentBinary(t)
	testenv.Require(t, "bash")
	script := `set -e
source <("$BIN" completion bash)
complete -p livinity-agent
declare -F _get_comp_words_by_ref >/dev/null || _get_comp_words_by_ref() { :; }
COMP_WORDS=(livinity-agent sta); COMP_CWORD=1; COMP_LINE="livinity-agent sta"; COMP_POINT=${#COMP_LINE}
__livinity-agent_bash_autocomplete
echo "REPLY: ${COMPREPLY[*]}"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "BIN="+bin, "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash could not load the completion script: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "complete -o bashdefault") || !strings.Contains(string(out), "-F __livinity-agent_bash_autocomplete livinity-agent") {
		t.Errorf("the script registered no completion for livinity-agent:\n%s", out)
	}
	if !strings.Contains(string(out), "REPLY: status") {
		t.Errorf("completing `livinity-agent sta` did not offer status:\n%s", out)
	}
	for _, shell := range []string{"zsh", "fish"} {
		stdout, stderr, code := runBinary(t, nil, "completion", shell)
		if code != 0 || !strings.Contains(stdout, "livinity-agent") {
			t.Errorf("completion %s: exit %d, stderr %s, script:\n%s", shell, code, stderr, stdout)
		}
	}
}

// TestVersionFromBuildInfo: without -ldflags, version and revision come from the build info
// Go stamped into the binary.
func TestVersionFromBuildInfo(t *testing.T) {
	bin := agentBinary(t)
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	var modVersion, rev, modified string
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "mod":
			modVersion = f[2]
		case len(f) >= 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision="):
			rev = strings.TrimPrefix(f[1], "vcs.revision=")
		case len(f) >= 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.modified="):
			modified = strings.TrimPrefix(f[1], "vcs.modified=")
		}
	}
	if rev == "" || modVersion == "" || modVersion == "(devel)" {
		t.Fatalf("the test binary has no VCS stamp (is the repository a git checkout?):\n%s", info)
	}
	if modified == "true" {
		rev += "-dirty"
	}
	stdout, _, code := runBinary(t, nil, "version")
	want := "livinity-agent " + modVersion + " (revision " + rev + ", go"
	if code != 0 || !strings.HasPrefix(stdout, want) {
		t.Fatalf("version = %q (exit %d); want it to start with %q", stdout, code, want)
	}
	if stdout, _, _ := runBinary(t, nil, "--version"); !strings.Contains(stdout, modVersion) || !strings.Contains(stdout, rev) {
		t.Errorf("--version = %q; want %s and %s", stdout, modVersion, rev)
	}
}

// TestLogFormatJSON: --log-format json makes every log line a JSON object, logfmt a
// key=value line.
func TestLogFormatJSON(t *testing.T) {
	_, cfg := demoConfig(t, nil)
	for format, check := range map[string]func(string) bool{
		"json":   func(l string) bool { return strings.HasPrefix(l, "{") && strings.Contains(l, `"level":"INFO"`) },
		"logfmt": func(l string) bool { return strings.HasPrefix(l, "time=") && strings.Contains(l, "level=INFO") },
	} {
		dir := testenv.ShortTempDir(t)
		// a dry run logs the preflight's checks and changes nothing
		_, stderr, code := runBinary(t, nil, "--log-format", format, "--config", cfg, "--state-dir", filepath.Join(dir, "state"),
			"--pm2-home", filepath.Join(dir, "pm2"), "onboard", "--dry-run")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, stderr)
		}
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if len(lines) < 3 {
			t.Fatalf("%s: want the preflight's log lines, got:\n%s", format, stderr)
		}
		for _, l := range lines {
			if !check(l) {
				t.Errorf("%s: line %q is not %s", format, l, format)
			}
		}
	}
}

// TestDemoConfigStaysOffTheRealPorts: the config `demo` writes keeps the demo away from a
// real box's ports and the real agent's metrics port, and says which Node it allows.
func TestDemoConfigStaysOffTheRealPorts(t *testing.T) {
	dir := filepath.Join(testenv.ShortTempDir(t), "demo")
	// the demo's own ports are fixed (18080, 13100-13300): on a machine that runs the demo
	// already, the dry run's preflight fails on them, after the config is written
	_, stderr, code := runBinary(t, nil, "demo", "--dir", dir, "--dry-run")
	if code != 0 && !strings.Contains(stderr, "Ports") {
		t.Fatalf("demo --dry-run: exit %d: %s", code, stderr)
	}
	cfg, err := config.Load(filepath.Join(dir, "setup.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Agent.Metrics.Listen != "127.0.0.1:19847" {
		t.Errorf("the demo's metrics listen on %s; want 127.0.0.1:19847, off the real agent's 9847", cfg.Agent.Metrics.Listen)
	}
	d := config.Default()
	for _, p := range []int{cfg.Ports.API, cfg.Ports.MCP, cfg.Ports.Memory, cfg.Ports.Livos} {
		if p == d.Ports.API || p == d.Ports.MCP || p == d.Ports.Memory || p == d.Ports.Livos || p == 9847 {
			t.Errorf("the demo takes port %d of a real box", p)
		}
	}
	if d.Agent.Preflight.MinNodeMajor != 22 || cfg.Agent.Preflight.MinNodeMajor > 22 {
		t.Errorf("minNodeMajor: default %d (LivOS needs 22), demo %d", d.Agent.Preflight.MinNodeMajor, cfg.Agent.Preflight.MinNodeMajor)
	}
}
