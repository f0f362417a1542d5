package supervisor

import "context"

// followTrees keeps the services' process trees from the kernel's process events (the
// proc connector) while the agent runs, so that the memory loop and the port checks find
// a worker a service forked without listing /proc every period. Where that is not possible
// (not root, not the host's namespaces, no CONFIG_PROC_EVENTS) it says so once and the
// sampler scans /proc as before.
func (s *Supervisor) followTrees(ctx context.Context) {
	err := s.sampler.Follow(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Info("process trees are found by scanning /proc every period, not from process events", "why", err)
	}
}

// ProcScans counts the listings of /proc made to find process trees so far (the proc
// connector's seed and resynchronisations included).
func (s *Supervisor) ProcScans() int { return s.sampler.Scans() }

// FollowsTrees reports whether the process trees come from the kernel's process events.
func (s *Supervisor) FollowsTrees() bool { return s.sampler.Following() }
