package agent

import (
	"context"
	"errors"

	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/setup/preflight"
)

// Hooks let the caller watch an onboarding: package main draws them on a terminal, run
// puts them in its status.
type Hooks struct {
	// Preflight receives every check's outcome once the preflight ran, failed or not.
	Preflight func([]preflight.Result)
	// Observe receives every pipeline event.
	Observe func(pipeline.Event)
}

// Result is what an onboarding did.
type Result struct {
	// Preflight are the preflight's checks.
	Preflight []preflight.Result
	// Pipeline is the pipeline's run: nil when the preflight stopped the onboarding, or the
	// pipeline could not start.
	Pipeline *pipeline.Result
	// Health is the health check of every service, once the verify step ran.
	Health []setup.HealthResult
}

// Onboard resolves the box of o and onboards it once: see Agent.Onboard.
func Onboard(ctx context.Context, o Options, h Hooks) (*Result, error) {
	a, err := New(o)
	if err != nil {
		return nil, err
	}
	return a.Onboard(ctx, h)
}

// Onboard is the one way into the onboarding pipeline: it runs the preflight (a failed
// critical check, a *PreflightError, stops it before anything changes), notes the PM2 home
// in the state dir, finishes an interrupted update, runs the pipeline (which finishes an
// interrupted run first, and rolls back a failed one), records the run in the box's
// history and keeps the config in the state dir once the run succeeded. A dry run plans
// and records nothing. The error shows no secret.
func (a *Agent) Onboard(ctx context.Context, h Hooks) (*Result, error) {
	res := &Result{}
	checks, err := Preflight(ctx, a.cfg, a.preflightOptions(), a.log)
	res.Preflight = checks
	if h.Preflight != nil {
		h.Preflight(checks)
	}
	if err != nil {
		return res, err
	}
	if err := a.remember(); err != nil {
		return res, err
	}
	opts := a.pipelineOptions()
	opts.Observe = func(e pipeline.Event) {
		a.learnSecrets(e)
		if h.Observe != nil {
			h.Observe(e)
		}
	}
	if err := a.recoverUpdate(ctx); err != nil {
		return res, err
	}
	run, err := pipeline.Run(ctx, a.plan, opts)
	res.Pipeline, res.Health = run, a.box.Health
	if !a.o.DryRun {
		a.record(run, err)
	}
	if err != nil {
		return res, errors.New(a.secrets.String(err.Error()))
	}
	if a.o.DryRun {
		return res, nil
	}
	return res, saveConfig(a.plan.StateDir, a.cfg)
}
