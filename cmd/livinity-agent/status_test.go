package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/urfave/cli/v3"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/state"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

var livosServices = []string{"livos", "nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"}

// runStatusCLI runs livinity-agent with args in-process and returns its exit code (as
// main would exit) and error.
func runStatusCLI(ctx context.Context, stdout, stderr io.Writer, args ...string) (int, error) {
	err := newApp(stdout, stderr).Run(ctx, append([]string{"livinity-agent"}, args...))
	if err == nil {
		return 0, nil
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode(), err
	}
	return -1, err
}

// readyStore is a store with the five services ready, as a supervisor would have it.
func readyStore() *state.Store {
	now := time.Now()
	s := state.New(state.Agent{
		Version: "1.2.3", Started: now.Add(-3 * time.Hour), PM2Connected: true,
		Setup: state.Setup{Ran: true, OK: true, At: now.Add(-3 * time.Hour), DurationSeconds: 273},
	}, livosServices)
	for i, n := range livosServices {
		s.Update(n, func(sv *state.Service) {
			sv.Phase, sv.Ready, sv.PM2Status = state.Ready, true, "online"
			sv.PID = 4242 + i
			sv.Started = now.Add(-2 * time.Hour)
			sv.MemoryBytes, sv.MemoryKind, sv.MemoryLimitBytes = 187<<20+100<<10, "pss", 500<<20
			sv.CPUPercent, sv.CPUMeasured = 2.5, true
			sv.LastProbe = state.ProbeResult{Type: "readiness", OK: true, Outcome: "success",
				Duration: 1234 * time.Microsecond, At: now.Add(-time.Second)}
		})
	}
	return s
}

// degrade puts nexus-memory in backoff after two crashes and a failed liveness probe.
func degrade(s *state.Store) {
	now := time.Now()
	s.Update("nexus-memory", func(sv *state.Service) {
		sv.Phase, sv.Ready, sv.PM2Status, sv.PID = state.Backoff, false, "errored", 0
		sv.Restarts[state.ReasonCrash] = 2
		sv.Restarts[state.ReasonProbe] = 1
		sv.PM2Restarts = 17
		sv.MemoryBytes, sv.MemoryKind = 0, ""
		sv.LastProbe = state.ProbeResult{Type: "liveness", OK: false, Outcome: "failure", Duration: 2 * time.Second,
			Error: "GET http://127.0.0.1:3300/health: timeout after 2s", At: now.Add(-3 * time.Second)}
		sv.NextAttempt = now.Add(5 * time.Minute)
		sv.Detail = "crashed twice; waiting before the next restart"
	})
}

// serveStatus serves store on a status socket in a fresh runtime directory until the test
// ends, and returns the directory once the socket answers.
func serveStatus(t *testing.T, store *state.Store) string {
	t.Helper()
	dir := testenv.ShortTempDir(t)
	path := filepath.Join(dir, statusapi.SocketName)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&statusapi.Server{Path: path, Store: store}).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("status server: %v", err)
		}
	})
	waitUntil(t, 10*time.Second, func() bool {
		_, err := statusapi.Fetch(t.Context(), path)
		return err == nil
	}, "status socket "+path+" answers")
	return dir
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, limit time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStatusAllReady(t *testing.T) {
	dir := serveStatus(t, readyStore())
	var out, errOut bytes.Buffer
	code, err := runStatusCLI(t.Context(), &out, &errOut, "--runtime-dir", dir, "status")
	if code != 0 {
		t.Fatalf("exit %d (%v), want 0; output:\n%s%s", code, err, out.String(), errOut.String())
	}
	text := out.String()
	for _, want := range []string{
		"agent 1.2.3, up 3h00m, setup ok in 4m33s, pm2 connected",
		"SERVICE", "MEMORY (TREE)", "LAST PROBE", "NEXT RETRY",
		"5/5 services ready",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	for i, n := range livosServices {
		row := regexp.MustCompile(`(?m)^` + n + `\s+ready\s+yes\s+` + strconv.Itoa(4242+i) +
			`\s+2h00m\s+187\.1 MiB pss\s+2\.5%\s+0\s+ok 1\.2ms\s+-$`)
		if !row.MatchString(text) {
			t.Errorf("no row for %s matching %s:\n%s", n, row, text)
		}
	}
	if strings.ContainsRune(text, '\x1b') {
		t.Errorf("escape sequences in output that is not a terminal:\n%q", text)
	}
}

func TestStatusDegraded(t *testing.T) {
	store := readyStore()
	degrade(store)
	dir := serveStatus(t, store)
	var out, errOut bytes.Buffer
	code, err := runStatusCLI(t.Context(), &out, &errOut, "--runtime-dir", dir, "status")
	if code != 1 || err == nil || !strings.Contains(err.Error(), "degraded: 4 of 5 services ready") {
		t.Fatalf("exit %d (%v), want 1 saying degraded; output:\n%s", code, err, out.String())
	}
	text := out.String()
	row := regexp.MustCompile(`(?m)^nexus-memory\s+backoff\s+no\s+-\s+-\s+-\s+-\s+3 \(crash 2, probe 1\)\s+` +
		`failure: GET http://127\.0\.0\.1:3300/health: timeout after 2s\s+in 4m\d\ds$`)
	if !row.MatchString(text) {
		t.Errorf("no nexus-memory row matching %s:\n%s", row, text)
	}
	for _, want := range []string{"4/5 services ready", "  nexus-memory: crashed twice; waiting before the next restart"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	store := readyStore()
	degrade(store)
	dir := serveStatus(t, store)
	var out, errOut bytes.Buffer
	code, err := runStatusCLI(t.Context(), &out, &errOut, "--runtime-dir", dir, "status", "--json")
	if code != 1 {
		t.Fatalf("exit %d (%v), want 1", code, err)
	}
	if !strings.HasPrefix(out.String(), "{\n  \"schema\": 1,\n  \"source\": \"agent\",") {
		t.Fatalf("not the indented status document:\n%s", out.String())
	}
	var doc statusapi.Status
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatalf("decode --json output: %v\n%s", err, out.String())
	}
	// The same document as the store gives at that instant (the store did not change).
	want, _ := json.MarshalIndent(statusapi.FromSnapshot(store.Snapshot(), doc.At), "", "  ")
	if got := strings.TrimSuffix(out.String(), "\n"); got != string(want) {
		t.Fatalf("--json output differs from the store's document:\ngot:\n%s\nwant:\n%s", got, want)
	}
	if errOut.Len() != 0 {
		t.Fatalf("stderr not empty: %s", errOut.String())
	}
}

func TestStatusUnreadableSocket(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	ln, err := net.Listen("unix", filepath.Join(dir, statusapi.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	var out, errOut bytes.Buffer
	code, err := runStatusCLI(t.Context(), &out, &errOut, "--runtime-dir", dir, "status")
	if code != 4 || err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("exit %d (%v), want 4 naming the answer", code, err)
	}
}

func TestStatusRejectsShortInterval(t *testing.T) {
	var out, errOut bytes.Buffer
	_, err := runStatusCLI(t.Context(), &out, &errOut, "--runtime-dir", testenv.ShortTempDir(t), "status", "--interval", "10ms")
	if err == nil || !strings.Contains(err.Error(), "--interval: 10ms is too short") {
		t.Fatalf("err = %v", err)
	}
}

// Without an agent and without a PM2 daemon: exit 3, both said, and no daemon started.
func TestStatusNoAgentNoPM2(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	home := filepath.Join(testenv.ShortTempDir(t), "pm2")
	for _, tc := range []struct {
		name string
		args []string
	}{{"table", nil}, {"json", []string{"--json"}}} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code, err := runStatusCLI(t.Context(), &out, &errOut,
				append([]string{"--runtime-dir", dir, "--pm2-home", home, "status"}, tc.args...)...)
			if code != 3 {
				t.Fatalf("exit %d (%v), want 3", code, err)
			}
			said := out.String()
			if tc.name == "json" {
				if out.Len() != 0 {
					t.Fatalf("--json printed a document with nothing running:\n%s", out.String())
				}
				said = errOut.String()
			}
			for _, want := range []string{"agent not running", filepath.Join(dir, statusapi.SocketName),
				"no PM2 daemon runs either", pm2.RPCSocket(home)} {
				if !strings.Contains(said, want) {
					t.Errorf("output lacks %q:\n%s", want, said)
				}
			}
		})
	}
	for _, f := range []string{"pm2.pid", "rpc.sock", "pub.sock"} {
		if _, err := os.Stat(filepath.Join(home, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after status (a daemon was started?): %v", f, err)
		}
	}
}

// tinyApp idles, with a child process that holds 128 MiB: PM2 sees the parent's memory
// only, the tree measurement both.
const tinyApp = `const { spawn } = require('child_process');
const child = spawn(process.execPath, ['-e', 'const b = Buffer.alloc(128 * 1024 * 1024, 1); setInterval(() => b[0]++, 1000)'], { stdio: 'ignore' });
setInterval(() => {}, 1000);
process.on('SIGINT', () => { child.kill(); process.exit(0); });
`

// Without an agent but with a real PM2 daemon: exit 3 and PM2's view, memory of the tree.
func TestStatusFallsBackToPM2(t *testing.T) {
	bin := testenv.PM2(t, 7)
	home := testenv.PM2Home(t, bin)
	dir := testenv.ShortTempDir(t) // no agent here
	app := filepath.Join(t.TempDir(), "tiny.js")
	if err := os.WriteFile(app, []byte(tinyApp), 0o644); err != nil {
		t.Fatal(err)
	}
	const secret = "lv-secret-7f3a9c2e41b7d6a0"
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := exec.CommandContext(ctx, bin, "start", app, "--name", "tiny")
	start.Env = append(os.Environ(), "PM2_HOME="+home, "PATH="+testenv.PATH(t), "LV_API_TOKEN="+secret)
	if b, err := start.CombinedOutput(); err != nil {
		t.Fatalf("pm2 start: %v\n%s", err, b)
	}

	args := []string{"--runtime-dir", dir, "--pm2-home", home, "status"}
	var doc statusapi.Status
	var raw string
	waitUntil(t, 30*time.Second, func() bool {
		var out, errOut bytes.Buffer
		code, err := runStatusCLI(t.Context(), &out, &errOut, append(args, "--json")...)
		if code != 3 {
			t.Fatalf("status --json: exit %d (%v), want 3\n%s", code, err, errOut.String())
		}
		raw = out.String() + errOut.String()
		doc = statusapi.Status{}
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
			t.Fatalf("decode: %v\n%s", err, out.String())
		}
		return len(doc.Services) == 1 && doc.Services[0].PM2Status == "online" && doc.Services[0].MemoryBytes >= 128<<20
	}, "PM2's view shows tiny online with its child's 128 MiB")

	c, err := pm2.Dial(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil || len(procs) != 1 {
		t.Fatalf("pm2 list: %v %+v", err, procs)
	}
	sv := doc.Services[0]
	if doc.Source != statusapi.SourcePM2 || doc.Agent != nil || doc.Ready || sv.Name != "tiny" ||
		sv.State != statusapi.StateUnknown || sv.PID != procs[0].PID || sv.MemoryKind == "" {
		t.Fatalf("PM2's view = %+v, service %+v; PM2 says pid %d", doc, sv, procs[0].PID)
	}
	if !strings.Contains(raw, `"agent": null`) || !strings.Contains(raw, "showing PM2's view") {
		t.Fatalf("json output:\n%s", raw)
	}
	t.Logf("tree memory %d bytes (%s); PM2's own figure for the main pid %d bytes", sv.MemoryBytes, sv.MemoryKind, procs[0].MonitMemory)

	var out, errOut bytes.Buffer
	code, err := runStatusCLI(t.Context(), &out, &errOut, args...)
	if code != 3 {
		t.Fatalf("status: exit %d (%v), want 3", code, err)
	}
	text := out.String()
	for _, want := range []string{"agent not running", "showing PM2's view", "1/1 apps online"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	row := regexp.MustCompile(`(?m)^tiny\s+online\s+` + strconv.Itoa(sv.PID) + `\s+\d+s\s+\d+\.\d MiB (pss|rss)\s+0$`)
	if !row.MatchString(text) {
		t.Errorf("no row matching %s:\n%s", row, text)
	}
	if strings.Contains(text+errOut.String()+raw, secret) {
		t.Fatal("the app's environment leaked into the status output")
	}
}

// Colors on a terminal, none with NO_COLOR set.
func TestStatusColorsOnlyOnATerminalWithoutNoColor(t *testing.T) {
	store := readyStore()
	degrade(store)
	dir := serveStatus(t, store)
	onTTY := func(t *testing.T) string {
		ptmx, tty, err := pty.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		var got bytes.Buffer
		read := make(chan struct{})
		go func() { io.Copy(&got, ptmx); close(read) }() // ends with EIO once tty is closed
		var errOut bytes.Buffer
		code, err := runStatusCLI(t.Context(), tty, &errOut, "--runtime-dir", dir, "status")
		tty.Close()
		<-read
		if code != 1 {
			t.Fatalf("exit %d (%v), want 1", code, err)
		}
		if !strings.Contains(got.String(), "nexus-memory") {
			t.Fatalf("terminal output lacks the table:\n%s", got.String())
		}
		return got.String()
	}
	t.Run("color", func(t *testing.T) {
		t.Setenv("NO_COLOR", "")
		if text := onTTY(t); !strings.Contains(text, "\x1b[31mbackoff") && !strings.Contains(text, "\x1b[33mbackoff") {
			t.Fatalf("no colored state on a terminal:\n%q", text)
		}
	})
	t.Run("NO_COLOR", func(t *testing.T) {
		t.Setenv("NO_COLOR", "1")
		if text := onTTY(t); strings.ContainsRune(text, '\x1b') {
			t.Fatalf("escape sequences with NO_COLOR set:\n%q", text)
		}
	})
}

// --watch shows every change and stops when its context ends.
func TestStatusWatchStopsWithContext(t *testing.T) {
	store := readyStore()
	dir := serveStatus(t, store)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut testenv.Buffer
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := runStatusCLI(ctx, &out, &errOut, "--runtime-dir", dir, "status", "--watch", "--interval", "100ms")
		done <- result{code, err}
	}()
	waitUntil(t, 10*time.Second, func() bool { return strings.Count(out.String(), "5/5 services ready") >= 2 },
		"two refreshes show 5/5 ready")
	degrade(store)
	waitUntil(t, 10*time.Second, func() bool { return strings.Contains(out.String(), "4/5 services ready") },
		"a refresh shows the degraded service")
	cancel()
	select {
	case r := <-done:
		if r.code != 1 {
			t.Fatalf("watch ended with exit %d (%v), want 1 (the last look was degraded)", r.code, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--watch did not stop after its context was canceled")
	}
	if strings.ContainsRune(out.String(), '\x1b') {
		t.Fatal("--watch cleared the screen of something that is not a terminal")
	}
}

// On a terminal --watch redraws in place: it clears the screen before each refresh.
func TestStatusWatchClearsATerminal(t *testing.T) {
	dir := serveStatus(t, readyStore())
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var got testenv.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&got, ptmx); close(read) }() // ends with EIO once tty is closed
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		code, _ := runStatusCLI(ctx, tty, io.Discard, "--runtime-dir", dir, "status", "--watch", "--interval", "100ms")
		done <- code
	}()
	waitUntil(t, 10*time.Second, func() bool { return strings.Count(got.String(), "\x1b[H\x1b[2J") >= 2 },
		"two refreshes clear the terminal")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("watch ended with exit %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("--watch did not stop after its context was canceled")
	}
	tty.Close()
	<-read
	if !strings.Contains(got.String(), "5/5 services ready") {
		t.Fatalf("terminal output lacks the table:\n%q", got.String())
	}
}

// TestStatusOperatorStopped: a service the operator stopped does not make the box degraded
// (exit 0), and the summary says it is held and how to start it.
func TestStatusOperatorStopped(t *testing.T) {
	store := readyStore()
	store.Update("nexus-worker", func(sv *state.Service) {
		sv.Phase, sv.Ready, sv.Detail = state.Stopped, false, "stopped by the operator"
		sv.OperatorStopped = true
	})
	dir := serveStatus(t, store)
	var out, errOut bytes.Buffer
	code, err := runStatusCLI(t.Context(), &out, &errOut, "--runtime-dir", dir, "status")
	if code != 0 || err != nil {
		t.Fatalf("exit %d (%v), want 0: an operator's stop is no degradation; output:\n%s", code, err, out.String())
	}
	if want := "4/5 services ready (1 stopped by the operator: livinity-agent start SERVICE)"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}
