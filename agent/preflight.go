package agent

import (
	"context"
	"log/slog"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/setup/preflight"
)

// PreflightError is a preflight with a failed critical check: nothing was changed. Its
// text names every failed critical check with its fix.
type PreflightError struct {
	// Results are every check's outcome.
	Results []preflight.Result
	err     error
}

// Error names every failed critical check with its fix.
func (e *PreflightError) Error() string { return e.err.Error() }

// Preflight checks the machine for cfg before anything is changed and logs every check.
// The error, a *PreflightError, names the critical checks that failed; the others (and
// warnings) only show in the results.
func Preflight(ctx context.Context, cfg *config.Config, opts preflight.Options, log *slog.Logger) ([]preflight.Result, error) {
	results := preflight.Run(ctx, cfg, opts)
	for _, r := range results {
		log.Info("preflight", "check", r.Name, "status", string(r.Status), "detail", r.Detail, "fix", r.Fix)
	}
	if err := preflight.Critical(results); err != nil {
		return results, &PreflightError{Results: results, err: err}
	}
	return results, nil
}

// preflightOptions are the preflight's options for the box: its tools' PATH, its pm2
// program, and its PM2 home (ports held by its own apps are no conflict).
func (a *Agent) preflightOptions() preflight.Options {
	return preflight.Options{Path: a.o.Path, PM2: a.o.PM2, PM2Home: a.plan.PM2Home}
}
