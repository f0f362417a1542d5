package setup_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/pipeline/journal"
)

// TestCrashDuringEveryStep kills the agent with SIGKILL inside each step of a first
// onboarding (see killInside), then checks
// that `setup --rollback` returns the tree to its state before the run (byte for byte, no
// PM2 apps, no PM2 daemon), and, for every third step, that a plain re-run after the crash
// completes with every service healthy.
func TestCrashDuringEveryStep(t *testing.T) {
	t.Parallel()
	bin := testenv.BuildAgent(t, testenv.ShortTempDir(t))
	steps := newFixture(t, "steps").plan().Steps
	for k, step := range steps {
		t.Run(step.ID, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, "tree")
			cfgFile := filepath.Join(filepath.Dir(f.root), "setup.json")
			b, err := f.cfg.MarshalIndent()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, f.root)
			agent := func(args ...string) *exec.Cmd {
				cmd := exec.Command(bin, append([]string{"--config", cfgFile, "--state-dir", f.state,
					"--pm2-home", f.pm2Home, "--pm2", f.pm2Bin, "--log-level", "debug"}, args...)...)
				cmd.Env = append(os.Environ(), "PATH="+testenv.PATH(t))
				return cmd
			}

			// kill -9 inside the step: after its first journal entry, while a command it
			// started runs, or once that command wrote output (in turn by step), or as the
			// step ends when it has no such instant
			instant := []string{atJournal, atCommand, atOutput}[k%3]
			where, _ := killInside(t, f, agent, step.ID, instant)
			t.Logf("killed %s", where)
			if _, err := os.Stat(filepath.Join(f.state, "journal.jsonl")); err != nil {
				t.Fatalf("no journal after the crash: %v", err)
			}

			if k%3 == 0 {
				// run again: it finishes the rollback first, then completes
				out, err := agent("setup").CombinedOutput()
				if err != nil {
					t.Fatalf("re-run after crash: %v\n%s", err, out)
				}
				if !strings.Contains(string(out), "rolling it back first") {
					t.Errorf("re-run did not report the rollback of the interrupted run:\n%s", out)
				}
				testenv.WaitFor(t, "5 apps online", 10*time.Second, func() bool {
					n := 0
					for _, a := range f.apps(ctx) {
						if a.Status == "online" {
							n++
						}
					}
					return n == 5
				})
				return
			}
			// killed as the last step ended, the run may have committed first: then it
			// succeeded, and there is nothing to roll back
			jb, _ := os.ReadFile(filepath.Join(f.state, journal.FileName))
			committed := bytes.Contains(jb, []byte(`"committed":true`))
			out, err := agent("setup", "--rollback").CombinedOutput()
			if err != nil {
				t.Fatalf("setup --rollback: %v\n%s", err, out)
			}
			if committed {
				if k != len(steps)-1 || !strings.Contains(string(out), "nothing to roll back") {
					t.Fatalf("the run committed before the kill inside step %s; setup --rollback said:\n%s", step.ID, out)
				}
				t.Logf("the run had committed before the kill landed: nothing rolled back")
				return
			}
			if !strings.Contains(string(out), "rolled back the interrupted run") {
				t.Fatalf("setup --rollback found nothing to do:\n%s", out)
			}
			sameTree(t, before, snapshot(t, f.root))
			noProcessesIn(t, f.root)
			if apps := f.apps(ctx); len(apps) != 0 {
				t.Fatalf("PM2 apps left after rollback: %d", len(apps))
			}
			if c, err := net.Dial("unix", filepath.Join(f.pm2Home, "rpc.sock")); err == nil {
				c.Close()
				t.Fatal("a PM2 daemon started by the crashed run still runs")
			}
		})
	}
}
