package agent

import (
	"context"
	"errors"

	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/update"
)

// UpdateOptions say which release to update the box to.
type UpdateOptions struct {
	// Source is the new release.
	Source update.Source
	// DryRun says what would change and restart, and changes nothing.
	DryRun bool
	// Observe receives every event of the release's pipeline.
	Observe func(pipeline.Event)
}

// Update builds the release u names beside the live one, switches to it, health-checks it
// and puts the previous release back on any failure (see package update). It notes the
// PM2 home in the state dir first (but for a dry run), as Onboard does. The error shows no secret.
func (a *Agent) Update(ctx context.Context, u UpdateOptions) (*update.Result, error) {
	if !u.DryRun {
		if err := rememberPM2Home(a.plan.StateDir, a.plan.PM2Home); err != nil {
			return nil, err
		}
	}
	o := a.updateOptions()
	o.Source, o.DryRun, o.Observe = u.Source, u.DryRun, u.Observe
	res, err := update.Run(ctx, o)
	if err != nil {
		return res, errors.New(a.secrets.String(err.Error()))
	}
	return res, nil
}
