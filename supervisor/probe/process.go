package probe

import "context"

// probeProcess asks online whether the process manager reports the service online. The
// service is not contacted, so an error from online, even a timeout, is an Error: it says
// the probe could not run, not that the service is unhealthy.
func probeProcess(ctx context.Context, _ Spec, online OnlineFunc) (Outcome, string) {
	if online == nil {
		return Error, "probe: kind process needs an OnlineFunc, got nil"
	}
	up, err := online(ctx)
	if err != nil {
		return Error, "ask process manager: " + err.Error()
	}
	if !up {
		return Failure, "process manager does not report the process online"
	}
	return Success, "process manager reports the process online"
}
