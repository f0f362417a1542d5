package update_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/history"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/update"
)

// box is an onboarded demo tree with a git repository holding its release.
type box struct {
	t                            testing.TB
	base, repo, state, home, bin string
	cfg                          *config.Config
	logs                         *testenv.Buffer
}

func newBox(t testing.TB) *box {
	t.Helper()
	testenv.Require(t, "git", "node", "npm")
	base := testenv.ShortTempDir(t)
	b := &box{t: t, base: base, repo: filepath.Join(base, "repo"), state: filepath.Join(base, "state"),
		bin: filepath.Join(testenv.ToolsBin(t), "pm2"), logs: &testenv.Buffer{}}
	b.home = testenv.PM2Home(t, b.bin)
	// the release's repository: livos/ and nexus/ at its top
	if err := demo.Extract(b.repo); err != nil {
		t.Fatal(err)
	}
	b.git("init", "-q", "-b", "main")
	b.commit("release 1")
	// the live trees: the same release, onboarded
	live := filepath.Join(base, "live")
	if err := demo.Extract(live); err != nil {
		t.Fatal(err)
	}
	cfg := demo.Config(live, 20)
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
	cfg.Agent.HealthTimeoutSeconds = 20
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b.cfg = cfg
	bx, err := setup.NewBox(cfg, b.state, b.home)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.Run(context.Background(), bx.Plan(testenv.PATH(t), os.Getenv("HOME"), setup.ToolEnv(os.Environ())), b.pipelineOptions()); err != nil {
		t.Fatalf("onboard: %v\n%s", err, b.logs.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", b.logs.String())
		}
	})
	return b
}

func (b *box) pipelineOptions() pipeline.Options {
	return pipeline.Options{Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
		PM2: func(home string) pipeline.PM2 { return pipeline.NewPM2(b.bin, home) }}
}

func (b *box) git(args ...string) string {
	b.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", b.repo, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (b *box) commit(msg string) string {
	b.git("add", "-A")
	b.git("commit", "-q", "--allow-empty", "-m", msg)
	return b.git("rev-parse", "HEAD")
}

func (b *box) edit(rel, old, new string) {
	b.t.Helper()
	p := filepath.Join(b.repo, rel)
	data, err := os.ReadFile(p)
	if err != nil {
		b.t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		b.t.Fatalf("%s does not contain %q", rel, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *box) options() update.Options {
	return update.Options{Config: b.cfg, StateDir: b.state, PM2Home: b.home, Path: testenv.PATH(b.t),
		Home: os.Getenv("HOME"), Env: setup.ToolEnv(os.Environ()), Logger: slog.New(slog.NewTextHandler(b.logs, nil)),
		PM2: b.pipelineOptions().PM2, Source: update.Source{Repo: b.repo, Ref: "main"}}
}

func (b *box) pids() map[string]int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pm2.Dial(ctx, b.home)
	if err != nil {
		b.t.Fatal(err)
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	out := map[string]int{}
	for _, p := range procs {
		out[p.Name] = p.PID
	}
	return out
}

func changed(before, after map[string]int) []string {
	var out []string
	for n, pid := range after {
		if before[n] != pid {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (b *box) coreHealth() string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/health", b.cfg.Ports.API))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

const coreHealthLine = `res.end(JSON.stringify({ status: "ok" }));`

// TestGoodUpdate: a release that changes only nexus core restarts nexus-core and livinityd
// (which imports @nexus/core), nothing else; the new code answers; the history says so.
func TestGoodUpdate(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	before := b.pids()
	b.edit("nexus/packages/core/src/index.ts", coreHealthLine, `res.end(JSON.stringify({ status: "ok", release: 2 }));`)
	rev := b.commit("release 2")

	dry, err := update.Run(context.Background(), func() update.Options { o := b.options(); o.DryRun = true; return o }())
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if !slices.Equal(dry.Restart, []string{"livos", "nexus-core"}) || dry.Record.To != rev {
		t.Errorf("dry run: restart %q to %s; want livos, nexus-core to %s", dry.Restart, dry.Record.To, rev)
	}
	if got := changed(before, b.pids()); len(got) != 0 {
		t.Errorf("the dry run restarted %q", got)
	}

	res, err := update.Run(context.Background(), b.options())
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if got := changed(before, b.pids()); !slices.Equal(got, []string{"livos", "nexus-core"}) {
		t.Errorf("the update restarted %q, want livos and nexus-core only", got)
	}
	if h := b.coreHealth(); !strings.Contains(h, `"release":2`) {
		t.Errorf("nexus-core answers %q, not the new release", h)
	}
	if update.Revision(b.state) != rev || res.Record.Outcome != history.Success {
		t.Errorf("revision %s, outcome %s; want %s, success", update.Revision(b.state), res.Record.Outcome, rev)
	}
	for _, tree := range []string{"livos", "nexus"} {
		if _, err := os.Stat(filepath.Join(b.base, "live", tree+".prev")); err != nil {
			t.Errorf("the previous release of %s is not kept: %v", tree, err)
		}
	}
	// a no-op update restarts nothing
	before = b.pids()
	start := time.Now()
	if _, err := update.Run(context.Background(), b.options()); err != nil {
		t.Fatalf("no-op update: %v", err)
	}
	t.Logf("no-op update: %s", time.Since(start).Round(10*time.Millisecond))
	if got := changed(before, b.pids()); len(got) != 0 {
		t.Errorf("a no-op update restarted %q", got)
	}
	recs, err := history.Load(b.state)
	if err != nil || len(recs) < 2 {
		t.Fatalf("history: %v, %d records", err, len(recs))
	}
	last := recs[len(recs)-2]
	if last.Kind != history.KindUpdate || last.To != rev || last.Services["nexus-core"] != "restarted" || last.Services["nexus-worker"] != "unchanged" {
		t.Errorf("history record = %+v", last)
	}
}

// TestBadBuild: a release whose build fails changes nothing: nothing restarted, the old
// release untouched and serving.
func TestBadBuild(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	before := b.pids()
	b.edit("nexus/packages/core/src/index.ts", coreHealthLine, coreHealthLine+"\nexport const broken: number = \"not a number\";")
	b.commit("broken build")
	_, err := update.Run(context.Background(), b.options())
	if err == nil || !strings.Contains(err.Error(), "did not build; nothing was changed") {
		t.Fatalf("update: %v; want a failed build", err)
	}
	if got := changed(before, b.pids()); len(got) != 0 {
		t.Errorf("a failed build restarted %q", got)
	}
	if _, err := os.Stat(filepath.Join(b.base, "live", "nexus.next")); err == nil {
		t.Error("the staged release was left behind")
	}
	if h := b.coreHealth(); !strings.Contains(h, `"status":"ok"`) {
		t.Errorf("the old release does not answer: %q", h)
	}

	// a build that exits 0 and leaves dist empty is a failure too
	b.edit("nexus/packages/core/src/index.ts", coreHealthLine+"\nexport const broken: number = \"not a number\";", coreHealthLine)
	b.edit("nexus/packages/core/package.json", `"build": "tsc -p tsconfig.json"`, `"build": "node -e \"require('fs').mkdirSync('dist',{recursive:true})\""`)
	b.commit("empty build")
	_, err = update.Run(context.Background(), b.options())
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("update with an empty build: %v; want a failure naming the empty output", err)
	}
	if got := changed(before, b.pids()); len(got) != 0 {
		t.Errorf("an empty build restarted %q", got)
	}
}

// TestReleaseThatFailsAtStart: the new livinityd throws at start; the previous release is
// back and answering, the services that did not change were never restarted, and the
// error quotes livinityd's own error.
func TestReleaseThatFailsAtStart(t *testing.T) {
	t.Parallel()
	b := newBox(t)
	before := b.pids()
	b.edit("livos/packages/livinityd/source/cli.ts", "import ", "throw new Error('release 2 refuses to start');\nimport ")
	b.commit("release 2")
	res, err := update.Run(context.Background(), b.options())
	if err == nil || !strings.Contains(err.Error(), "release 2 refuses to start") || !strings.Contains(err.Error(), "previous release") {
		t.Fatalf("update: %v; want a rollback quoting livinityd's error", err)
	}
	after := b.pids()
	for _, n := range []string{"nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"} {
		if after[n] != before[n] {
			t.Errorf("%s was restarted by a release that did not change it", n)
		}
	}
	resp, herr := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", b.cfg.Ports.Livos))
	if herr != nil || resp.StatusCode != 200 {
		t.Fatalf("livinityd of the previous release does not answer: %v", herr)
	}
	resp.Body.Close()
	if res.Record.Outcome != history.RolledBack {
		t.Errorf("outcome %s, want rolled-back", res.Record.Outcome)
	}
	t.Logf("from the failed health check to the previous release answering: %.2f s", res.Record.RollbackSeconds)
	cli, _ := os.ReadFile(filepath.Join(b.cfg.Paths.LivosBaseDir, "packages", "livinityd", "source", "cli.ts"))
	if strings.Contains(string(cli), "refuses to start") {
		t.Error("the live tree is still the failed release")
	}
	if _, err := os.Stat(filepath.Join(b.cfg.Paths.LivosBaseDir, ".env")); err != nil {
		t.Errorf("the .env did not come back with the previous release: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.state, "update.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the update journal is left: %v", err)
	}
}

// TestKillDuringUpdate kills the agent with SIGKILL in each phase of an update (fetching,
// switching, restarting); the next start (`setup`) converges to one release, whole: every
// service healthy, no staged tree left, and the live trees either all old or all new.
func TestKillDuringUpdate(t *testing.T) {
	t.Parallel()
	agent := testenv.BuildAgent(t, testenv.ShortTempDir(t))
	for _, phase := range []struct{ name, marker string }{
		{"fetching", `msg="fetching the new release"`},
		{"building", `msg="step started" step=build-core`},
		{"switching", `msg="switching to the new release"`},
		{"restarting", `msg="step started" step=pm2-start`},
	} {
		t.Run(phase.name, func(t *testing.T) {
			t.Parallel()
			b := newBox(t)
			cfgFile := filepath.Join(b.base, "setup.json")
			data, _ := b.cfg.MarshalIndent()
			if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
				t.Fatal(err)
			}
			b.edit("nexus/packages/core/src/index.ts", coreHealthLine, `res.end(JSON.stringify({ status: "ok", release: 2 }));`)
			b.commit("release 2")
			agentCmd := func(args ...string) *exec.Cmd {
				cmd := exec.Command(agent, append([]string{"--config", cfgFile, "--state-dir", b.state, "--pm2-home", b.home,
					"--pm2", b.bin, "--log-level", "debug"}, args...)...)
				cmd.Env = append(os.Environ(), "PATH="+testenv.PATH(t))
				return cmd
			}
			cmd := agentCmd("update", "--source", b.repo, "--ref", "main")
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			killed := false
			buf := make([]byte, 64<<10)
			var seen strings.Builder
			for !killed {
				n, err := stderr.Read(buf)
				seen.Write(buf[:n])
				if strings.Contains(seen.String(), phase.marker) {
					cmd.Process.Kill()
					killed = true
				}
				if err != nil {
					break
				}
			}
			cmd.Wait()
			if !killed {
				t.Fatalf("the update never reached %q:\n%s", phase.marker, seen.String())
			}
			out, err := agentCmd("setup").CombinedOutput()
			if err != nil {
				t.Fatalf("setup after the kill: %v\n%s\nthe killed update's log:\n%s", err, out, seen.String())
			}
			for _, tree := range []string{"livos.next", "nexus.next"} {
				if _, err := os.Stat(filepath.Join(b.base, "live", tree)); err == nil {
					t.Errorf("%s is left after the recovery", tree)
				}
			}
			if _, err := os.Stat(filepath.Join(b.state, "update.json")); err == nil {
				t.Error("the update journal is left after the recovery")
			}
			// one release, whole: the core the tree holds is the core that answers
			src, _ := os.ReadFile(filepath.Join(b.cfg.Paths.NexusBaseDir, "packages", "core", "src", "index.ts"))
			newTree := strings.Contains(string(src), "release: 2")
			newCode := strings.Contains(b.coreHealth(), `"release":2`)
			if newTree != newCode {
				t.Errorf("a mix: the tree holds release 2: %v, the running core is release 2: %v", newTree, newCode)
			}
			if _, err := os.Stat(b.cfg.Paths.LivosBaseDir + "/.env"); err != nil {
				t.Errorf("the live tree lost its .env: %v", err)
			}
			t.Logf("converged to release %d", map[bool]int{false: 1, true: 2}[newTree])
		})
	}
}
