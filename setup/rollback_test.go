package setup_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/pipeline"
)

// TestFailureRollsBack injects failures and checks that each run ends with a clear error,
// the tree as it was (byte for byte), no PM2 apps and no PM2 daemon of the run's, and a
// previous .env restored.
func TestFailureRollsBack(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		prepare func(t *testing.T, f *fixture)
		wantErr string
	}{
		{
			name: "build fails",
			prepare: func(t *testing.T, f *fixture) {
				appendFile(t, filepath.Join(f.nexus(), "packages", "core", "src", "index.ts"), "\nexport const broken: number = \"not a number\";\n")
			},
			wantErr: "step build-core",
		},
		{
			name: "app never listens",
			prepare: func(t *testing.T, f *fixture) {
				// the mcp server keeps running but never opens its port
				replaceInFile(t, filepath.Join(f.nexus(), "packages", "mcp-server", "src", "index.ts"),
					"server.listen(", "((..._args: unknown[]) => setInterval(() => {}, 1000))(")
				f.cfg.Agent.HealthTimeoutSeconds = 6
			},
			wantErr: "nexus-mcp",
		},
		{
			name: "port held by another process",
			prepare: func(t *testing.T, f *fixture) {
				// livos is probed by HTTP: the 200 of another process must not count
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", f.cfg.Ports.Livos))
				if err != nil {
					t.Fatal(err)
				}
				go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
				t.Cleanup(func() { l.Close() })
				f.cfg.Agent.HealthTimeoutSeconds = 6
			},
			wantErr: "livos (http",
		},
		{
			name: "pm2 missing",
			prepare: func(t *testing.T, f *fixture) {
				f.pm2Bin = filepath.Join(t.TempDir(), "no-such-pm2")
			},
			wantErr: "step pm2-start",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, "tree")
			// a previous .env that the run replaces and the rollback must restore
			oldEnv := "JWT_SECRET=previous-secret-value-1234567890\nCUSTOM=kept\n"
			if err := os.WriteFile(filepath.Join(f.livos(), ".env"), []byte(oldEnv), 0o600); err != nil {
				t.Fatal(err)
			}
			tc.prepare(t, f)
			before := snapshot(t, f.root)

			_, err := f.run(ctx)
			if err == nil {
				t.Fatal("run succeeded; want a failure")
			}
			if !errors.Is(err, pipeline.ErrRolledBack) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v; want a rolled-back failure mentioning %q", err, tc.wantErr)
			}
			t.Logf("error: %v", err)
			sameTree(t, before, snapshot(t, f.root))
			noProcessesIn(t, f.root)
			if apps := f.apps(ctx); len(apps) != 0 {
				t.Fatalf("PM2 apps left after rollback: %d", len(apps))
			}
			if _, err := os.Stat(filepath.Join(f.pm2Home, "rpc.sock")); err == nil {
				t.Fatal("the PM2 daemon this run started is still running")
			}
			if strings.Contains(err.Error(), "previous-secret-value") || strings.Contains(f.logs.String(), "previous-secret-value") {
				t.Fatal("a secret appears in the error or the log")
			}
			if _, err := os.Stat(filepath.Join(f.state, "journal.jsonl")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("journal left after a complete rollback: %v", err)
			}
		})
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, text...), 0o644); err != nil {
		t.Fatal(err)
	}
}

func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}
