package setup

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup/ecosystem"
)

// buildOnly are the steps a release built aside runs: installs, builds, copies, links and
// venvs; not the .env, the PM2 apps or the health check, which belong to the live box.
func buildOnly(id string) bool {
	switch id {
	case StepEnv, StepDirs, StepLinkEnv, StepEcosystem, StepPM2Start, StepPM2Save, StepVerify:
		return false
	}
	return true
}

// BuildPlan is the plan of building the box's trees without touching PM2: what an update
// runs on a release beside the live one.
func (b *Box) BuildPlan(path, home string, env []string) *pipeline.Plan {
	plan := b.Plan(path, home, env)
	plan.Steps = slices.DeleteFunc(plan.Steps, func(s *pipeline.Step) bool { return !buildOnly(s.ID) })
	plan.KeepOnFailure = nil
	plan.Locks = []string{b.root(config.TreeLivos), b.root(config.TreeNexus)}
	return plan
}

// RuntimePaths are the paths of the live trees that belong to the box, not to a release:
// the .env, livinityd's data, the services' logs and the data and log directories the
// catalog's path keys name inside the trees. An update moves them to the new release.
func (b *Box) RuntimePaths() []string {
	livos := b.root(config.TreeLivos)
	out := []string{b.EnvFile(), filepath.Join(livos, "data"), ecosystem.LogDir(b.Config)}
	env, _ := b.buildEnv(false)
	for _, d := range b.defs {
		for k := range d.Env {
			v := b.Config.Expand(d.Env[k], 0)
			if env != nil && env.Get(k) != "" {
				v = env.Get(k)
			}
			for _, tree := range []string{config.TreeLivos, config.TreeNexus} {
				if root := b.root(tree); v != root && inside(v, root) && !slices.Contains(out, v) {
					out = append(out, v)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// ScriptProblems names every service whose entry file is missing or empty: a build that
// exits 0 with an empty dist must not become the live release.
func (b *Box) ScriptProblems() []string {
	var out []string
	for _, d := range b.defs {
		p := filepath.Join(ecosystem.PackageDir(b.Config, d), filepath.FromSlash(d.Script))
		st, err := os.Stat(p)
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s: its entry file %s is missing", d.Name, p))
		case st.Size() == 0:
			out = append(out, fmt.Sprintf("%s: its entry file %s is empty", d.Name, p))
		}
	}
	return out
}

// RunsPrint fingerprints what a service runs, independently of where the trees are: the
// sources and build outputs of its package and of every workspace package it depends on.
// Two releases give a service the same print exactly when it has nothing to restart for.
func (b *Box) RunsPrint(name string) string {
	d, ok := b.Config.Service(name)
	if !ok || b.pkg(d) == nil {
		return ""
	}
	pkgs := b.ws.Closure(b.pkg(d))
	for _, extra := range d.Builds {
		tree, base, _ := strings.Cut(extra, "/")
		if p := b.ws.Find(tree, base); p != nil {
			pkgs = append(pkgs, b.ws.Closure(p)...)
		}
	}
	h := sha256.New()
	for _, p := range pkgs {
		src, _ := pipeline.HashPaths(p.Dir)
		out, _ := pipeline.HashPaths(filepath.Join(p.Dir, "dist"))
		fmt.Fprintf(h, "%s/%s %s %s\n", p.Tree, p.Base, src, out)
	}
	lock, _ := pipeline.HashPaths(manifests(b.root(d.Tree), "pnpm-lock.yaml", "package-lock.json")...)
	fmt.Fprintf(h, "lock %s\n", lock)
	return hex.EncodeToString(h.Sum(nil))
}
