package sdsandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// pidNamespace returns the pid namespace link of a host pid ("pid:[4026531836]"), or ""
// when the process is gone.
func pidNamespace(pid int) string {
	l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		return ""
	}
	return l
}

// nsMembers returns the host pids of all processes in the pid namespace ns.
func nsMembers(ns string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pidNamespace(pid) == ns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// parentPID returns the parent of a host pid, or 0 when it cannot be read.
func parentPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			ppid, _ := strconv.Atoi(strings.TrimSpace(v))
			return ppid
		}
	}
	return 0
}

// comm returns the command name of a host pid, or "" when it is gone.
func comm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// signalInNamespace sends sig to pid only if that process is in the pid namespace ns.
// The process is held by a pidfd (os.FindProcess on Linux) before the namespace check,
// so a pid reused after the check cannot receive the signal.
func signalInNamespace(pid int, ns string, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return fmt.Errorf("find process %d: %w", pid, err)
	}
	defer p.Release()
	if got := pidNamespace(pid); got != ns {
		return fmt.Errorf("process %d is in pid namespace %q, not the sandbox's %q: not signalled", pid, got, ns)
	}
	if err := p.Signal(sig); err != nil {
		return fmt.Errorf("signal %d to process %d: %w", sig, pid, err)
	}
	return nil
}

// statfsType returns the file system magic number of path.
func statfsType(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Type), nil
}

// File system magic numbers (linux/magic.h).
const (
	overlayfsMagic = 0x794c7630
	tmpfsMagic     = 0x01021994
	cgroup2Magic   = 0x63677270
)

// processGroup returns the process group of a host pid (as the host numbers it), or 0.
func processGroup(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0
	}
	pgrp, _ := strconv.Atoi(f[2])
	return pgrp
}
