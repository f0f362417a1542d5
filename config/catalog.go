package config

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The two trees a box is built from: the pnpm workspace of livinityd and its UI, and the
// npm workspace of the AI services (nexus/ at LivOS 3f96764, liv/ upstream later).
const (
	TreeLivos = "livos"
	TreeNexus = "nexus"
)

// Run kinds: how PM2 starts a service.
const (
	// RunNode runs a JavaScript file with node.
	RunNode = "node"
	// RunTsx runs a TypeScript file with tsx (the package's own, else the tree's).
	RunTsx = "tsx"
	// RunPython runs a Python file with the python of the package's venv.
	RunPython = "python"
)

// Cwd values: where a service's working directory is.
const (
	CwdTree    = "tree"
	CwdPackage = "package"
)

// Requirements a service has of the box, checked by preflight.
const (
	NeedRedis = "redis"
	NeedDBus  = "dbus"
)

// CatalogEntry is one service of agent.catalog. An entry whose name is a built-in service
// overrides the fields it sets; "disabled": true removes that service; an entry with a
// new name adds a service and must set tree, package, kind and script.
type CatalogEntry struct {
	Name     string `json:"name"`
	Disabled bool   `json:"disabled,omitempty"`
	// Tree is "livos" or "nexus" (paths.livosBaseDir or paths.nexusBaseDir).
	Tree string `json:"tree,omitempty"`
	// Package is the service's directory under <tree>/packages.
	Package string `json:"package,omitempty"`
	// Kind is node, tsx or python.
	Kind string `json:"kind,omitempty"`
	// Cwd is "tree" (the tree's root) or "package" (the package's directory).
	Cwd string `json:"cwd,omitempty"`
	// Script is the file run, relative to the package directory.
	Script string `json:"script,omitempty"`
	// Args are the script's arguments; ${port}, ${livos} and ${nexus} are replaced by the
	// service's port and the trees' paths.
	Args []string `json:"args,omitempty"`
	// Port is the ports key the service listens on (api, mcp, memory, livos), "" for none.
	Port *string `json:"port,omitempty"`
	// PortEnv is the environment variable that tells the service its port.
	PortEnv string `json:"portEnv,omitempty"`
	// Probe is the service's default health probe (agent.services.<name>.probe still
	// overrides it).
	Probe *Probe `json:"probe,omitempty"`
	// Optional services may fail to build: the box then runs without them.
	Optional *bool `json:"optional,omitempty"`
	// Builds are further packages ("tree/package") built for the service beyond what its
	// package.json dependencies name (livinityd serves the UI's build).
	Builds []string `json:"builds,omitempty"`
	// Needs are what the box must offer: "redis", "dbus"; [] for nothing (absent keeps the
	// built-in service's needs).
	Needs []string `json:"needs,omitzero"`
	// Env are .env keys the service reads, written when the .env does not have them yet;
	// values may use ${livos} and ${nexus}.
	Env map[string]string `json:"env,omitempty"`
}

// ServiceDef is one service of the resolved catalog: everything the pipeline, the
// supervisor, preflight and the .env writer need to know about it.
type ServiceDef struct {
	Name     string
	Tree     string
	Package  string
	Kind     string
	Cwd      string
	Script   string
	Args     []string
	Port     string // ports key, "" for none
	PortEnv  string
	Probe    Probe // the default probe, before agent.services overrides
	Optional bool
	Builds   []string
	Needs    []string
	Env      map[string]string
}

// builtinCatalog is LivOS at upstream commit 3f96764: livinityd run by tsx from its
// package, and four Node services of the nexus npm workspace run from the tree's root
// (where they read .env themselves through dotenv; nexus-memory does not).
func builtinCatalog() []ServiceDef {
	nexusLogs := map[string]string{"NEXUS_LOGS_DIR": "${nexus}/logs"}
	return []ServiceDef{
		{
			Name: "livos", Tree: TreeLivos, Package: "livinityd", Kind: RunTsx, Cwd: CwdPackage,
			Script: "source/cli.ts", Args: []string{"--data-directory", "${livos}/data", "--port", "${port}"},
			Port: "livos", PortEnv: "LIVOS_PORT",
			Probe:  Probe{Kind: "http", Path: "/", ExpectStatus: defaultExpectStatus},
			Builds: []string{"livos/ui"}, Needs: []string{NeedDBus},
		},
		{
			Name: "nexus-core", Tree: TreeNexus, Package: "core", Kind: RunNode, Cwd: CwdTree,
			Script: "dist/index.js", Port: "api", PortEnv: "API_PORT",
			Probe: Probe{Kind: "http", Path: "/api/health", ExpectStatus: defaultExpectStatus},
			Needs: []string{NeedRedis},
			Env: map[string]string{
				"NEXUS_LOGS_DIR":    "${nexus}/logs",
				"NEXUS_SKILLS_DIR":  "${nexus}/app/skills",
				"SKILL_CACHE_DIR":   "${nexus}/data/skill-cache",
				"SKILL_INSTALL_DIR": "${nexus}/skills/marketplace",
			},
		},
		{
			Name: "nexus-worker", Tree: TreeNexus, Package: "worker", Kind: RunNode, Cwd: CwdTree,
			Script: "dist/index.js", Probe: Probe{Kind: "process"}, Optional: true,
			Needs: []string{NeedRedis}, Env: nexusLogs,
		},
		{
			Name: "nexus-memory", Tree: TreeNexus, Package: "memory", Kind: RunNode, Cwd: CwdTree,
			Script: "dist/index.js", Port: "memory", PortEnv: "MEMORY_PORT",
			Probe: Probe{Kind: "http", Path: "/health", ExpectStatus: defaultExpectStatus},
			Env:   map[string]string{"MEMORY_DATA_DIR": "${nexus}/data/memory"},
		},
		{
			Name: "nexus-mcp", Tree: TreeNexus, Package: "mcp-server", Kind: RunNode, Cwd: CwdTree,
			Script: "dist/index.js", Port: "mcp", PortEnv: "MCP_PORT",
			Probe:    Probe{Kind: "http", Path: "/health", ExpectStatus: defaultExpectStatus},
			Optional: true, Needs: []string{NeedRedis},
		},
	}
}

// Services is the resolved catalog: the built-in LivOS services with agent.catalog
// applied, in display order (built-in ones first, then added ones in file order). Call it
// on a validated Config.
func (c *Config) Services() []ServiceDef {
	defs, _ := mergeCatalog(builtinCatalog(), c.Agent.Catalog)
	return defs
}

// ServiceNames are the names of Services, in order.
func (c *Config) ServiceNames() []string {
	defs := c.Services()
	out := make([]string, len(defs))
	for i, d := range defs {
		out[i] = d.Name
	}
	return out
}

// Service returns the catalog entry of name.
func (c *Config) Service(name string) (ServiceDef, bool) {
	for _, d := range c.Services() {
		if d.Name == name {
			return d, true
		}
	}
	return ServiceDef{}, false
}

// PortOf is the port of a ports key ("" or an unknown key: 0).
func (p Ports) PortOf(key string) int {
	switch key {
	case "api":
		return p.API
	case "mcp":
		return p.MCP
	case "memory":
		return p.Memory
	case "livos":
		return p.Livos
	}
	return 0
}

// portKeys are the keys of Ports, as catalog entries name them.
var portKeys = []string{"api", "mcp", "memory", "livos"}

// TreeDir is the directory of a tree.
func (c *Config) TreeDir(tree string) string {
	if tree == TreeLivos {
		return c.Paths.LivosBaseDir
	}
	return c.Paths.NexusBaseDir
}

// Expand replaces ${port}, ${livos} and ${nexus} in s.
func (c *Config) Expand(s string, port int) string {
	return strings.NewReplacer("${port}", strconv.Itoa(port), "${livos}", c.Paths.LivosBaseDir,
		"${nexus}", c.Paths.NexusBaseDir).Replace(s)
}

// mergeCatalog applies entries to base. It returns the problems it found as (path,
// value, problem, fix) through the returned catalogProblems, so Validate can report them.
func mergeCatalog(base []ServiceDef, entries []CatalogEntry) ([]ServiceDef, []catalogProblem) {
	defs := slices.Clone(base)
	var probs []catalogProblem
	bad := func(i int, key, value, problem, fix string) {
		p := fmt.Sprintf("agent.catalog[%d]", i)
		if key != "" {
			p += "." + key
		}
		probs = append(probs, catalogProblem{p, value, problem, fix})
	}
	seen := map[string]bool{}
	for i, e := range entries {
		if !serviceName.MatchString(e.Name) {
			bad(i, "name", quote(e.Name), "is not a service name", "want lowercase letters, digits and -, like \"liv-core\"")
			continue
		}
		if seen[e.Name] {
			bad(i, "name", quote(e.Name), "is listed twice", "merge the two entries")
			continue
		}
		seen[e.Name] = true
		at := slices.IndexFunc(defs, func(d ServiceDef) bool { return d.Name == e.Name })
		if e.Disabled {
			if at < 0 {
				bad(i, "disabled", "true", "names no built-in service", "remove the entry, or name one of the built-in services")
			} else {
				defs = slices.Delete(defs, at, at+1)
			}
			continue
		}
		d := ServiceDef{Name: e.Name, Cwd: CwdTree}
		if at >= 0 {
			d = defs[at]
		} else {
			missing := false
			for _, req := range []struct{ key, v string }{{"tree", e.Tree}, {"package", e.Package}, {"kind", e.Kind}, {"script", e.Script}} {
				if req.v == "" {
					bad(i, req.key, "", "missing", "a service that is not built in needs tree, package, kind and script")
					missing = true
				}
			}
			if missing {
				continue
			}
		}
		set := func(dst *string, v string) {
			if v != "" {
				*dst = v
			}
		}
		set(&d.Tree, e.Tree)
		set(&d.Package, e.Package)
		set(&d.Kind, e.Kind)
		set(&d.Cwd, e.Cwd)
		set(&d.Script, e.Script)
		set(&d.PortEnv, e.PortEnv)
		if e.Args != nil {
			d.Args = e.Args
		}
		if e.Port != nil {
			d.Port = *e.Port
		}
		if e.Probe != nil {
			d.Probe = *e.Probe
			if d.Probe.Kind == "http" && d.Probe.ExpectStatus == 0 {
				d.Probe.ExpectStatus = defaultExpectStatus
			}
		}
		if d.Probe.Kind == "" {
			d.Probe = Probe{Kind: "process"}
		}
		if e.Optional != nil {
			d.Optional = *e.Optional
		}
		if e.Builds != nil {
			d.Builds = e.Builds
		}
		if e.Needs != nil {
			d.Needs = e.Needs
		}
		if e.Env != nil {
			d.Env = e.Env
		}
		before := len(probs)
		checkEntry(func(key, value, problem, fix string) { bad(i, key, value, problem, fix) }, d)
		if len(probs) > before {
			continue // not part of the catalog: Validate reports it
		}
		if at >= 0 {
			defs[at] = d
		} else {
			defs = append(defs, d)
		}
	}
	if len(defs) == 0 && len(probs) == 0 {
		probs = append(probs, catalogProblem{"agent.catalog", "", "disables every service", "keep at least one service"})
	}
	return defs, probs
}

type catalogProblem struct{ path, value, problem, fix string }

var (
	serviceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	envName     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	packageName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

// checkEntry reports the problems of one merged catalog service.
func checkEntry(bad func(key, value, problem, fix string), d ServiceDef) {
	if d.Tree != "" && d.Tree != TreeLivos && d.Tree != TreeNexus {
		bad("tree", quote(d.Tree), "is not a tree", `want "livos" or "nexus"`)
	}
	if d.Package != "" && (!packageName.MatchString(d.Package) || d.Package == "." || d.Package == "..") {
		bad("package", quote(d.Package), "is not a directory name under packages/", `want a name like "core"`)
	}
	switch d.Kind {
	case "", RunNode, RunTsx, RunPython:
	default:
		bad("kind", quote(d.Kind), "is not a run kind", `want "node", "tsx" or "python"`)
	}
	if d.Cwd != CwdTree && d.Cwd != CwdPackage {
		bad("cwd", quote(d.Cwd), "is not a working directory kind", `want "tree" or "package"`)
	}
	if d.Script != "" && !relativeInside(d.Script) {
		bad("script", quote(d.Script), "is not a path inside the package", `want a relative path like "dist/index.js"`)
	}
	if d.Port != "" && !slices.Contains(portKeys, d.Port) {
		bad("port", quote(d.Port), "is not a ports key", "want one of "+strings.Join(portKeys, ", ")+", or \"\" for none")
	}
	if d.Port != "" && !envName.MatchString(d.PortEnv) {
		bad("portEnv", quote(d.PortEnv), "is not an environment variable name", `want a name like "API_PORT"`)
	}
	switch d.Probe.Kind {
	case "http", "tcp":
		if d.Port == "" && d.Probe.Port == 0 {
			bad("probe", d.Probe.Kind, "needs a port", `set "port" (a ports key) or probe.port, or use a "process" probe`)
		}
	case "process":
	default:
		bad("probe.kind", quote(d.Probe.Kind), "is not a probe kind", `want "http", "tcp" or "process"`)
	}
	for _, b := range d.Builds {
		tree, pkg, ok := strings.Cut(b, "/")
		if !ok || (tree != TreeLivos && tree != TreeNexus) || !packageName.MatchString(pkg) {
			bad("builds", quote(b), "is not tree/package", `want a value like "livos/ui"`)
		}
	}
	for _, n := range d.Needs {
		if n != NeedRedis && n != NeedDBus {
			bad("needs", quote(n), "is not a requirement", `want "redis" or "dbus"`)
		}
	}
	for k := range d.Env {
		if !envName.MatchString(k) {
			bad("env", quote(k), "is not an environment variable name", `want a name like "NEXUS_LOGS_DIR"`)
		}
	}
}

// relativeInside reports whether p is a clean relative slash path that stays inside.
func relativeInside(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../")
}
