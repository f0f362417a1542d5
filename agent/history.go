package agent

import (
	"time"

	"github.com/livinity/livinity-agent/history"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/update"
)

// record adds a pipeline run to the box's history (secrets redacted); a failure to write
// it is logged, never the run's.
func (a *Agent) record(res *pipeline.Result, err error) {
	r := history.Record{Kind: history.KindOnboard, At: time.Now(), To: update.Revision(a.plan.StateDir), Outcome: history.Success}
	if res != nil {
		r.At = r.At.Add(-res.Duration)
		r.DurationSeconds = res.Duration.Seconds()
		for _, s := range res.Steps {
			r.Steps = append(r.Steps, history.Step{ID: s.Step.ID, Status: string(s.Status), Seconds: s.Duration.Seconds()})
		}
	}
	if err != nil {
		r.Outcome, r.Error = history.RolledBack, a.secrets.String(err.Error())
		if res == nil {
			r.Outcome = history.Failed
		}
	}
	r.Services = map[string]string{}
	for _, h := range a.box.Health {
		switch {
		case h.Skipped:
			r.Services[h.Service] = "skipped"
		case h.OK:
			r.Services[h.Service] = "healthy"
		default:
			r.Services[h.Service] = "unhealthy"
		}
	}
	if herr := history.Append(a.plan.StateDir, r); herr != nil {
		a.log.Warn("could not record the onboarding in the history", "err", herr)
	}
}
