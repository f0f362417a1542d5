// Package history records every onboarding and update of a box as one JSON line in the
// state directory: what ran, from and to which release, how each service fared, how it
// ended. `livinity-agent history` shows it and the metrics export it.
package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/livinity/livinity-agent/internal/atomicfile"
)

// FileName is the history's file in the state directory.
const FileName = "history.jsonl"

// keep is how many records the file keeps; older ones are dropped.
const keep = 500

// Kinds of record.
const (
	KindOnboard = "onboard"
	KindUpdate  = "update"
)

// Outcomes.
const (
	Success    = "success"
	Failed     = "failed"      // nothing changed (the new release did not build)
	RolledBack = "rolled-back" // the new release was live, failed, and the old one is back
)

// Step is how one pipeline step ended.
type Step struct {
	ID      string  `json:"id"`
	Status  string  `json:"status"`
	Seconds float64 `json:"seconds"`
}

// Record is one onboarding or update.
type Record struct {
	Kind string    `json:"kind"`
	At   time.Time `json:"at"`
	// From and To are the releases' revisions (a commit, or a content hash for a directory).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Source is where the new release came from.
	Source          string  `json:"source,omitempty"`
	DurationSeconds float64 `json:"durationSeconds"`
	Outcome         string  `json:"outcome"`
	Error           string  `json:"error,omitempty"`
	Steps           []Step  `json:"steps,omitempty"`
	// Services maps a service to what happened to it: restarted, unchanged, unhealthy,
	// rolled back.
	Services map[string]string `json:"services,omitempty"`
	// RollbackSeconds is, for a rolled-back update, the time from the failed health check to
	// the previous release answering again.
	RollbackSeconds float64 `json:"rollbackSeconds,omitempty"`
}

var mu sync.Mutex

// Append adds r to the history of stateDir (the file is 0600: errors may name paths).
func Append(stateDir string, r Record) error {
	mu.Lock()
	defer mu.Unlock()
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := filepath.Join(stateDir, FileName)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read history: %w", err)
	}
	lines := bytes.Split(bytes.TrimRight(old, "\n"), []byte("\n"))
	if len(old) == 0 {
		lines = nil
	}
	lines = append(lines, line)
	if len(lines) > keep {
		lines = lines[len(lines)-keep:]
	}
	return atomicfile.WriteFile(path, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600)
}

// Load returns the history of stateDir, oldest first; lines that do not decode (a file
// edited by hand) are skipped.
func Load(stateDir string) ([]Record, error) {
	f, err := os.Open(filepath.Join(stateDir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Kind != "" {
			out = append(out, r)
		}
	}
	return out, sc.Err()
}
