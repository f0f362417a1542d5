package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/pipeline/journal"
)

// Exec is what a step's action works with: the plan, a logger, PM2, and journaled ways to
// change the tree and to run commands.
type Exec struct {
	*Plan
	Step *Step
	Log  *slog.Logger
	PM2  PM2

	j       *journal.Journal
	runID   string
	out     *os.File // the step's command log
	mu      sync.Mutex
	backups map[string]string
	watches int
	r       *runner
}

// RunID is the current run's ID.
func (x *Exec) RunID() string { return x.runID }

// Print returns another step's fingerprint in this run ("" if it has none yet).
func (x *Exec) Print(id string) string { return x.r.print(id) }

// Note reports progress of the running step to the observer (a terminal line, a log).
func (x *Exec) Note(note string) {
	i := x.r.index(x.Step.ID)
	x.r.emit(i, StatusRunning, 0, nil, note)
}

func (r *runner) newExec(i int) (*Exec, error) {
	s := r.plan.Steps[i]
	dir := filepath.Join(r.plan.StateDir, "logs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	// never through a link planted in the state dir
	f, err := os.OpenFile(filepath.Join(dir, s.ID+".log"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open step log: %w", err)
	}
	x := &Exec{Plan: r.plan, Step: s, Log: r.log.With("step", s.ID), j: r.j, runID: r.res.RunID,
		out: f, backups: map[string]string{}, r: r}
	if r.opts.PM2 != nil {
		x.PM2 = r.opts.PM2(r.plan.PM2Home)
	}
	return x, nil
}

func (x *Exec) close() { x.out.Close() }

// Record journals an undo operation of this step before the action it undoes.
func (x *Exec) Record(op journal.Op) (journal.Op, error) {
	op.Step = x.Step.ID
	return x.j.Record(op)
}

// Create journals that path will be created by this step, unless it already exists (then
// it is left alone, and never removed by a rollback).
func (x *Exec) Create(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return nil
	}
	_, err := x.Record(journal.Op{Kind: journal.KindRestorePath, Path: path})
	return err
}

// Replace journals path and backs it up beside itself so that a rollback can restore it:
// a directory or symlink is moved aside (the step then creates it afresh), a regular file
// is copied (the step may read it). A path that does not exist is journaled for removal.
func (x *Exec) Replace(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, err := x.Record(journal.Op{Kind: journal.KindRestorePath, Path: path})
		return err
	}
	if err != nil {
		return fmt.Errorf("back up %s: %w", path, err)
	}
	backup := x.BackupName(path)
	if _, err := x.Record(journal.Op{Kind: journal.KindRestorePath, Path: path, Backup: backup}); err != nil {
		return err
	}
	if info.Mode().IsRegular() {
		// copy under a temp name, then rename: a crash never leaves a torn backup that a
		// rollback would restore
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("back up %s: %w", path, err)
		}
		if err := atomicfile.WriteFile(backup, data, info.Mode().Perm()); err != nil {
			return fmt.Errorf("back up %s: %w", path, err)
		}
		// the backup is what a rollback puts back: it keeps the owner (the services' user)
		if st, ok := info.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid()) {
			if err := os.Chown(backup, int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("back up %s: keep owner %d:%d: %w", path, st.Uid, st.Gid, err)
			}
		}
	} else if err := os.Rename(path, backup); err != nil {
		return fmt.Errorf("move %s aside: %w", path, err)
	}
	x.mu.Lock()
	x.backups[path] = backup
	x.mu.Unlock()
	return nil
}

// BackupName is where this step backs path up in this run.
func (x *Exec) BackupName(path string) string { return x.BackupFor(x.Step.ID, path) }

// BackupFor is where step backs path up in this run: each step has its own, so two steps
// replacing the same path in one run are undone in turn, each to what it found.
func (x *Exec) BackupFor(step, path string) string {
	return filepath.Join(filepath.Dir(path), backupPrefix+x.runID+"-"+step+"-"+filepath.Base(path))
}

// Backup returns where this step backed path up, or "" if it did not exist.
func (x *Exec) Backup(path string) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.backups[path]
}

// env is the environment of every command: only what the tools need, plus the plan's
// allow-listed settings (proxy, CA). The rest of the agent's own environment is not passed
// on (it may hold secrets, and PM2 copies its caller's environment into every app).
func (x *Exec) env(extra ...string) []string {
	env := []string{"PATH=" + x.Path, "HOME=" + x.Home, "PM2_HOME=" + x.PM2Home, "LANG=C.UTF-8",
		"CI=true", "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false"}
	env = append(env, x.Plan.Env...)
	return append(env, extra...)
}

// Command runs argv in dir with the step's environment, output going to the step's log.
// The command gets its own process group, journaled while it runs, so that neither a
// timeout nor a crash of the agent leaves it writing into the tree.
func (x *Exec) Command(ctx context.Context, dir string, argv ...string) error {
	if len(argv) == 0 {
		return errors.New("command: empty argument vector")
	}
	fmt.Fprintf(x.out, "$ %s\n", strings.Join(quoteArgs(argv), " "))
	tail := &tailBuffer{max: 4096, last: time.Now()}
	cmd := exec.Command(argv[0], argv[1:]...)
	if p, err := lookPath(argv[0], x.Path); err == nil {
		cmd.Path = p
		cmd.Err = nil
	}
	cmd.Dir = dir
	cmd.Env = x.env()
	cmd.Stdout = io.MultiWriter(x.out, tail)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", argv[0], err)
	}
	pid := cmd.Process.Pid
	op, jerr := x.Record(journal.Op{Kind: journal.KindKillGroup, PID: pid, StartTime: procfs.StartTime(pid)})
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	var err error
	alive := time.NewTicker(Heartbeat)
	defer alive.Stop()
wait:
	for {
		select {
		case err = <-waitErr:
			break wait
		case <-ctx.Done():
			syscall.Kill(-pid, syscall.SIGKILL)
			<-waitErr
			err = context.Cause(ctx)
			break wait
		case <-alive.C:
			// a package manager behind a proxy may print nothing for minutes: say it lives
			running, silent := time.Since(start), time.Since(tail.lastWrite())
			x.Log.Info("command still running", "argv0", filepath.Base(argv[0]), "pid", pid,
				"seconds", int(running.Seconds()), "silentSeconds", int(silent.Seconds()))
			x.Note(fmt.Sprintf("%s running %s, last output %s ago", filepath.Base(argv[0]),
				running.Round(time.Second), silent.Round(time.Second)))
		}
	}
	// the group may have left children behind (a build's watcher, a stray daemon): end them
	syscall.Kill(-pid, syscall.SIGKILL)
	if jerr == nil {
		x.j.MarkUndone(op.Seq)
	}
	x.Log.Debug("command finished", "argv0", filepath.Base(argv[0]), "seconds", time.Since(start).Seconds())
	if err != nil {
		return &CommandError{Argv: argv, Dir: dir, Err: err, Output: tail.String()}
	}
	return nil
}

// CommandError is a failed command with the end of its output.
type CommandError struct {
	Argv   []string
	Dir    string
	Err    error
	Output string
}

func (e *CommandError) Error() string {
	out := strings.TrimSpace(e.Output)
	if out != "" {
		lines := strings.Split(out, "\n")
		if len(lines) > 12 {
			lines = lines[len(lines)-12:]
		}
		out = "\n    " + strings.Join(lines, "\n    ")
	}
	return fmt.Sprintf("%s (in %s): %v%s", strings.Join(quoteArgs(e.Argv), " "), e.Dir, e.Err, out)
}

func (e *CommandError) Unwrap() error { return e.Err }

func quoteArgs(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$`\\|&;<>()*?[]#~") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}

// lookPath finds a program in the given PATH value (not the agent's own).
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH %s", name, path)
}

// Heartbeat is how often a running command that may be silent is reported alive.
var Heartbeat = 30 * time.Second

// tailBuffer keeps the last max bytes written to it, and when it was last written.
type tailBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	last time.Time
}

func (t *tailBuffer) lastWrite() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = time.Now()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
