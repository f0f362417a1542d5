package setup

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/livinity/livinity-agent/supervisor/probe"
)

// HealthTarget is one service to verify.
type HealthTarget struct {
	Service string
	Spec    probe.Spec
	// Check runs one check of Spec.
	Check probe.CheckFunc
	// Timeout bounds one check.
	Timeout time.Duration
}

// HealthResult is the verification verdict of one service.
type HealthResult struct {
	Service  string
	Probe    string // "http GET :3200/api/health", "tcp :8080", "process"
	OK       bool
	Detail   string
	Latency  time.Duration // of the last check
	Attempts int
	// After is how long the service took to become healthy (or the time spent trying).
	After time.Duration
	// Skipped is set for a service that was not started (an optional build failed).
	Skipped bool
	// PM2Status, Restarts and LogTail say why a service did not become healthy: PM2's
	// view of it and the last lines of its own error log.
	PM2Status string
	Restarts  int
	LogTail   string
}

// verifyBackoff is the wait between two checks of one service while it is not healthy:
// 50 ms, growing by a tenth each time, up to 2 s. A service that becomes healthy after t is
// seen within about a tenth of t (the onboarding ends when the last one is seen: with
// waits growing by half, as before, its last ~0.3 s was spent waiting on services that
// were already up), and one that takes a minute is checked every 2 s. The waits are not
// randomized: a handful of services on one box do not need spreading.
func verifyBackoff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(50*time.Millisecond),
		backoff.WithMultiplier(1.1),
		backoff.WithRandomizationFactor(0),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
}

// verifyHealth checks every target concurrently, retrying each with backoff until it is
// healthy or the deadline passes. It returns all verdicts and an error naming the services
// that never became healthy.
func verifyHealth(ctx context.Context, targets []HealthTarget, deadline time.Duration) ([]HealthResult, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	start := time.Now()
	results := make([]HealthResult, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := HealthResult{Service: t.Service, Probe: describeProbe(t.Spec)}
			b := verifyBackoff()
			for {
				cctx, ccancel := context.WithTimeout(ctx, t.Timeout)
				r := t.Check(cctx)
				ccancel()
				res.Attempts++
				res.Latency, res.Detail = r.Duration, r.Detail
				if r.Outcome == probe.Success {
					res.OK = true
					break
				}
				wait := b.NextBackOff()
				timer := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					timer.Stop()
				case <-timer.C:
				}
				if ctx.Err() != nil {
					break
				}
			}
			res.After = time.Since(start)
			results[i] = res
		}()
	}
	wg.Wait()
	var bad []string
	for _, r := range results {
		if !r.OK {
			bad = append(bad, fmt.Sprintf("%s (%s: %s)", r.Service, r.Probe, r.Detail))
		}
	}
	if len(bad) > 0 {
		return results, fmt.Errorf("not healthy after %s: %s", deadline.Round(time.Second), strings.Join(bad, "; "))
	}
	return results, nil
}

func describeProbe(s probe.Spec) string {
	switch s.Kind {
	case probe.KindHTTP:
		path := s.Path
		if path == "" {
			path = "/"
		}
		return fmt.Sprintf("http GET :%d%s", s.Port, path)
	case probe.KindTCP:
		return fmt.Sprintf("tcp :%d", s.Port)
	default:
		return s.Kind
	}
}
