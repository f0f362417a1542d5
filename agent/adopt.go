package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/systemd"
)

// adoptDropIn delegates livinity-pm2.service's control group while install moves a running
// daemon into it: systemd 252 moves processes into a unit (AttachProcessesToUnit) only when
// it is delegated. A runtime drop-in, removed right after the move.
const adoptDropIn = "/run/systemd/system/" + systemd.PM2UnitName + ".d/50-adopt.conf"

// startPM2UnitAdopting starts livinity-pm2.service for home. When a PM2 daemon already
// answers under home from another control group — the agent's own, where an earlier
// version's pipeline spawned it, or a session where someone started it by hand — the unit
// adopts that daemon instead of starting another: `pm2 resurrect` finds it running and
// starts nothing, PIDFile= names it the unit's main process, and its processes are moved
// into the unit's control group. No service is restarted, so each keeps the privileges it
// started with until the daemon restarts. It returns how many processes it moved.
func startPM2UnitAdopting(ctx context.Context, home string) (moved int, err error) {
	pid := answeringDaemon(ctx, home)
	if pid == 0 {
		return 0, systemctl(ctx, "start", systemd.PM2UnitName)
	}
	from := cgroupOf(pid)
	props, err := showUnit(ctx, systemd.PM2UnitName, "ActiveState", "ControlGroup", "MainPID")
	if err != nil {
		return 0, err
	}
	if props["ActiveState"] == "active" && from != "" && from == props["ControlGroup"] {
		return 0, nil // the unit runs it already
	}
	if from == "" {
		return 0, fmt.Errorf("adopt the PM2 daemon (pid %d): cannot read its control group", pid)
	}
	if err := os.MkdirAll(filepath.Dir(adoptDropIn), 0o755); err != nil {
		return 0, fmt.Errorf("adopt the PM2 daemon: %w", err)
	}
	if err := os.WriteFile(adoptDropIn, []byte("# Written by livinity-agent install while it moves a running PM2 daemon into this unit; removed right after.\n[Service]\nDelegate=yes\n"), 0o644); err != nil {
		return 0, fmt.Errorf("adopt the PM2 daemon: %w", err)
	}
	defer func() {
		os.Remove(adoptDropIn)
		os.Remove(filepath.Dir(adoptDropIn))
		if rerr := systemctl(context.WithoutCancel(ctx), "daemon-reload"); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := systemctl(ctx, "daemon-reload"); err != nil {
		return 0, err
	}
	if err := systemctl(ctx, "start", systemd.PM2UnitName); err != nil {
		return 0, err
	}
	if props, err = showUnit(ctx, systemd.PM2UnitName, "MainPID", "ControlGroup"); err != nil {
		return 0, err
	}
	if props["MainPID"] != strconv.Itoa(pid) {
		return 0, fmt.Errorf("adopt the PM2 daemon (pid %d): %s started with main pid %s", pid, systemd.PM2UnitName, props["MainPID"])
	}
	to := props["ControlGroup"]
	// Everything in the daemon's control group goes, but for the agent there and what it
	// runs: the services' processes, orphans of theirs included. From another control
	// group (a login session) only the daemon's own process tree goes.
	keep := map[int]bool{}
	whole := false
	if agent, err := showUnit(ctx, systemd.UnitName, "ControlGroup", "MainPID"); err == nil && agent["ControlGroup"] == from {
		whole = true
		if main, _ := strconv.Atoi(agent["MainPID"]); main > 0 {
			keep = descendants(main)
		}
	}
	for round := 0; ; round++ {
		var pids []int
		tree := descendants(pid)
		for _, p := range cgroupMembers(from) {
			if !keep[p] && (whole || tree[p]) {
				pids = append(pids, p)
			}
		}
		if len(pids) == 0 {
			break
		}
		if round == 20 {
			return moved, fmt.Errorf("adopt the PM2 daemon: processes keep appearing in %s: %v", from, pids)
		}
		n, err := attachToUnit(ctx, systemd.PM2UnitName, pids)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	if got := cgroupOf(pid); got != to {
		return moved, fmt.Errorf("adopt the PM2 daemon: pid %d is in %s after the move, not in %s", pid, got, to)
	}
	return moved, nil
}

// answeringDaemon returns the pid of the PM2 daemon that answers under home, or 0.
func answeringDaemon(ctx context.Context, home string) int {
	c, err := pm2.Dial(ctx, home)
	if err != nil {
		return 0
	}
	c.Close()
	b, err := os.ReadFile(filepath.Join(home, "pm2.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !procfs.Alive(pid, procfs.StartTime(pid)) {
		return 0
	}
	return pid
}

// attachToUnit moves pids into unit's control group through systemd (busctl, an argument
// vector). A process that exits meanwhile makes systemd refuse the whole call: the pids
// are then moved one by one and the vanished ones skipped.
func attachToUnit(ctx context.Context, unit string, pids []int) (int, error) {
	call := func(pids []int) error {
		args := []string{"call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
			"AttachProcessesToUnit", "ssau", unit, "", strconv.Itoa(len(pids))}
		for _, p := range pids {
			args = append(args, strconv.Itoa(p))
		}
		c := exec.CommandContext(ctx, "busctl", args...)
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("busctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := call(pids); err == nil {
		return len(pids), nil
	}
	moved := 0
	for _, p := range pids {
		if err := call([]int{p}); err != nil {
			if _, alive := procfs.ReadStat(p); !alive {
				continue
			}
			return moved, fmt.Errorf("move pid %d into %s: %w", p, unit, err)
		}
		moved++
	}
	return moved, nil
}

// cgroupOf returns pid's control group as systemd names it (the unified hierarchy's path,
// else the name=systemd one), or "" when it is gone.
func cgroupOf(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return ""
	}
	legacy := ""
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
		if _, p, ok := strings.Cut(line, ":name=systemd:"); ok {
			legacy = p
		}
	}
	return legacy
}

// cgroupMembers lists the live processes whose control group is cg.
func cgroupMembers(cg string) []int {
	var out []int
	for _, pid := range allPIDs() {
		if st, ok := procfs.ReadStat(pid); ok && st.State != "Z" && cgroupOf(pid) == cg {
			out = append(out, pid)
		}
	}
	return out
}

// descendants returns root and every process below it.
func descendants(root int) map[int]bool {
	children := map[int][]int{}
	for _, pid := range allPIDs() {
		if st, ok := procfs.ReadStat(pid); ok {
			children[st.PPID] = append(children[st.PPID], pid)
		}
	}
	out := map[int]bool{root: true}
	for todo := []int{root}; len(todo) > 0; {
		p := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		for _, c := range children[p] {
			if !out[c] {
				out[c] = true
				todo = append(todo, c)
			}
		}
	}
	return out
}

func allPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}
