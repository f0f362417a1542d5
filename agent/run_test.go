package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/history"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// TestRunRetriesAFailedPreflight: run goes through the same preflight as onboard. A
// critical failure (here: a port held by another program) is an onboarding failure: it
// shows in the status with the preflight's error, changes nothing, records nothing in the
// history, and is tried again under run's backoff; once the port is free, the next attempt
// runs the pipeline (which fails here, the trees being empty, and is rolled back).
func TestRunRetriesAFailedPreflight(t *testing.T) {
	root := testenv.ShortTempDir(t)
	for _, d := range []string{"livos", "nexus"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg := demo.Config(root, 20)
	cfg.Paths = config.Paths{LivosBaseDir: filepath.Join(root, "livos"), NexusBaseDir: filepath.Join(root, "nexus")}
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t),
		Livos: held.Addr().(*net.TCPAddr).Port}
	cfg.Agent.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("PATH", testenv.PATH(t))
	runtime := testenv.ShortTempDir(t)
	stateDir := filepath.Join(runtime, "state")
	var logs testenv.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, StateDir: stateDir, PM2Home: filepath.Join(runtime, "pm2"), PM2: "pm2",
			Logger: slog.New(slog.NewTextHandler(&logs, nil))},
			RunOptions{RuntimeDir: runtime, Version: "test",
				retry: func() backoff.BackOff { return backoff.NewConstantBackOff(300 * time.Millisecond) }})
	}()
	sock := filepath.Join(runtime, statusapi.SocketName)
	setup := func(what string, cond func(statusapi.Setup) bool) statusapi.Setup {
		t.Helper()
		var last statusapi.Setup
		testenv.WaitFor(t, what, 60*time.Second, func() bool {
			st, err := statusapi.Fetch(ctx, sock)
			if err != nil || st.Agent == nil {
				return false
			}
			last = st.Agent.Setup
			return cond(last)
		})
		return last
	}

	s := setup("a failed onboarding in the status", func(s statusapi.Setup) bool { return s.Ran && !s.OK })
	if want := "preflight: critical check failed: Ports"; !strings.HasPrefix(s.Error, want) ||
		!strings.Contains(s.Error, fmt.Sprint(cfg.Ports.Livos)) {
		t.Fatalf("setup = %+v; want the preflight's error (%s ...), naming port %d\n%s", s, want, cfg.Ports.Livos, logs.String())
	}
	if !strings.Contains(logs.String(), "check=Ports status=FAIL") {
		t.Errorf("the preflight's checks are not logged:\n%s", logs.String())
	}
	if recs, _ := history.Load(stateDir); len(recs) != 0 {
		t.Errorf("a failed preflight was recorded in the history: %+v", recs)
	}
	if entries, _ := os.ReadDir(cfg.Paths.LivosBaseDir); len(entries) != 0 {
		t.Errorf("a failed preflight changed the tree: %v", entries)
	}
	// it is retried: once the port is free the pipeline runs
	held.Close()
	setup("the pipeline's failure after the retry", func(s statusapi.Setup) bool {
		return s.Ran && strings.Contains(s.Error, "rolled back: step ")
	})
	if n := strings.Count(logs.String(), "onboarding failed in the preflight"); n < 1 {
		t.Errorf("the preflight failure was not logged as one:\n%s", logs.String())
	}
	if recs, _ := history.Load(stateDir); len(recs) == 0 {
		t.Errorf("the pipeline's run is not in the history")
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
