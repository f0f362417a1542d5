package supervisor

import (
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/internal/procfs"
)

// A PM2 home has one daemon, the one that answers on its sockets. Two pm2 commands that
// each find no daemon start one each (the agent bringing a dead daemon back while an
// operator runs `pm2 ls`, say): the one that loses the sockets stays, serving no one, and
// has written its pid over the other's in pm2.pid. When nothing answers on the home's
// sockets, every daemon of the home still running is such a stray.

// endStrayDaemons ends every PM2 daemon of the home that has run for minAge at least (one
// just starting may still bind the sockets), each with the process groups of its children
// (PM2 starts every app in a group of its own). Call it only when nothing answers on the
// home's sockets.
func (s *Supervisor) endStrayDaemons(minAge time.Duration) {
	for _, pid := range procfs.PM2Daemons(s.opts.PM2Home) {
		start := procfs.StartTime(pid)
		if start == 0 || time.Since(procfs.StartedAt(start)) < minAge {
			continue
		}
		children := procfs.Children(pid)
		s.log.Warn("ending a stray PM2 daemon of this home and its apps: it does not answer on the home's sockets (two daemons were started at once)",
			"home", s.opts.PM2Home, "pid", pid, "apps", len(children))
		if procfs.IsPM2Daemon(pid, s.opts.PM2Home) && procfs.Alive(pid, start) {
			syscall.Kill(pid, syscall.SIGKILL) // not SIGTERM: its exit would dump its list over the home's and remove pm2.pid
		}
		for _, c := range children {
			cstart := procfs.StartTime(c)
			procfs.KillGroup(c, cstart) // the app's group: its whole tree
			if procfs.Alive(c, cstart) {
				syscall.Kill(c, syscall.SIGKILL)
			}
		}
	}
}
