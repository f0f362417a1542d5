package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/pipeline/journal"
)

// opaque directories are listed as one entry and never descended into: they are a
// step's declared output (node_modules, moved aside and restored whole) or not the
// tree's content (.git).
var opaque = []string{"node_modules", ".git"}

// backupPrefix starts the name of every backup a run makes beside what it replaces.
const backupPrefix = ".livinity-backup-"

// listTree returns every path under root, relative to it, except inside opaque
// directories and backups. A missing root lists nothing.
func listTree(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipAll
			}
			return err
		}
		if p == root {
			return nil
		}
		if strings.HasPrefix(d.Name(), backupPrefix) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		if d.IsDir() && slices.Contains(opaque, d.Name()) {
			return filepath.SkipDir
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// watch lists dir and journals that whatever is new in it after this step is removed on
// rollback. The listing is written (atomically) before the journal names it.
func (x *Exec) watch(dir string) error {
	list, err := listTree(dir)
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	mdir := filepath.Join(x.StateDir, "watch")
	if err := os.MkdirAll(mdir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", mdir, err)
	}
	x.mu.Lock()
	x.watches++
	n := x.watches
	x.mu.Unlock()
	manifest := filepath.Join(mdir, x.runID+"-"+x.Step.ID+"-"+strconv.Itoa(n)+".json")
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(manifest, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", manifest, err)
	}
	_, err = x.Record(journal.Op{Kind: journal.KindRemoveNew, Path: dir, Backup: manifest})
	return err
}

// removeNew removes from op.Path everything its listing op.Backup does not hold. It is
// idempotent.
func removeNew(op journal.Op) error {
	if !filepath.IsAbs(op.Path) || filepath.Clean(op.Path) == "/" {
		return fmt.Errorf("refusing to clean suspicious path %q", op.Path)
	}
	b, err := os.ReadFile(op.Backup)
	if err != nil {
		return fmt.Errorf("read the listing of %s taken before the run: %w", op.Path, err)
	}
	var before []string
	if err := json.Unmarshal(b, &before); err != nil {
		return fmt.Errorf("read the listing of %s taken before the run: %w", op.Path, err)
	}
	known := make(map[string]bool, len(before))
	for _, p := range before {
		known[p] = true
	}
	return filepath.WalkDir(op.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p == op.Path || strings.HasPrefix(d.Name(), backupPrefix) {
			if p != op.Path && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(op.Path, p)
		if !known[rel] {
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("remove %s: %w", p, err)
			}
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() && slices.Contains(opaque, d.Name()) {
			return filepath.SkipDir
		}
		return nil
	})
}
