package setup

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/pipeline/journal"
	"github.com/livinity/livinity-agent/setup/ecosystem"
	"github.com/livinity/livinity-agent/setup/envfile"
)

// The recipe's fixed step IDs. Install, build, copy and venv steps are derived from the
// catalog and the trees' package.json files: <tree>-install, build-<package>,
// copy-<package>-into-<package>, venv-<package>.
const (
	StepEnv       = "env"
	StepDirs      = "dirs"
	StepLinkUI    = "link-ui"
	StepLinkEnv   = "link-env"
	StepEcosystem = "ecosystem"
	StepPM2Start  = "pm2-start"
	StepPM2Save   = "pm2-save"
	StepVerify    = "verify"
)

// InstallStep is the ID of a tree's install step.
func InstallStep(tree string) string { return tree + "-install" }

// BuildStep is the ID of a package's build step.
func BuildStep(p *Package) string { return "build-" + p.Base }

// Box is the LivOS recipe: a config, the trees it names, and where the agent keeps its
// state. Steps turns it into pipeline steps.
type Box struct {
	Config *config.Config
	// StateDir is the pipeline's state directory; the ecosystem file lives there.
	StateDir string
	// PM2Home is the daemon home of the box's apps.
	PM2Home string
	// RotateSecrets replaces the secrets of an existing .env.
	RotateSecrets bool
	// Launcher is the livinity-agent binary (python services start through it).
	Launcher string
	// Health is the verification table, once the verify step ran.
	Health []HealthResult

	plan     *pipeline.Plan
	ws       *Workspace
	treesErr error // the trees do not hold the catalog's packages
	defs     []config.ServiceDef
	builds   map[string][]string // service → the build, copy and venv steps of what it runs
	outputs  map[string]string   // build step → its output directory
}

// NewBox reads the trees' workspaces for cfg. Trees that do not hold the catalog's
// packages (not checked out yet, a wrong path) are not an error here: the box's plan then
// has one step, which fails naming what is missing, so that a run reports it like any
// failed onboarding and tries again later.
func NewBox(cfg *config.Config, stateDir, pm2Home string) (*Box, error) {
	b := &Box{Config: cfg, StateDir: stateDir, PM2Home: pm2Home, defs: cfg.Services()}
	b.treesErr = b.loadTrees()
	return b, nil
}

// loadTrees reads the workspaces and checks that every service's package is there.
func (b *Box) loadTrees() error {
	cfg := b.Config
	ws, err := LoadWorkspace(cfg)
	if err != nil {
		b.ws = &Workspace{}
		return err
	}
	b.ws = ws
	for _, d := range b.defs {
		dir := filepath.Join(cfg.TreeDir(d.Tree), "packages", d.Package)
		if st, err := os.Stat(dir); err == nil && st.IsDir() && d.Kind == config.RunPython && b.pkg(d) == nil {
			// a python service's package is a directory, not a workspace package
			ws.Packages = append(ws.Packages, &Package{Tree: d.Tree, Dir: dir, Base: d.Package, FileDeps: map[string]string{}})
		}
		if b.pkg(d) == nil {
			return fmt.Errorf("service %s: no workspace package %s in the %s tree (%s): check paths.%sBaseDir and the service's package",
				d.Name, d.Package, d.Tree, filepath.Join(cfg.TreeDir(d.Tree), "packages", d.Package), d.Tree)
		}
	}
	return nil
}

// EnvFile is the LivOS .env.
func (b *Box) EnvFile() string { return ecosystem.EnvFile(b.Config) }

// EcosystemFile is where the agent's PM2 ecosystem is written: the state directory, so
// it never clobbers a file the trees track (LivOS has its own ecosystem.config.cjs).
func (b *Box) EcosystemFile() string { return filepath.Join(b.StateDir, "ecosystem.config.cjs") }

// Services are the catalog's services.
func (b *Box) Services() []config.ServiceDef { return b.defs }

func (b *Box) pkg(d config.ServiceDef) *Package { return b.ws.Find(d.Tree, d.Package) }

func (b *Box) root(tree string) string { return b.Config.TreeDir(tree) }

// Plan is the pipeline plan of the box.
func (b *Box) Plan(path, home string, env []string) *pipeline.Plan {
	// after env: the headers of the services' node win over an npm_config_nodedir passed on
	env = append(slices.Clone(env), NodeHeaders(path)...)
	b.plan = &pipeline.Plan{StateDir: b.StateDir, PM2Home: b.PM2Home, Path: path, Home: home, Env: env,
		Steps: b.Steps(), Fingerprint: b.Config.Fingerprint(), KeepOnFailure: []string{ecosystem.LogDir(b.Config)},
		Locks: []string{b.root(config.TreeLivos), b.root(config.TreeNexus), b.PM2Home}}
	return b.plan
}

// StepTrees is the one step of a box whose trees do not hold the catalog's packages.
const StepTrees = "trees"

// Steps are the onboarding steps of the box, in display order.
func (b *Box) Steps() []*pipeline.Step {
	if b.treesErr != nil {
		err := b.treesErr
		return []*pipeline.Step{{ID: StepTrees, Title: "find the services' packages in the trees", Undo: "nothing (it changes nothing)",
			Action: func(context.Context, *pipeline.Exec) error { return err }}}
	}
	b.builds = map[string][]string{}
	b.outputs = map[string]string{}
	need := map[string][]config.ServiceDef{} // step → services that need it
	steps := []*pipeline.Step{b.envStep(), b.dirsStep()}
	byID := map[string]*pipeline.Step{}
	add := func(s *pipeline.Step, d config.ServiceDef) {
		if _, ok := byID[s.ID]; !ok {
			byID[s.ID] = s
			steps = append(steps, s)
		}
		need[s.ID] = append(need[s.ID], d)
		if !slices.Contains(b.builds[d.Name], s.ID) {
			b.builds[d.Name] = append(b.builds[d.Name], s.ID)
		}
	}
	for _, tree := range []string{config.TreeLivos, config.TreeNexus} {
		for _, d := range b.defs {
			if d.Tree == tree {
				add(b.installStep(tree), d)
			}
		}
	}
	for _, d := range b.defs {
		runs := b.ws.Closure(b.pkg(d))
		for _, extra := range d.Builds {
			tree, base, _ := strings.Cut(extra, "/")
			if p := b.ws.Find(tree, base); p != nil {
				runs = append(runs, b.ws.Closure(p)...)
			}
		}
		for _, p := range runs {
			if p.Tree != d.Tree {
				add(b.installStep(p.Tree), d)
			}
			if p.Build {
				add(b.buildStep(p), d)
				b.outputs[BuildStep(p)] = filepath.Join(p.Dir, "dist")
			}
		}
		// a file: dependency is copied at install time, before it is built: its build
		// output must be copied into that copy (livinityd's @nexus/core)
		for _, p := range runs {
			for name, dir := range p.FileDeps {
				if dep := b.ws.byName(name); dep != nil && dep.Dir == dir && dep.Build {
					add(b.copyStep(p, dep), d)
				}
			}
		}
		if d.Kind == config.RunPython {
			add(b.venvStep(d), d)
		}
	}
	if b.ws.Find(config.TreeLivos, "ui") != nil && b.ws.Find(config.TreeLivos, "livinityd") != nil {
		for _, d := range b.defs {
			if d.Tree == config.TreeLivos && d.Package == "livinityd" {
				add(b.linkUIStep(), d)
			}
		}
	}
	for id, ds := range need {
		all := true
		for _, d := range ds {
			all = all && d.Optional
		}
		byID[id].Optional = byID[id].Optional || all
	}
	linkEnv := b.linkEnvStep()
	steps = append(steps, linkEnv)
	eco := b.ecosystemStep()
	for _, s := range steps {
		if s.ID == StepEnv {
			continue
		}
		if s.Optional {
			eco.Wait = append(eco.Wait, s.ID)
		} else {
			eco.After = append(eco.After, s.ID)
		}
	}
	return append(steps, eco, b.startStep(), b.saveStep(), b.verifyStep())
}

// envTarget is the file the .env is: the link's target when the operator keeps it
// elsewhere (another volume) behind a symlink, so that it is written through, never
// replaced by a file of new secrets.
func (b *Box) envTarget() string {
	p := b.EnvFile()
	if st, err := os.Lstat(p); err == nil && st.Mode()&os.ModeSymlink != 0 {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return real
		}
	}
	return p
}

func (b *Box) envStep() *pipeline.Step {
	return &pipeline.Step{
		ID: StepEnv, Title: "write .env", Timeout: 30 * time.Second, Force: b.RotateSecrets,
		Undo:     "restore the previous .env, or remove a new one",
		Replaces: func() []string { return []string{b.envTarget()} },
		Key: func() (string, error) {
			// what would be written: unchanged exactly when the file would not change
			env, err := b.buildEnv(false)
			if err != nil {
				return "", err
			}
			return string(env.Bytes()), nil
		},
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			env, err := b.buildEnv(b.RotateSecrets)
			if err != nil {
				return err
			}
			return envfile.Write(b.envTarget(), env)
		},
	}
}

func (b *Box) buildEnv(rotate bool) (*envfile.Env, error) {
	existing, err := envfile.Read(b.EnvFile())
	if err != nil {
		return nil, err
	}
	return envfile.Build(b.Config, existing, rotate, rand.Reader)
}

func (b *Box) dirsStep() *pipeline.Step {
	return &pipeline.Step{
		ID: StepDirs, Title: "create data and logs dirs", Timeout: 10 * time.Second,
		Undo: "remove the directories this run created",
		Creates: func() []string {
			return []string{filepath.Join(b.root(config.TreeLivos), "data"), ecosystem.LogDir(b.Config)}
		},
		Key: func() (string, error) { return "dirs", nil },
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			for _, d := range x.Step.Creates() {
				if err := os.MkdirAll(d, 0o750); err != nil {
					return fmt.Errorf("create %s: %w", d, err)
				}
			}
			return nil
		},
	}
}

// pnpmTree reports whether a tree is a pnpm workspace (else npm).
func (b *Box) pnpmTree(tree string) bool {
	_, err := os.Stat(filepath.Join(b.root(tree), "pnpm-workspace.yaml"))
	if err == nil {
		return true
	}
	_, err = os.Stat(filepath.Join(b.root(tree), "pnpm-lock.yaml"))
	return err == nil
}

func (b *Box) installStep(tree string) *pipeline.Step {
	root := b.root(tree)
	lock, tool := "package-lock.json", "npm"
	if b.pnpmTree(tree) {
		lock, tool = "pnpm-lock.yaml", "pnpm"
	}
	return &pipeline.Step{
		ID: InstallStep(tree), Title: "install " + tree + " packages", Timeout: 15 * time.Minute,
		Undo: "restore node_modules and " + lock + " as they were; remove what install scripts wrote",
		Replaces: func() []string {
			return append([]string{filepath.Join(root, "node_modules"), filepath.Join(root, lock)},
				packageDirs(root, "node_modules")...)
		},
		// postinstall scripts write beyond node_modules (LivOS's UI generates 4,800 icons)
		Watch: func() []string { return []string{root} },
		Key: func() (string, error) {
			return pipeline.HashPaths(manifests(root, lock, "pnpm-workspace.yaml")...)
		},
		Produces: func() []string { return []string{filepath.Join(root, "node_modules")} },
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			if tool == "npm" {
				return x.Command(ctx, root, "npm", "install", "--no-audit", "--no-fund")
			}
			// pnpm's command shims export NODE_PATH with absolute paths inside double
			// quotes, so a $(...) in the tree's path would run in every shim: leave it out
			err := x.Command(ctx, root, "pnpm", "install", "--frozen-lockfile", "--config.extend-node-path=false")
			if err == nil || ctx.Err() != nil {
				return err
			}
			x.Log.Warn("pnpm install --frozen-lockfile failed; retrying without it", "err", err)
			x.Note("retrying without --frozen-lockfile")
			return x.Command(ctx, root, "pnpm", "install", "--no-frozen-lockfile", "--config.extend-node-path=false")
		},
	}
}

// buildStep builds one workspace package with its tree's package manager, after the
// workspace packages it depends on.
func (b *Box) buildStep(p *Package) *pipeline.Step {
	root := b.root(p.Tree)
	after := []string{InstallStep(p.Tree)}
	for _, dep := range b.ws.Closure(p) {
		if dep != p && dep.Build {
			after = append(after, BuildStep(dep))
		}
		if dep.Tree != p.Tree {
			after = append(after, InstallStep(dep.Tree))
		}
	}
	rel, _ := filepath.Rel(root, p.Dir)
	return &pipeline.Step{
		ID: BuildStep(p), Title: "build " + p.Name, Timeout: 10 * time.Minute, After: after,
		Undo:     "restore " + filepath.ToSlash(rel) + "/dist as it was; remove what the build wrote beside it",
		Replaces: func() []string { return []string{filepath.Join(p.Dir, "dist")} },
		// a Node 22 vite build leaves node-compile-cache/ in the package
		Watch: func() []string { return []string{p.Dir} },
		Key:   func() (string, error) { return pipeline.HashPaths(p.Dir) },
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			var err error
			if b.pnpmTree(p.Tree) {
				err = x.Command(ctx, root, "pnpm", "--filter", "./"+filepath.ToSlash(rel), "run", "build")
			} else {
				err = x.Command(ctx, root, "npm", "run", "build", "--workspace="+filepath.ToSlash(rel))
			}
			if err != nil {
				return err
			}
			return checkOutput(filepath.Join(p.Dir, "dist"))
		},
	}
}

// checkOutput fails a build that exited 0 but left its output empty.
func checkOutput(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("the build exited 0 but wrote no %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("the build exited 0 but left %s empty", dir)
	}
	return nil
}

// copyStep copies dep's build output into consumer's installed copy of dep.
func (b *Box) copyStep(consumer, dep *Package) *pipeline.Step {
	installed := func() string {
		link := filepath.Join(consumer.Dir, "node_modules", filepath.FromSlash(dep.Name))
		real, err := filepath.EvalSymlinks(link)
		if err != nil {
			return link // the action reports it
		}
		return real
	}
	id := "copy-" + dep.Base + "-into-" + consumer.Base
	return &pipeline.Step{
		ID: id, Title: "copy " + dep.Name + "'s build into " + consumer.Name + "'s copy", Timeout: 2 * time.Minute,
		After:    []string{InstallStep(consumer.Tree), BuildStep(dep)},
		Undo:     "restore the installed copy's dist as it was",
		Replaces: func() []string { return []string{filepath.Join(installed(), "dist")} },
		Key:      func() (string, error) { return pipeline.HashPaths(filepath.Join(dep.Dir, "dist")) },
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			dst := installed()
			if st, err := os.Stat(dst); err != nil || !st.IsDir() {
				return fmt.Errorf("%s's installed copy of %s is missing at %s: the install step did not install it", consumer.Name, dep.Name, dst)
			}
			if !inside(dst, b.root(consumer.Tree)) {
				return fmt.Errorf("%s's copy of %s resolves to %s, outside the %s tree: refusing to write there", consumer.Name, dep.Name, dst, consumer.Tree)
			}
			return copyTree(filepath.Join(dep.Dir, "dist"), filepath.Join(dst, "dist"))
		},
	}
}

// inside reports whether p is root or below it.
func inside(p, root string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// copyTree copies the directory src to dst (which must not exist): files with their
// modes, symlinks as links.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
	})
}

func (b *Box) linkUIStep() *pipeline.Step {
	link := filepath.Join(b.root(config.TreeLivos), "packages", "livinityd", "ui")
	return &pipeline.Step{
		ID: StepLinkUI, Title: "link the UI into livinityd", Timeout: 10 * time.Second,
		After:    []string{BuildStep(b.ws.Find(config.TreeLivos, "ui"))},
		Undo:     "restore what was at packages/livinityd/ui",
		Replaces: func() []string { return []string{link} },
		Key:      func() (string, error) { return "../ui/dist", nil },
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			return os.Symlink(filepath.Join("..", "ui", "dist"), link)
		},
	}
}

func (b *Box) venvStep(d config.ServiceDef) *pipeline.Step {
	dir := ecosystem.PackageDir(b.Config, d)
	venv := filepath.Join(dir, "venv")
	req := filepath.Join(dir, filepath.Dir(filepath.FromSlash(d.Script)), "requirements.txt")
	return &pipeline.Step{
		ID: "venv-" + d.Package, Title: "create " + d.Name + "'s Python venv", Timeout: 10 * time.Minute,
		Undo:     "restore the package's venv/ as it was",
		Replaces: func() []string { return []string{venv} },
		Key:      func() (string, error) { return pipeline.HashPaths(req) },
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			if err := x.Command(ctx, dir, "python3", "-m", "venv", venv); err != nil {
				return err
			}
			if _, err := os.Stat(req); err != nil {
				return nil // no requirements: the standard library is all it needs
			}
			// python -m pip, not the pip script: for a path with spaces its launcher is a
			// shell trampoline that would expand a $(...) in the path
			return x.Command(ctx, dir, filepath.Join(venv, "bin", "python3"), "-m", "pip", "install",
				"--disable-pip-version-check", "--no-input", "-r", req)
		},
	}
}

func (b *Box) linkEnvStep() *pipeline.Step {
	link := filepath.Join(b.root(config.TreeNexus), ".env")
	return &pipeline.Step{
		ID: StepLinkEnv, Title: "link .env into nexus", Timeout: 10 * time.Second,
		After:    []string{StepEnv},
		Undo:     "restore what was at nexus/.env",
		Replaces: func() []string { return []string{link} },
		Key:      func() (string, error) { return b.EnvFile(), nil },
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("replace %s: %w", link, err)
			}
			return os.Symlink(b.EnvFile(), link)
		},
	}
}

// available are the services whose every build step succeeded in this run; the others
// (an optional build failed) are left out of the ecosystem and reported as skipped.
func (b *Box) available() []config.ServiceDef {
	var out []config.ServiceDef
	for _, d := range b.defs {
		ok := true
		for _, id := range b.builds[d.Name] {
			switch b.plan.StepStatus(id) {
			case pipeline.StatusWarned, pipeline.StatusNotRun, pipeline.StatusFailed, pipeline.StatusCanceled:
				ok = false
			}
		}
		if ok {
			out = append(out, d)
		}
	}
	return out
}

// Apps are the PM2 app definitions of the given services.
func (b *Box) Apps(defs []config.ServiceDef) []ecosystem.App {
	return ecosystem.Apps(b.Config, defs, ecosystem.Options{Launcher: b.Launcher})
}

func (b *Box) ecosystemStep() *pipeline.Step {
	render := func() ([]byte, error) { return ecosystem.Render(b.Apps(b.available())) }
	return &pipeline.Step{
		ID: StepEcosystem, Title: "write the PM2 ecosystem", Timeout: 10 * time.Second,
		Undo:     "restore the previous ecosystem file, or remove a new one",
		Replaces: func() []string { return []string{b.EcosystemFile()} },
		Key: func() (string, error) {
			data, err := render()
			return string(data), err
		},
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			data, err := render()
			if err != nil {
				return err
			}
			return atomicfile.WriteFile(b.EcosystemFile(), data, 0o600)
		},
	}
}

func (b *Box) startStep() *pipeline.Step {
	return &pipeline.Step{
		ID: StepPM2Start, Title: "start the services with PM2", Timeout: 2 * time.Minute,
		After:    []string{StepEcosystem},
		Undo:     "delete the PM2 apps this run started, re-create the ones it replaced, stop a daemon it started; remove what the services wrote into the trees",
		Replaces: func() []string { return []string{filepath.Join(b.StateDir, appPrintsFile)} },
		// the services write into the trees (logs, data): a rolled-back run removes it
		Watch:  func() []string { return []string{b.root(config.TreeLivos), b.root(config.TreeNexus)} },
		Action: b.startApps,
	}
}

func (b *Box) saveStep() *pipeline.Step {
	return &pipeline.Step{
		ID: StepPM2Save, Title: "save the PM2 process list", Timeout: time.Minute,
		After: []string{StepPM2Start},
		Undo:  "restore the previous dump.pm2",
		Replaces: func() []string {
			return []string{filepath.Join(b.PM2Home, "dump.pm2"), filepath.Join(b.PM2Home, "dump.pm2.bak")}
		},
		Produces: func() []string { return []string{filepath.Join(b.PM2Home, "dump.pm2")} },
		Key:      b.appsKey,
		Action: func(ctx context.Context, x *pipeline.Exec) error {
			return x.PM2.Save(ctx)
		},
	}
}

func (b *Box) verifyStep() *pipeline.Step {
	return &pipeline.Step{
		ID: StepVerify, Title: "verify health", Timeout: 0, // bounded by agent.healthTimeoutSeconds
		// beside pm2-save (a third of a second of the pm2 program): the services are
		// started, and a failed check rolls the saved list back all the same
		After:  []string{StepPM2Start},
		Undo:   "nothing (it changes nothing)",
		Action: b.verify,
	}
}

// packageDirs returns <root>/packages/*/<name> for every package directory.
func packageDirs(root, name string) []string {
	var out []string
	for _, d := range pipeline.GlobSorted(filepath.Join(root, "packages", "*", "package.json")) {
		out = append(out, filepath.Join(filepath.Dir(d), name))
	}
	return out
}

// manifests are the files that decide what an install step installs.
func manifests(root string, files ...string) []string {
	out := []string{filepath.Join(root, "package.json")}
	for _, f := range files {
		out = append(out, filepath.Join(root, f))
	}
	return append(out, pipeline.GlobSorted(filepath.Join(root, "packages", "*", "package.json"))...)
}

// startApps starts the apps that are not running, replaces those whose definition changed
// or that are not online, and leaves healthy unchanged ones alone.
func (b *Box) startApps(ctx context.Context, x *pipeline.Exec) error {
	apps, running, err := x.PM2.Apps(ctx)
	if err != nil {
		return err
	}
	prev, err := loadAppPrints(b.StateDir)
	if err != nil {
		return err
	}
	byName := map[string]pipeline.App{}
	for _, a := range apps {
		byName[a.Name] = a
	}
	var start, replace []string
	now := appPrints{}
	for _, a := range b.Apps(b.available()) {
		now[a.Name] = b.appPrint(x, a)
		cur, ok := byName[a.Name]
		switch {
		case !ok:
			start = append(start, a.Name)
		case prev[a.Name] != now[a.Name] || cur.Status != "online":
			replace = append(replace, a.Name)
		}
	}
	if !running {
		if _, err := x.Record(journal.Op{Kind: journal.KindPM2Kill, PM2Home: b.PM2Home}); err != nil {
			return err
		}
	}
	if len(start) > 0 {
		if _, err := x.Record(journal.Op{Kind: journal.KindPM2Delete, PM2Home: b.PM2Home, Names: start}); err != nil {
			return err
		}
	}
	if len(replace) > 0 {
		// the previous definitions: the ecosystem step's backup when it rewrote the file
		// this run, else the file itself (the app changed, not its definition), kept aside
		old := x.BackupFor(StepEcosystem, b.EcosystemFile())
		if !fileExists(old) {
			old = filepath.Join(b.StateDir, "ecosystem.previous.cjs")
			if err := x.Replace(old); err != nil {
				return err
			}
			data, err := os.ReadFile(b.EcosystemFile())
			if err != nil {
				return fmt.Errorf("keep the running apps' definitions: %w", err)
			}
			if err := atomicfile.WriteFile(old, data, 0o600); err != nil {
				return fmt.Errorf("keep the running apps' definitions: %w", err)
			}
		}
		op := journal.Op{Kind: journal.KindPM2Restart, PM2Home: b.PM2Home, Names: replace, Path: old}
		if _, err := x.Record(op); err != nil {
			return err
		}
		x.Log.Info("replacing PM2 apps whose definition changed or that are not online", "apps", strings.Join(replace, ","))
		if err := x.PM2.Delete(ctx, replace...); err != nil {
			return err
		}
	}
	todo := append(start, replace...)
	if len(todo) == 0 {
		x.Log.Info("all PM2 apps already run with this ecosystem; nothing started")
	} else {
		sort.Strings(todo)
		x.Log.Info("starting PM2 apps", "apps", strings.Join(todo, ","))
		if err := x.PM2.StartEcosystem(ctx, b.EcosystemFile(), todo...); err != nil {
			return err
		}
	}
	return saveAppPrints(b.StateDir, now)
}

func fileExists(p string) bool { _, err := os.Lstat(p); return err == nil }

// appPrint fingerprints an app's definition together with what it runs: the .env, the
// install steps of its trees, and the build output of every package its package.json
// depends on (a rebuild that writes the same output restarts nothing).
func (b *Box) appPrint(x *pipeline.Exec, a ecosystem.App) string {
	deps := []string{x.Print(StepEnv)}
	if d, ok := b.Config.Service(a.Name); ok && d.Tree == config.TreeNexus {
		deps = append(deps, x.Print(StepLinkEnv))
	}
	for _, id := range b.builds[a.Name] {
		out, built := b.outputs[id]
		switch {
		case built:
			h, err := pipeline.HashPaths(out)
			if err != nil {
				h = err.Error()
			}
			deps = append(deps, id+"="+h)
		case id == StepLinkUI || strings.HasPrefix(id, "copy-"):
			// a link to or a copy of a build output: that output's hash already counts
		default:
			deps = append(deps, x.Print(id))
		}
	}
	// a package run from its sources (livinityd under tsx) has no build step: its sources
	// are what it runs
	if d, ok := b.Config.Service(a.Name); ok {
		if p := b.pkg(d); p != nil && !p.Build {
			h, err := pipeline.HashPaths(p.Dir)
			if err != nil {
				h = err.Error()
			}
			deps = append(deps, h)
		}
	}
	return pipeline.Combine(a.Name, ecosystem.Fingerprint(a), deps)
}

// appsKey is the PM2 save step's key: the ecosystem and the apps PM2 runs now.
func (b *Box) appsKey() (string, error) {
	eco, err := pipeline.HashPaths(b.EcosystemFile())
	if err != nil {
		return "", err
	}
	prints, err := loadAppPrints(b.StateDir)
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(prints))
	for n, fp := range prints {
		names = append(names, n+"="+fp)
	}
	slices.Sort(names)
	return eco + "\n" + strings.Join(names, "\n"), nil
}
