package pm2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

const (
	appSecret    = "lv-app-secret-5f1b0c9e"
	callerSecret = "lv-caller-secret-a27d44"
)

// TestSecretsStayOut starts an app with a secret in its environment and checks that the
// daemon does hold it (so the test can fail) but nothing this package returns does. It also
// checks that the CLI does not hand its caller's environment to the apps. Not parallel: it
// sets an environment variable in this process.
func TestSecretsStayOut(t *testing.T) {
	t.Setenv("LV_CALLER_SECRET", callerSecret)
	d := startDaemon(t, 7, "LV_APP_SECRET="+appSecret)
	p := d.startApp(t, "idle", "idle.js")
	ctx := t.Context()
	c := dial(t, d.home)

	var raw json.RawMessage
	if err := c.call(ctx, "getMonitorData", []any{struct{}{}}, &raw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), appSecret) {
		t.Fatal("the daemon's raw process list lacks the app secret: the test would prove nothing")
	}
	if strings.Contains(string(raw), callerSecret) {
		t.Fatal("the caller's environment reached the app through the pm2 command")
	}

	var seen strings.Builder
	show := func(v any) { fmt.Fprintf(&seen, "%+v %#v\n", v, v) }

	events, err := Subscribe(ctx, d.home)
	if err != nil {
		t.Fatal(err)
	}
	w := &Watcher{Home: d.home}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	updates := make(chan Update, 64)
	go w.Run(wctx, updates)
	show(nextUpdate(t, updates, "snapshot", func(u Update) bool { return u.Snapshot != nil }))

	procs, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	show(procs)
	cliProcs, err := d.cli.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	show(cliProcs)
	if err := c.RestartName(ctx, "idle"); err != nil {
		t.Fatal(err)
	}
	for range 3 { // exit (stopping), exit (stopped) or online, restart notification...
		ev, _ := nextEvent(t, events, "idle")
		show(ev)
	}
	show(nextUpdate(t, updates, "event", func(u Update) bool { return u.Event != nil }).Event)
	show(c.Start(ctx, p.ID)) // "process already online"
	show(d.cli.RestartName(ctx, "no-such-app"))

	if strings.Contains(seen.String(), appSecret) {
		t.Fatalf("the app secret appears in what the package returned:\n%s", seen.String())
	}
	if !strings.Contains(seen.String(), "idle") {
		t.Fatalf("collected output lacks the app itself, the check proves nothing:\n%s", seen.String())
	}
}

// TestCLI drives the pm2 command through an ecosystem file, restarts, save, kill and
// resurrect, on PM2 5 and 7.
func TestCLI(t *testing.T) {
	for _, major := range []int{5, 7} {
		t.Run("pm2-"+strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			bin := testenv.PM2(t, major)
			home := testenv.PM2Home(t, bin)
			cli := &CLI{Bin: bin, Home: home, Env: []string{"LV_TOKEN=no-such-app-token"}}
			ctx := t.Context()

			v, err := cli.Version()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(v, strconv.Itoa(major)+".") {
				t.Fatalf("version %q, want %d.x", v, major)
			}
			if _, err := os.Stat(filepath.Join(home, "pm2.pid")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Version started a daemon (pm2.pid: %v)", err)
			}

			// An ecosystem file beside its script, which it names by a relative path.
			dir := t.TempDir()
			script, err := os.ReadFile(testdataPath(t, "idle.js"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "idle.js"), script, 0o644); err != nil {
				t.Fatal(err)
			}
			eco := filepath.Join(dir, "ecosystem.config.js")
			const conf = `module.exports = { apps: [
  { name: "a", script: "./idle.js" },
  { name: "b", script: "./idle.js" },
  { name: "c", script: "./idle.js" },
] };`
			if err := os.WriteFile(eco, []byte(conf), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := cli.StartEcosystem(ctx, eco, "a", "b"); err != nil {
				t.Fatal(err)
			}
			byName := listByName(t, cli)
			if len(byName) != 2 || byName["a"].ExecPath != filepath.Join(dir, "idle.js") {
				t.Fatalf("after start --only a,b: %+v", byName)
			}

			d := &daemon{major: major, home: home, cli: cli}
			a := d.waitApp(t, "a", func(p Process) bool { return p.Status == StatusOnline })
			if err := cli.Restart(ctx, a.ID); err != nil {
				t.Fatal(err)
			}
			if got := listByName(t, cli)["a"]; got.RestartTime != a.RestartTime+1 || got.PID == a.PID {
				t.Fatalf("after restart of id %d: %+v (before %+v)", a.ID, got, a)
			}
			b := listByName(t, cli)["b"]
			if err := cli.RestartName(ctx, "b"); err != nil {
				t.Fatal(err)
			}
			if got := listByName(t, cli)["b"]; got.RestartTime != b.RestartTime+1 {
				t.Fatalf("after restart of b: restart_time %d, want %d", got.RestartTime, b.RestartTime+1)
			}

			// Errors quote pm2's output, without colours and with Env values redacted.
			err = cli.RestartName(ctx, "no-such-app-token")
			if err == nil || !strings.Contains(err.Error(), "not found") {
				t.Fatalf("restart of an unknown app: err = %v, want pm2's 'not found'", err)
			}
			if strings.Contains(err.Error(), "\x1b[") || strings.Contains(err.Error(), "no-such-app-token") ||
				!strings.Contains(err.Error(), "[redacted]") {
				t.Fatalf("error not cleaned: %q", err)
			}

			if err := cli.Save(ctx); err != nil {
				t.Fatal(err)
			}
			if err := cli.Kill(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := Dial(ctx, home); !errors.Is(err, ErrDaemonNotRunning) {
				t.Fatalf("after pm2 kill: dial err = %v, want ErrDaemonNotRunning", err)
			}
			if err := cli.Resurrect(ctx); err != nil {
				t.Fatal(err)
			}
			d.waitApp(t, "a", func(p Process) bool { return p.Status == StatusOnline })
			d.waitApp(t, "b", func(p Process) bool { return p.Status == StatusOnline })

			if err := cli.Delete(ctx, "a", "b"); err != nil {
				t.Fatal(err)
			}
			if got := listByName(t, cli); len(got) != 0 {
				t.Fatalf("after delete a b: %+v", got)
			}
			// Saving the empty list is deliberate: resurrect must not bring a and b back.
			if err := cli.Save(ctx); err != nil {
				t.Fatal(err)
			}
			if err := cli.Resurrect(ctx); err != nil {
				t.Fatal(err)
			}
			if got := listByName(t, cli); len(got) != 0 {
				t.Fatalf("resurrect after saving an empty list started %+v", got)
			}
		})
	}
}

func TestCLIInputErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	if err := (&CLI{}).Kill(ctx); err == nil || !strings.Contains(err.Error(), "CLI.Bin") {
		t.Errorf("unset CLI: err = %v, want one naming CLI.Bin", err)
	}
	c := &CLI{Bin: "/nonexistent/pm2", Home: "/nonexistent"}
	if err := c.StartEcosystem(ctx, "eco.config.js", "a,b"); err == nil || !strings.Contains(err.Error(), `"a,b"`) {
		t.Errorf("only with a comma: err = %v", err)
	}
	if err := c.Delete(ctx); err == nil {
		t.Error("delete of nothing: no error")
	}
	if err := c.RestartName(ctx, "all"); err == nil {
		t.Error(`restart of "all": no error`)
	}
	if _, err := c.Version(); err == nil {
		t.Error("version of a missing binary: no error")
	}
}

func listByName(t *testing.T, cli *CLI) map[string]Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	procs, err := cli.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]Process)
	for _, p := range procs {
		m[p.Name] = p
	}
	return m
}
