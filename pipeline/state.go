package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/livinity/livinity-agent/internal/atomicfile"
)

// fingerprints maps a step ID to the fingerprint of its inputs at its last successful run.
type fingerprints map[string]string

const (
	fingerprintsFile = "fingerprints.json"
	lastRunFile      = "last-run.json"
)

func loadFingerprints(stateDir string) (fingerprints, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, fingerprintsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fingerprints{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read fingerprints: %w", err)
	}
	fp := fingerprints{}
	if err := json.Unmarshal(b, &fp); err != nil {
		// a damaged file only costs a full run
		return fingerprints{}, nil
	}
	return fp, nil
}

func saveFingerprints(stateDir string, fp fingerprints) error {
	b, err := json.MarshalIndent(fp, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, fingerprintsFile), append(b, '\n'), 0o600)
}

// LastRun is the outcome of the last pipeline run, kept in the state directory for the
// supervisor (did the config change since?), metrics and status.
type LastRun struct {
	At                time.Time `json:"at"`
	OK                bool      `json:"ok"`
	DurationSeconds   float64   `json:"durationSeconds"`
	ConfigFingerprint string    `json:"configFingerprint,omitempty"`
	Error             string    `json:"error,omitempty"`
}

// LoadLastRun reads the last run's outcome; ok is false when there has been none.
func LoadLastRun(stateDir string) (run LastRun, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(stateDir, lastRunFile))
	if errors.Is(err, fs.ErrNotExist) {
		return LastRun{}, false, nil
	}
	if err != nil {
		return LastRun{}, false, fmt.Errorf("read last run: %w", err)
	}
	if err := json.Unmarshal(b, &run); err != nil {
		return LastRun{}, false, fmt.Errorf("decode %s: %w", lastRunFile, err)
	}
	return run, true, nil
}

func saveLastRun(stateDir string, run LastRun) error {
	if !run.OK {
		// keep the fingerprint of the last success: a failed run does not change what is installed
		if prev, ok, _ := LoadLastRun(stateDir); ok && prev.OK {
			run.ConfigFingerprint = prev.ConfigFingerprint
		}
	}
	b, err := json.MarshalIndent(run, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, lastRunFile), append(b, '\n'), 0o600)
}

// Combine makes a step's fingerprint from its own key and its dependencies' fingerprints.
func Combine(id, key string, deps []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", id, key)
	for _, d := range deps {
		fmt.Fprintf(h, "%s\x00", d)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// skipDirs are never part of an input fingerprint: they are outputs or caches.
var skipDirs = map[string]bool{"node_modules": true, "dist": true, "venv": true, ".venv": true, "__pycache__": true, ".git": true}

// HashPaths hashes files and directory trees (relative names, modes, contents, link
// targets), skipping output and cache directories. A missing path hashes as missing.
func HashPaths(paths ...string) (string, error) {
	h := sha256.New()
	for _, root := range paths {
		// the base name, not the path: a release built aside (update) fingerprints as it
		// will once it is moved into place
		fmt.Fprintf(h, "root %s\n", filepath.Base(root))
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				fmt.Fprintf(h, "missing\n")
				return nil
			}
			if err != nil {
				return err
			}
			if d.IsDir() && p != root && skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			if d.IsDir() && p != root && strings.HasPrefix(d.Name(), ".livinity-backup-") {
				return filepath.SkipDir
			}
			rel, _ := filepath.Rel(root, p)
			info, err := d.Info()
			if err != nil {
				return err
			}
			// the type and the exec bit, not the other permission bits: a release unpacked
			// under another umask has the same content
			fmt.Fprintf(h, "%s %v %t\n", rel, info.Mode().Type(), info.Mode()&0o111 != 0)
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				t, err := os.Readlink(p)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, "-> %s\n", t)
			case info.Mode().IsRegular():
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("fingerprint %s: %w", root, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// GlobSorted returns the sorted matches of pattern (no error for a bad pattern: none).
func GlobSorted(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	sort.Strings(m)
	return m
}

// Fingerprints returns the step fingerprints of the last successful run in stateDir.
func Fingerprints(stateDir string) (map[string]string, error) { return loadFingerprints(stateDir) }

// SaveFingerprints replaces the step fingerprints in stateDir (atomically).
func SaveFingerprints(stateDir string, fp map[string]string) error {
	return saveFingerprints(stateDir, fp)
}
