package pm2

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

var versions = []int{5, 6, 7}

// daemon is a real PM2 daemon under its own home, driven through the pm2 command.
type daemon struct {
	major int
	home  string
	cli   *CLI
}

// startDaemon starts a PM2 daemon of the given major version (pm2 ping starts one) with
// env added to the pm2 command's environment.
func startDaemon(t testing.TB, major int, env ...string) *daemon {
	t.Helper()
	bin := testenv.PM2(t, major)
	home := testenv.PM2Home(t, bin)
	d := &daemon{major: major, home: home, cli: &CLI{Bin: bin, Home: home, Env: env}}
	d.pm2(t, "ping")
	return d
}

// pm2 runs a pm2 command and fails the test if it fails.
func (d *daemon) pm2(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	out, err := d.cli.run(ctx, args...)
	if err != nil {
		t.Fatalf("pm2 %d: %v", d.major, err)
	}
	return string(out)
}

// startApp starts testdata/script as app name and waits until it is online.
func (d *daemon) startApp(t testing.TB, name, script string, extra ...string) Process {
	t.Helper()
	d.pm2(t, append([]string{"start", testdataPath(t, script), "--name", name}, extra...)...)
	return d.waitApp(t, name, func(p Process) bool { return p.Status == StatusOnline && p.PID > 0 })
}

// waitApp polls the native client until app name satisfies ok.
func (d *daemon) waitApp(t testing.TB, name string, ok func(Process) bool) Process {
	t.Helper()
	c := dial(t, d.home)
	var last Process
	waitFor(t, 20*time.Second, func() bool {
		procs, err := c.List(t.Context())
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, p := range procs {
			if p.Name == name {
				last = p
				return ok(p)
			}
		}
		return false
	}, func() string { return "app " + name + ", last seen: " + string(last.Status) })
	return last
}

// pid returns the daemon's pid from pm2.pid.
func (d *daemon) pid(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.home, "pm2.pid"))
	if err != nil {
		t.Fatalf("read daemon pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("read daemon pid: %v", err)
	}
	return pid
}

func dial(t testing.TB, home string) *Client {
	t.Helper()
	c, err := Dial(t.Context(), home)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testdataPath(t testing.TB, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
