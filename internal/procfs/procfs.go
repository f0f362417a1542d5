// Package procfs reads the few fields of /proc/PID/stat that identify a process over time:
// a pid names one process only together with its start time, since pids are reused.
package procfs

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Stat is the part of /proc/PID/stat the agent uses.
type Stat struct {
	State     string // R, S, D, Z, T, ...
	PPID      int
	PGRP      int
	StartTime uint64 // clock ticks since boot
	// UTime, STime, CUTime and CSTime are CPU times in clock ticks (TicksPerSecond): the
	// process's own in user and kernel mode, and those of the children it waited for.
	UTime, STime, CUTime, CSTime uint64
}

// ReadStat reads /proc/PID/stat; ok is false when the process is gone.
func ReadStat(pid int) (Stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, false
	}
	return parseStat(b)
}

// parseStat parses the text of a /proc/PID/stat file.
func parseStat(b []byte) (Stat, bool) {
	i := bytes.LastIndexByte(b, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return Stat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return Stat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	pgrp, _ := strconv.Atoi(f[2])
	num := func(i int) uint64 { n, _ := strconv.ParseUint(f[i], 10, 64); return n }
	// after the comm: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime(11) stime cutime cstime priority nice num_threads itrealvalue starttime(19)
	return Stat{State: f[0], PPID: ppid, PGRP: pgrp, StartTime: num(19),
		UTime: num(11), STime: num(12), CUTime: num(13), CSTime: num(14)}, true
}

// StartTime is pid's start time, or 0 when it is gone.
func StartTime(pid int) uint64 {
	st, _ := ReadStat(pid)
	return st.StartTime
}

// Alive reports whether pid is the same live (non-zombie) process that started at start.
func Alive(pid int, start uint64) bool {
	st, ok := ReadStat(pid)
	return ok && st.StartTime == start && st.State != "Z"
}

// GroupMembers lists the live (non-zombie) processes of process group pgid that started at
// or after notBefore (clock ticks since boot; 0 for any).
func GroupMembers(pgid int, notBefore uint64) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := ReadStat(pid)
		if ok && st.PGRP == pgid && st.StartTime >= notBefore && st.State != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

// KillGroup sends SIGKILL to what is left of process group pgid (members started at or
// after notBefore) until none is left, for at most about two seconds. The group's leader
// may be gone while its children live on: they are what this is for. A pgid whose members
// are all gone cannot have been reused, so no other process is hit.
func KillGroup(pgid int, notBefore uint64) {
	if pgid <= 1 {
		return
	}
	for i := 0; i < 100; i++ {
		left := GroupMembers(pgid, notBefore)
		if len(left) == 0 {
			return
		}
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TicksPerSecond is USER_HZ, the unit of /proc/PID/stat's times: 100 on every Linux
// architecture the agent is built for.
const TicksPerSecond = 100

// StartedAt converts a start time in clock ticks since boot (Stat.StartTime) to the wall
// clock, to within a tick (10 ms): the kernel counts it on the boot-time clock, which
// CLOCK_BOOTTIME reads now. A pid names one process only together with its start time;
// this lets that start time be compared with a wall-clock one another program recorded
// (PM2's pm_uptime).
func StartedAt(ticks uint64) time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}
	}
	now := time.Now()
	sinceBoot := time.Duration(ts.Nano())
	started := time.Duration(ticks) * (time.Second / TicksPerSecond)
	return now.Add(started - sinceBoot)
}
