package sdsandbox

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cgroups are the host cgroups made for one sandbox.
type cgroups struct {
	// unified is the cgroup-v2 directory the sandbox's cgroup namespace is rooted at.
	unified string
	// devices is a cgroup-v1 devices directory denying every block device, or "" when
	// the host has no v1 devices controller.
	devices string
	// parent is the cgroup-v2 directory of the calling process; the launcher moves back
	// there once the sandbox's PID 1 exists, so the sandbox cgroup holds only sandbox
	// processes.
	parent string
}

// unifiedRoot returns where the host mounts its cgroup-v2 hierarchy: /sys/fs/cgroup on a
// pure v2 host, /sys/fs/cgroup/unified on a hybrid one.
func unifiedRoot() (string, error) {
	for _, dir := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if t, err := statfsType(dir); err == nil && t == cgroup2Magic {
			return dir, nil
		}
	}
	return "", errors.New("no cgroup2 file system at /sys/fs/cgroup or /sys/fs/cgroup/unified: the sandbox needs cgroup v2 for systemd")
}

// ownUnifiedCgroup returns the cgroup-v2 path of the calling process below root.
func ownUnifiedCgroup(root string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read own cgroup: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(root, p), nil
		}
	}
	return "", errors.New("read own cgroup: no cgroup-v2 entry in /proc/self/cgroup")
}

// v1Devices is where a host with the cgroup-v1 devices controller mounts it.
const v1Devices = "/sys/fs/cgroup/devices"

// cgroupPrefix starts the name of every sandbox cgroup; the creating process's pid and a
// random suffix follow.
const cgroupPrefix = "sdsandbox-"

// createCgroups makes a sandbox's cgroups below the host roots, after removing the empty
// ones left by processes that died without Down.
func createCgroups() (cgroups, error) {
	root, err := unifiedRoot()
	if err != nil {
		return cgroups{}, err
	}
	removeStale(root)
	removeStale(v1Devices)
	name := fmt.Sprintf("%s%d-%s", cgroupPrefix, os.Getpid(), randomHex(4))
	var c cgroups
	if c.parent, err = ownUnifiedCgroup(root); err != nil {
		return cgroups{}, err
	}
	c.unified = filepath.Join(root, name)
	if err := os.Mkdir(c.unified, 0o755); err != nil {
		return cgroups{}, fmt.Errorf("create sandbox cgroup: %w", err)
	}
	if _, err := os.Stat(filepath.Join(v1Devices, "devices.deny")); err == nil {
		c.devices = filepath.Join(v1Devices, name)
		if err := os.Mkdir(c.devices, 0o755); err != nil {
			return c, fmt.Errorf("create sandbox devices cgroup: %w", err)
		}
		if err := os.WriteFile(filepath.Join(c.devices, "devices.deny"), []byte("b *:* rwm"), 0o644); err != nil {
			return c, fmt.Errorf("deny block devices in sandbox devices cgroup: %w", err)
		}
	}
	return c, nil
}

// removeStale removes the sandbox cgroups under root whose creating process is gone. Such
// a process died without Down; its sandbox died with it (Pdeathsig), leaving the
// cgroups empty. Cgroups that still hold a process cannot be removed and are left alone.
func removeStale(root string) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), cgroupPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); errors.Is(err, fs.ErrNotExist) {
			removeTree(filepath.Join(root, e.Name())) // best effort
		}
	}
}

// procsFile returns dir's cgroup.procs, or "" for an empty dir.
func procsFile(dir string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "cgroup.procs")
}

// remove deletes the sandbox's cgroups (and the ones systemd made inside), retrying
// while the last processes are being reaped, until ctx ends.
func (c cgroups) remove(ctx context.Context) error {
	var errs []error
	for _, dir := range []string{c.unified, c.devices} {
		if dir == "" {
			continue
		}
		if err := poll(ctx, 20*time.Millisecond, func() (bool, error) { return removeTree(dir) == nil, nil }); err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w (last: %v)", dir, err, removeTree(dir)))
		}
	}
	return errors.Join(errs...)
}

// removeTree removes a cgroup directory and its child cgroups, deepest first (cgroup
// directories are removed with rmdir even though they hold control files).
func removeTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
