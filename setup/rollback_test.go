package setup_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup/envfile"
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
			name: "app crashes at start",
			prepare: func(t *testing.T, f *fixture) {
				// livinityd throws at start: PM2 restarts it until the health deadline
				cli := filepath.Join(f.livos(), "packages", "livinityd", "source", "cli.ts")
				b, err := os.ReadFile(cli)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(cli, append([]byte("throw new Error('livinityd refuses to start: broken release');\n"), b...), 0o644); err != nil {
					t.Fatal(err)
				}
				f.cfg.Agent.HealthTimeoutSeconds = 8
			},
			wantErr: "livinityd refuses to start: broken release",
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
			if tc.name == "app crashes at start" {
				// the service's own error, PM2's view, and where the logs of the run are kept
				if !regexp.MustCompile(`livos: PM2 status [a-z ]+, [1-9]\d* restarts`).MatchString(err.Error()) {
					t.Errorf("the error does not give PM2's restart count of livos: %v", err)
				}
				kept, _ := filepath.Glob(filepath.Join(pipeline.FailedRunsDir(f.state), "*", "logs", "livos-error.log"))
				if len(kept) != 1 || !strings.Contains(err.Error(), filepath.Dir(filepath.Dir(kept[0]))) {
					t.Errorf("livos's error log is not kept in the state dir and named: %v (kept %v)", err, kept)
				}
			}
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

// TestSymlinkedEnv: an operator keeps the .env on another volume behind a symlink. The
// run writes through the link (the secrets and the operator's keys kept, the link left a
// link), and a rolled-back run puts the target back with its owner and mode.
func TestSymlinkedEnv(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, "tree")
	vault := filepath.Join(t.TempDir(), "vault")
	if err := os.MkdirAll(vault, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(vault, "livos.env")
	const old = "JWT_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nMY_KEY=mine\n"
	if err := os.WriteFile(target, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(target, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(f.livos(), ".env")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}

	// a failed run first: the target comes back as it was, owner and mode included
	appendFile(t, filepath.Join(f.nexus(), "packages", "core", "src", "index.ts"), "\nexport const broken: number = \"not a number\";\n")
	if _, err := f.run(ctx); !errors.Is(err, pipeline.ErrRolledBack) {
		t.Fatalf("run: %v; want a rollback", err)
	}
	st, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != old || st.Mode().Perm() != 0o640 || st.Sys().(*syscall.Stat_t).Uid != 1234 {
		t.Errorf("after the rollback the target is %v uid %d with %q; want it as it was", st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Uid, b)
	}
	if l, err := os.Readlink(link); err != nil || l != target {
		t.Errorf("the .env link is %q (%v), want the link to %s", l, err, target)
	}

	// then a good run writes through the link
	replaceInFile(t, filepath.Join(f.nexus(), "packages", "core", "src", "index.ts"), "\nexport const broken: number = \"not a number\";\n", "\n")
	if _, err := f.run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	if l, err := os.Readlink(link); err != nil || l != target {
		t.Errorf("the .env link is %q (%v) after the run, want the link to %s", l, err, target)
	}
	env, err := envfile.Read(target)
	if err != nil {
		t.Fatal(err)
	}
	if env["JWT_SECRET"] != "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" || env["MY_KEY"] != "mine" || env["LIV_API_KEY"] == "" {
		t.Errorf("the target lost a key or a secret: JWT kept %v, MY_KEY %q", env["JWT_SECRET"] != "", env["MY_KEY"])
	}
	if st, _ := os.Stat(target); st.Sys().(*syscall.Stat_t).Uid != 1234 {
		t.Error("the write through the link changed the target's owner")
	}
}
