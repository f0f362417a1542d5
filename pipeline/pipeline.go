// Package pipeline is the journaled step engine: steps run in dependency order
// (independent steps in parallel), every change journaled before it is made so that a
// failure — or a crash — is undone in reverse order, and incremental so that a re-run with
// nothing changed does nothing. It knows no step by name; the LivOS recipe is package
// setup.
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/pipeline/journal"
)

// Plan is everything a run needs, resolved before anything is written.
type Plan struct {
	// StateDir holds the journal, fingerprints, step logs and the last result.
	StateDir string
	// PM2Home is the PM2 daemon home every pm2 call uses; never implied.
	PM2Home string
	// Path is the PATH for every command the pipeline runs.
	Path string
	// Home is HOME for those commands (npm and pnpm caches live there).
	Home string
	// Env is further environment for every command (a package manager's proxy and CA
	// settings); never secrets, which PM2 would copy into its apps.
	Env []string
	// Steps in display order.
	Steps []*Step
	// Fingerprint identifies the inputs of the whole run; it is saved with the last run.
	Fingerprint string
	// Locks are directories (the trees, the PM2 home) that no two runs may change at once,
	// whatever their state dirs: each is locked (flock on the directory itself, which
	// writes nothing into it) for the whole run.
	Locks []string
	// KeepOnFailure are directories (the services' logs) copied into the state directory
	// before a failed run is rolled back, which may remove them.
	KeepOnFailure []string

	status func(id string) Status // set while the plan runs
}

// StepStatus is how step id has ended so far while the plan runs ("" before, and for a
// step the run has not reached).
func (p *Plan) StepStatus(id string) Status {
	if p.status == nil {
		return ""
	}
	return p.status(id)
}

// Status is how a step ended.
type Status string

// Step statuses.
const (
	StatusPending  Status = "pending"
	StatusRunning  Status = "running"
	StatusDone     Status = "done"
	StatusSkipped  Status = "skipped"  // inputs unchanged since the last successful run
	StatusWarned   Status = "warned"   // an optional step failed; it was undone
	StatusFailed   Status = "failed"   // the run failed here
	StatusCanceled Status = "canceled" // another step failed first
	StatusNotRun   Status = "not run"  // a step it needs did not succeed
)

// Succeeded reports whether a step in this status did its work (or had it in place).
func (s Status) Succeeded() bool { return s == StatusDone || s == StatusSkipped }

// Event reports progress to an observer (terminal UI, log, sd_notify status).
type Event struct {
	Index, Total int // 1-based position of Step among Total steps
	Step         *Step
	Status       Status
	Elapsed      time.Duration
	Err          error
	// Note is extra detail (for example "retrying without --frozen-lockfile").
	Note string
}

// Options are the run's collaborators.
type Options struct {
	Logger *slog.Logger
	// Observe, if set, receives every step event; it must not block for long.
	Observe func(Event)
	// PM2 returns the PM2 access for a daemon home (the plan's, or one a journal names).
	PM2 func(home string) PM2
	// DryRun reports which steps would run and changes nothing.
	DryRun bool
	// Jobs bounds how many steps run at once; 0 means no bound (every step whose
	// dependencies are done starts), 1 runs the steps one after another.
	Jobs int
}

// StepResult is one step's outcome.
type StepResult struct {
	Step     *Step
	Status   Status
	Duration time.Duration
	Err      error
}

// Result is a run's outcome.
type Result struct {
	RunID    string
	Steps    []StepResult
	Duration time.Duration
	// RolledBack is true when the run failed and its changes were undone.
	RolledBack bool
}

// Status returns how step id ended in this run ("" when it is not a step of the run).
func (r *Result) Status(id string) Status {
	for _, s := range r.Steps {
		if s.Step.ID == id {
			return s.Status
		}
	}
	return ""
}

// ErrRolledBack wraps a failed run's error after its changes were undone.
var ErrRolledBack = errors.New("onboarding failed and was rolled back")

// Run executes the plan: it first finishes any interrupted earlier run (rollback or
// clean-up), then runs the steps, then commits or rolls back.
func Run(ctx context.Context, plan *Plan, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := prepareStateDir(plan.StateDir); err != nil {
		return nil, err
	}
	unlock, err := lockState(plan.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, dir := range plan.Locks {
		if opts.DryRun {
			break // it changes nothing, and must not create a missing PM2 home
		}
		unlock, err := lockDir(dir)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}

	if !opts.DryRun {
		if _, err := recoverLocked(ctx, plan.StateDir, opts, log); err != nil {
			return nil, err
		}
	}
	prints, err := loadFingerprints(plan.StateDir)
	if err != nil {
		return nil, err
	}
	r := &runner{plan: plan, opts: opts, log: log, prints: prints, start: time.Now()}
	r.res = &Result{RunID: newRunID()}
	plan.status = r.status
	if opts.DryRun {
		return r.dryRun(ctx)
	}
	r.j, err = journal.Create(plan.StateDir, r.res.RunID)
	if err != nil {
		return nil, err
	}
	runErr := r.runSteps(ctx)
	r.res.Duration = time.Since(r.start)
	if runErr != nil {
		log.Error("onboarding failed; rolling back", "err", runErr)
		if kept := r.keepLogs(); kept != "" {
			runErr = fmt.Errorf("%w\n    logs of the failed run (steps and services) kept in %s", runErr, kept)
		}
		if err := rollback(context.WithoutCancel(ctx), r.j, opts, log); err != nil {
			return r.res, fmt.Errorf("%w (rollback incomplete: %v)", runErr, err)
		}
		r.res.RolledBack = true
		_ = saveLastRun(plan.StateDir, LastRun{At: time.Now(), OK: false, DurationSeconds: r.res.Duration.Seconds(), Error: runErr.Error()})
		return r.res, fmt.Errorf("%w: %w", ErrRolledBack, runErr)
	}
	if err := r.commit(); err != nil {
		return r.res, err
	}
	return r.res, nil
}

// Recover finishes an interrupted run found in stateDir: a run that had committed gets its
// backups removed (it succeeded: nothing is rolled back); any other is rolled back. It
// reports whether a run was rolled back.
func Recover(ctx context.Context, stateDir string, opts Options) (bool, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := prepareStateDir(stateDir); err != nil {
		return false, err
	}
	unlock, err := lockState(stateDir)
	if err != nil {
		return false, err
	}
	defer unlock()
	return recoverLocked(ctx, stateDir, opts, log)
}

func recoverLocked(ctx context.Context, stateDir string, opts Options, log *slog.Logger) (bool, error) {
	j, pend, err := journal.Open(stateDir)
	if err != nil || j == nil {
		return false, err
	}
	if pend.Committed {
		log.Info("finishing clean-up of an earlier successful run", "run", pend.RunID)
		removeBackups(pend.Ops, log)
		return false, j.Remove()
	}
	log.Warn("an earlier run was interrupted; rolling it back first", "run", pend.RunID, "operations", len(pend.Ops))
	if err := rollback(ctx, j, opts, log); err != nil {
		return true, fmt.Errorf("roll back interrupted run %s: %w", pend.RunID, err)
	}
	return true, nil
}

type runner struct {
	plan   *Plan
	opts   Options
	log    *slog.Logger
	j      *journal.Journal
	prints fingerprints
	start  time.Time
	res    *Result

	mu       sync.Mutex
	newPrint fingerprints // fingerprints of this run, saved on success
}

func (r *runner) index(id string) int {
	for i, s := range r.plan.Steps {
		if s.ID == id {
			return i
		}
	}
	return -1
}

func (r *runner) emit(i int, st Status, elapsed time.Duration, err error, note string) {
	if r.opts.Observe == nil {
		return
	}
	r.opts.Observe(Event{Index: i + 1, Total: len(r.plan.Steps), Step: r.plan.Steps[i], Status: st, Elapsed: elapsed, Err: err, Note: note})
}

// runSteps runs every step as soon as the steps it waits for have ended; independent
// steps run in parallel. The first failure of a required step cancels the others.
func (r *runner) runSteps(ctx context.Context) error {
	steps := r.plan.Steps
	if err := checkGraph(steps); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make([]chan struct{}, len(steps))
	for i := range done {
		done[i] = make(chan struct{})
	}
	r.res.Steps = make([]StepResult, len(steps))
	r.newPrint = fingerprints{}
	slots := make(chan struct{}, max(r.opts.Jobs, len(steps)))
	if r.opts.Jobs > 0 {
		slots = make(chan struct{}, r.opts.Jobs)
	}
	var wg sync.WaitGroup
	for i, s := range steps {
		r.res.Steps[i] = StepResult{Step: s, Status: StatusPending}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[i])
			for _, dep := range append(slices.Clone(s.After), s.Wait...) {
				select {
				case <-done[r.index(dep)]:
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				r.setResult(i, StatusCanceled, 0, nil)
				return
			}
			if err := r.unmet(s); err != nil {
				r.notRun(ctx, cancel, i, err)
				return
			}
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				r.setResult(i, StatusCanceled, 0, nil)
				return
			}
			st, dur, err := r.runStep(ctx, i)
			r.setResult(i, st, dur, err)
			if st == StatusFailed {
				cancel(fmt.Errorf("step %s: %w", s.ID, err))
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// unmet names the first dependency of s that did not succeed, with why.
func (r *runner) unmet(s *Step) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, dep := range s.After {
		d := r.res.Steps[r.index(dep)]
		if d.Status.Succeeded() {
			continue
		}
		if d.Err != nil {
			return fmt.Errorf("needs step %s, which %s: %w", dep, d.Status, d.Err)
		}
		return fmt.Errorf("needs step %s, which %s", dep, d.Status)
	}
	return nil
}

// notRun ends step i without running it because a step it needs did not succeed; a
// required step fails the run with that reason.
func (r *runner) notRun(ctx context.Context, cancel context.CancelCauseFunc, i int, why error) {
	s := r.plan.Steps[i]
	r.setResult(i, StatusNotRun, 0, why)
	r.emit(i, StatusNotRun, 0, why, "")
	if s.Optional {
		r.log.Warn("optional step not run", "step", s.ID, "reason", why)
		return
	}
	r.log.Error("step not run", "step", s.ID, "reason", why)
	cancel(fmt.Errorf("step %s not run: %w", s.ID, why))
}

func (r *runner) setResult(i int, st Status, dur time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res.Steps[i].Status, r.res.Steps[i].Duration, r.res.Steps[i].Err = st, dur, err
}

// status is how step id has ended so far in this run.
func (r *runner) status(id string) Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := r.index(id); i >= 0 && i < len(r.res.Steps) {
		return r.res.Steps[i].Status
	}
	return ""
}

// depPrint combines the fingerprints of a step's dependencies.
func (r *runner) depPrints(s *Step) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(s.After)+len(s.Wait))
	for _, d := range append(slices.Clone(s.After), s.Wait...) {
		out = append(out, r.newPrint[d])
	}
	return out
}

func (r *runner) runStep(ctx context.Context, i int) (Status, time.Duration, error) {
	s := r.plan.Steps[i]
	start := time.Now()
	deps := r.depPrints(s)
	if s.Key != nil && !s.Force {
		key, err := s.Key()
		if err == nil {
			fp := Combine(s.ID, key, deps)
			if fp == r.prints[s.ID] && outputsExist(s) {
				r.record(s.ID, fp)
				r.emit(i, StatusSkipped, 0, nil, "inputs unchanged")
				r.log.Info("step skipped: inputs unchanged", "step", s.ID)
				return StatusSkipped, 0, nil
			}
		}
	}
	r.emit(i, StatusRunning, 0, nil, "")
	r.log.Info("step started", "step", s.ID, "title", s.Title, "index", i+1, "total", len(r.plan.Steps))
	sctx := ctx
	if s.Timeout > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeoutCause(ctx, s.Timeout, fmt.Errorf("step %s timed out after %s", s.ID, s.Timeout))
		defer cancel()
	}
	x, err := r.newExec(i)
	if err == nil {
		defer x.close()
		err = r.prepareOutputs(x)
		if err == nil {
			err = s.Action(sctx, x)
			if err != nil && context.Cause(sctx) != nil && ctx.Err() == nil {
				err = fmt.Errorf("%w: %w", context.Cause(sctx), err)
			}
		}
	}
	dur := time.Since(start)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
			r.emit(i, StatusCanceled, dur, nil, "")
			return StatusCanceled, dur, nil
		}
		if s.Optional {
			r.log.Warn("optional step failed; undoing it and continuing", "step", s.ID, "err", err)
			if uerr := undoStep(context.WithoutCancel(ctx), r.j, s.ID, r.opts, r.log); uerr != nil {
				err = fmt.Errorf("%w (undo: %v)", err, uerr)
			}
			r.emit(i, StatusWarned, dur, err, "")
			return StatusWarned, dur, err
		}
		r.log.Error("step failed", "step", s.ID, "err", err, "seconds", dur.Seconds())
		r.emit(i, StatusFailed, dur, err, "")
		return StatusFailed, dur, err
	}
	if s.Key != nil {
		if key, kerr := s.Key(); kerr == nil {
			r.record(s.ID, Combine(s.ID, key, deps))
		}
	} else {
		r.record(s.ID, Combine(s.ID, "always", deps))
	}
	r.log.Info("step done", "step", s.ID, "seconds", dur.Seconds())
	r.emit(i, StatusDone, dur, nil, "")
	return StatusDone, dur, nil
}

func (r *runner) print(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.newPrint[id]
}

func (r *runner) record(id, fp string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.newPrint[id] = fp
}

// prepareOutputs journals and backs up what the step will create or replace.
func (r *runner) prepareOutputs(x *Exec) error {
	s := x.Step
	if s.Creates != nil {
		for _, p := range s.Creates() {
			if err := x.Create(p); err != nil {
				return err
			}
		}
	}
	if s.Replaces != nil {
		for _, p := range s.Replaces() {
			if err := x.Replace(p); err != nil {
				return err
			}
		}
	}
	if s.Watch != nil {
		for _, dir := range s.Watch() {
			if err := x.watch(dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// commit makes a successful run final: fingerprints and the last result are saved, the
// journal is marked committed, then backups and the journal are removed.
func (r *runner) commit() error {
	for i, s := range r.plan.Steps {
		if r.res.Steps[i].Status == StatusWarned {
			delete(r.newPrint, s.ID) // an optional step that failed must run again next time
		}
	}
	if err := saveFingerprints(r.plan.StateDir, r.newPrint); err != nil {
		return err
	}
	if err := saveLastRun(r.plan.StateDir, LastRun{
		At: time.Now(), OK: true, DurationSeconds: r.res.Duration.Seconds(),
		ConfigFingerprint: r.plan.Fingerprint,
	}); err != nil {
		return err
	}
	if err := r.j.MarkCommitted(); err != nil {
		return err
	}
	removeBackups(r.j.Ops(), r.log)
	return r.j.Remove()
}

func (r *runner) dryRun(ctx context.Context) (*Result, error) {
	r.res.Steps = make([]StepResult, len(r.plan.Steps))
	r.newPrint = fingerprints{}
	for i, s := range r.plan.Steps {
		st := StatusPending
		if s.Key != nil {
			if key, err := s.Key(); err == nil {
				fp := Combine(s.ID, key, r.depPrints(s))
				r.record(s.ID, fp)
				if fp == r.prints[s.ID] && outputsExist(s) {
					st = StatusSkipped
				}
			}
		}
		r.res.Steps[i] = StepResult{Step: s, Status: st}
		r.emit(i, st, 0, nil, "dry run")
	}
	return r.res, nil
}

// FailedRunsDir is where the logs of failed runs are kept, one directory per run.
func FailedRunsDir(stateDir string) string { return filepath.Join(stateDir, "failed-runs") }

// keepFailedRuns is how many failed runs' logs are kept.
const keepFailedRuns = 5

// keepLogs copies the step logs and the plan's KeepOnFailure directories into
// failed-runs/<run>/ (the oldest beyond keepFailedRuns are removed) and returns that
// directory, or "" if nothing could be kept.
func (r *runner) keepLogs() string {
	base := FailedRunsDir(r.plan.StateDir)
	dst := filepath.Join(base, r.res.RunID)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		r.log.Warn("could not keep the failed run's logs", "err", err)
		return ""
	}
	srcs := append([]string{filepath.Join(r.plan.StateDir, "logs")}, r.plan.KeepOnFailure...)
	names := []string{"steps"}
	for _, k := range r.plan.KeepOnFailure {
		names = append(names, filepath.Base(k))
	}
	for i, src := range srcs {
		if err := copyFiles(src, filepath.Join(dst, names[i])); err != nil {
			r.log.Warn("could not keep logs", "dir", src, "err", err)
		}
	}
	runs, _ := os.ReadDir(base)
	for i := 0; i < len(runs)-keepFailedRuns; i++ {
		os.RemoveAll(filepath.Join(base, runs[i].Name()))
	}
	return dst
}

// copyFiles copies the regular files of directory src (one level, 0600) into dst.
func copyFiles(src, dst string) error {
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func checkGraph(steps []*Step) error {
	seen := map[string]bool{}
	for _, s := range steps {
		for _, d := range append(slices.Clone(s.After), s.Wait...) {
			if !seen[d] {
				return fmt.Errorf("step %s depends on %s, which is not an earlier step", s.ID, d)
			}
		}
		if seen[s.ID] {
			return fmt.Errorf("step %s is listed twice", s.ID)
		}
		seen[s.ID] = true
	}
	return nil
}

func outputsExist(s *Step) bool {
	paths := s.Outputs()
	if s.Produces != nil {
		paths = s.Produces()
	}
	for _, o := range paths {
		if _, err := os.Lstat(o); err != nil {
			return false
		}
	}
	return true
}

func newRunID() string {
	b := make([]byte, 4)
	rand.Read(b)
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
}

// lockDir takes an exclusive lock on directory dir (created if missing).
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another livinity-agent is running a pipeline on %s (its lock is held, perhaps with another --state-dir): wait for it to finish, or stop it", dir)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// prepareStateDir creates the state directory (0700) and refuses one the agent cannot
// trust: what is in it (the journal above all) decides what the agent deletes, moves, kills
// and runs, so it must be a real directory owned by the agent's user and writable by no
// one else, and so must the journal.
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	for _, p := range []string{dir, filepath.Join(dir, journal.FileName), filepath.Join(dir, "logs")} {
		if err := trusted(p); err != nil {
			return err
		}
	}
	return nil
}

// trusted fails unless p is missing, or is not a symlink, is owned by the agent's user and
// is not writable by group or others.
func trusted(p string) error {
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check state dir: %w", err)
	}
	const fix = "the state dir (--state-dir) must belong to the agent's user and be writable by it alone: chown -R %d %s && chmod -R go-w %s, or pass another --state-dir"
	switch sys, _ := st.Sys().(*syscall.Stat_t); {
	case st.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("refusing to use %s: it is a symlink; "+fix, p, os.Geteuid(), p, p)
	case sys != nil && int(sys.Uid) != os.Geteuid():
		return fmt.Errorf("refusing to use %s: it belongs to uid %d, not the agent's uid %d; "+fix, p, sys.Uid, os.Geteuid(), os.Geteuid(), p, p)
	case st.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("refusing to use %s: mode %v lets others write it; "+fix, p, st.Mode().Perm(), os.Geteuid(), p, p)
	}
	return nil
}

// lockState takes an exclusive lock on the state directory so that two agents never run
// the pipeline at once.
func lockState(dir string) (func(), error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another livinity-agent is running the pipeline with state dir %s (lock %s held)", dir, p)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
