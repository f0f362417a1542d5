package sdsandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needSandbox fails the test at once, with the reason, unless a sandbox can boot here
// (root, systemd, util-linux): before any host-side setup that would fail less clearly.
func needSandbox(t *testing.T) {
	t.Helper()
	if _, _, err := preflight(); err != nil {
		t.Fatalf("sdsandbox: %v", err)
	}
}

// up boots a sandbox with Up (not New: these tests inspect the host after Down), logs the
// boot time and makes sure it is powered off at cleanup.
func up(t *testing.T, opts Options) *Sandbox {
	t.Helper()
	start := time.Now()
	s, err := Up(t.Context(), t.TempDir(), opts)
	if err != nil {
		t.Fatalf("sdsandbox: %v", err)
	}
	t.Logf("boot: %v to %q", time.Since(start).Round(time.Millisecond), s.BootState())
	t.Cleanup(func() {
		if t.Failed() {
			s.logState(t)
		}
		if err := s.Down(); err != nil {
			t.Errorf("down at cleanup: %v", err)
		}
	})
	return s
}

// down powers s off, logs how and how long it took, and fails the test on error.
func down(t *testing.T, s *Sandbox) {
	t.Helper()
	start := time.Now()
	if err := s.Down(); err != nil {
		t.Fatalf("down: %v", err)
	}
	t.Logf("down: %v via %s", time.Since(start).Round(time.Millisecond), s.downVia)
}

// run runs argv inside and returns its trimmed stdout, failing the test on error.
func run(t *testing.T, s *Sandbox, argv ...string) string {
	t.Helper()
	out, _, err := s.Exec(t.Context(), argv...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// unitProp returns one property of a unit inside (systemctl show -p prop --value).
func unitProp(t *testing.T, s *Sandbox, unit, prop string) string {
	t.Helper()
	return run(t, s, "systemctl", "show", "-p", prop, "--value", unit)
}

// wantProps fails the test unless unit's properties have the wanted values.
func wantProps(t *testing.T, s *Sandbox, unit string, want map[string]string) {
	t.Helper()
	for prop, v := range want {
		if got := unitProp(t, s, unit, prop); got != v {
			t.Errorf("%s: %s=%s, want %s", unit, prop, got, v)
		}
	}
}

// TestHostTmpSurvives is the hazard test: systemd-tmpfiles-setup inside empties /tmp and
// /var/tmp, which must be the sandbox's own and never the host's.
func TestHostTmpSurvives(t *testing.T) {
	needSandbox(t)
	old := time.Now().Add(-60 * 24 * time.Hour) // also bait for age-based cleaning
	canaries := map[string]string{}
	for _, dir := range []string{"/tmp", "/var/tmp"} {
		d, err := os.MkdirTemp(dir, "sdsandbox-canary-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		name, content := filepath.Join(d, "file"), "canary "+randomHex(8)
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		canaries[name] = content
		for _, p := range []string{name, d} {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}

	s := up(t, Options{})
	// The unit that would wipe the host's /tmp did run inside...
	if got := unitProp(t, s, "systemd-tmpfiles-setup.service", "ActiveState"); got != "active" {
		t.Fatalf("systemd-tmpfiles-setup.service is %q inside, want active (the hazard must be exercised)", got)
	}
	// ...on a /tmp and /var/tmp where the host's files are not even visible.
	for name := range canaries {
		if _, _, err := s.Exec(t.Context(), "test", "!", "-e", name); err != nil {
			t.Errorf("host canary %s is visible inside the sandbox: %v", name, err)
		}
	}
	down(t, s)

	for name, want := range canaries {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("host canary lost: %v", err)
		} else if string(got) != want {
			t.Errorf("host canary %s holds %q, want %q", name, got, want)
		}
	}
}

// TestIsolation checks the file system and namespace isolation from inside and the host
// after Down.
func TestIsolation(t *testing.T) {
	needSandbox(t)
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "hello"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A host file outside the tmpfs-covered directories, visible inside through the
	// overlay's lower layer.
	lower, err := os.CreateTemp("/var/lib", "sdsandbox-lower-")
	if err != nil {
		t.Fatal(err)
	}
	lower.Close()
	t.Cleanup(func() { os.Remove(lower.Name()) })

	s := up(t, Options{HostDir: hostDir})

	// a command named like a shell builtin still runs inside the sandbox's pid namespace:
	// `kill` must not reach a host process
	host := exec.Command("sleep", "60")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Process.Kill(); host.Wait() })
	if _, _, err := s.Exec(context.Background(), "kill", "-0", strconv.Itoa(host.Process.Pid)); err == nil {
		t.Fatalf("kill -0 %d inside the sandbox reached the host's process", host.Process.Pid)
	}
	if out := run(t, s, "sh", "-c", "echo $$"); strings.TrimSpace(out) == strconv.Itoa(os.Getpid()) {
		t.Fatal("the command ran in the host's pid namespace")
	}

	if got, want := run(t, s, "stat", "-f", "-c", "%T", "/", "/tmp", "/var/tmp", "/run", "/dev"),
		"overlayfs\ntmpfs\ntmpfs\ntmpfs\ntmpfs"; got != want {
		t.Errorf("file system types of / /tmp /var/tmp /run /dev inside:\n%s\nwant:\n%s", got, want)
	}
	if got := run(t, s, "hostname"); got != "sdsandbox" {
		t.Errorf("hostname inside is %q, want sdsandbox", got)
	}

	// /host: readable, not writable.
	if got := run(t, s, "cat", "/host/hello"); got != "from the host" {
		t.Errorf("/host/hello inside holds %q", got)
	}
	_, stderr, err := s.Exec(t.Context(), "touch", "/host/written-inside")
	if err == nil || !bytes.Contains(stderr, []byte("Read-only file system")) {
		t.Errorf("touch /host/written-inside: err %v, stderr %q; want a read-only file system error", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(hostDir, "written-inside")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a write to /host reached the host: stat: %v", err)
	}

	// Writes and deletes inside / stay inside.
	written := []string{"/sdsandbox-written-" + randomHex(6), "/etc/sdsandbox-written-" + randomHex(6)}
	for _, name := range written {
		if err := s.WriteFile(t.Context(), name, []byte("inside\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := run(t, s, "stat", "-c", "%a %s", name); got != "600 7" {
			t.Errorf("%s inside: mode and size %q, want \"600 7\"", name, got)
		}
		if _, err := os.Stat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s written inside is visible on the host: stat: %v", name, err)
		}
	}
	run(t, s, "rm", lower.Name())
	if _, _, err := s.Exec(t.Context(), "test", "!", "-e", lower.Name()); err != nil {
		t.Errorf("%s still exists inside after rm: %v", lower.Name(), err)
	}

	// Network: a namespace of its own with only lo, and lo up.
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, s, "readlink", "/proc/self/ns/net"); got == hostNet {
		t.Errorf("the sandbox shares the host's network namespace %s", got)
	}
	if got := run(t, s, "ls", "/sys/class/net"); got != "lo" {
		t.Errorf("network interfaces inside: %q, want only lo", got)
	}
	if got := run(t, s, "cat", "/sys/class/net/lo/flags"); got != "0x9" {
		t.Errorf("lo flags inside: %s, want 0x9 (UP|LOOPBACK)", got)
	}

	down(t, s)
	for _, name := range written {
		if _, err := os.Stat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s written inside is on the host after down: stat: %v", name, err)
		}
	}
	if _, err := os.Stat(lower.Name()); err != nil {
		t.Errorf("host file removed inside is gone from the host: %v", err)
	}
}

// TestHostNet checks that HostNet shares the host's network namespace.
func TestHostNet(t *testing.T) {
	needSandbox(t)
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	s := up(t, Options{HostNet: true})
	if got := run(t, s, "readlink", "/proc/self/ns/net"); got != hostNet {
		t.Errorf("network namespace inside is %s, want the host's %s", got, hostNet)
	}
	down(t, s)
}

const notifyScript = `#!/bin/sh
echo "notify-test: starting"
systemd-notify --ready --status="serving"
echo "notify-test: ready"
exec sleep infinity
`

const silentScript = `#!/bin/sh
echo "silent-test: never ready"
exec sleep infinity
`

const unitTemplate = `[Unit]
Description=sdsandbox test: %s

[Service]
Type=notify
NotifyAccess=all
TimeoutStartSec=%s
ExecStart=%s
`

// TestNotifyService installs Type=notify units inside: one that signals readiness
// becomes active once it does, one that never does fails on its start timeout.
func TestNotifyService(t *testing.T) {
	needSandbox(t)
	s := New(t, Options{})
	ctx := t.Context()
	install := func(name, script, timeout string) {
		t.Helper()
		bin := "/usr/local/bin/" + name
		if err := s.WriteFile(ctx, bin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		unit := fmt.Sprintf(unitTemplate, name, timeout, bin)
		if err := s.WriteFile(ctx, "/etc/systemd/system/"+name+".service", []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	install("sdsandbox-notify", notifyScript, "20s")
	install("sdsandbox-silent", silentScript, "1s")
	run(t, s, "systemctl", "daemon-reload")

	// For Type=notify, systemctl start returns once READY=1 arrived.
	run(t, s, "systemctl", "start", "sdsandbox-notify.service")
	wantProps(t, s, "sdsandbox-notify.service", map[string]string{
		"ActiveState": "active", "SubState": "running", "StatusText": "serving"})
	var journal []byte
	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		var err error
		journal, err = s.Journal(ctx, "sdsandbox-notify.service")
		return bytes.Contains(journal, []byte("notify-test: ready")), err
	})
	if err != nil {
		t.Errorf("journal of sdsandbox-notify.service lacks the script's output (%v):\n%s", err, journal)
	}
	run(t, s, "systemctl", "stop", "sdsandbox-notify.service")
	wantProps(t, s, "sdsandbox-notify.service", map[string]string{"ActiveState": "inactive"})

	// No READY=1: the start job fails on TimeoutStartSec.
	if _, _, err := s.Exec(ctx, "systemctl", "start", "sdsandbox-silent.service"); err == nil {
		t.Errorf("systemctl start sdsandbox-silent.service succeeded without READY=1")
	}
	wantProps(t, s, "sdsandbox-silent.service", map[string]string{"ActiveState": "failed", "Result": "timeout"})
}

// bootLogUnit appends its invocation id (new for each run) to /var/lib/sdsandbox-boots,
// once per boot. (The kernel's boot_id is the host's: the sandbox shares its kernel.)
const bootLogUnit = `[Unit]
Description=sdsandbox boot log

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "$$INVOCATION_ID" >>/var/lib/sdsandbox-boots'

[Install]
WantedBy=multi-user.target
`

// TestReboot boots a Persistent sandbox, writes to its disk, enables a unit and reboots:
// the files are still there, the unit ran at the second boot too, with a new boot id and
// a new PID 1, and nothing was written to the host outside the sandbox's directory (the
// host's /tmp canary survives, the lower layer is untouched). A sandbox on a tmpfs
// refuses to reboot.
func TestReboot(t *testing.T) {
	needSandbox(t)
	canary, err := os.MkdirTemp("/tmp", "sdsandbox-canary-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(canary) })
	if err := os.WriteFile(filepath.Join(canary, "file"), []byte("canary"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := up(t, Options{}).Reboot(t.Context()); err == nil {
		t.Error("a sandbox without Persistent rebooted; want an error")
	}

	dir := t.TempDir()
	s, err := Up(t.Context(), dir, Options{Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.logState(t)
		}
		if err := s.Down(); err != nil {
			t.Errorf("down at cleanup: %v", err)
		}
	})
	ctx := t.Context()
	marker := "persisted " + randomHex(8)
	if err := s.WriteFile(ctx, "/etc/sdsandbox-persist", []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFile(ctx, "/etc/systemd/system/sdsandbox-bootlog.service", []byte(bootLogUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, s, "systemctl", "daemon-reload")
	run(t, s, "systemctl", "enable", "--now", "sdsandbox-bootlog.service")
	firstInit := s.initPID
	start := time.Now()
	if err := s.Reboot(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("reboot: %v to %q", time.Since(start).Round(time.Millisecond), s.BootState())
	if s.initPID == firstInit {
		t.Errorf("PID 1 is still host pid %d after the reboot", firstInit)
	}
	if got := run(t, s, "cat", "/etc/sdsandbox-persist"); got != marker {
		t.Errorf("/etc/sdsandbox-persist holds %q after the reboot, want %q", got, marker)
	}
	boots := strings.Fields(run(t, s, "cat", "/var/lib/sdsandbox-boots"))
	if len(boots) != 2 || boots[0] == boots[1] {
		t.Errorf("boot log %q: want two different invocation ids (the unit enabled at the first boot ran at the second)", boots)
	}
	for _, p := range []string{"/etc/sdsandbox-persist", "/var/lib/sdsandbox-boots"} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists on the host: a write inside escaped the sandbox (%v)", p, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "mnt", "upper", p)); err != nil {
			t.Errorf("%s is not in the sandbox's upper layer on disk: %v", p, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(canary, "file")); err != nil || string(b) != "canary" {
		t.Errorf("host canary in /tmp: %q, %v", b, err)
	}
	if err := s.Down(); err != nil {
		t.Fatal(err)
	}
	if err := s.Reboot(ctx); err == nil {
		t.Error("a sandbox that is down rebooted; want an error")
	}
}

// TestDown checks that Down ends commands and services inside, leaves no process in the
// sandbox's pid namespace, removes its cgroups, and can be called again.
func TestDown(t *testing.T) {
	needSandbox(t)
	s := up(t, Options{})
	cmd, err := s.Start(t.Context(), "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	run(t, s, "systemd-run", "--unit=sdsandbox-sleep", "sleep", "1000")
	if got := unitProp(t, s, "sdsandbox-sleep.service", "ActiveState"); got != "active" {
		t.Fatalf("sdsandbox-sleep.service is %q, want active", got)
	}
	sleeps := 0
	for _, pid := range nsMembers(s.pidNS) {
		if comm(pid) == "sleep" {
			sleeps++
		}
	}
	if sleeps != 2 {
		t.Fatalf("found %d sleep processes in the sandbox pid namespace, want 2", sleeps)
	}
	for _, dir := range []string{s.cg.unified, s.cg.devices} {
		if _, err := os.Stat(dir); dir != "" && err != nil {
			t.Fatalf("sandbox cgroup missing while up: %v", err)
		}
	}

	down(t, s)
	if s.downVia != "poweroff" {
		t.Errorf("down went via %s, want a clean poweroff", s.downVia)
	}
	if left := nsMembers(s.pidNS); len(left) != 0 {
		t.Errorf("processes left in the sandbox pid namespace: %v", left)
	}
	for _, dir := range []string{s.cg.unified, s.cg.devices} {
		if _, err := os.Stat(dir); dir != "" && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("sandbox cgroup %s still exists after down: %v", dir, err)
		}
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Errorf("the command started inside exited successfully; want it ended by down")
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the command started inside still runs after down")
	}
	if err := s.Down(); err != nil {
		t.Errorf("second down: %v", err)
	}
	if _, _, err := s.Exec(t.Context(), "true"); err == nil {
		t.Errorf("exec after down succeeded")
	}
}

// crashChildEnv makes the test binary boot a sandbox in the directory it names, print
// the sandbox's identity as JSON and block until killed (see TestMain).
const crashChildEnv = "SDSANDBOX_CRASH_CHILD"

// crashReport is what the crash child prints.
type crashReport struct {
	InitPID   int
	PIDNS     string
	Cgroups   []string
	BootState string
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		s, err := Up(context.Background(), dir, Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		json.NewEncoder(os.Stdout).Encode(crashReport{s.initPID, s.pidNS, []string{s.cg.unified, s.cg.devices}, s.BootState()})
		select {} // until killed
	}
	os.Exit(m.Run())
}

// TestCrashedTestBinaryLeavesNothing kills a test binary that holds a running sandbox
// without Down: the sandbox must die with it, and the next Up removes its empty cgroups.
func TestCrashedTestBinaryLeavesNothing(t *testing.T) {
	needSandbox(t)
	child := osexec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), crashChildEnv+"="+t.TempDir())
	child.Stderr = os.Stderr
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	reports := make(chan crashReport, 1)
	go func() { // ends when the child's stdout closes
		var r crashReport
		json.NewDecoder(stdout).Decode(&r)
		reports <- r
	}()
	var r crashReport
	select {
	case r = <-reports:
	case <-time.After(30 * time.Second):
		t.Fatal("the crash child did not report its sandbox")
	}
	if r.PIDNS == "" || pidNamespace(r.InitPID) != r.PIDNS || r.BootState != "running" {
		t.Fatalf("the crash child's sandbox is not running: %+v", r)
	}
	start := time.Now()
	child.Process.Kill()
	child.Wait()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := poll(ctx, 20*time.Millisecond, func() (bool, error) { return len(nsMembers(r.PIDNS)) == 0, nil }); err != nil {
		t.Fatalf("processes left in the killed child's sandbox: %v", nsMembers(r.PIDNS))
	}
	t.Logf("the sandbox died %v after its test binary", time.Since(start).Round(time.Millisecond))

	s := up(t, Options{}) // removes stale cgroups before making its own
	for _, dir := range r.Cgroups {
		if _, err := os.Stat(dir); dir != "" && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the killed child's cgroup %s survived the next Up: %v", dir, err)
		}
	}
	down(t, s)
}

// TestUpRejectsBadHostDir checks that a bad HostDir is refused, naming the field, before
// anything is started.
func TestUpRejectsBadHostDir(t *testing.T) {
	needSandbox(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ hostDir, want string }{
		{"relative/dir", `HostDir "relative/dir" is relative`},
		{filepath.Join(t.TempDir(), "missing"), "no such file or directory"},
		{file, "is not a directory"},
	} {
		dir := t.TempDir()
		s, err := Up(t.Context(), dir, Options{HostDir: tc.hostDir})
		if err == nil {
			s.Down()
			t.Errorf("Up with HostDir %q succeeded", tc.hostDir)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "HostDir") {
			t.Errorf("Up with HostDir %q: error %q, want it to name HostDir and say %q", tc.hostDir, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dir, "console.log")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Up with HostDir %q started a sandbox before refusing it (console.log: %v)", tc.hostDir, err)
		}
	}
}
