package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/test/sdsandbox"
)

const (
	unit = "livinity-agent.service"
	// innerPath is systemd's default PATH, as commands in the sandbox get it.
	innerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// testWatchdog is the WatchdogSec of the test's drop-in (the unit says 30s).
	testWatchdog = 6 * time.Second
)

// TestSystemdUnit installs the agent with `install --config` on a real systemd (sdsandbox)
// with the demo tree at /opt/livos and /opt/nexus, and checks what systemd does with it:
// start returns after READY=1 (once the onboarding is over) and STATUS= says 5/5; kill -9
// and a watchdog kill of a SIGSTOPped agent restart it while the services keep their pids;
// stop exits cleanly and leaves the services running, start adopts them; install again
// upgrades without touching them; systemd-analyze verify passes and security scores at
// most 4.0; uninstall --purge removes unit, binary, config and state but not the trees.
//
// The sandbox shares the host's network (HostNet): the pipeline's pnpm and npm installs
// reach the npm registry; every port is a free one.
func TestSystemdUnit(t *testing.T) {
	tools := testenv.ToolsBin(t)
	testenv.Require(t, "node", "npm", "python3", "go")

	host := testenv.ShortTempDir(t)
	testenv.BuildAgent(t, host)
	if err := demo.Extract(filepath.Join(host, "tree")); err != nil {
		t.Fatal(err)
	}
	writeSandboxConfig(t, filepath.Join(host, "setup.json"))

	s := sdsandbox.New(t, sdsandbox.Options{HostDir: host, HostNet: true})
	ctx := t.Context()
	sb := &sandboxT{t: t, s: s}
	sb.run("cp", "-a", "/host/tree/livos", "/opt/livos")
	sb.run("cp", "-a", "/host/tree/nexus", "/opt/nexus")
	sb.run("rm", "-rf", "/root/.pm2") // the host's, if any, seen through the overlay
	toolsPath := "PATH=" + tools + ":" + innerPath

	// 1. install --config: start returns after READY=1, STATUS= says 5/5, status agrees.
	out := sb.run("env", toolsPath, "/host/livinity-agent", "install", "--config", "/host/setup.json", "--timeout", "10m")
	t.Logf("install:\n%s", out)
	if !strings.Contains(out, "5/5 services ready") {
		t.Fatalf("install did not report 5/5 services ready:\n%s", out)
	}
	if got := sb.prop("ActiveState"); got != "active" {
		t.Fatalf("ActiveState after install = %q, want active", got)
	}
	if got := sb.prop("UnitFileState"); got != "enabled" {
		t.Errorf("UnitFileState after install = %q, want enabled", got)
	}
	sb.waitProp("StatusText", "5/5 services ready", 30*time.Second)
	st := sb.status(true)
	if st.Agent == nil || !st.Agent.Setup.Ran || !st.Agent.Setup.OK {
		t.Fatalf("status after install: setup %+v, want a successful run", st.Agent)
	}
	// systemd held the unit in "activating" for the whole pipeline: start (and so
	// install) waited for READY=1, sent only once supervision ran.
	activating := time.Duration(sb.propInt("ActiveEnterTimestampMonotonic")-sb.propInt("InactiveExitTimestampMonotonic")) * time.Microsecond
	pipeline := time.Duration(st.Agent.Setup.DurationSeconds * float64(time.Second))
	t.Logf("activating for %v; the pipeline ran %v", activating.Round(time.Millisecond), pipeline.Round(time.Millisecond))
	if activating < pipeline {
		t.Errorf("the unit became active %v after it started, before the %v pipeline ended: READY=1 came too early", activating, pipeline)
	}
	for _, path := range []string{"/etc/livinity/setup.json", "/var/lib/livinity-agent"} {
		mode := strings.TrimSpace(sb.run("stat", "-c", "%a", path))
		if mode != "600" && mode != "700" {
			t.Errorf("%s has mode %s, want 600 or 700", path, mode)
		}
	}
	services := pidsOf(t, st)
	pm2PID := strings.TrimSpace(sb.run("cat", "/root/.pm2/pm2.pid"))

	// the rest with a short watchdog: the drop-in applies from the next start
	sb.write("/etc/systemd/system/"+unit+".d/90-test.conf", fmt.Sprintf(
		"[Service]\nWatchdogSec=%ds\nRestartSec=1s\nTimeoutAbortSec=5s\n", int(testWatchdog.Seconds())))
	sb.run("systemctl", "daemon-reload")

	// 2. kill -9 of the agent: systemd restarts it, the services keep their pids.
	restarts := sb.propInt("NRestarts")
	old := sb.prop("MainPID")
	sb.run("/bin/kill", "-9", old)
	newPID := sb.waitRestart(old, restarts, 60*time.Second)
	t.Logf("kill -9: agent %s replaced by %s", old, newPID)
	sb.checkUntouched("after kill -9", services, pm2PID)
	if got := sb.prop("WatchdogUSec"); got != "6s" {
		t.Fatalf("WatchdogUSec of the restarted agent = %q, want 6s", got)
	}

	// 3. SIGSTOP: the watchdog kills and systemd restarts it within WatchdogSec + slack.
	restarts = sb.propInt("NRestarts")
	old = sb.prop("MainPID")
	stopped := time.Now()
	sb.run("/bin/kill", "-STOP", old)
	// WatchdogSec, then SIGABRT (systemd adds SIGCONT), RestartSec=1s, then the new agent
	// adopts the services before READY=1; 30s of slack for a loaded machine.
	newPID = sb.waitRestart(old, restarts, testWatchdog+time.Second+30*time.Second)
	t.Logf("SIGSTOP: agent %s replaced by %s after %v (WatchdogSec %v)", old, newPID, time.Since(stopped).Round(100*time.Millisecond), testWatchdog)
	sb.waitJournal("Watchdog timeout", 30*time.Second)
	sb.checkUntouched("after the watchdog kill", services, pm2PID)

	// 4. systemctl stop: clean exit, services still running; start adopts them.
	sb.run("systemctl", "stop", unit)
	if got := sb.prop("ActiveState"); got != "inactive" {
		t.Errorf("ActiveState after stop = %q, want inactive", got)
	}
	if r, code := sb.prop("Result"), sb.prop("ExecMainStatus"); r != "success" || code != "0" {
		t.Errorf("stop: Result=%s ExecMainStatus=%s, want success and 0", r, code)
	}
	for name, pid := range services {
		if _, _, err := s.Exec(ctx, "/bin/kill", "-0", strconv.Itoa(pid)); err != nil {
			t.Errorf("%s (pid %d) is gone after systemctl stop: %v", name, pid, err)
		}
	}
	sb.run("systemctl", "start", unit)
	sb.checkUntouched("after stop and start", services, pm2PID)

	// 5. systemd-analyze verify and security on the installed unit.
	if o, e, err := s.Exec(ctx, "systemd-analyze", "verify", "/etc/systemd/system/"+unit); err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s%s", err, o, e)
	}
	sec, _, _ := s.Exec(ctx, "systemd-analyze", "security", "--no-pager", unit) // exits non-zero above its threshold
	m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(unit) + `: ([0-9.]+) (\S+)`).FindSubmatch(sec)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no overall exposure:\n%s", sec)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security %s: %s %s", unit, m[1], m[2])
	if score > 4.0 {
		t.Errorf("exposure %.1f is above 4.0:\n%s", score, sec)
	}

	// 6. install again: an upgrade restarts the agent, the services are untouched.
	restarts = sb.propInt("NRestarts")
	old = sb.prop("MainPID")
	out = sb.run("env", toolsPath, "/host/livinity-agent", "install", "--timeout", "5m")
	t.Logf("install again:\n%s", out)
	if !strings.Contains(out, "upgrade") || !strings.Contains(out, "5/5 services ready") {
		t.Errorf("second install did not upgrade to 5/5 ready:\n%s", out)
	}
	if sb.prop("MainPID") == old {
		t.Errorf("second install did not restart the agent (MainPID still %s)", old)
	}
	sb.checkUntouched("after the upgrade", services, pm2PID)

	// 7. uninstall --purge: unit, binary, config and state gone; the trees stay.
	out = sb.run("/usr/local/bin/livinity-agent", "uninstall", "--purge")
	t.Logf("uninstall --purge:\n%s", out)
	if got := sb.prop("LoadState"); got != "not-found" {
		t.Errorf("LoadState after uninstall = %q, want not-found", got)
	}
	for _, gone := range []string{"/usr/local/bin/livinity-agent", "/etc/systemd/system/" + unit,
		"/etc/systemd/system/" + unit + ".d", "/etc/livinity/setup.json", "/var/lib/livinity-agent"} {
		if _, _, err := s.Exec(ctx, "test", "!", "-e", gone); err != nil {
			t.Errorf("%s still exists after uninstall --purge", gone)
		}
	}
	for _, kept := range []string{"/opt/livos/package.json", "/opt/livos/.env", "/opt/nexus/package.json", "/opt/nexus/packages/core/dist"} {
		if _, _, err := s.Exec(ctx, "test", "-e", kept); err != nil {
			t.Errorf("%s is gone after uninstall --purge: the LivOS trees must stay", kept)
		}
	}
}

// writeSandboxConfig writes the demo's setup.json for the trees at /opt/livos and
// /opt/nexus inside the sandbox, on free host ports (the sandbox shares the host's
// network).
func writeSandboxConfig(t *testing.T, path string) {
	t.Helper()
	cfg := config.Default()
	cfg.Domain = "localhost"
	cfg.Paths = config.Paths{LivosBaseDir: "/opt/livos", NexusBaseDir: "/opt/nexus"}
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
	cfg.Agent.Preflight = config.Preflight{MinNodeMajor: 20, MinDiskGB: 1, MinRAMGB: 1}
	cfg.Agent.HealthTimeoutSeconds = 120
	cfg.Agent.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	b, err := cfg.MarshalIndent()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(b); err != nil {
		t.Fatalf("test config: %v", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil { // read by root inside
		t.Fatal(err)
	}
}

// pidsOf maps each service to its pid, failing unless all five run.
func pidsOf(t *testing.T, st statusapi.Status) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for _, sv := range st.Services {
		if sv.PID <= 0 {
			t.Fatalf("%s has no pid: %+v", sv.Name, sv)
		}
		pids[sv.Name] = sv.PID
	}
	if len(pids) != len(config.Default().ServiceNames()) {
		t.Fatalf("status lists %d services, want %d: %+v", len(pids), len(config.Default().ServiceNames()), st.Services)
	}
	return pids
}

// sandboxT runs commands in the sandbox and fails the test when they fail.
type sandboxT struct {
	t *testing.T
	s *sdsandbox.Sandbox
}

func (sb *sandboxT) run(argv ...string) string {
	sb.t.Helper()
	ctx, cancel := context.WithTimeout(sb.t.Context(), 15*time.Minute)
	defer cancel()
	out, errOut, err := sb.s.Exec(ctx, argv...)
	if err != nil {
		sb.t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	return string(out)
}

func (sb *sandboxT) write(path, content string) {
	sb.t.Helper()
	if err := sb.s.WriteFile(sb.t.Context(), path, []byte(content), 0o644); err != nil {
		sb.t.Fatal(err)
	}
}

// prop reads one property of the agent's unit.
func (sb *sandboxT) prop(name string) string {
	sb.t.Helper()
	return strings.TrimSpace(sb.run("systemctl", "show", "-p", name, "--value", unit))
}

func (sb *sandboxT) propInt(name string) int64 {
	sb.t.Helper()
	v, err := strconv.ParseInt(sb.prop(name), 10, 64)
	if err != nil {
		sb.t.Fatalf("property %s: %v", name, err)
	}
	return v
}

// poll calls cond every 250ms until it holds, failing with its last explanation after
// timeout.
func (sb *sandboxT) poll(what string, timeout time.Duration, cond func() (bool, string)) {
	sb.t.Helper()
	Poll(sb.t, what, timeout, cond)
}

func (sb *sandboxT) waitProp(name, want string, timeout time.Duration) {
	sb.t.Helper()
	sb.poll(name+"="+want, timeout, func() (bool, string) {
		got := sb.prop(name)
		return got == want, fmt.Sprintf("%s=%q", name, got)
	})
}

// waitRestart waits until systemd has restarted the agent whose pid was old (NRestarts
// above restarts) and the new one is active, and returns the new pid.
func (sb *sandboxT) waitRestart(old string, restarts int64, timeout time.Duration) string {
	sb.t.Helper()
	var pid string
	sb.poll("systemd restarts the agent", timeout, func() (bool, string) {
		pid = sb.prop("MainPID")
		state, n := sb.prop("ActiveState"), sb.propInt("NRestarts")
		return state == "active" && pid != "0" && pid != old && n > restarts,
			fmt.Sprintf("ActiveState=%s MainPID=%s NRestarts=%d", state, pid, n)
	})
	return pid
}

func (sb *sandboxT) waitJournal(text string, timeout time.Duration) {
	sb.t.Helper()
	sb.poll("journal says "+text, timeout, func() (bool, string) {
		j, err := sb.s.Journal(sb.t.Context(), unit)
		return err == nil && strings.Contains(string(j), text), fmt.Sprintf("err %v", err)
	})
}

// status runs `livinity-agent status --json` inside; with wantReady it waits until the
// agent says every service is ready.
func (sb *sandboxT) status(wantReady bool) statusapi.Status {
	sb.t.Helper()
	var st statusapi.Status
	sb.poll("livinity-agent status --json: agent, all ready", 2*time.Minute, func() (bool, string) {
		out, _, err := sb.s.Exec(sb.t.Context(), "/usr/local/bin/livinity-agent", "status", "--json")
		if jerr := json.Unmarshal(out, &st); jerr != nil {
			return false, fmt.Sprintf("exit %v, output %q: %v", err, out, jerr)
		}
		ok := st.Source == statusapi.SourceAgent && (!wantReady || (st.Ready && err == nil))
		return ok, fmt.Sprintf("source %s ready %v exit %v: %s", st.Source, st.Ready, err, out)
	})
	return st
}

// checkUntouched waits for the agent to report every service ready and checks that the
// services and the PM2 daemon still have the pids they had.
func (sb *sandboxT) checkUntouched(when string, services map[string]int, pm2PID string) {
	sb.t.Helper()
	got := pidsOf(sb.t, sb.status(true))
	for name, pid := range services {
		if got[name] != pid {
			sb.t.Errorf("%s: %s has pid %d, had %d: it was restarted", when, name, got[name], pid)
		}
	}
	if p := strings.TrimSpace(sb.run("cat", "/root/.pm2/pm2.pid")); p != pm2PID {
		sb.t.Errorf("%s: the PM2 daemon has pid %s, had %s", when, p, pm2PID)
	}
	if _, _, err := sb.s.Exec(sb.t.Context(), "/bin/kill", "-0", pm2PID); err != nil {
		sb.t.Errorf("%s: the PM2 daemon (pid %s) is gone: %v", when, pm2PID, err)
	}
}
