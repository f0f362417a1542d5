package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
