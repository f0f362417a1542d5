package setup

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/setup/config"
	"github.com/livinity/livinity-agent/setup/ecosystem"
	"github.com/livinity/livinity-agent/setup/envfile"
	"github.com/livinity/livinity-agent/setup/journal"
	"github.com/livinity/livinity-agent/supervisor/probe"
	"github.com/livinity/livinity-agent/supervisor/proctree"
)

// Step IDs, in the order of the original `livinity setup` (with writing .env first).
const (
	StepEnv         = "env"
	StepDirs        = "dirs"
	StepPnpmInstall = "livos-install"
	StepBuildConfig = "build-config"
	StepBuildUI     = "build-ui"
	StepLinkUI      = "link-ui"
	StepNpmInstall  = "nexus-install"
	StepBuildCore   = "build-core"
	StepBuildWorker = "build-worker"
	StepBuildMCP    = "build-mcp"
	StepVenv        = "memory-venv"
	StepLinkEnv     = "link-env"
	StepEcosystem   = "ecosystem"
	StepPM2Start    = "pm2-start"
	StepPM2Save     = "pm2-save"
	StepVerify      = "verify"
)

// EcosystemFile is where the ecosystem is written.
func (p *Plan) EcosystemFile() string { return filepath.Join(p.Livos, "ecosystem.config.cjs") }

// EnvFile is the LivOS .env.
func (p *Plan) EnvFile() string { return filepath.Join(p.Livos, ".env") }

func (p *Plan) venvDir() string { return filepath.Join(p.Nexus, "packages", "memory", "venv") }

// LivOSSteps are the onboarding steps of a LivOS box.
func LivOSSteps() []*Step {
	return []*Step{
		{
			ID: StepEnv, Title: "write .env", Timeout: 30 * time.Second,
			Undo:     "restore the previous .env, or remove a new one",
			Replaces: func(p *Plan) []string { return []string{p.EnvFile()} },
			Key: func(p *Plan) (string, error) {
				h, err := hashPaths(p.EnvFile())
				return h + p.Config.Fingerprint(), err
			},
			Action: writeEnv,
		},
		{
			ID: StepDirs, Title: "create data and logs dirs", Timeout: 10 * time.Second,
			Undo: "remove the directories this run created",
			Creates: func(p *Plan) []string {
				return []string{filepath.Join(p.Livos, "data"), filepath.Join(p.Livos, "logs")}
			},
			Key: func(p *Plan) (string, error) { return "dirs", nil },
			Action: func(ctx context.Context, x *Exec) error {
				for _, d := range x.Step.Creates(x.Plan) {
					if err := os.MkdirAll(d, 0o750); err != nil {
						return fmt.Errorf("create %s: %w", d, err)
					}
				}
				return nil
			},
		},
		{
			ID: StepPnpmInstall, Title: "install livos packages", Timeout: 15 * time.Minute,
			Undo: "restore node_modules and pnpm-lock.yaml as they were",
			Replaces: func(p *Plan) []string {
				return append([]string{filepath.Join(p.Livos, "node_modules"), filepath.Join(p.Livos, "pnpm-lock.yaml")},
					packageDirs(p.Livos, "node_modules")...)
			},
			Key: func(p *Plan) (string, error) {
				return hashPaths(manifests(p.Livos, "pnpm-lock.yaml", "pnpm-workspace.yaml")...)
			},
			Produces: func(p *Plan) []string { return []string{filepath.Join(p.Livos, "node_modules")} },
			Action: func(ctx context.Context, x *Exec) error {
				// pnpm's command shims export NODE_PATH with absolute paths inside double
				// quotes, so a $(...) in the tree's path would run in every shim: leave it out
				err := x.Command(ctx, x.Livos, "pnpm", "install", "--frozen-lockfile", "--config.extend-node-path=false")
				if err == nil || ctx.Err() != nil {
					return err
				}
				x.Log.Warn("pnpm install --frozen-lockfile failed; retrying without it", "err", err)
				return x.Command(ctx, x.Livos, "pnpm", "install", "--no-frozen-lockfile", "--config.extend-node-path=false")
			},
		},
		buildStep(StepBuildConfig, "build @livos/config", "livos", "config", StepPnpmInstall),
		buildStep(StepBuildUI, "build the UI", "livos", "ui", StepPnpmInstall),
		{
			ID: StepLinkUI, Title: "link the UI into livinityd", Timeout: 10 * time.Second,
			After:    []string{StepBuildUI},
			Undo:     "restore what was at packages/livinityd/ui",
			Replaces: func(p *Plan) []string { return []string{uiLink(p)} },
			Key:      func(p *Plan) (string, error) { return "../ui/dist", nil },
			Action: func(ctx context.Context, x *Exec) error {
				return os.Symlink(filepath.Join("..", "ui", "dist"), uiLink(x.Plan))
			},
		},
		{
			ID: StepNpmInstall, Title: "install nexus packages", Timeout: 15 * time.Minute, Optional: true,
			Undo: "restore node_modules and package-lock.json as they were",
			Replaces: func(p *Plan) []string {
				return append([]string{filepath.Join(p.Nexus, "node_modules"), filepath.Join(p.Nexus, "package-lock.json")},
					packageDirs(p.Nexus, "node_modules")...)
			},
			Key: func(p *Plan) (string, error) {
				return hashPaths(manifests(p.Nexus, "package-lock.json")...)
			},
			Produces: func(p *Plan) []string { return []string{filepath.Join(p.Nexus, "node_modules")} },
			Action: func(ctx context.Context, x *Exec) error {
				return x.Command(ctx, x.Nexus, "npm", "install", "--no-audit", "--no-fund")
			},
		},
		buildStep(StepBuildCore, "build nexus core", "nexus", "core", StepNpmInstall),
		optional(buildStep(StepBuildWorker, "build nexus worker", "nexus", "worker", StepBuildCore)),
		optional(buildStep(StepBuildMCP, "build nexus mcp-server", "nexus", "mcp-server", StepBuildCore)),
		{
			ID: StepVenv, Title: "create the memory service's Python venv", Timeout: 10 * time.Minute, Optional: true,
			Undo:     "restore packages/memory/venv as it was",
			Replaces: func(p *Plan) []string { return []string{p.venvDir()} },
			Key: func(p *Plan) (string, error) {
				return hashPaths(filepath.Join(p.Nexus, "packages", "memory", "src", "requirements.txt"))
			},
			Action: func(ctx context.Context, x *Exec) error {
				venv := x.venvDir()
				if err := x.Command(ctx, x.Nexus, "python3", "-m", "venv", venv); err != nil {
					return err
				}
				// python -m pip, not the pip script: for a path with spaces its launcher is a
				// shell trampoline that would expand a $(...) in the path
				return x.Command(ctx, x.Nexus, filepath.Join(venv, "bin", "python3"), "-m", "pip", "install",
					"--disable-pip-version-check", "--no-input", "-r",
					filepath.Join(x.Nexus, "packages", "memory", "src", "requirements.txt"))
			},
		},
		{
			ID: StepLinkEnv, Title: "link .env into nexus", Timeout: 10 * time.Second,
			After:    []string{StepEnv},
			Undo:     "restore what was at nexus/.env",
			Replaces: func(p *Plan) []string { return []string{filepath.Join(p.Nexus, ".env")} },
			Key:      func(p *Plan) (string, error) { return p.EnvFile(), nil },
			Action: func(ctx context.Context, x *Exec) error {
				link := filepath.Join(x.Nexus, ".env")
				if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
					return fmt.Errorf("replace %s: %w", link, err)
				}
				return os.Symlink(x.EnvFile(), link)
			},
		},
		{
			ID: StepEcosystem, Title: "write the PM2 ecosystem", Timeout: 10 * time.Second,
			After:    []string{StepDirs, StepVenv, StepBuildWorker, StepBuildMCP, StepBuildCore, StepLinkUI, StepBuildConfig, StepLinkEnv},
			Undo:     "restore the previous ecosystem file, or remove a new one",
			Replaces: func(p *Plan) []string { return []string{p.EcosystemFile()} },
			Key: func(p *Plan) (string, error) {
				b, err := ecosystem.Render(p.Apps())
				return string(b), err
			},
			Action: func(ctx context.Context, x *Exec) error {
				b, err := ecosystem.Render(x.Apps())
				if err != nil {
					return err
				}
				return atomicfile.WriteFile(x.EcosystemFile(), b, 0o644)
			},
		},
		{
			ID: StepPM2Start, Title: "start the services with PM2", Timeout: 2 * time.Minute,
			After:    []string{StepEcosystem},
			Undo:     "delete the PM2 apps this run started, re-create the ones it replaced, stop a daemon it started",
			Replaces: func(p *Plan) []string { return []string{filepath.Join(p.StateDir, appPrintsFile)} },
			Action:   startApps,
		},
		{
			ID: StepPM2Save, Title: "save the PM2 process list", Timeout: time.Minute,
			After: []string{StepPM2Start},
			Undo:  "restore the previous dump.pm2",
			Replaces: func(p *Plan) []string {
				return []string{filepath.Join(p.PM2Home, "dump.pm2"), filepath.Join(p.PM2Home, "dump.pm2.bak")}
			},
			Produces: func(p *Plan) []string { return []string{filepath.Join(p.PM2Home, "dump.pm2")} },
			Key:      func(p *Plan) (string, error) { return appsKey(p) },
			Action: func(ctx context.Context, x *Exec) error {
				return x.PM2.Save(ctx)
			},
		},
		{
			ID: StepVerify, Title: "verify health", Timeout: 0, // bounded by agent.healthTimeoutSeconds
			After:  []string{StepPM2Save},
			Undo:   "nothing (it changes nothing)",
			Action: verify,
		},
	}
}

func optional(s *Step) *Step { s.Optional = true; return s }

// buildStep builds one workspace package with its package manager.
func buildStep(id, title, tree, pkg, after string) *Step {
	root := func(p *Plan) string {
		if tree == "livos" {
			return p.Livos
		}
		return p.Nexus
	}
	dir := func(p *Plan) string { return filepath.Join(root(p), "packages", pkg) }
	return &Step{
		ID: id, Title: title, Timeout: 10 * time.Minute, After: []string{after},
		Undo:     "restore packages/" + pkg + "/dist as it was",
		Replaces: func(p *Plan) []string { return []string{filepath.Join(dir(p), "dist")} },
		Key:      func(p *Plan) (string, error) { return hashPaths(dir(p)) },
		Action: func(ctx context.Context, x *Exec) error {
			if tree == "livos" {
				return x.Command(ctx, root(x.Plan), "pnpm", "--filter", "./packages/"+pkg, "run", "build")
			}
			return x.Command(ctx, root(x.Plan), "npm", "run", "build", "--workspace=packages/"+pkg)
		},
	}
}

func uiLink(p *Plan) string { return filepath.Join(p.Livos, "packages", "livinityd", "ui") }

// packageDirs returns <root>/packages/*/<name> for every package directory.
func packageDirs(root, name string) []string {
	var out []string
	for _, d := range globSorted(filepath.Join(root, "packages", "*", "package.json")) {
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
	return append(out, globSorted(filepath.Join(root, "packages", "*", "package.json"))...)
}

// Apps are the five PM2 app definitions of this plan.
func (p *Plan) Apps() []ecosystem.App {
	return ecosystem.Apps(p.Config, ecosystem.Options{})
}

func writeEnv(ctx context.Context, x *Exec) error {
	existing, err := envfile.Read(x.EnvFile())
	if err != nil {
		return err
	}
	env, err := envfile.Build(x.Config, existing, x.RotateSecrets, rand.Reader)
	if err != nil {
		return err
	}
	if len(existing) > 0 && !x.RotateSecrets {
		x.Log.Info("keeping the secrets of the existing .env")
	}
	return envfile.Write(x.EnvFile(), env)
}

// startApps starts the apps that are not running, replaces those whose definition changed
// or that are not online, and leaves healthy unchanged ones alone.
func startApps(ctx context.Context, x *Exec) error {
	apps, running, err := x.PM2.Apps(ctx)
	if err != nil {
		return err
	}
	prev, err := loadAppPrints(x.StateDir)
	if err != nil {
		return err
	}
	byName := map[string]App{}
	for _, a := range apps {
		byName[a.Name] = a
	}
	var start, replace []string
	now := appPrints{}
	for _, a := range x.Apps() {
		now[a.Name] = x.appPrint(a)
		cur, ok := byName[a.Name]
		switch {
		case !ok:
			start = append(start, a.Name)
		case prev[a.Name] != now[a.Name] || cur.Status != "online":
			replace = append(replace, a.Name)
		}
	}
	if !running {
		if _, err := x.Record(journal.Op{Kind: journal.KindPM2Kill, PM2Home: x.PM2Home}); err != nil {
			return err
		}
	}
	if len(start) > 0 {
		if _, err := x.Record(journal.Op{Kind: journal.KindPM2Delete, PM2Home: x.PM2Home, Names: start}); err != nil {
			return err
		}
	}
	if len(replace) > 0 {
		// the previous definitions are in the ecosystem step's backup
		op := journal.Op{Kind: journal.KindPM2Delete, PM2Home: x.PM2Home, Names: replace}
		if old := ecosystemBackup(x); old != "" {
			op = journal.Op{Kind: journal.KindPM2Restart, PM2Home: x.PM2Home, Names: replace, Path: old}
		}
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
		if err := x.PM2.StartEcosystem(ctx, x.EcosystemFile(), todo...); err != nil {
			return err
		}
	}
	return saveAppPrints(x.StateDir, now)
}

// appBuilds are the steps whose outputs each app runs; a change in any of them (or in the
// .env, read at start) restarts the app.
var appBuilds = map[string][]string{
	"livos":        {StepEnv, StepPnpmInstall, StepBuildConfig, StepLinkUI},
	"nexus-core":   {StepEnv, StepLinkEnv, StepNpmInstall, StepBuildCore},
	"nexus-worker": {StepEnv, StepLinkEnv, StepNpmInstall, StepBuildCore, StepBuildWorker},
	"nexus-mcp":    {StepEnv, StepLinkEnv, StepNpmInstall, StepBuildCore, StepBuildMCP},
	"nexus-memory": {StepEnv, StepLinkEnv, StepVenv},
}

// appPrint fingerprints an app's definition together with what it runs.
func (x *Exec) appPrint(a ecosystem.App) string {
	var deps []string
	for _, id := range appBuilds[a.Name] {
		deps = append(deps, x.stepPrint(id))
	}
	return combine(a.Name, ecosystem.Fingerprint(a), deps)
}

// ecosystemBackup finds the backup the ecosystem step made of the previous file in this run.
func ecosystemBackup(x *Exec) string {
	dir := filepath.Dir(x.EcosystemFile())
	b := filepath.Join(dir, ".livinity-backup-"+x.runID+"-"+filepath.Base(x.EcosystemFile()))
	if _, err := os.Stat(b); err == nil {
		return b
	}
	return ""
}

// appsKey is the PM2 save step's key: the ecosystem and the apps PM2 runs now.
func appsKey(p *Plan) (string, error) {
	eco, err := hashPaths(p.EcosystemFile())
	if err != nil {
		return "", err
	}
	prints, err := loadAppPrints(p.StateDir)
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

func verify(ctx context.Context, x *Exec) error {
	app := func(ctx context.Context, service string) (App, bool, error) {
		apps, _, err := x.PM2.Apps(ctx)
		for _, a := range apps {
			if a.Name == service {
				return a, true, err
			}
		}
		return App{}, false, err
	}
	sampler := proctree.NewSampler("")
	var targets []HealthTarget
	for _, name := range config.ServiceNames {
		s := x.Config.ServiceSettings(name)
		spec := ProbeSpec(s.Probe)
		online := func(ctx context.Context) (bool, error) {
			a, ok, err := app(ctx, name)
			return ok && a.Status == "online", err
		}
		// an answer counts only from the app's own process tree: another process on the
		// port (an old instance, another install) must not pass for this one
		owns := func(ctx context.Context, port int) (bool, error) {
			a, ok, err := app(ctx, name)
			if err != nil || !ok || a.Status != "online" || a.PID <= 0 {
				return false, err
			}
			tree, err := sampler.Memory(int32(a.PID))
			if err != nil {
				return false, nil
			}
			return sampler.PortOwned(port, tree.PIDs)
		}
		targets = append(targets, HealthTarget{Service: name, Spec: spec, Timeout: s.Liveness.Timeout(),
			Check: probe.Owned(probe.Checker(spec, online), spec, owns)})
	}
	res, err := verifyHealth(ctx, targets, x.Config.Agent.HealthTimeout())
	*x.health = res
	return err
}

// ProbeSpec turns a resolved config probe into a probe spec (loopback host).
func ProbeSpec(p config.Probe) probe.Spec {
	return probe.Spec{Kind: p.Kind, Port: p.Port, Path: p.Path, ExpectStatus: p.ExpectStatus, BodyContains: p.BodyContains}
}
