// Package update replaces a box's release with a new one without taking it down: the new
// trees are fetched and built beside the live ones (reusing what the live release built
// where nothing changed), checked, switched in by renames, the services that run changed
// code are restarted and health-checked, and on any failure the previous release — kept
// on disk — is renamed back and restarted, with no network and no rebuild. Every phase is
// written down first, so a kill at any instant converges on the next start to the old
// release or the new one, never a mix.
package update

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/history"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
)

// Options are an update's inputs and collaborators.
type Options struct {
	Config *config.Config
	// StateDir, PM2Home, Path, Home and Env are the pipeline's (see pipeline.Plan).
	StateDir, PM2Home, Path, Home string
	Env                           []string
	// Launcher is the livinity-agent binary (see setup.Box).
	Launcher string
	Source   Source
	// DryRun fetches and compares, builds nothing and changes nothing live.
	DryRun bool
	Jobs   int
	Logger *slog.Logger
	// Observe receives the pipeline's step events (progress).
	Observe func(pipeline.Event)
	// PM2 gives PM2 access for a daemon home.
	PM2 func(home string) pipeline.PM2
}

// Result is what an update did.
type Result struct {
	Record history.Record
	// Restart are the services whose code changed (restarted, or that would be on a dry run).
	Restart []string
	// Steps of the build of the new release (on a dry run: what would run).
	Steps []pipeline.StepResult
	// Health of the services after the switch (or after the rollback).
	Health []setup.HealthResult
}

// Phases of the update journal.
const (
	phaseStaging   = "staging"   // the live release is untouched
	phaseSwitching = "switching" // trees are being renamed: undo on recovery
	phaseSwitched  = "switched"  // the new release is live, not yet proven healthy
	phaseDone      = "done"      // the new release is healthy: only clean-up remains
)

// tree is one tree's live path and the names beside it.
type tree struct {
	Live, Stage, Prev string
}

// journal is the update's own crash-safe record, <state>/update.json.
type journal struct {
	Run      string   `json:"run"`
	Phase    string   `json:"phase"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Source   string   `json:"source"`
	Trees    []tree   `json:"trees"`
	Runtime  []string `json:"runtime"`
	Restart  []string `json:"restart"`
	Incoming string   `json:"incoming"`
}

const (
	journalFile      = "update.json"
	releaseFile      = "release.json"
	prevPrintsFile   = "fingerprints.prev.json"
	stageStateSubdir = "stage"
)

// Revision is the live release's revision ("" before the first update).
func Revision(stateDir string) string {
	var r struct{ Revision string }
	b, err := os.ReadFile(filepath.Join(stateDir, releaseFile))
	if err == nil && json.Unmarshal(b, &r) == nil {
		return r.Revision
	}
	return ""
}

func (j *journal) save(stateDir string) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, journalFile), append(b, '\n'), 0o600)
}

func loadJournal(stateDir string) (*journal, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, journalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the update journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("read the update journal %s: %w", filepath.Join(stateDir, journalFile), err)
	}
	return &j, nil
}

func trees(cfg *config.Config) []tree {
	var out []tree
	for _, t := range []string{config.TreeLivos, config.TreeNexus} {
		live := cfg.TreeDir(t)
		out = append(out, tree{Live: live, Stage: live + ".next", Prev: live + ".prev"})
	}
	return out
}

// lock takes the update lock of the state dir.
func lock(stateDir string) (func(), error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "update.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another update of this box is running (lock %s held)", f.Name())
	}
	return func() { f.Close() }, nil
}

func (o Options) log() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o Options) pipelineOptions() pipeline.Options {
	return pipeline.Options{Logger: o.Logger, Observe: o.Observe, PM2: o.PM2, Jobs: o.Jobs}
}

// Run updates the box to the release of o.Source.
func Run(ctx context.Context, o Options) (*Result, error) {
	unlock, err := lock(o.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := recoverLocked(ctx, o); err != nil {
		return nil, err
	}
	if _, err := pipeline.Recover(ctx, o.StateDir, o.pipelineOptions()); err != nil {
		return nil, err
	}
	start := time.Now()
	res := &Result{Record: history.Record{Kind: history.KindUpdate, At: start, From: Revision(o.StateDir), Source: o.Source.String()}}
	err = o.run(ctx, res)
	res.Record.DurationSeconds = time.Since(start).Seconds()
	if o.DryRun {
		return res, err
	}
	if err != nil {
		res.Record.Error = err.Error()
		if res.Record.Outcome == "" {
			res.Record.Outcome = history.Failed
		}
	} else {
		res.Record.Outcome = history.Success
	}
	if herr := history.Append(o.StateDir, res.Record); herr != nil {
		o.log().Warn("could not record the update in the history", "err", herr)
	}
	return res, err
}

func (o Options) run(ctx context.Context, res *Result) error {
	log := o.log()
	cfg := o.Config
	live, err := setup.NewBox(cfg, o.StateDir, o.PM2Home)
	if err != nil {
		return err
	}
	live.Launcher = o.Launcher
	j := &journal{Run: time.Now().UTC().Format("20060102T150405"), Phase: phaseStaging, From: res.Record.From,
		Source: o.Source.String(), Trees: trees(cfg)}
	for _, t := range j.Trees {
		if _, err := os.Stat(t.Live); err != nil {
			return fmt.Errorf("the live tree %s is missing: onboard the box before updating it", t.Live)
		}
		if err := os.RemoveAll(t.Stage); err != nil {
			return err
		}
	}
	j.Incoming = filepath.Join(filepath.Dir(j.Trees[0].Live), ".livinity-incoming-"+shortHash(j.Trees[0].Live))
	os.RemoveAll(j.Incoming)
	if err := j.save(o.StateDir); err != nil {
		return err
	}
	discardStage := func() {
		for _, t := range j.Trees {
			os.RemoveAll(t.Stage)
		}
		os.RemoveAll(j.Incoming)
		os.Remove(filepath.Join(o.StateDir, journalFile))
	}

	// 1. fetch the new release and seed it with what the live one built
	log.Info("fetching the new release", "source", o.Source.String())
	rev, err := o.Source.fetch(ctx, j.Incoming, filepath.Join(o.StateDir, "source.git"), o.Env)
	if err != nil {
		discardStage()
		return err
	}
	res.Record.To, j.To = rev, rev
	if rev == j.From && !o.DryRun {
		log.Info("the box already runs this release; nothing to do", "revision", rev)
		discardStage()
		res.Record.Services = map[string]string{}
		for _, name := range cfg.ServiceNames() {
			res.Record.Services[name] = "unchanged"
		}
		return nil
	}
	for i, t := range j.Trees {
		if err := moveDir(filepath.Join(j.Incoming, treeDirs[i]), t.Stage); err != nil {
			discardStage()
			return err
		}
		if err := linkOutputs(t.Live, t.Stage); err != nil {
			discardStage()
			return err
		}
	}
	os.RemoveAll(j.Incoming)
	stageCfg := *cfg
	stageCfg.Paths = config.Paths{LivosBaseDir: j.Trees[0].Stage, NexusBaseDir: j.Trees[1].Stage}
	stageState := filepath.Join(o.StateDir, stageStateSubdir)
	os.RemoveAll(stageState)
	if err := os.MkdirAll(stageState, 0o700); err != nil {
		discardStage()
		return err
	}
	// the live release's fingerprints: a step of the new one whose inputs did not change
	// finds its linked outputs and is skipped
	if prints, err := pipeline.Fingerprints(o.StateDir); err == nil {
		pipeline.SaveFingerprints(stageState, prints)
	}
	stage, err := setup.NewBox(&stageCfg, stageState, o.PM2Home)
	if err != nil {
		discardStage()
		return err
	}

	// 2. which services run changed code
	for _, name := range cfg.ServiceNames() {
		if live.RunsPrint(name) != stage.RunsPrint(name) {
			j.Restart = append(j.Restart, name)
		}
	}
	res.Restart = j.Restart

	// 3. build it beside the live one
	popts := o.pipelineOptions()
	popts.DryRun = o.DryRun
	plan := stage.BuildPlan(o.Path, o.Home, o.Env)
	bres, err := pipeline.Run(ctx, plan, popts)
	if bres != nil {
		res.Steps = bres.Steps
		for _, s := range bres.Steps {
			res.Record.Steps = append(res.Record.Steps, history.Step{ID: s.Step.ID, Status: string(s.Status), Seconds: s.Duration.Seconds()})
		}
	}
	if o.DryRun {
		// what would restart is what the build would change: compare once more after it
		discardStage()
		os.RemoveAll(stageState)
		return err
	}
	if err == nil {
		if probs := stage.ScriptProblems(); len(probs) > 0 {
			err = fmt.Errorf("the new release built but %s", strings.Join(probs, "; "))
		}
	}
	if err != nil {
		discardStage()
		os.RemoveAll(stageState)
		return fmt.Errorf("the new release %s did not build; nothing was changed and the old release keeps serving: %w", rev, err)
	}
	// what the build produced decides what restarts
	j.Restart = nil
	for _, name := range cfg.ServiceNames() {
		if live.RunsPrint(name) != stage.RunsPrint(name) {
			j.Restart = append(j.Restart, name)
		}
	}
	res.Restart = j.Restart
	j.Runtime = live.RuntimePaths()
	stagePrints, _ := pipeline.Fingerprints(stageState)

	// 4. switch: the live trees become the previous release, the new ones live
	livePrints, err := pipeline.Fingerprints(o.StateDir)
	if err != nil {
		return err
	}
	prevPrints := filepath.Join(o.StateDir, prevPrintsFile)
	if b, err := json.Marshal(livePrints); err == nil {
		if err := atomicfile.WriteFile(prevPrints, b, 0o600); err != nil {
			return err
		}
	}
	j.Phase = phaseSwitching
	if err := j.save(o.StateDir); err != nil {
		return err
	}
	log.Info("switching to the new release", "from", j.From, "to", j.To, "restart", strings.Join(j.Restart, ","))
	for _, t := range j.Trees {
		// one previous release is kept: the one being replaced now
		if err := os.RemoveAll(t.Prev); err != nil {
			return err
		}
		if err := os.Rename(t.Live, t.Prev); err != nil {
			return revertAfter(ctx, o, j, res, fmt.Errorf("switch %s: %w", t.Live, err))
		}
		if err := os.Rename(t.Stage, t.Live); err != nil {
			return revertAfter(ctx, o, j, res, fmt.Errorf("switch %s: %w", t.Live, err))
		}
	}
	if err := moveRuntime(j, j.Trees, false); err != nil {
		return revertAfter(ctx, o, j, res, err)
	}
	for id, fp := range stagePrints {
		livePrints[id] = fp
	}
	if err := pipeline.SaveFingerprints(o.StateDir, livePrints); err != nil {
		return revertAfter(ctx, o, j, res, err)
	}
	os.RemoveAll(stageState)
	j.Phase = phaseSwitched
	if err := j.save(o.StateDir); err != nil {
		return revertAfter(ctx, o, j, res, err)
	}

	// 5. restart what changed and prove it healthy: the ordinary pipeline on the live box
	box, err := setup.NewBox(cfg, o.StateDir, o.PM2Home)
	if err != nil {
		return revertAfter(ctx, o, j, res, err)
	}
	box.Launcher = o.Launcher
	_, err = pipeline.Run(ctx, box.Plan(o.Path, o.Home, o.Env), o.pipelineOptions())
	res.Health = box.Health
	if err != nil {
		return revertAfter(ctx, o, j, res, fmt.Errorf("the new release %s failed: %w", rev, err))
	}
	j.Phase = phaseDone
	if err := j.save(o.StateDir); err != nil {
		return err
	}
	res.Record.Services = map[string]string{}
	for _, name := range cfg.ServiceNames() {
		res.Record.Services[name] = "unchanged"
		if slices.Contains(j.Restart, name) {
			res.Record.Services[name] = "restarted"
		}
	}
	if b, err := json.Marshal(struct{ Revision string }{rev}); err == nil {
		atomicfile.WriteFile(filepath.Join(o.StateDir, releaseFile), b, 0o600)
	}
	os.Remove(prevPrints)
	os.Remove(filepath.Join(o.StateDir, journalFile))
	return nil
}

// moveRuntime moves the box's runtime paths (the .env, data, logs) of the given trees
// between the previous release and the live one: into the live trees after a switch, back
// on a revert.
func moveRuntime(j *journal, ts []tree, back bool) error {
	for _, p := range j.Runtime {
		var t *tree
		for i := range ts {
			if p == ts[i].Live || strings.HasPrefix(p, ts[i].Live+"/") {
				t = &ts[i]
			}
		}
		if t == nil {
			continue
		}
		prev := t.Prev + strings.TrimPrefix(p, t.Live)
		src, dst := prev, p
		if back {
			src, dst = p, prev
		}
		if _, err := os.Lstat(src); err != nil {
			continue // not there (yet, or any more)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.RemoveAll(dst); err != nil { // a release that ships one of its own
			return err
		}
		if err := os.Rename(src, dst); err != nil {
			return fmt.Errorf("move %s to %s: %w", src, dst, err)
		}
	}
	return nil
}

// revertAfter puts the previous release back after a failure of the new one, records the
// rollback, and returns cause (with what the rollback did).
func revertAfter(ctx context.Context, o Options, j *journal, res *Result, cause error) error {
	failedAt := time.Now()
	o.log().Error("the new release failed; putting the previous one back", "err", cause)
	res.Record.Outcome = history.RolledBack
	health, err := revert(context.WithoutCancel(ctx), o, j)
	res.Record.RollbackSeconds = time.Since(failedAt).Seconds()
	res.Record.Services = map[string]string{}
	for _, name := range o.Config.ServiceNames() {
		res.Record.Services[name] = "unchanged"
		if slices.Contains(j.Restart, name) {
			res.Record.Services[name] = "rolled back"
		}
	}
	if len(health) > 0 {
		res.Health = health
	}
	if err != nil {
		return fmt.Errorf("%w; putting the previous release back failed too: %v", cause, err)
	}
	return fmt.Errorf("%w; the previous release %s is back and serving (%.1f s after the failure)", cause, orUnknown(j.From), res.Record.RollbackSeconds)
}

func orUnknown(rev string) string {
	if rev == "" {
		return "(as onboarded)"
	}
	return rev
}

// revert renames the previous release back wherever a switch happened, restores the
// fingerprints and restarts the services that ran the new code. It handles every
// intermediate state a kill can leave.
func revert(ctx context.Context, o Options, j *journal) ([]setup.HealthResult, error) {
	// an interrupted pipeline run of the new release first (it restores its own changes)
	if _, err := pipeline.Recover(ctx, o.StateDir, o.pipelineOptions()); err != nil {
		return nil, err
	}
	// per tree the switch is: remove the older previous release, rename live to prev,
	// rename stage to live; what is on disk says how far it got
	var swapped []tree
	for _, t := range j.Trees {
		_, liveErr := os.Lstat(t.Live)
		_, prevErr := os.Lstat(t.Prev)
		_, stageErr := os.Lstat(t.Stage)
		switch {
		case prevErr != nil, stageErr == nil && liveErr == nil:
			// not moved aside yet: the live tree is the old release
		case liveErr != nil:
			// moved aside, the new one not yet in place
			if err := os.Rename(t.Prev, t.Live); err != nil {
				return nil, err
			}
		default:
			swapped = append(swapped, t)
		}
	}
	if len(swapped) > 0 {
		if err := moveRuntime(j, swapped, true); err != nil {
			return nil, err
		}
		for _, t := range swapped {
			failed := t.Live + ".failed"
			os.RemoveAll(failed)
			if err := os.Rename(t.Live, failed); err != nil {
				return nil, err
			}
			if err := os.Rename(t.Prev, t.Live); err != nil {
				return nil, err
			}
			os.RemoveAll(failed)
		}
	}
	for _, t := range j.Trees {
		os.RemoveAll(t.Stage)
	}
	if b, err := os.ReadFile(filepath.Join(o.StateDir, prevPrintsFile)); err == nil {
		var prints map[string]string
		if json.Unmarshal(b, &prints) == nil {
			pipeline.SaveFingerprints(o.StateDir, prints)
		}
	}
	var health []setup.HealthResult
	if len(j.Restart) > 0 && o.PM2 != nil {
		box, err := setup.NewBox(o.Config, o.StateDir, o.PM2Home)
		if err != nil {
			return nil, err
		}
		pm := o.PM2(o.PM2Home)
		if _, running, _ := pm.Apps(ctx); running {
			if err := pm.Delete(ctx, j.Restart...); err != nil {
				o.log().Warn("could not stop the new release's services", "err", err)
			}
			if err := pm.StartEcosystem(ctx, box.EcosystemFile(), j.Restart...); err != nil {
				return nil, fmt.Errorf("start the previous release's services: %w", err)
			}
			started := map[string]bool{}
			for _, n := range j.Restart {
				started[n] = true
			}
			err := box.Verify(ctx, pm, started)
			health = box.Health
			if err != nil {
				return health, fmt.Errorf("the previous release is back but not healthy: %w", err)
			}
		}
	}
	os.Remove(filepath.Join(o.StateDir, prevPrintsFile))
	os.Remove(filepath.Join(o.StateDir, journalFile))
	return health, nil
}

// Recover finishes an update that a kill or power loss interrupted: one that had proven
// the new release healthy is finished; any other is undone, so the old release serves. It
// reports whether there was one.
func Recover(ctx context.Context, o Options) (bool, error) {
	unlock, err := lock(o.StateDir)
	if err != nil {
		return false, err
	}
	defer unlock()
	return recoverLocked(ctx, o)
}

func recoverLocked(ctx context.Context, o Options) (bool, error) {
	j, err := loadJournal(o.StateDir)
	if err != nil || j == nil {
		return false, err
	}
	log := o.log()
	switch j.Phase {
	case phaseStaging:
		log.Warn("an interrupted update never switched; removing its staged release", "to", j.To)
		for _, t := range j.Trees {
			os.RemoveAll(t.Stage)
		}
		if j.Incoming != "" {
			os.RemoveAll(j.Incoming)
		}
		os.RemoveAll(filepath.Join(o.StateDir, stageStateSubdir))
		return true, os.Remove(filepath.Join(o.StateDir, journalFile))
	case phaseDone:
		log.Info("finishing the clean-up of a successful update", "to", j.To)
		if b, err := json.Marshal(struct{ Revision string }{j.To}); err == nil {
			atomicfile.WriteFile(filepath.Join(o.StateDir, releaseFile), b, 0o600)
		}
		os.Remove(filepath.Join(o.StateDir, prevPrintsFile))
		return true, os.Remove(filepath.Join(o.StateDir, journalFile))
	default:
		log.Warn("an interrupted update had switched releases; putting the previous one back", "from", j.From, "to", j.To)
		_, err := revert(ctx, o, j)
		if err == nil {
			history.Append(o.StateDir, history.Record{Kind: history.KindUpdate, At: time.Now(), From: j.From, To: j.To,
				Source: j.Source, Outcome: history.RolledBack, Error: "interrupted; rolled back at the next start"})
		}
		return true, err
	}
}

// moveDir renames src to dst, copying when they are on different filesystems.
func moveDir(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	if err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		return copyEntry(p, filepath.Join(dst, rel), d, false)
	}); err != nil {
		return err
	}
	return os.RemoveAll(src)
}
