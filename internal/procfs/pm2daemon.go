package procfs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// IsPM2Daemon reports whether pid is the PM2 daemon of home: its command line is PM2's God
// Daemon title naming that home ("PM2 v6.0.8: God Daemon (/root/.pm2)"). A pid file may
// name any process after a crash or a reboot (pid reuse); only a daemon is ever signalled.
func IsPM2Daemon(pid int, home string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	cmd := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
	return strings.HasPrefix(cmd, "PM2 v") && strings.Contains(cmd, "God Daemon ("+home+")")
}

// PM2Daemons lists the live PM2 daemons of home (see IsPM2Daemon).
func PM2Daemons(home string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := ReadStat(pid); ok && st.State != "Z" && IsPM2Daemon(pid, home) {
			out = append(out, pid)
		}
	}
	return out
}

// Children lists the live (non-zombie) processes whose parent is pid.
func Children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := ReadStat(p); ok && st.PPID == pid && st.State != "Z" {
			out = append(out, p)
		}
	}
	return out
}
