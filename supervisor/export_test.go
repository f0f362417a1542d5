package supervisor

import (
	"context"

	"github.com/livinity/livinity-agent/supervisor/pm2"
)

// DispatchList hands procs to the services as if PM2 had just listed them: tests use it
// for a list that arrives after the events that made it stale.
func (s *Supervisor) DispatchList(ctx context.Context, procs []pm2.Process) {
	s.dispatchList(ctx, procs, nil)
}
