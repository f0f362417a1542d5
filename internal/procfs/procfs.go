// Package procfs reads the few fields of /proc/PID/stat that identify a process over time:
// a pid names one process only together with its start time, since pids are reused.
package procfs

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Stat is the part of /proc/PID/stat the agent uses.
type Stat struct {
	State     string // R, S, D, Z, T, ...
	PPID      int
	PGRP      int
	StartTime uint64 // clock ticks since boot
}

// ReadStat reads /proc/PID/stat; ok is false when the process is gone.
func ReadStat(pid int) (Stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, false
	}
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
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return Stat{State: f[0], PPID: ppid, PGRP: pgrp, StartTime: start}, true
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
