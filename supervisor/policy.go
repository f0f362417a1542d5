// Package supervisor keeps the LivOS services healthy: it follows PM2's event bus, runs
// startup, liveness and readiness probes, measures each service's whole process tree, and
// restarts a service — through PM2, under a per-service exponential backoff — when a probe
// fails its threshold, its memory stays over the limit, or PM2 gives up on it. It writes
// everything it knows into a state.Store; metrics and status read that store.
package supervisor

import (
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/livinity/livinity-agent/config"
)

// restartPolicy decides when a service's next restart may happen. The first restart after
// a stable period is immediate; each further one waits the next exponential backoff
// interval (initial × multiplier^n, capped, jittered). It never gives up. It is not safe
// for concurrent use: each service owns one.
type restartPolicy struct {
	b          *backoff.ExponentialBackOff
	resetAfter time.Duration
	clock      backoff.Clock
	// restarts since the last reset
	restarts int
}

// jitter is the randomization factor of the restart backoff (±25 %).
const jitter = 0.25

func newRestartPolicy(cfg config.Backoff, clock backoff.Clock) *restartPolicy {
	opts := []backoff.ExponentialBackOffOpts{
		backoff.WithInitialInterval(cfg.Initial()),
		backoff.WithMultiplier(cfg.Multiplier),
		backoff.WithMaxInterval(cfg.Max()),
		backoff.WithRandomizationFactor(jitter),
		backoff.WithMaxElapsedTime(0), // never stop
	}
	if clock != nil {
		opts = append(opts, backoff.WithClockProvider(clock))
	}
	return &restartPolicy{b: backoff.NewExponentialBackOff(opts...), resetAfter: cfg.ResetAfter(), clock: clock}
}

// next returns how long to wait before the next restart, and counts it.
func (p *restartPolicy) next() time.Duration {
	p.restarts++
	if p.restarts == 1 {
		return 0
	}
	return p.b.NextBackOff()
}

// stable tells the policy the service has run well since `since`; after resetAfter of that
// the backoff starts over.
func (p *restartPolicy) stable(since, now time.Time) {
	if p.restarts > 0 && now.Sub(since) >= p.resetAfter {
		p.restarts = 0
		p.b.Reset()
	}
}
