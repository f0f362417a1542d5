// Package journal is the crash-safe undo log of one onboarding run. Every state-creating
// action is recorded (appended and fsynced) BEFORE it happens, so that a run killed at any
// point — kill -9, power loss — leaves enough on disk for the next run to put the tree back.
//
// The file is JSON lines in the state directory. Three record types: an undo operation
// (Op), a mark that an operation was undone, and a commit mark written when the run
// succeeded (after which only clean-up of backups remains, never a rollback).
package journal

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/livinity/livinity-agent/internal/atomicfile"
)

// FileName is the journal's name inside the state directory.
const FileName = "journal.jsonl"

// Kinds of undo operation.
const (
	// KindRestorePath puts Path back as it was: Path is removed, then Backup (if any) is
	// renamed back to Path. An empty Backup means Path did not exist before the run.
	// If Backup is set but missing on disk, the rename aside never happened and Path is
	// still the original: it is left alone.
	KindRestorePath = "restore-path"
	// KindPM2Delete deletes the PM2 apps Names under PM2Home (apps this run created).
	KindPM2Delete = "pm2-delete"
	// KindPM2Restart re-creates the apps Names from the ecosystem file Path (apps this run
	// replaced with a new definition).
	KindPM2Restart = "pm2-restart"
	// KindPM2Kill stops the PM2 daemon under PM2Home (a daemon this run started).
	KindPM2Kill = "pm2-kill"
	// KindRemoveNew removes from the directory Path whatever the listing in the file
	// Backup (taken before the step) does not hold: what a step's commands wrote
	// beyond the paths it declares.
	KindRemoveNew = "remove-new"
	// KindKillGroup kills the process group PID if its leader still has StartTime (a command
	// the run started; after a crash it may still be writing into the tree).
	KindKillGroup = "kill-group"
)

// Op is one recorded undo operation.
type Op struct {
	Seq       int      `json:"seq"`
	Step      string   `json:"step"`
	Kind      string   `json:"kind"`
	Path      string   `json:"path,omitempty"`
	Backup    string   `json:"backup,omitempty"`
	Names     []string `json:"names,omitempty"`
	PM2Home   string   `json:"pm2Home,omitempty"`
	PID       int      `json:"pid,omitempty"`
	StartTime uint64   `json:"startTime,omitempty"`
}

type record struct {
	Op        *Op    `json:"op,omitempty"`
	Undone    int    `json:"undone,omitempty"`
	Committed bool   `json:"committed,omitempty"`
	RunID     string `json:"runId,omitempty"`
}

// Journal is an open journal of the current run. Safe for concurrent use by parallel steps.
type Journal struct {
	mu     sync.Mutex
	f      *os.File
	path   string
	seq    int
	ops    []Op
	undone map[int]bool
}

// Pending is what an interrupted run left behind.
type Pending struct {
	RunID string
	// Ops not yet undone, in the order they were recorded.
	Ops []Op
	// Committed is true when the run had succeeded: its backups only need removing.
	Committed bool
}

// ErrPending is returned by Create when an earlier run's journal is still there.
var ErrPending = errors.New("an interrupted run's journal is pending: roll it back first")

// Create starts the journal of a new run in stateDir. It fails with ErrPending when an
// earlier journal exists.
func Create(stateDir, runID string) (*Journal, error) {
	p := filepath.Join(stateDir, FileName)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create journal %s: %w", p, ErrPending)
	}
	if err != nil {
		return nil, fmt.Errorf("create journal: %w", err)
	}
	j := &Journal{f: f, path: p, undone: map[int]bool{}}
	if err := j.append(record{RunID: runID}); err != nil {
		f.Close()
		os.Remove(p)
		return nil, err
	}
	if err := atomicfile.SyncDir(stateDir); err != nil {
		f.Close()
		return nil, err
	}
	return j, nil
}

// Record appends op durably and returns it with its sequence number. Call it before the
// action it undoes.
func (j *Journal) Record(op Op) (Op, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.seq++
	op.Seq = j.seq
	if err := j.appendLocked(record{Op: &op}); err != nil {
		return op, err
	}
	j.ops = append(j.ops, op)
	return op, nil
}

// MarkUndone records that the operation seq was undone (or, for a command, has ended).
func (j *Journal) MarkUndone(seq int) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.undone[seq] = true
	return j.appendLocked(record{Undone: seq})
}

// Ops returns the operations not yet undone, in the order they were recorded.
func (j *Journal) Ops() []Op {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []Op
	for _, op := range j.ops {
		if !j.undone[op.Seq] {
			out = append(out, op)
		}
	}
	return out
}

// MarkCommitted records that the run succeeded. After this a crash only leaves backups to
// delete; nothing is rolled back.
func (j *Journal) MarkCommitted() error {
	return j.append(record{Committed: true})
}

// Remove closes and deletes the journal: the run is fully finished (committed and cleaned,
// or rolled back).
func (j *Journal) Remove() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove journal: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(j.path))
}

func (j *Journal) append(r record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appendLocked(r)
}

func (j *Journal) appendLocked(r record) error {
	if j.f == nil {
		return errors.New("journal is closed")
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode journal record: %w", err)
	}
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("append to journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	return nil
}

// Open reopens an interrupted run's journal for recovery. It returns (nil, nil, nil) when
// there is none. A torn last line (the crash hit mid-append) is ignored: its action never
// started, because actions start only after their record is synced.
func Open(stateDir string) (*Journal, *Pending, error) {
	p := filepath.Join(stateDir, FileName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open journal: %w", err)
	}
	pend := &Pending{}
	undone := map[int]bool{}
	var ops []Op
	maxSeq := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // torn final line
		}
		switch {
		case r.Op != nil:
			ops = append(ops, *r.Op)
			maxSeq = max(maxSeq, r.Op.Seq)
		case r.Undone != 0:
			undone[r.Undone] = true
		case r.Committed:
			pend.Committed = true
		case r.RunID != "":
			pend.RunID = r.RunID
		}
	}
	if err := sc.Err(); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read journal: %w", err)
	}
	for _, op := range ops {
		if !undone[op.Seq] {
			pend.Ops = append(pend.Ops, op)
		}
	}
	// a torn line may lack its newline: start the next record on a fresh line
	if _, err := f.Write([]byte("\n")); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("append to journal: %w", err)
	}
	return &Journal{f: f, path: p, seq: maxSeq, ops: pend.Ops, undone: map[int]bool{}}, pend, nil
}
