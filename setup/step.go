package setup

import (
	"context"
	"time"
)

// Step is one stage of the onboarding pipeline, described as data: what it does, how it is
// undone, whether it may fail without failing the run, how long it may take, what it
// depends on, and which inputs decide whether it must run again.
type Step struct {
	// ID is the step's stable name, used in the journal, fingerprints and logs.
	ID string
	// Title is the short human name shown in progress ("build nexus core").
	Title string
	// Undo says in words how the step is undone (for --dry-run and the README).
	Undo string
	// Optional steps that fail are undone on their own and reported as warnings.
	Optional bool
	// Timeout bounds the whole step.
	Timeout time.Duration
	// After lists the IDs of steps that must have finished first.
	After []string
	// Creates are paths the step may create. A path that already exists is left alone and
	// never removed; one that does not is removed on rollback.
	Creates func(p *Plan) []string
	// Replaces are paths the step rewrites. Before the action runs each is journaled and
	// backed up (directories are moved aside, files copied); rollback restores them.
	Replaces func(p *Plan) []string
	// Produces are the paths whose presence shows the step's work is in place (a skip
	// needs them); nil means all of Creates and Replaces.
	Produces func(p *Plan) []string
	// Key returns the step's input fingerprint material. A step whose key (combined with
	// its dependencies' keys) matches the last successful run, and whose outputs exist, is
	// skipped. A nil Key means the step always runs (it is idempotent by itself).
	Key func(p *Plan) (string, error)
	// Action does the work.
	Action func(ctx context.Context, x *Exec) error
}

// Outputs returns every path the step creates or replaces.
func (s *Step) Outputs(p *Plan) []string {
	var out []string
	if s.Creates != nil {
		out = append(out, s.Creates(p)...)
	}
	if s.Replaces != nil {
		out = append(out, s.Replaces(p)...)
	}
	return out
}
