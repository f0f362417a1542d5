package pipeline

import (
	"context"
	"time"
)

// Step is one stage of a pipeline, described as data: what it does, how it is undone,
// whether it may fail without failing the run, how long it may take, what it depends on,
// and which inputs decide whether it must run again. The engine knows no step by name:
// a recipe builds its steps with closures over its own inputs.
type Step struct {
	// ID is the step's stable name, used in the journal, fingerprints and logs.
	ID string
	// Title is the short human name shown in progress ("build nexus core").
	Title string
	// Undo says in words how the step is undone (for --dry-run and the README).
	Undo string
	// Optional steps that fail are undone on their own and reported as warnings.
	Optional bool
	// Force makes the step run even when its fingerprint is unchanged.
	Force bool
	// Timeout bounds the whole step.
	Timeout time.Duration
	// After lists the IDs of steps that must have succeeded (done or skipped) first. A
	// step whose dependency did not succeed does not run: it ends StatusNotRun, and the
	// run fails unless the step is optional.
	After []string
	// Wait lists steps that must have ended first, however they ended (an optional build
	// the step can do without).
	Wait []string
	// Creates are paths the step may create. A path that already exists is left alone and
	// never removed; one that does not is removed on rollback.
	Creates func() []string
	// Replaces are paths the step rewrites. Before the action runs each is journaled and
	// backed up (directories are moved aside, files copied); rollback restores them.
	Replaces func() []string
	// Watch are directories the step's commands may write into beyond what it declares
	// (an install script's generated files, a build's cache). What is new in them after
	// the step is removed on rollback, so a rolled-back run leaves them as they were.
	Watch func() []string
	// Produces are the paths whose presence shows the step's work is in place (a skip
	// needs them); nil means all of Creates and Replaces.
	Produces func() []string
	// Key returns the step's input fingerprint material. A step whose key (combined with
	// its dependencies' keys) matches the last successful run, and whose outputs exist, is
	// skipped. A nil Key means the step always runs (it is idempotent by itself).
	Key func() (string, error)
	// Action does the work.
	Action func(ctx context.Context, x *Exec) error
}

// Outputs returns every path the step creates or replaces.
func (s *Step) Outputs() []string {
	var out []string
	if s.Creates != nil {
		out = append(out, s.Creates()...)
	}
	if s.Replaces != nil {
		out = append(out, s.Replaces()...)
	}
	return out
}
