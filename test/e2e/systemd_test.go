package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	unit    = "livinity-agent.service"
	pm2Unit = "livinity-pm2.service"
	// innerPath is systemd's default PATH, as commands in the sandbox get it.
	innerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// testWatchdog is the WatchdogSec of the test's drop-in (the unit says 30s).
	testWatchdog = 6 * time.Second
	// capSysAdmin is CAP_SYS_ADMIN's bit in /proc/PID/status's capability masks.
	capSysAdmin = 21
	// maxExposure is the highest `systemd-analyze security` score the agent's unit may have.
	maxExposure = 3.0
)

// TestSystemdUnit installs the agent with `install --config` on a real systemd (sdsandbox,
// on a disk that survives a reboot) with the demo tree at /opt/livos and /opt/nexus, and
// checks what systemd does with it:
//   - start returns after READY=1 (once the onboarding is over) and STATUS= says 5/5;
//   - the services and their PM2 daemon run in livinity-pm2.service with the privileges
//     LivOS needs: the full capability bounding set, NoNewPrivs 0, no seccomp filter, the
//     init's mount namespace (a process the daemon starts writes /etc and mounts a tmpfs);
//     the agent runs confined, and its unit scores at most maxExposure;
//   - kill -9, a watchdog kill, stop and start, and restart of the agent leave every
//     service's pid and the daemon's unchanged;
//   - a daemon stopped under the agent comes back through the PM2 unit (the supervisor's
//     seam), so does one the pipeline needs (the pipeline's seam), and a failed pipeline
//     that started the unit stops it again (the rollback);
//   - after a reboot the services come back although the agent fails to start;
//   - install again upgrades without touching them; uninstall --purge removes both units,
//     the binary, config and state, stops the services and keeps the trees.
//
// The sandbox shares the host's network (HostNet): the pipeline's pnpm and npm installs
// reach the npm registry; every port is a free one.
func TestSystemdUnit(t *testing.T) {
	sb, toolsPath := newSystemdBox(t)
	ctx := t.Context()

	// 1. install --config: start returns after READY=1, STATUS= says 5/5, status agrees.
	out := sb.run("env", toolsPath, "/host/livinity-agent", "install", "--config", "/host/setup.json", "--timeout", "10m")
	t.Logf("install:\n%s", out)
	if !strings.Contains(out, "5/5 services ready") {
		t.Fatalf("install did not report 5/5 services ready:\n%s", out)
	}
	for _, u := range []string{unit, pm2Unit} {
		if got := sb.uprop(u, "ActiveState"); got != "active" {
			t.Fatalf("%s: ActiveState after install = %q, want active", u, got)
		}
		if got := sb.uprop(u, "UnitFileState"); got != "enabled" {
			t.Errorf("%s: UnitFileState after install = %q, want enabled", u, got)
		}
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
	pm2PID := sb.pm2PID()

	// 2. Where everything runs: the services and the daemon in the PM2 unit with every
	// privilege, the agent alone and confined in its own.
	sb.checkInPM2Unit("after install", services, pm2PID)
	sb.checkPrivileged("after install", services)
	sb.checkAgentConfined()
	if code := sb.pm2Probe("probe-etc", "/usr/bin/touch", "/etc/livinity-probe"); code != 0 {
		t.Errorf("a process started by the services' PM2 daemon cannot write /etc: touch exited %d", code)
	}
	sb.run("test", "-f", "/etc/livinity-probe")
	sb.run("mkdir", "-p", "/mnt/livinity-probe")
	if code := sb.pm2Probe("probe-mount", "/usr/bin/mount", "-t", "tmpfs", "livinity-probe", "/mnt/livinity-probe"); code != 0 {
		t.Errorf("a process started by the services' PM2 daemon cannot mount a tmpfs: mount exited %d", code)
	}
	// the harness runs in the init's mount namespace: the services' mount is there
	if fs := strings.TrimSpace(sb.run("findmnt", "-n", "-o", "FSTYPE", "--mountpoint", "/mnt/livinity-probe")); fs != "tmpfs" {
		t.Errorf("/mnt/livinity-probe in the init's mount namespace is %q, want the services' tmpfs", fs)
	}
	sb.run("umount", "/mnt/livinity-probe")
	sb.run("env", toolsPath, "PM2_HOME=/root/.pm2", "pm2", "delete", "probe-etc", "probe-mount")

	// 3. systemd-analyze verify on both units and security on the agent's.
	for _, u := range []string{unit, pm2Unit} {
		if o, e, err := sb.s.Exec(ctx, "systemd-analyze", "verify", "/etc/systemd/system/"+u); err != nil {
			t.Errorf("systemd-analyze verify %s: %v\n%s%s", u, err, o, e)
		}
	}
	score, sec := sb.exposure(unit)
	if score > maxExposure {
		t.Errorf("exposure %.1f of %s is above %.1f:\n%s", score, unit, maxExposure, sec)
	}

	// the rest with a short watchdog: the drop-in applies from the next start
	sb.write("/etc/systemd/system/"+unit+".d/90-test.conf", fmt.Sprintf(
		"[Service]\nWatchdogSec=%ds\nRestartSec=1s\nTimeoutAbortSec=5s\n", int(testWatchdog.Seconds())))
	sb.run("systemctl", "daemon-reload")

	// 4. kill -9 of the agent: systemd restarts it, the services keep their pids.
	restarts := sb.propInt("NRestarts")
	old := sb.prop("MainPID")
	sb.run("/bin/kill", "-9", old)
	newPID := sb.waitRestart(old, restarts, 60*time.Second)
	t.Logf("kill -9: agent %s replaced by %s", old, newPID)
	sb.checkUntouched("after kill -9", services, pm2PID)
	if got := sb.prop("WatchdogUSec"); got != "6s" {
		t.Fatalf("WatchdogUSec of the restarted agent = %q, want 6s", got)
	}

	// 5. SIGSTOP: the watchdog kills and systemd restarts it within WatchdogSec + slack.
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

	// 6. systemctl stop: clean exit, services still running; start adopts them; restart too.
	sb.run("systemctl", "stop", unit)
	if got := sb.prop("ActiveState"); got != "inactive" {
		t.Errorf("ActiveState after stop = %q, want inactive", got)
	}
	if r, code := sb.prop("Result"), sb.prop("ExecMainStatus"); r != "success" || code != "0" {
		t.Errorf("stop: Result=%s ExecMainStatus=%s, want success and 0", r, code)
	}
	for name, pid := range services {
		if !sb.alive(pid) {
			t.Errorf("%s (pid %d) is gone after systemctl stop", name, pid)
		}
	}
	sb.run("systemctl", "start", unit)
	sb.checkUntouched("after stop and start", services, pm2PID)
	old = sb.prop("MainPID")
	sb.run("systemctl", "restart", unit)
	if sb.prop("MainPID") == old {
		t.Errorf("systemctl restart kept the agent's pid %s", old)
	}
	sb.checkUntouched("after systemctl restart", services, pm2PID)

	// 7. The supervisor's seam: a daemon that stops for good (pm2 kill exits 0, so systemd
	// does not restart the unit) is brought back by the agent through the PM2 unit, not
	// as a child of its own.
	sb.run("env", toolsPath, "PM2_HOME=/root/.pm2", "pm2", "kill")
	sb.poll("the agent brings the PM2 daemon back through "+pm2Unit, 90*time.Second, func() (bool, string) {
		main, active := sb.uprop(pm2Unit, "MainPID"), sb.uprop(pm2Unit, "ActiveState")
		return active == "active" && main != "0" && main != strconv.Itoa(pm2PID), fmt.Sprintf("%s %s MainPID=%s", pm2Unit, active, main)
	})
	sb.waitJournal("bringing the PM2 daemon back through its unit", 30*time.Second)
	services, pm2PID = pidsOf(t, sb.status(true)), sb.pm2PID()
	sb.checkInPM2Unit("after the agent brought the daemon back", services, pm2PID)
	sb.checkPrivileged("after the agent brought the daemon back", services)

	// 8. The pipeline's seam and its rollback, in a transient unit (INVOCATION_ID set, as
	// under the agent's unit) with the agent stopped so that it does not bring the daemon
	// back itself. With the PM2 unit stopped, setup starts it...
	sb.run("systemctl", "stop", unit)
	sb.run("systemctl", "stop", pm2Unit)
	sb.setupInUnit("livinity-setup-seam", "/etc/livinity/setup.json", true)
	if got := sb.uprop(pm2Unit, "ActiveState"); got != "active" {
		t.Fatalf("after setup with %s stopped, the unit is %s: the pipeline did not start the daemon through it", pm2Unit, got)
	}
	pm2PID = sb.pm2PID()
	if main := sb.uprop(pm2Unit, "MainPID"); main != strconv.Itoa(pm2PID) {
		t.Errorf("after setup started the daemon: %s MainPID=%s, the daemon is %d", pm2Unit, main, pm2PID)
	}
	sb.checkInPM2Unit("after the pipeline started the daemon", nil, pm2PID)
	// ...and a run that fails after starting it (a health check no service can pass in
	// 1 ms) rolls back by stopping the unit, not by leaving a daemon it would restart.
	sb.run("systemctl", "stop", pm2Unit)
	var cfg config.Config
	if err := json.Unmarshal([]byte(sb.run("cat", "/etc/livinity/setup.json")), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Agent.HealthTimeoutSeconds = 0.001
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sb.write("/etc/livinity/setup-failing.json", string(b))
	sb.setupInUnit("livinity-setup-fails", "/etc/livinity/setup-failing.json", false)
	if got := sb.uprop(pm2Unit, "ActiveState"); got != "inactive" {
		t.Errorf("after the failed run's rollback %s is %s, want inactive (the run started it)", pm2Unit, got)
	}
	if sb.alive(pm2PID) {
		t.Errorf("the daemon (pid %d) the failed run started still runs after its rollback", pm2PID)
	}
	sb.run("rm", "/etc/livinity/setup-failing.json")
	sb.run("systemctl", "start", unit) // Wants= the PM2 unit: it resurrects the services first
	services, pm2PID = pidsOf(t, sb.status(true)), sb.pm2PID()
	sb.checkInPM2Unit("after the agent started again", services, pm2PID)

	// 9. Reboot with an agent that cannot start — its unit does not even load (no
	// ExecStart=, as after a botched edit), so its Wants= pulls in nothing: the PM2 unit
	// brings the services back on its own; the agent, repaired, adopts them.
	sb.write("/etc/systemd/system/"+unit+".d/95-broken.conf", "[Service]\nExecStart=\n")
	sb.run("systemctl", "daemon-reload")
	if err := sb.s.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	sb.poll(pm2Unit+" active after the reboot", 60*time.Second, func() (bool, string) {
		a := sb.uprop(pm2Unit, "ActiveState")
		return a == "active", a
	})
	if load, active := sb.prop("LoadState"), sb.prop("ActiveState"); load != "bad-setting" || active != "inactive" {
		t.Fatalf("the agent's unit is %s and %s after the reboot, want bad-setting and inactive (no ExecStart=)", load, active)
	}
	st = sb.pm2View()
	for _, sv := range st.Services {
		if sv.PM2Status != "online" || sv.PID <= 0 {
			t.Errorf("after the reboot without an agent, PM2 shows %s %s pid %d, want online", sv.Name, sv.PM2Status, sv.PID)
		}
	}
	services, pm2PID = pidsOf(t, st), sb.pm2PID()
	t.Logf("after the reboot, without the agent: %v, PM2 daemon %d", services, pm2PID)
	sb.checkInPM2Unit("after the reboot", services, pm2PID)
	sb.checkPrivileged("after the reboot", services)
	sb.run("rm", "/etc/systemd/system/"+unit+".d/95-broken.conf")
	sb.run("systemctl", "daemon-reload")
	sb.run("systemctl", "reset-failed", unit)
	sb.run("systemctl", "start", unit)
	sb.checkUntouched("after the agent started after the reboot", services, pm2PID)

	// 10. install again: an upgrade restarts the agent, the services are untouched.
	restarts = sb.propInt("NRestarts")
	old = sb.prop("MainPID")
	out = sb.run("env", toolsPath, "/host/livinity-agent", "install", "--timeout", "5m")
	t.Logf("install again:\n%s", out)
	if !strings.Contains(out, "upgrade") || !strings.Contains(out, "5/5 services ready") || strings.Contains(out, "moved") {
		t.Errorf("second install did not upgrade to 5/5 ready without moving anything:\n%s", out)
	}
	if sb.prop("MainPID") == old {
		t.Errorf("second install did not restart the agent (MainPID still %s)", old)
	}
	sb.checkUntouched("after the upgrade", services, pm2PID)

	// 10b. An update started from the CLI while the unit runs: the release is built beside
	// the live trees, only what changed restarts (nexus core and livinityd, which depends on
	// it), the agent keeps running and supervising, and says 5/5 ready again.
	sb.run("mkdir", "-p", "/var/tmp/rel2")
	sb.run("cp", "-r", "/opt/livos", "/opt/nexus", "/var/tmp/rel2/")
	core := "/var/tmp/rel2/nexus/packages/core/src/index.ts"
	sb.write(core, sb.run("cat", core)+"\nexport const release = 2;\n")
	agentPID := sb.prop("MainPID")
	before := pidsOf(t, sb.status(true))
	out = sb.run("env", toolsPath, "HOME=/root", "PM2_HOME=/root/.pm2", "/usr/local/bin/livinity-agent", "update", "--dir", "/var/tmp/rel2")
	t.Logf("update under systemd:\n%s", out)
	if got := sb.prop("MainPID"); got != agentPID || sb.uprop(unit, "ActiveState") != "active" {
		t.Errorf("the agent did not keep running through the update (MainPID %s → %s)", agentPID, got)
	}
	after := pidsOf(t, sb.status(true))
	var restartedNames []string
	for name, pid := range after {
		if before[name] != pid {
			restartedNames = append(restartedNames, name)
		}
	}
	slices.Sort(restartedNames)
	if !slices.Equal(restartedNames, []string{"livos", "nexus-core"}) {
		t.Errorf("the update under systemd restarted %q, want livos and nexus-core", restartedNames)
	}
	services = after

	// 11. uninstall --purge: units, binary, config and state gone, the services stopped;
	// the trees and the PM2 home stay.
	out = sb.run("/usr/local/bin/livinity-agent", "uninstall", "--purge")
	t.Logf("uninstall --purge:\n%s", out)
	for _, u := range []string{unit, pm2Unit} {
		if got := sb.uprop(u, "LoadState"); got != "not-found" {
			t.Errorf("%s: LoadState after uninstall = %q, want not-found", u, got)
		}
	}
	for name, pid := range services {
		if sb.alive(pid) {
			t.Errorf("%s (pid %d) still runs after uninstall", name, pid)
		}
	}
	for _, gone := range []string{"/usr/local/bin/livinity-agent", "/etc/systemd/system/" + unit, "/etc/systemd/system/" + pm2Unit,
		"/etc/systemd/system/" + unit + ".d", "/etc/systemd/system/" + pm2Unit + ".d", "/etc/livinity/setup.json", "/var/lib/livinity-agent"} {
		if _, _, err := sb.s.Exec(ctx, "test", "!", "-e", gone); err != nil {
			t.Errorf("%s still exists after uninstall --purge", gone)
		}
	}
	for _, kept := range []string{"/opt/livos/package.json", "/opt/livos/.env", "/opt/nexus/package.json", "/opt/nexus/packages/core/dist", "/root/.pm2/dump.pm2"} {
		if _, _, err := sb.s.Exec(ctx, "test", "-e", kept); err != nil {
			t.Errorf("%s is gone after uninstall --purge: the LivOS trees and the PM2 home must stay", kept)
		}
	}
}

// TestSystemdUpgradeFromAgentUnit installs the previous layout — the agent's unit as it
// was before livinity-pm2.service (testdata/livinity-agent.v1.service: KillMode=process,
// the PM2 daemon and the services in the agent's control group, inside its hardening) —
// onboards, then runs install: the running daemon and every service move into
// livinity-pm2.service with their pids unchanged, and the agent's control group keeps
// only the agent, so that kill -9 of the agent no longer reaches them. Restarting the PM2
// unit then gives the services the privileges LivOS needs.
func TestSystemdUpgradeFromAgentUnit(t *testing.T) {
	sb, toolsPath := newSystemdBox(t)
	ctx := t.Context()

	// The previous layout, as its install wrote it: unit, drop-in with the tools' PATH,
	// config, binary.
	v1, err := os.ReadFile(filepath.Join("testdata", "livinity-agent.v1.service"))
	if err != nil {
		t.Fatal(err)
	}
	sb.write("/etc/systemd/system/"+unit, string(v1))
	sb.write("/etc/systemd/system/"+unit+".d/50-install.conf", "[Service]\nEnvironment=\""+toolsPath+"\"\n")
	sb.run("mkdir", "-p", "-m", "0700", "/etc/livinity")
	sb.run("install", "-m", "0600", "/host/setup.json", "/etc/livinity/setup.json")
	sb.run("install", "-m", "0755", "/host/livinity-agent", "/usr/local/bin/livinity-agent")
	sb.run("systemctl", "daemon-reload")
	sb.run("systemctl", "enable", unit)
	startCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if o, e, err := sb.s.Exec(startCtx, "systemctl", "start", unit); err != nil { // returns after READY=1
		t.Fatalf("start the previous layout: %v\n%s%s", err, o, e)
	}
	services := pidsOf(t, sb.status(true))
	pm2PID := sb.pm2PID()
	agentCG := sb.uprop(unit, "ControlGroup")
	for name, pid := range withDaemon(services, pm2PID) {
		if cg := sb.cgroup(pid); cg != agentCG {
			t.Fatalf("previous layout: %s (pid %d) is in %s, want the agent's %s", name, pid, cg, agentCG)
		}
	}
	// what this change is about: there, the services cannot do what livinityd does
	st := sb.procStatus(services["livos"])
	t.Logf("previous layout: livos CapBnd %s NoNewPrivs %s Seccomp %s", st["CapBnd"], st["NoNewPrivs"], st["Seccomp"])
	if hasCap(st["CapBnd"], capSysAdmin) || st["NoNewPrivs"] != "1" {
		t.Errorf("previous layout: livos has CapBnd %s NoNewPrivs %s; want the agent's sandbox (no CAP_SYS_ADMIN, NoNewPrivs 1)", st["CapBnd"], st["NoNewPrivs"])
	}
	if code := sb.pm2Probe("probe-etc", "/usr/bin/touch", "/etc/livinity-probe"); code == 0 {
		t.Errorf("previous layout: a process started by the PM2 daemon wrote /etc: the layout under test is not the confined one")
	}
	sb.run("env", toolsPath, "PM2_HOME=/root/.pm2", "pm2", "delete", "probe-etc")

	// install: the upgrade moves the running daemon and its services, restarting nothing.
	oldAgent := sb.prop("MainPID")
	out := sb.run("env", toolsPath, "/host/livinity-agent", "install", "--timeout", "5m")
	t.Logf("install over the previous layout:\n%s", out)
	if !strings.Contains(out, "upgrade") || !strings.Contains(out, "moved the running PM2 daemon") || !strings.Contains(out, "5/5 services ready") {
		t.Errorf("install did not say it moved the daemon and upgraded to 5/5 ready:\n%s", out)
	}
	if sb.prop("MainPID") == oldAgent {
		t.Errorf("install did not restart the agent (MainPID still %s)", oldAgent)
	}
	sb.checkUntouched("after the upgrade from the previous layout", services, pm2PID)
	sb.checkInPM2Unit("after the upgrade from the previous layout", services, pm2PID)
	procs := strings.Fields(sb.run("cat", "/sys/fs/cgroup"+agentCG+"/cgroup.procs"))
	if main := sb.prop("MainPID"); !slices.Equal(procs, []string{main}) {
		t.Errorf("the agent's control group holds %v after the upgrade, want only the agent (%s)", procs, main)
	}
	if got := sb.uprop(pm2Unit, "Delegate"); got != "no" {
		t.Errorf("%s Delegate=%s after the upgrade, want no (delegated only while moving)", pm2Unit, got)
	}
	sb.run("test", "!", "-e", "/run/systemd/system/"+pm2Unit+".d/50-adopt.conf")
	if got := sb.uprop(unit, "KillMode"); got != "control-group" {
		t.Errorf("the agent's unit has KillMode=%s after the upgrade, want control-group", got)
	}
	// out of the agent's reach now: kill -9 under KillMode=control-group leaves them
	restarts := sb.propInt("NRestarts")
	old := sb.prop("MainPID")
	sb.run("/bin/kill", "-9", old)
	sb.waitRestart(old, restarts, 60*time.Second)
	sb.checkUntouched("after kill -9 of the upgraded agent", services, pm2PID)

	// The moved services keep the sandbox they started in until the daemon restarts;
	// restarting the PM2 unit gives them LivOS's privileges.
	sb.run("systemctl", "restart", pm2Unit)
	sb.poll("the services restarted by "+pm2Unit, 2*time.Minute, func() (bool, string) {
		st := sb.status(true)
		for _, sv := range st.Services {
			if sv.PID == services[sv.Name] {
				return false, sv.Name + " still has its old pid"
			}
		}
		return true, ""
	})
	services, pm2PID = pidsOf(t, sb.status(true)), sb.pm2PID()
	sb.checkInPM2Unit("after restarting "+pm2Unit, services, pm2PID)
	sb.checkPrivileged("after restarting "+pm2Unit, services)

	// uninstall --keep-services removes the agent only: the services keep running in
	// their unit, which stays enabled, with the binary (the python services' launcher).
	out = sb.run("/usr/local/bin/livinity-agent", "uninstall", "--keep-services")
	t.Logf("uninstall --keep-services:\n%s", out)
	if got := sb.prop("LoadState"); got != "not-found" {
		t.Errorf("%s: LoadState after uninstall --keep-services = %q, want not-found", unit, got)
	}
	if a, e := sb.uprop(pm2Unit, "ActiveState"), sb.uprop(pm2Unit, "UnitFileState"); a != "active" || e != "enabled" {
		t.Errorf("%s is %s and %s after uninstall --keep-services, want active and enabled", pm2Unit, a, e)
	}
	sb.run("test", "-x", "/usr/local/bin/livinity-agent")
	got := pidsOf(t, sb.pm2View())
	for name, pid := range withDaemon(services, pm2PID) {
		if name != "PM2 daemon" && got[name] != pid {
			t.Errorf("after uninstall --keep-services: %s has pid %d, had %d", name, got[name], pid)
		}
	}
	if !sb.alive(pm2PID) {
		t.Errorf("the PM2 daemon (pid %d) is gone after uninstall --keep-services", pm2PID)
	}
}

// newSystemdBox boots a sandbox (HostNet, Persistent) with the built agent, the demo tree
// at /opt/livos and /opt/nexus and its config at /host/setup.json; it returns the PATH
// assignment that finds the project's tools.
func newSystemdBox(t *testing.T) (*sandboxT, string) {
	t.Helper()
	tools := testenv.ToolsBin(t)
	testenv.Require(t, "node", "npm", "python3", "go")
	host := testenv.ShortTempDir(t)
	testenv.BuildAgent(t, host)
	if err := demo.Extract(filepath.Join(host, "tree")); err != nil {
		t.Fatal(err)
	}
	writeSandboxConfig(t, filepath.Join(host, "setup.json"))
	s := sdsandbox.New(t, sdsandbox.Options{HostDir: host, HostNet: true, Persistent: true})
	sb := &sandboxT{t: t, s: s}
	sb.run("cp", "-a", "/host/tree/livos", "/opt/livos")
	sb.run("cp", "-a", "/host/tree/nexus", "/opt/nexus")
	sb.run("rm", "-rf", "/root/.pm2") // the host's, if any, seen through the overlay
	return sb, "PATH=" + tools + ":" + innerPath
}

// writeSandboxConfig writes the demo's setup.json for the trees at /opt/livos and
// /opt/nexus inside the sandbox, on free host ports (the sandbox shares the host's
// network).
func writeSandboxConfig(t *testing.T, path string) {
	t.Helper()
	cfg := demo.Config("/opt", 20)
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
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

// withDaemon adds the PM2 daemon to a service→pid map.
func withDaemon(services map[string]int, pm2PID int) map[string]int {
	all := map[string]int{"PM2 daemon": pm2PID}
	for k, v := range services {
		all[k] = v
	}
	return all
}

// hasCap reports whether the hex capability mask of /proc/PID/status holds bit.
func hasCap(mask string, bit uint) bool {
	v, err := strconv.ParseUint(mask, 16, 64)
	return err == nil && v&(1<<bit) != 0
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

// uprop reads one property of a unit.
func (sb *sandboxT) uprop(u, name string) string {
	sb.t.Helper()
	return strings.TrimSpace(sb.run("systemctl", "show", "-p", name, "--value", u))
}

// prop reads one property of the agent's unit.
func (sb *sandboxT) prop(name string) string {
	sb.t.Helper()
	return sb.uprop(unit, name)
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

// pm2View is `livinity-agent status --json` without an agent: PM2's own view, once
// every service is online.
func (sb *sandboxT) pm2View() statusapi.Status {
	sb.t.Helper()
	var st statusapi.Status
	sb.poll("livinity-agent status --json: PM2's view, all online", 2*time.Minute, func() (bool, string) {
		out, _, _ := sb.s.Exec(sb.t.Context(), "/usr/local/bin/livinity-agent", "status", "--json")
		if err := json.Unmarshal(out, &st); err != nil || st.Source != statusapi.SourcePM2 {
			return false, fmt.Sprintf("output %q: %v", out, err)
		}
		online := 0
		for _, sv := range st.Services {
			if sv.PM2Status == "online" {
				online++
			}
		}
		return online == len(config.Default().ServiceNames()), string(out)
	})
	return st
}

// pm2PID is the pid in the PM2 home's pm2.pid.
func (sb *sandboxT) pm2PID() int {
	sb.t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(sb.run("cat", "/root/.pm2/pm2.pid")))
	if err != nil {
		sb.t.Fatalf("pm2.pid: %v", err)
	}
	return pid
}

func (sb *sandboxT) alive(pid int) bool {
	_, _, err := sb.s.Exec(sb.t.Context(), "/bin/kill", "-0", strconv.Itoa(pid))
	return err == nil
}

// procStatus reads /proc/PID/status inside.
func (sb *sandboxT) procStatus(pid int) map[string]string {
	sb.t.Helper()
	m := map[string]string{}
	for line := range strings.Lines(sb.run("cat", "/proc/"+strconv.Itoa(pid)+"/status")) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// cgroup is a process's control group as systemd names it.
func (sb *sandboxT) cgroup(pid int) string {
	sb.t.Helper()
	for line := range strings.Lines(sb.run("cat", "/proc/"+strconv.Itoa(pid)+"/cgroup")) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return p
		}
	}
	return ""
}

// checkInPM2Unit checks that the daemon is the PM2 unit's main process and that it and
// every service are in that unit's control group.
func (sb *sandboxT) checkInPM2Unit(when string, services map[string]int, pm2PID int) {
	sb.t.Helper()
	cg := sb.uprop(pm2Unit, "ControlGroup")
	if main := sb.uprop(pm2Unit, "MainPID"); main != strconv.Itoa(pm2PID) {
		sb.t.Errorf("%s: %s MainPID=%s, the PM2 daemon is %d", when, pm2Unit, main, pm2PID)
	}
	for name, pid := range withDaemon(services, pm2PID) {
		if got := sb.cgroup(pid); got != cg || cg == "" {
			sb.t.Errorf("%s: %s (pid %d) is in %s, want %s's %s", when, name, pid, got, pm2Unit, cg)
		}
	}
}

// checkPrivileged checks that every service has what LivOS's livinityd needs: the init's
// capability bounding set (CAP_SYS_ADMIN included), NoNewPrivs 0, no seccomp filter, and
// the init's mount namespace.
func (sb *sandboxT) checkPrivileged(when string, services map[string]int) {
	sb.t.Helper()
	init := sb.procStatus(1)
	initNS := strings.TrimSpace(sb.run("readlink", "/proc/1/ns/mnt"))
	if !hasCap(init["CapBnd"], capSysAdmin) {
		sb.t.Fatalf("the sandbox's init has CapBnd %s without CAP_SYS_ADMIN: nothing to compare with", init["CapBnd"])
	}
	for name, pid := range services {
		st := sb.procStatus(pid)
		if st["CapBnd"] != init["CapBnd"] || st["NoNewPrivs"] != "0" || st["Seccomp"] != "0" {
			sb.t.Errorf("%s: %s (pid %d) has CapBnd %s NoNewPrivs %s Seccomp %s; want the init's CapBnd %s, NoNewPrivs 0, Seccomp 0",
				when, name, pid, st["CapBnd"], st["NoNewPrivs"], st["Seccomp"], init["CapBnd"])
		}
		if ns := strings.TrimSpace(sb.run("readlink", "/proc/"+strconv.Itoa(pid)+"/ns/mnt")); ns != initNS {
			sb.t.Errorf("%s: %s (pid %d) is in mount namespace %s, want the init's %s", when, name, pid, ns, initNS)
		}
	}
}

// checkAgentConfined checks that the agent runs alone in its control group with its
// unit's hardening: no CAP_SYS_ADMIN, NoNewPrivs 1, a seccomp filter, a mount namespace
// of its own.
func (sb *sandboxT) checkAgentConfined() {
	sb.t.Helper()
	main, _ := strconv.Atoi(sb.prop("MainPID"))
	st := sb.procStatus(main)
	if hasCap(st["CapBnd"], capSysAdmin) || st["NoNewPrivs"] != "1" || st["Seccomp"] != "2" {
		sb.t.Errorf("the agent (pid %d) has CapBnd %s NoNewPrivs %s Seccomp %s; want its unit's hardening", main, st["CapBnd"], st["NoNewPrivs"], st["Seccomp"])
	}
	if ns, initNS := sb.run("readlink", "/proc/"+strconv.Itoa(main)+"/ns/mnt"), sb.run("readlink", "/proc/1/ns/mnt"); ns == initNS {
		sb.t.Errorf("the agent runs in the init's mount namespace %s", ns)
	}
	cg := sb.prop("ControlGroup")
	if procs := strings.Fields(sb.run("cat", "/sys/fs/cgroup"+cg+"/cgroup.procs")); !slices.Equal(procs, []string{strconv.Itoa(main)}) {
		sb.t.Errorf("the agent's control group %s holds %v, want only the agent (%d)", cg, procs, main)
	}
}

// pm2Probe has the services' PM2 daemon run argv once, as it runs a service (an app
// with no restart), and returns its exit code.
func (sb *sandboxT) pm2Probe(name string, argv ...string) int {
	sb.t.Helper()
	env := []string{"env", "PATH=" + testenv.ToolsBin(sb.t) + ":" + innerPath, "PM2_HOME=/root/.pm2"}
	args := append(append(env, "pm2", "start", argv[0], "--name", name, "--no-autorestart", "--interpreter", "none", "--"), argv[1:]...)
	sb.run(args...)
	code := -1
	sb.poll("PM2 app "+name+" exits", 30*time.Second, func() (bool, string) {
		out := sb.run(append(env, "pm2", "jlist")...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var apps []struct {
			Name   string `json:"name"`
			PM2Env struct {
				Status   string `json:"status"`
				ExitCode *int   `json:"exit_code"`
			} `json:"pm2_env"`
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &apps); err != nil {
			return false, err.Error()
		}
		for _, a := range apps {
			if a.Name == name && (a.PM2Env.Status == "stopped" || a.PM2Env.Status == "errored") && a.PM2Env.ExitCode != nil {
				code = *a.PM2Env.ExitCode
				return true, ""
			}
			if a.Name == name {
				return false, "status " + a.PM2Env.Status
			}
		}
		return false, "not listed"
	})
	return code
}

// setupInUnit runs `livinity-agent setup --config cfg` as a transient unit (so with
// INVOCATION_ID, as under the agent's unit) and waits for it; ok says whether it should
// succeed.
func (sb *sandboxT) setupInUnit(name, cfg string, ok bool) {
	sb.t.Helper()
	argv := []string{"systemd-run", "--wait", "--pipe", "--quiet", "--unit=" + name, "--collect",
		"-E", "PATH=" + testenv.ToolsBin(sb.t) + ":" + innerPath, "-E", "HOME=/root", "-E", "PM2_HOME=/root/.pm2",
		"/usr/local/bin/livinity-agent", "setup", "--config", cfg}
	ctx, cancel := context.WithTimeout(sb.t.Context(), 10*time.Minute)
	defer cancel()
	out, errOut, err := sb.s.Exec(ctx, argv...)
	sb.t.Logf("setup --config %s in %s: err %v\n%s%s", cfg, name, err, lastLines(string(out), 5), lastLines(string(errOut), 15))
	if (err == nil) != ok {
		sb.t.Fatalf("setup --config %s: err %v, want success %v", cfg, err, ok)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// exposure runs systemd-analyze security on u and returns its overall score and output.
func (sb *sandboxT) exposure(u string) (float64, string) {
	sb.t.Helper()
	sec, _, _ := sb.s.Exec(sb.t.Context(), "systemd-analyze", "security", "--no-pager", u) // exits non-zero above its threshold
	m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(u) + `: ([0-9.]+) (\S+)`).FindSubmatch(sec)
	if m == nil {
		sb.t.Fatalf("systemd-analyze security printed no overall exposure:\n%s", sec)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	sb.t.Logf("systemd-analyze security %s: %s %s", u, m[1], m[2])
	return score, string(sec)
}

// checkUntouched waits for the agent to report every service ready and checks that the
// services and the PM2 daemon still have the pids they had.
func (sb *sandboxT) checkUntouched(when string, services map[string]int, pm2PID int) {
	sb.t.Helper()
	got := pidsOf(sb.t, sb.status(true))
	for name, pid := range services {
		if got[name] != pid {
			sb.t.Errorf("%s: %s has pid %d, had %d: it was restarted", when, name, got[name], pid)
		}
	}
	if p := sb.pm2PID(); p != pm2PID {
		sb.t.Errorf("%s: the PM2 daemon has pid %d, had %d", when, p, pm2PID)
	}
	if !sb.alive(pm2PID) {
		sb.t.Errorf("%s: the PM2 daemon (pid %d) is gone", when, pm2PID)
	}
}
