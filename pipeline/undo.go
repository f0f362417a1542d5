package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/pipeline/journal"
	"github.com/livinity/livinity-agent/supervisor/proctree"
)

// rollback undoes every operation of the journal not yet undone, newest first. First it
// ends every command the run started (after a crash they may still be writing into the
// tree). An undo that fails is logged and the rest continue; the journal is removed only
// when all succeeded, so that the next run tries the failed ones again.
func rollback(ctx context.Context, j *journal.Journal, opts Options, log *slog.Logger) error {
	ops := j.Ops()
	var errs []error
	for _, op := range ops {
		if op.Kind == journal.KindKillGroup {
			killGroup(op)
			j.MarkUndone(op.Seq)
		}
	}
	for i := len(ops) - 1; i >= 0; i-- {
		op := ops[i]
		if op.Kind == journal.KindKillGroup {
			continue
		}
		if err := undo(ctx, op, opts); err != nil {
			log.Error("undo failed; continuing with the rest", "step", op.Step, "kind", op.Kind, "path", op.Path, "err", err)
			errs = append(errs, fmt.Errorf("undo %s of step %s: %w", op.Kind, op.Step, err))
			continue
		}
		log.Info("undone", "step", op.Step, "kind", op.Kind, "path", op.Path)
		j.MarkUndone(op.Seq)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, op := range ops {
		if op.Kind == journal.KindRemoveNew {
			os.Remove(op.Backup)
		}
	}
	return j.Remove()
}

// undoStep undoes the operations of one (optional) step that failed, newest first.
func undoStep(ctx context.Context, j *journal.Journal, step string, opts Options, log *slog.Logger) error {
	ops := j.Ops()
	var errs []error
	for i := len(ops) - 1; i >= 0; i-- {
		op := ops[i]
		if op.Step != step {
			continue
		}
		var err error
		if op.Kind == journal.KindKillGroup {
			killGroup(op)
		} else {
			err = undo(ctx, op, opts)
		}
		if err != nil {
			log.Error("undo failed", "step", op.Step, "kind", op.Kind, "err", err)
			errs = append(errs, err)
			continue
		}
		j.MarkUndone(op.Seq)
	}
	return errors.Join(errs...)
}

func undo(ctx context.Context, op journal.Op, opts Options) error {
	switch op.Kind {
	case journal.KindRestorePath:
		return restorePath(op)
	case journal.KindRemoveNew:
		return removeNew(op)
	case journal.KindPM2Delete, journal.KindPM2Restart, journal.KindPM2Kill:
		if opts.PM2 == nil {
			return errors.New("no PM2 access configured")
		}
		pm := opts.PM2(op.PM2Home)
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if o, ok := pm.(interface{ ownsDaemon() bool }); ok && o.ownsDaemon() && op.Kind == journal.KindPM2Kill {
			// its owner (a systemd unit) stops the daemon with every app and whatever they
			// left, also a daemon still starting: waiting for it here, or killing one that
			// does not answer, would leave the unit to start it again
			return pm.Kill(ctx)
		}
		apps, running, err := pm.Apps(ctx)
		if err != nil {
			return err
		}
		if !running && op.Kind == journal.KindPM2Kill {
			// a daemon may still be starting (the run was killed right after spawning it)
			running = waitDaemon(ctx, op.PM2Home, pm)
		}
		if !running {
			return nil // no daemon: nothing of ours is running
		}
		// what the apps run, so that nothing they started outlives them (a wrapper such
		// as tsx may leave its child behind when PM2 stops it)
		trees := appTrees(ctx, pm, op)
		defer killSurvivors(trees)
		// only the named apps PM2 still has: an undo that ran halfway before (or an app an
		// operator deleted) must not fail on the rest, so every undo can simply run again
		present := presentApps(apps, op.Names)
		switch op.Kind {
		case journal.KindPM2Delete:
			return deleteApps(ctx, pm, present)
		case journal.KindPM2Restart:
			if err := deleteApps(ctx, pm, present); err != nil {
				return err
			}
			killSurvivors(trees) // before the old definition starts again on the same ports
			if _, err := os.Stat(op.Path); err != nil {
				return fmt.Errorf("previous ecosystem %s is gone: %w", op.Path, err)
			}
			return pm.StartEcosystem(ctx, op.Path, op.Names...)
		default:
			return pm.Kill(ctx)
		}
	default:
		return fmt.Errorf("unknown undo kind %q", op.Kind)
	}
}

// appTrees records the processes (pid and start time) of the apps an undo removes: the
// named ones, or all of them for a daemon kill.
func appTrees(ctx context.Context, pm PM2, op journal.Op) map[int]uint64 {
	apps, _, err := pm.Apps(ctx)
	if err != nil {
		return nil
	}
	table, err := proctree.NewSampler("").ScanAll()
	if err != nil {
		return nil
	}
	out := map[int]uint64{}
	for _, a := range apps {
		if a.PID <= 0 || (op.Kind != journal.KindPM2Kill && !slices.Contains(op.Names, a.Name)) {
			continue
		}
		if u, err := table.Memory(int32(a.PID)); err == nil {
			for _, p := range u.PIDs {
				out[int(p)] = procfs.StartTime(int(p))
			}
		}
	}
	return out
}

// killSurvivors ends the recorded processes that still run (the same processes: the start
// time guards against a reused pid).
func killSurvivors(procs map[int]uint64) {
	for pid, start := range procs {
		if start != 0 && procfs.Alive(pid, start) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// deleteApps deletes the named apps, tolerating what is already gone: `pm2 delete a b`
// fails when one of them is missing, and a pm2 command of the run being rolled back may
// still have been deleting some when the list was taken. After a failure it deletes again
// what PM2 still lists.
func deleteApps(ctx context.Context, pm PM2, names []string) error {
	for attempt := 0; len(names) > 0; attempt++ {
		err := pm.Delete(ctx, names...)
		if err == nil {
			return nil
		}
		apps, running, lerr := pm.Apps(ctx)
		if lerr != nil || attempt == 2 {
			return err
		}
		if !running {
			return nil
		}
		names = presentApps(apps, names)
	}
	return nil
}

// presentApps are the names of names that PM2 lists.
func presentApps(apps []App, names []string) []string {
	var out []string
	for _, n := range names {
		if slices.ContainsFunc(apps, func(a App) bool { return a.Name == n }) {
			out = append(out, n)
		}
	}
	return out
}

// waitDaemon reports whether a PM2 daemon is alive under home (its pm2.pid names a live
// PM2 daemon of that home), waiting up to 10 s for its socket to answer.
func waitDaemon(ctx context.Context, home string, pm PM2) bool {
	b, err := os.ReadFile(filepath.Join(home, "pm2.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !procfs.IsPM2Daemon(pid, home) {
		return false
	}
	for i := 0; i < 100; i++ {
		if _, running, err := pm.Apps(ctx); err == nil && running {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	if start := procfs.StartTime(pid); start != 0 && procfs.IsPM2Daemon(pid, home) && procfs.Alive(pid, start) {
		syscall.Kill(pid, syscall.SIGKILL) // never answered: not a daemon anyone can use
	}
	return false
}

// restorePath puts a path back as it was before the run; it is idempotent, so a rollback
// that is itself interrupted can simply run again.
func restorePath(op journal.Op) error {
	if !filepath.IsAbs(op.Path) || filepath.Clean(op.Path) == "/" {
		return fmt.Errorf("refusing to restore suspicious path %q", op.Path)
	}
	if err := removeLeftovers(op); err != nil {
		return err
	}
	if op.Backup == "" {
		return removeAll(op.Path)
	}
	if _, err := os.Lstat(op.Backup); errors.Is(err, fs.ErrNotExist) {
		return nil // never moved aside: the path is still the original
	}
	if err := removeAll(op.Path); err != nil {
		return err
	}
	if err := os.Rename(op.Backup, op.Path); err != nil {
		return fmt.Errorf("restore %s: %w", op.Path, err)
	}
	return nil
}

func removeAll(p string) error {
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// removeBackups deletes the backups of a committed run.
func removeBackups(ops []journal.Op, log *slog.Logger) {
	for _, op := range ops {
		if op.Kind == journal.KindRemoveNew {
			if err := os.Remove(op.Backup); err != nil && !os.IsNotExist(err) {
				log.Warn("could not remove a listing", "path", op.Backup, "err", err)
			}
			continue
		}
		if op.Kind != journal.KindRestorePath {
			continue
		}
		if err := removeLeftovers(op); err != nil {
			log.Warn("could not remove an interrupted write", "err", err)
		}
		if op.Backup != "" {
			if err := os.RemoveAll(op.Backup); err != nil {
				log.Warn("could not remove backup", "path", op.Backup, "err", err)
			}
		}
	}
}

// removeLeftovers removes the temp files of atomic writes (of the path, or of its backup
// copy) that a crash interrupted.
func removeLeftovers(op journal.Op) error {
	tmps := atomicfile.Leftovers(op.Path)
	if op.Backup != "" {
		tmps = append(tmps, atomicfile.Leftovers(op.Backup)...)
	}
	for _, tmp := range tmps {
		if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove interrupted write %s: %w", tmp, err)
		}
	}
	return nil
}

// killGroup kills what is left of a command's process group: every process whose group
// is the recorded leader's pid and that started no earlier than the leader (the leader
// itself may be gone while its children still write into the tree).
func killGroup(op journal.Op) {
	if op.StartTime != 0 {
		procfs.KillGroup(op.PID, op.StartTime)
	}
}
