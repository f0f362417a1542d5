package update

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/livinity/livinity-agent/pipeline"
)

// Source is where a new release comes from: a directory holding livos/ and nexus/, or a
// git ref of a repository holding them at its top.
type Source struct {
	// Dir holds the new livos/ and nexus/ trees.
	Dir string
	// Repo is a git repository (a URL or a path) and Ref a branch, tag or commit in it.
	Repo, Ref string
}

// String describes the source for logs and the history.
func (s Source) String() string {
	if s.Dir != "" {
		return s.Dir
	}
	return s.Repo + " " + s.Ref
}

// treeDirs are the two trees of a release, as they stand in its source.
var treeDirs = []string{"livos", "nexus"}

// fetch writes the release's livos/ and nexus/ into stage (which must not exist) and
// returns its revision: the commit, or for a directory a hash of its content.
func (s Source) fetch(ctx context.Context, stage, cache string, env []string) (string, error) {
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return "", err
	}
	if s.Dir != "" {
		for _, t := range treeDirs {
			if err := copySource(filepath.Join(s.Dir, t), filepath.Join(stage, t)); err != nil {
				return "", fmt.Errorf("copy the new release from %s: %w", s.Dir, err)
			}
		}
		h, err := pipeline.HashPaths(filepath.Join(stage, "livos"), filepath.Join(stage, "nexus"))
		if err != nil {
			return "", err
		}
		return "dir-" + h[:12], nil
	}
	// a bare cache of the repository: fetching again is cheap, and no working tree of it
	// is ever served
	if _, err := os.Stat(cache); errors.Is(err, fs.ErrNotExist) {
		if _, err := git(ctx, env, "", "init", "--quiet", "--bare", cache); err != nil {
			return "", err
		}
	}
	if _, err := git(ctx, env, cache, "fetch", "--quiet", "--force", "--no-tags", s.Repo, s.Ref); err != nil {
		return "", fmt.Errorf("fetch %s from %s: %w", s.Ref, s.Repo, err)
	}
	rev, err := git(ctx, env, cache, "rev-parse", "--verify", "FETCH_HEAD^{commit}")
	if err != nil {
		return "", err
	}
	rev = strings.TrimSpace(rev)
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", rev, "livos", "nexus")
	cmd.Dir, cmd.Env = cache, append(env, "LANG=C")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("git archive: %w", err)
	}
	uerr := untar(out, stage)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return "", fmt.Errorf("%s at %s has no livos/ and nexus/ at its top: %w: %s", s.Repo, rev, err, strings.TrimSpace(errb.String()))
	}
	if uerr != nil {
		return "", uerr
	}
	return rev, nil
}

// git runs git with an argument vector and returns its standard output.
func git(ctx context.Context, env []string, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(env, "GIT_TERMINAL_PROMPT=0", "LANG=C")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// untar extracts a tar stream under dst; entries that would leave dst are refused.
func untar(r io.Reader, dst string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read the release archive: %w", err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("the release archive has an entry outside its trees: %q", h.Name)
		}
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&0o777)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
	}
}

// skipInSource are never part of a release's source: build outputs, installs, VCS.
var skipInSource = map[string]bool{"node_modules": true, "dist": true, "venv": true, ".git": true}

// copySource copies a tree's source (no node_modules, dist, venv or .git) from src to dst.
func copySource(src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && rel != "." && skipInSource[d.Name()] {
			return filepath.SkipDir
		}
		return copyEntry(p, filepath.Join(dst, rel), d, false)
	})
}

// linkOutputs hard-links into the staged release what the live one has built (installs,
// build outputs, venvs) wherever the staged tree has the same package: a step whose inputs
// did not change then finds its work in place and is skipped. Nothing is shared that a
// step would write into: a step that runs moves its outputs aside first.
func linkOutputs(live, stage string) error {
	return filepath.WalkDir(live, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() || !skipInSource[d.Name()] || d.Name() == ".git" {
			return nil
		}
		rel, _ := filepath.Rel(live, p)
		parent := filepath.Join(stage, filepath.Dir(rel))
		if _, err := os.Stat(parent); err != nil {
			return filepath.SkipDir // no such package in the new release
		}
		if err := linkTree(p, filepath.Join(stage, rel)); err != nil {
			return fmt.Errorf("link %s into the new release: %w", rel, err)
		}
		return filepath.SkipDir
	})
}

// linkTree recreates directory src at dst with hard links for files and copies of links.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		return copyEntry(p, filepath.Join(dst, rel), d, true)
	})
}

// copyEntry creates dst like src: a directory, a symlink, or a file (hard-linked when
// link is set, copied otherwise).
func copyEntry(src, dst string, d fs.DirEntry, link bool) error {
	info, err := d.Info()
	if err != nil {
		return err
	}
	switch {
	case d.IsDir():
		return os.MkdirAll(dst, info.Mode().Perm()|0o700)
	case info.Mode()&fs.ModeSymlink != 0:
		l, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(l, dst)
	case !info.Mode().IsRegular():
		return nil
	case link:
		err := os.Link(src, dst)
		if !errors.Is(err, syscall.EXDEV) {
			return err
		}
		fallthrough // another filesystem (a tree that is a mount point): a copy then
	default:
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, info.Mode().Perm())
	}
}

// shortHash is a stable short name for a string.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}
