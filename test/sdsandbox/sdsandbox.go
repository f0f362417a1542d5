// Package sdsandbox boots a real systemd as PID 1 of private namespaces, isolated from the
// host, so tests can install a unit there and watch what systemd really does with it:
// Type=notify readiness, WatchdogSec kills, Restart=, systemctl stop, systemd-analyze
// security, journald.
//
// Isolation: new pid, mount, uts, ipc, cgroup and (unless Options.HostNet) network
// namespaces; the root is an overlay of the host's / whose writes all land in a tmpfs that
// exists only in the sandbox's mount namespace; /tmp, /var/tmp, /run and /dev are fresh
// tmpfs; units that would touch host state or start host services are masked inside. See
// README.md for the full list of guarantees. Booting systemd on the shared root file
// system would wipe the host's /tmp and start every host service: never bypass Up.
//
// The package needs root, systemd at /lib/systemd/systemd and util-linux (unshare,
// nsenter, setpriv).
package sdsandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed init.sh
var initScript string

const (
	systemdPath = "/lib/systemd/systemd"
	// innerPath is PATH for systemd and for commands run inside.
	innerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// dropCaps removes host-global capabilities from the bounding set of systemd and of
	// every command run inside (setpriv --bounding-set syntax).
	dropCaps = "-sys_time,-sys_module,-sys_rawio,-syslog,-wake_alarm,-block_suspend,-mac_admin,-mac_override,-audit_control,-audit_read,-sys_pacct"
	// sigPoweroff is SIGRTMIN+4 as glibc counts (SIGRTMIN is 34): systemd starts
	// poweroff.target when it receives it.
	sigPoweroff = syscall.Signal(34 + 4)

	// joinCgroupsScript moves itself into the cgroup.procs files $1 and $2 (each may be
	// empty) and then execs the rest of its arguments.
	joinCgroupsScript = `for f in "$1" "$2"; do [ -z "$f" ] || echo $$ >"$f" || exit 125; done; shift 2; exec "$@"`
	// innerScript closes the namespace descriptors nsenter was handed and forks the
	// command, which puts it in the sandbox's pid namespace (nsenter --no-fork leaves
	// the shell itself outside). The command always runs through env(1), a separate
	// program, so that a name that is also a shell builtin (kill, test, echo) never runs
	// inside this shell, against the host's pids. The trailing "exit" keeps sh from
	// exec'ing env in place of forking it.
	innerScript = `exec 3<&- 4<&- 5<&- 6<&- 7<&- 8<&- 9<&-; env -- "$@"; exit $?`

	defaultBootTimeout = 30 * time.Second
	defaultDownTimeout = 20 * time.Second
	// cleanupTimeout bounds each step of Down after the poweroff.
	cleanupTimeout = 5 * time.Second
)

// namespaces are the namespace files passed to nsenter, in the order they are handed
// over as descriptors 3, 4, ...; the sandbox's root directory follows as descriptor 9.
var namespaces = []struct{ proc, flag string }{
	{"mnt", "--mount"}, {"uts", "--uts"}, {"ipc", "--ipc"}, {"net", "--net"},
	{"pid", "--pid"}, {"cgroup", "--cgroup"},
}

// Options configure a sandbox. The zero value is usable.
type Options struct {
	// HostDir is a host directory bound read-only at /host inside, to pass binaries and
	// files in. Empty: an empty directory inside the sandbox's state directory.
	HostDir string
	// BootTimeout bounds Up's wait for systemd to reach "running" or "degraded".
	// Zero means 30s.
	BootTimeout time.Duration
	// DownTimeout bounds the clean poweroff in Down before it falls back to SIGKILL.
	// Zero means 20s.
	DownTimeout time.Duration
	// HostNet shares the host's network namespace. By default (false) the sandbox has a
	// network namespace of its own with only lo: units inside can use loopback but can
	// neither reach nor be reached by anything on the host.
	HostNet bool
	// Persistent keeps the root's upper layer (every write inside) in the sandbox's
	// directory on the host instead of a tmpfs, so that Reboot boots again on the same
	// "disk". It is removed with the directory (New: at the end of the test), never
	// written anywhere else.
	Persistent bool
}

// Sandbox is a running systemd in private namespaces. Its methods are safe for
// concurrent use.
type Sandbox struct {
	dir       string
	opts      Options
	nsenter   string
	unshare   string
	stateDir  string
	hostDir   string
	machineID string // the same across reboots, as on a real machine
	cg        cgroups
	bootState string
	boots     int

	launcher     *exec.Cmd
	launcherDone chan struct{} // closed when the launcher (unshare) has been reaped

	initPID int         // host pid of the sandbox's PID 1
	init    *os.Process // PID 1, held by a pidfd
	pidNS   string      // PID 1's pid namespace link, "pid:[...]"

	mu      sync.Mutex
	nsFiles []*os.File // namespaces in order, then the root directory; nil once down

	downMu   sync.Mutex // held by Down and Reboot
	downDone bool
	downErr  error
	downVia  string // "poweroff" or "SIGKILL"; "" when the sandbox was not running
}

// Up boots a sandbox and waits until systemd inside reports "running" or "degraded" (a
// degraded boot is not an error: see BootState). dir keeps the sandbox's host-side state
// (console.log holds the init's errors and anything systemd printed before its journal
// ran); it is created if missing. Up never leaves anything running when it fails.
func Up(ctx context.Context, dir string, opts Options) (*Sandbox, error) {
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = defaultBootTimeout
	}
	if opts.DownTimeout <= 0 {
		opts.DownTimeout = defaultDownTimeout
	}
	unshare, nsenter, err := preflight()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve sandbox dir %q: %w", dir, err)
	}
	stateDir := filepath.Join(dir, "mnt")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create sandbox dir: %w", err)
	}
	hostDir := opts.HostDir
	if hostDir == "" {
		hostDir = filepath.Join(dir, "host")
		if err := os.MkdirAll(hostDir, 0o755); err != nil {
			return nil, fmt.Errorf("create sandbox host dir: %w", err)
		}
	} else if !filepath.IsAbs(hostDir) {
		return nil, fmt.Errorf("options: HostDir %q is relative: give an absolute path to an existing directory", hostDir)
	} else if fi, err := os.Stat(hostDir); err != nil {
		return nil, fmt.Errorf("options: HostDir %q: %w: give an existing directory", hostDir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("options: HostDir %q is not a directory: give an existing directory", hostDir)
	}

	s := &Sandbox{dir: dir, opts: opts, nsenter: nsenter, unshare: unshare, stateDir: stateDir, hostDir: hostDir,
		machineID: randomHex(16), launcherDone: make(chan struct{})}
	s.cg, err = createCgroups()
	if err != nil {
		return nil, fmt.Errorf("start sandbox: %w", errors.Join(err, s.Down()))
	}
	if err := s.boot(ctx); err != nil {
		tail := s.consoleTail(40)
		return nil, fmt.Errorf("start sandbox: %w\nconsole.log (last lines):\n%s", errors.Join(err, s.Down()), tail)
	}
	return s, nil
}

// preflight checks for root and the programs the sandbox needs, returning the paths of
// unshare and nsenter.
func preflight() (unshare, nsenter string, err error) {
	if euid := os.Geteuid(); euid != 0 {
		return "", "", fmt.Errorf("the systemd sandbox must run as root (euid is %d): it creates namespaces, mounts and cgroups", euid)
	}
	for _, p := range []string{systemdPath, "/usr/bin/setpriv", "/usr/bin/env", "/bin/bash", "/bin/sh"} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("the systemd sandbox needs %s: %w (install systemd, util-linux, bash)", p, err)
		}
	}
	if unshare, err = exec.LookPath("unshare"); err != nil {
		return "", "", fmt.Errorf("the systemd sandbox needs unshare (util-linux): %w", err)
	}
	if nsenter, err = exec.LookPath("nsenter"); err != nil {
		return "", "", fmt.Errorf("the systemd sandbox needs nsenter (util-linux): %w", err)
	}
	return unshare, nsenter, nil
}

// boot starts the launcher and waits for systemd inside to finish booting.
func (s *Sandbox) boot(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.BootTimeout)
	defer cancel()

	s.boots++
	console, err := os.OpenFile(filepath.Join(s.dir, "console.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err == nil && s.boots > 1 {
		fmt.Fprintf(console, "--- sdsandbox: boot %d\n", s.boots)
	}
	if err != nil {
		return fmt.Errorf("create console log: %w", err)
	}
	defer console.Close() // the launcher holds its own descriptor

	disk := "ram"
	if s.opts.Persistent {
		disk = "persistent"
	}
	args := []string{"-c", joinCgroupsScript, "sdsandbox-launch", procsFile(s.cg.unified), procsFile(s.cg.devices),
		s.unshare, "--fork", "--kill-child", "--pid", "--mount", "--uts", "--ipc", "--cgroup"}
	if !s.opts.HostNet {
		args = append(args, "--net")
	}
	args = append(args, "--propagation", "private", "/bin/bash", "-c", initScript, "sdsandbox-init",
		s.stateDir, s.hostDir, s.machineID, systemdPath, dropCaps, disk)
	s.launcher = exec.Command("/bin/sh", args...)
	s.launcher.Stdout, s.launcher.Stderr = console, console
	// Pdeathsig: if the test binary dies without Down, the launcher gets SIGKILL and,
	// through unshare --kill-child, so does the sandbox's PID 1 and with it the whole
	// pid namespace.
	s.launcher.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		defer close(s.launcherDone)
		// Pdeathsig fires when the thread that started the child exits: keep this
		// goroutine on its thread until the launcher is reaped.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := s.launcher.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.launcher.Wait() // its exit status carries no information: Down checks the result
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start launcher: %w", err)
	}

	if err := s.findInit(ctx); err != nil {
		return err
	}
	// The sandbox cgroup must hold only sandbox processes: move unshare back out.
	if err := os.WriteFile(procsFile(s.cg.parent), []byte(strconv.Itoa(s.launcher.Process.Pid)), 0o644); err != nil {
		return fmt.Errorf("move launcher out of the sandbox cgroup: %w", err)
	}
	if err := s.waitSystemdExec(ctx); err != nil {
		return err
	}
	if err := s.openNamespaces(); err != nil {
		return err
	}
	return s.waitBooted(ctx)
}

// findInit waits for unshare's child, the sandbox's PID 1, and holds it by a pidfd.
func (s *Sandbox) findInit(ctx context.Context) error {
	lpid := s.launcher.Process.Pid
	ownNS := pidNamespace(os.Getpid())
	children := fmt.Sprintf("/proc/%d/task/%d/children", lpid, lpid)
	err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
		if s.launcherExited() {
			return false, errors.New("the launcher exited before the sandbox init started")
		}
		b, _ := os.ReadFile(children)
		for _, f := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if ns := pidNamespace(pid); ns != "" && ns != ownNS {
				s.initPID, s.pidNS = pid, ns
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the sandbox init: %w", err)
	}
	p, err := os.FindProcess(s.initPID)
	if err != nil {
		return fmt.Errorf("hold the sandbox init %d: %w", s.initPID, err)
	}
	if pidNamespace(s.initPID) != s.pidNS {
		p.Release()
		return fmt.Errorf("the sandbox init %d exited at once", s.initPID)
	}
	s.init = p
	return nil
}

// waitSystemdExec waits until PID 1 has passed its checks and exec'd systemd on the
// overlay root. Nothing is run inside before that.
func (s *Sandbox) waitSystemdExec(ctx context.Context) error {
	root := fmt.Sprintf("/proc/%d/root/", s.initPID)
	err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
		if !s.initAlive() {
			return false, errors.New("the sandbox init exited")
		}
		if comm(s.initPID) != "systemd" {
			return false, nil
		}
		if t, err := statfsType(root); err != nil || t != overlayfsMagic {
			return false, fmt.Errorf("systemd runs but its root is not the overlay (statfs type %#x, %v)", t, err)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the sandbox init to exec systemd: %w", err)
	}
	return nil
}

// openNamespaces opens PID 1's namespace files and root directory for nsenter. Holding
// them (rather than naming PID 1 by number) means a command can only ever enter the
// sandbox: after PID 1 is gone its pid namespace refuses new processes.
func (s *Sandbox) openNamespaces() error {
	var files []*os.File
	fail := func(err error) error {
		for _, f := range files {
			f.Close()
		}
		return fmt.Errorf("open the sandbox's namespaces: %w", err)
	}
	for _, ns := range namespaces {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", s.initPID, ns.proc))
		if err != nil {
			return fail(err)
		}
		files = append(files, f)
	}
	root, err := os.Open(fmt.Sprintf("/proc/%d/root", s.initPID))
	if err != nil {
		return fail(err)
	}
	files = append(files, root)
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(root.Fd()), &st); err != nil || st.Type != overlayfsMagic {
		return fail(fmt.Errorf("root is not the overlay (statfs type %#x, %v)", st.Type, err))
	}
	// PID 1 still alive in its namespace after the opens: they all reached it (its pid
	// cannot be reused while it lives).
	if !s.initAlive() {
		return fail(errors.New("the sandbox init exited"))
	}
	s.mu.Lock()
	s.nsFiles = files
	s.mu.Unlock()
	return nil
}

// waitBooted polls systemctl is-system-running inside until running or degraded.
func (s *Sandbox) waitBooted(ctx context.Context) error {
	state := ""
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		if !s.initAlive() {
			return false, errors.New("systemd exited")
		}
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, _, _ := s.Exec(callCtx, "systemctl", "is-system-running") // non-zero unless running
		state = strings.TrimSpace(string(out))
		switch state {
		case "running", "degraded":
			return true, nil
		case "maintenance", "stopping":
			return false, fmt.Errorf("systemd entered state %q", state)
		}
		return false, nil // "initializing", "starting", or "offline"/"" before its socket is up
	})
	if err != nil {
		jobs, _, _ := s.Exec(context.Background(), "systemctl", "list-jobs", "--no-pager")
		return fmt.Errorf("wait for systemd to boot (last state %q): %w\nsystemctl list-jobs:\n%s", state, err, jobs)
	}
	s.bootState = state
	return nil
}

// BootState returns what systemctl is-system-running said when Up returned: "running",
// or "degraded" when some unit failed (FailedUnits lists them).
func (s *Sandbox) BootState() string { return s.bootState }

// FailedUnits returns the output of systemctl --failed inside.
func (s *Sandbox) FailedUnits(ctx context.Context) ([]byte, error) {
	out, _, err := s.Exec(ctx, "systemctl", "--failed", "--no-legend", "--no-pager")
	return out, err
}

// Command returns a command that runs argv inside the sandbox (all its namespaces, root
// and cgroup namespace; reduced capability bounding set) when started. argv is an
// argument vector, never parsed by a shell. The environment inside is only PATH, HOME=/root,
// LANG, TERM=dumb, SYSTEMD_PAGER=cat and SYSTEMD_COLORS=0: prefix argv with
// "env", "K=V" for more. Wire Stdin/Stdout/Stderr before starting it. Cancelling ctx
// kills the command and whatever it started that kept its process group. WaitDelay is
// 5s: a command that leaves a daemon holding its output pipes returns exec.ErrWaitDelay.
func (s *Sandbox) Command(ctx context.Context, argv ...string) *exec.Cmd {
	s.mu.Lock()
	files := s.nsFiles
	s.mu.Unlock()
	args := []string{"-c", joinCgroupsScript, "sdsandbox-exec", "", procsFile(s.cg.devices), s.nsenter}
	for i, ns := range namespaces {
		args = append(args, fmt.Sprintf("%s=/proc/self/fd/%d", ns.flag, 3+i))
	}
	rootFD := fmt.Sprintf("/proc/self/fd/%d", 3+len(namespaces))
	args = append(args, "--root="+rootFD, "--wd="+rootFD, "--no-fork", "--",
		"/usr/bin/setpriv", "--bounding-set", dropCaps,
		"/usr/bin/env", "-i", "PATH="+innerPath, "HOME=/root", "LANG=C.UTF-8", "TERM=dumb",
		"SYSTEMD_PAGER=cat", "SYSTEMD_COLORS=0",
		"/bin/sh", "-c", innerScript, "sdsandbox-exec")
	args = append(args, argv...)

	cmd := exec.CommandContext(ctx, "/bin/sh", args...)
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	cmd.Cancel = func() error {
		// The command itself is inside, a child of the shell (our child) outside;
		// it and what it started share the shell's process group.
		s.killGroupInside(cmd.Process.Pid)
		return cmd.Process.Kill()
	}
	switch {
	case len(argv) == 0:
		cmd.Err = errors.New("run in sandbox: empty argv")
	case files == nil:
		cmd.Err = errors.New("run in sandbox: the sandbox is down")
	}
	return cmd
}

// killGroupInside SIGKILLs the sandbox's processes in process group pgid.
func (s *Sandbox) killGroupInside(pgid int) {
	for _, pid := range nsMembers(s.pidNS) {
		if processGroup(pid) == pgid {
			signalInNamespace(pid, s.pidNS, syscall.SIGKILL) // gone already is fine
		}
	}
}

// Exec runs argv inside the sandbox (see Command) and returns its output. A non-zero exit
// is an error that quotes the start of stderr.
func (s *Sandbox) Exec(ctx context.Context, argv ...string) (stdout, stderr []byte, err error) {
	cmd := s.Command(ctx, argv...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(e.String())
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		return o.Bytes(), e.Bytes(), fmt.Errorf("run %q in sandbox: %w (stderr: %q)", argv, err, msg)
	}
	return o.Bytes(), e.Bytes(), nil
}

// Start starts a long-running argv inside the sandbox (see Command) with its output
// discarded; use Command to capture it. The caller waits for it; Down ends it if it is
// still running.
func (s *Sandbox) Start(ctx context.Context, argv ...string) (*exec.Cmd, error) {
	cmd := s.Command(ctx, argv...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %q in sandbox: %w", argv, err)
	}
	return cmd, nil
}

// WriteFile writes data to the absolute path name inside the sandbox (creating missing
// parent directories) with permissions perm; the write lands in the sandbox's tmpfs.
func (s *Sandbox) WriteFile(ctx context.Context, name string, data []byte, perm os.FileMode) error {
	if !filepath.IsAbs(name) {
		return fmt.Errorf("write file in sandbox: name %q must be an absolute path", name)
	}
	cmd := s.Command(ctx, "/bin/sh", "-c", `mkdir -p "$(dirname "$1")" && cat >"$1" && chmod "$2" "$1"`,
		"sdsandbox-write", name, strconv.FormatUint(uint64(perm.Perm()), 8))
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("write %s in sandbox: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Journal returns journalctl -u unit --no-pager from inside; an empty unit gives the whole
// journal. journald stores a unit's output asynchronously: poll for a line you expect.
func (s *Sandbox) Journal(ctx context.Context, unit string) ([]byte, error) {
	argv := []string{"journalctl", "--no-pager"}
	if unit != "" {
		argv = append(argv, "-u", unit)
	}
	out, _, err := s.Exec(ctx, argv...)
	return out, err
}

// Down powers the sandbox off: it ends commands still running from Command, asks systemd
// for a clean poweroff (SIGRTMIN+4), falls back to SIGKILL of PID 1 (which kills the
// whole pid namespace) after DownTimeout, kills any leftover by pid (each checked to be in
// the sandbox's pid namespace), and removes the sandbox's cgroups. Everything written
// inside, the journal included, is gone afterwards. Down is idempotent: later calls return
// the first call's result.
func (s *Sandbox) Down() error {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	if !s.downDone {
		s.downErr, s.downDone = s.down(), true
	}
	return s.downErr
}

// Reboot powers the sandbox off as Down does (a clean poweroff: systemd stops every unit)
// and boots it again on the same disk: Options.Persistent keeps every write of the first
// boot. The machine id stays; pids, namespaces, /run, /tmp and /var/tmp are new. It
// waits for the boot as Up does (BootState). Commands started before the reboot have
// ended.
func (s *Sandbox) Reboot(ctx context.Context) error {
	if !s.opts.Persistent {
		return errors.New("reboot sandbox: it runs on a tmpfs that a poweroff loses: boot it with Options.Persistent")
	}
	s.downMu.Lock()
	defer s.downMu.Unlock()
	if s.downDone {
		return errors.New("reboot sandbox: it is down")
	}
	err := s.down()
	if err == nil {
		s.mu.Lock()
		s.launcher, s.launcherDone = nil, make(chan struct{})
		s.initPID, s.init, s.pidNS, s.bootState, s.downVia = 0, nil, "", "", ""
		s.mu.Unlock()
		if s.cg, err = createCgroups(); err == nil {
			err = s.boot(ctx)
		}
	}
	if err != nil {
		s.downErr, s.downDone = s.down(), true
		return fmt.Errorf("reboot sandbox: %w", errors.Join(err, s.downErr))
	}
	return nil
}

func (s *Sandbox) down() error {
	var errs []error
	if s.init != nil && s.initAlive() {
		s.downVia = "poweroff"
		s.endCommands()
		if err := s.init.Signal(sigPoweroff); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("ask systemd to power off: %w", err))
		}
		if !s.waitLauncher(s.opts.DownTimeout) {
			s.downVia = "SIGKILL"
			if err := s.init.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("kill the sandbox init: %w", err))
			}
			s.waitLauncher(cleanupTimeout)
		}
	}
	if s.pidNS != "" {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		var left []int
		err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
			left = nsMembers(s.pidNS)
			for _, pid := range left {
				signalInNamespace(pid, s.pidNS, syscall.SIGKILL) // gone already is fine
			}
			return len(left) == 0, nil
		})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("processes left in the sandbox pid namespace: %v: %w", left, err))
		}
	}
	if s.launcher != nil && s.launcher.Process != nil && !s.waitLauncher(cleanupTimeout) {
		s.launcher.Process.Kill() // our own child, held by a pidfd
		if !s.waitLauncher(cleanupTimeout) {
			errs = append(errs, fmt.Errorf("the sandbox launcher %d did not exit", s.launcher.Process.Pid))
		}
	}
	s.mu.Lock()
	for _, f := range s.nsFiles {
		f.Close()
	}
	s.nsFiles = nil
	s.mu.Unlock()
	if s.init != nil {
		s.init.Release()
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := s.cg.remove(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop sandbox: %w", err)
	}
	return nil
}

// endCommands ends commands started inside through Command that still run: processes in
// the sandbox's pid namespace whose parent is outside it (the shell Command forks from).
// SIGTERM first, SIGKILL after two seconds.
func (s *Sandbox) endCommands() {
	var cmds []int
	for _, pid := range nsMembers(s.pidNS) {
		if pid != s.initPID && pidNamespace(parentPID(pid)) != s.pidNS {
			cmds = append(cmds, pid)
		}
	}
	if len(cmds) == 0 {
		return
	}
	for _, pid := range cmds {
		signalInNamespace(pid, s.pidNS, syscall.SIGTERM)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	poll(ctx, 20*time.Millisecond, func() (bool, error) {
		for _, pid := range cmds {
			if pidNamespace(pid) == s.pidNS {
				return false, nil
			}
		}
		return true, nil
	})
	for _, pid := range cmds {
		signalInNamespace(pid, s.pidNS, syscall.SIGKILL) // gone already is fine
	}
}

// initAlive reports whether PID 1 still runs in the sandbox's pid namespace.
func (s *Sandbox) initAlive() bool {
	return !s.launcherExited() && pidNamespace(s.initPID) == s.pidNS
}

func (s *Sandbox) launcherExited() bool {
	select {
	case <-s.launcherDone:
		return true
	default:
		return false
	}
}

// waitLauncher waits up to d for the launcher to be reaped.
func (s *Sandbox) waitLauncher(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.launcherDone:
		return true
	case <-t.C:
		return false
	}
}

// consoleTail returns the last n lines of console.log.
func (s *Sandbox) consoleTail(n int) string {
	b, err := os.ReadFile(filepath.Join(s.dir, "console.log"))
	if err != nil {
		return fmt.Sprintf("(read console.log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// poll calls cond every interval until it reports done or fails, or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := cond()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
