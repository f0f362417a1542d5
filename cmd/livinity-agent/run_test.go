package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// TestRunKeepsServingAfterAFailedOnboarding: when the pipeline fails (here: the LivOS
// tree is not there to install), the agent does not exit: it rolls back, keeps serving its
// status socket and metrics with the failure visible, and stops cleanly on request.
func TestRunKeepsServingAfterAFailedOnboarding(t *testing.T) {
	root := testenv.ShortTempDir(t)
	for _, d := range []string{"livos", "nexus"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	port := testenv.FreePort(t)
	_, cfgFile := demoConfig(t, func(c *config.Config) {
		c.Paths = config.Paths{LivosBaseDir: filepath.Join(root, "livos"), NexusBaseDir: filepath.Join(root, "nexus")}
		c.Agent.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", port)
	})
	runtime := testenv.ShortTempDir(t)
	t.Setenv("PATH", testenv.PATH(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- newApp(io.Discard, &stderr).Run(ctx, []string{"livinity-agent", "--config", cfgFile,
			"--state-dir", filepath.Join(runtime, "state"), "--pm2-home", filepath.Join(runtime, "pm2"),
			"--runtime-dir", runtime, "run"})
	}()
	sock := filepath.Join(runtime, statusapi.SocketName)
	deadline := time.Now().Add(60 * time.Second)
	var st statusapi.Status
	for {
		var err error
		st, err = statusapi.Fetch(ctx, sock)
		if err == nil && st.Agent != nil && st.Agent.Setup.Ran {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failed onboarding never showed in the status (last err %v)\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Agent.Setup.OK || !strings.Contains(st.Agent.Setup.Error, "rolled back: step ") ||
		!strings.Contains(st.Agent.Setup.Error, root) {
		t.Fatalf("setup = %+v; want a rolled-back failure naming the step and the tree", st.Agent.Setup)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "livinity_setup_last_run_success 0") {
		t.Fatalf("metrics do not show the failed setup:\n%s", body)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "livos")); len(entries) != 0 {
		t.Fatalf("the failed run was not rolled back: livos holds %v", entries)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop within 15 s")
	}
}

// TestRunChecksThePM2Program: run with a --pm2 that does not exist fails at once, naming
// the flag, the value and the fix (it used to start and fail only when PM2 died).
func TestRunChecksThePM2Program(t *testing.T) {
	_, cfgFile := demoConfig(t, nil)
	runtime := testenv.ShortTempDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := newApp(io.Discard, io.Discard).Run(ctx, []string{"livinity-agent", "--config", cfgFile,
		"--state-dir", filepath.Join(runtime, "state"), "--pm2-home", filepath.Join(runtime, "pm2"),
		"--runtime-dir", runtime, "--pm2", "/nonexistent/bin/pm2", "run"})
	if err == nil || !strings.Contains(err.Error(), `--pm2 "/nonexistent/bin/pm2"`) || !strings.Contains(err.Error(), "install PM2") {
		t.Fatalf("run with a missing pm2: err = %v; want an error naming --pm2, its value and the fix", err)
	}
	if _, err := os.Stat(filepath.Join(runtime, "state")); err == nil {
		t.Error("run went on to onboard with a missing pm2")
	}
}

// TestRunSurvivesSIGHUP: SIGHUP (closing the terminal that ran `run`) used to kill the
// agent silently and leave its status socket behind. The agent logs it and keeps
// serving; after a kill -9 the stale socket is replaced by the next start.
func TestRunSurvivesSIGHUP(t *testing.T) {
	bin := testenv.BuildAgent(t, t.TempDir())
	root := testenv.ShortTempDir(t)
	for _, d := range []string{"livos", "nexus"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	_, cfgFile := demoConfig(t, func(c *config.Config) {
		c.Paths = config.Paths{LivosBaseDir: filepath.Join(root, "livos"), NexusBaseDir: filepath.Join(root, "nexus")}
		c.Agent.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	})
	runtime := testenv.ShortTempDir(t)
	sock := filepath.Join(runtime, statusapi.SocketName)
	start := func() (*exec.Cmd, *testenv.Buffer) {
		var out testenv.Buffer
		cmd := exec.Command(bin, "--config", cfgFile, "--state-dir", filepath.Join(runtime, "state"),
			"--pm2-home", filepath.Join(runtime, "pm2"), "--runtime-dir", runtime, "run")
		cmd.Env = append(os.Environ(), "PATH="+testenv.PATH(t))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		testenv.WaitFor(t, "the status socket", 60*time.Second, func() bool {
			_, err := statusapi.Fetch(context.Background(), sock)
			return err == nil
		})
		return cmd, &out
	}
	first, out := start()
	if err := first.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the SIGHUP logged", 10*time.Second, func() bool { return strings.Contains(out.String(), "SIGHUP") })
	time.Sleep(500 * time.Millisecond)
	if _, err := statusapi.Fetch(context.Background(), sock); err != nil {
		t.Fatalf("after SIGHUP the status socket does not answer: %v\n%s", err, out.String())
	}
	if err := first.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the agent died of SIGHUP: %v", err)
	}
	// a dead agent's socket file is left behind, and replaced at the next start
	first.Process.Kill()
	first.Wait()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("no stale socket after kill -9: %v", err)
	}
	second, _ := start()
	second.Process.Signal(syscall.SIGTERM)
	second.Wait()
}

// TestRunReportsAFailedPreflightLikeOnboard: run runs the preflight that onboard runs (it
// used to skip it), and a critical failure reaches the status with onboard's own error.
func TestRunReportsAFailedPreflightLikeOnboard(t *testing.T) {
	root := testenv.ShortTempDir(t)
	for _, d := range []string{"livos", "nexus"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	_, cfgFile := demoConfig(t, func(c *config.Config) {
		c.Paths = config.Paths{LivosBaseDir: filepath.Join(root, "livos"), NexusBaseDir: filepath.Join(root, "nexus")}
		c.Agent.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		c.Agent.Preflight.MinNodeMajor = 99
	})
	runtime := testenv.ShortTempDir(t)
	args := []string{"--config", cfgFile, "--state-dir", filepath.Join(runtime, "state"), "--pm2-home", filepath.Join(runtime, "pm2"),
		"--runtime-dir", runtime}
	_, _, onboardErr := runCLI(t, append(args, "onboard")...)
	if onboardErr == nil || !strings.HasPrefix(onboardErr.Error(), "preflight: critical check failed: Node.js") {
		t.Fatalf("onboard with minNodeMajor 99: %v; want a critical Node.js failure", onboardErr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stderr testenv.Buffer
	go func() {
		done <- newApp(io.Discard, &stderr).Run(ctx, append([]string{"livinity-agent"}, append(args, "run")...))
	}()
	var setup statusapi.Setup
	testenv.WaitFor(t, "the failed onboarding in the status", 60*time.Second, func() bool {
		st, err := statusapi.Fetch(ctx, filepath.Join(runtime, statusapi.SocketName))
		if err == nil && st.Agent != nil {
			setup = st.Agent.Setup
		}
		return setup.Ran
	})
	if setup.OK || setup.Error != onboardErr.Error() {
		t.Errorf("run's setup: %+v\nwant onboard's error: %v\n%s", setup, onboardErr, stderr.String())
	}
	if !strings.Contains(stderr.String(), "check=Node.js status=FAIL") || !strings.Contains(stderr.String(), "onboarding failed in the preflight") {
		t.Errorf("run does not log the preflight's checks and its failure:\n%s", stderr.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop within 15 s")
	}
}
