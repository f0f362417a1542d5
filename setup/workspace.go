package setup

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/pipeline"
)

// Package is one workspace package of a tree, as its package.json describes it.
type Package struct {
	Tree string // config.TreeLivos or config.TreeNexus
	Dir  string // absolute directory
	// Base is the directory's name under packages/ (the step names use it).
	Base string
	// Name is package.json's name ("@nexus/core").
	Name string
	// Build is whether package.json has a build script.
	Build bool
	// Deps are the names of its dependencies and devDependencies.
	Deps []string
	// FileDeps maps a dependency given as "file:<dir>" to that directory (absolute).
	FileDeps map[string]string
}

// Workspace is the packages of both trees.
type Workspace struct {
	Packages []*Package
}

type manifest struct {
	Name            string            `json:"name"`
	Scripts         map[string]string `json:"scripts"`
	Dependencies    map[string]string `json:"dependencies"`
	DevDependencies map[string]string `json:"devDependencies"`
	Workspaces      json.RawMessage   `json:"workspaces"`
	Engines         map[string]string `json:"engines"`
}

func readManifest(path string) (*manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &m, nil
}

// LoadWorkspace reads the workspace packages of both trees of cfg: the livos tree's
// pnpm-workspace.yaml and the nexus tree's package.json "workspaces" (either form is read
// in either tree); a tree without either has every packages/* directory.
func LoadWorkspace(cfg *config.Config) (*Workspace, error) {
	w := &Workspace{}
	for _, tree := range []string{config.TreeLivos, config.TreeNexus} {
		root := cfg.TreeDir(tree)
		globs, err := workspaceGlobs(root)
		if err != nil {
			return nil, err
		}
		var dirs []string
		for _, g := range globs {
			for _, m := range pipeline.GlobSorted(filepath.Join(root, filepath.FromSlash(g), "package.json")) {
				if d := filepath.Dir(m); !slices.Contains(dirs, d) {
					dirs = append(dirs, d)
				}
			}
		}
		for _, dir := range dirs {
			m, err := readManifest(filepath.Join(dir, "package.json"))
			if err != nil {
				return nil, fmt.Errorf("read workspace package: %w", err)
			}
			p := &Package{Tree: tree, Dir: dir, Base: filepath.Base(dir), Name: m.Name, Build: m.Scripts["build"] != "", FileDeps: map[string]string{}}
			for _, deps := range []map[string]string{m.Dependencies, m.DevDependencies} {
				for name, spec := range deps {
					p.Deps = append(p.Deps, name)
					if rel, ok := strings.CutPrefix(spec, "file:"); ok {
						p.FileDeps[name] = filepath.Clean(filepath.Join(dir, rel))
					}
				}
			}
			slices.Sort(p.Deps)
			w.Packages = append(w.Packages, p)
		}
	}
	return w, nil
}

// workspaceGlobs are a tree's workspace package globs.
func workspaceGlobs(root string) ([]string, error) {
	if f, err := os.Open(filepath.Join(root, "pnpm-workspace.yaml")); err == nil {
		defer f.Close()
		return pnpmGlobs(f)
	}
	m, err := readManifest(filepath.Join(root, "package.json"))
	if err == nil && len(m.Workspaces) > 0 {
		var globs []string
		if json.Unmarshal(m.Workspaces, &globs) == nil {
			return globs, nil
		}
		var obj struct{ Packages []string }
		if json.Unmarshal(m.Workspaces, &obj) == nil {
			return obj.Packages, nil
		}
	}
	return []string{"packages/*"}, nil
}

// pnpmGlobs reads the "packages:" list of a pnpm-workspace.yaml (the one form pnpm
// documents: a block sequence of quoted or plain strings).
func pnpmGlobs(f *os.File) ([]string, error) {
	var globs []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "-") {
			in = strings.HasPrefix(trimmed, "packages:")
			continue
		}
		if in {
			if item, ok := strings.CutPrefix(trimmed, "-"); ok {
				item = strings.Trim(strings.TrimSpace(item), `'"`)
				if !strings.HasPrefix(item, "!") {
					globs = append(globs, item)
				}
			}
		}
	}
	return globs, sc.Err()
}

// Find returns the package of a tree in directory base.
func (w *Workspace) Find(tree, base string) *Package {
	for _, p := range w.Packages {
		if p.Tree == tree && p.Base == base {
			return p
		}
	}
	return nil
}

func (w *Workspace) byName(name string) *Package {
	for _, p := range w.Packages {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Closure is p and every workspace package it depends on, directly or not (dependencies
// first, p last).
func (w *Workspace) Closure(p *Package) []*Package {
	var out []*Package
	var visit func(p *Package)
	visit = func(p *Package) {
		if slices.Contains(out, p) {
			return
		}
		for _, d := range p.Deps {
			if dp := w.byName(d); dp != nil && dp != p {
				visit(dp)
			}
		}
		out = append(out, p)
	}
	visit(p)
	return out
}
