package agent

import (
	"context"
	"time"

	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/proctree"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// statusPM2Timeout bounds PM2Status's talk with the PM2 daemon.
const statusPM2Timeout = 5 * time.Second

// PM2Status is the status document of a box whose agent is not running: PM2's process
// list, read over the daemon's RPC socket under home, with each process tree's memory
// (Source statusapi.SourcePM2; readiness is unknown, the agent runs the probes). It never
// starts a daemon: without one the error is pm2.ErrDaemonNotRunning.
func PM2Status(ctx context.Context, home string) (statusapi.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, statusPM2Timeout)
	defer cancel()
	c, err := pm2.Dial(ctx, home)
	if err != nil {
		return statusapi.Status{}, err
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		return statusapi.Status{}, err
	}
	now := time.Now()
	table, _ := proctree.NewSampler("").Scan() // without /proc, memory stays unmeasured
	doc := statusapi.Status{
		Schema:   statusapi.SchemaVersion,
		Source:   statusapi.SourcePM2,
		At:       now.UTC(),
		Services: make([]statusapi.Service, 0, len(procs)),
	}
	for _, p := range procs {
		sv := statusapi.Service{
			Name:        p.Name,
			State:       statusapi.StateUnknown,
			PM2Status:   string(p.Status),
			PM2Restarts: p.RestartTime,
		}
		if p.Status == pm2.StatusOnline && p.PID > 0 {
			sv.PID = p.PID
			if !p.Started.IsZero() {
				sv.UptimeSeconds = max(now.Sub(p.Started).Round(time.Millisecond).Seconds(), 0)
			}
			if table != nil {
				if u, err := table.Memory(int32(p.PID)); err == nil {
					sv.MemoryBytes, sv.MemoryKind = u.Bytes, u.Kind
				}
			}
		}
		doc.Services = append(doc.Services, sv)
	}
	return doc, nil
}
