package preflight

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/supervisor/proctree"
)

// checkPorts fails (critically) when a service's port is held by a process that is not
// one of this box's PM2 apps: the service could never start, and the health check at the
// end of the pipeline would fail after every install and build had run. A port held under
// the PM2 daemon of PM2Home is this box's own service (a re-run) and fine.
func (o Options) checkPorts(cfg *config.Config) Result {
	r := Result{Name: NamePorts, Critical: true,
		Fix: "stop the process holding the port, or choose another port under ports in the config"}
	daemon := pm2DaemonPID(o.PM2Home)
	sampler := proctree.NewSampler("")
	ports := []struct {
		key  string
		port int
	}{{"ports.livos", cfg.Ports.Livos}, {"ports.api", cfg.Ports.API}, {"ports.mcp", cfg.Ports.MCP}, {"ports.memory", cfg.Ports.Memory}}
	var taken, ours []string
	for _, p := range ports {
		if p.port <= 0 {
			continue
		}
		holders, err := sampler.PortHolders(p.port)
		if err != nil {
			return r.warn(fmt.Sprintf("cannot tell who holds the ports: %v", err))
		}
		for _, pid := range holders {
			if daemon > 0 && descendsFrom(int(pid), daemon) {
				ours = append(ours, fmt.Sprintf("%d (%s)", p.port, p.key))
			} else {
				taken = append(taken, fmt.Sprintf("%d (%s) is held by pid %d %s", p.port, p.key, pid, command(int(pid))))
			}
			break
		}
	}
	switch {
	case len(taken) > 0:
		return r.fail(strings.Join(taken, "; "))
	case len(ours) > 0:
		return r.ok("free, or held by this box's PM2 apps: " + strings.Join(ours, ", "))
	default:
		return r.ok("all free")
	}
}

// pm2DaemonPID is the pid of the PM2 daemon under home, or 0.
func pm2DaemonPID(home string) int {
	if home == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(home, "pm2.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	return pid
}

// descendsFrom reports whether pid is ancestor or one of its descendants.
func descendsFrom(pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		if pid == ancestor {
			return true
		}
		st, ok := procfs.ReadStat(pid)
		if !ok {
			return false
		}
		pid = st.PPID
	}
	return false
}

// command is a process's command name in parentheses, or "".
func command(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return "(" + strings.TrimSpace(string(b)) + ")"
}
