package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestBuiltinCatalog(t *testing.T) {
	c := Default()
	c.Domain = "localhost"
	if got, want := c.ServiceNames(), []string{"livos", "nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceNames = %q, want %q", got, want)
	}
	mem, _ := c.Service("nexus-memory")
	if mem.Kind != RunNode || mem.Script != "dist/index.js" || mem.Package != "memory" {
		t.Errorf("nexus-memory = %+v; LivOS's memory service is TypeScript (dist/index.js)", mem)
	}
	livos, _ := c.Service("livos")
	if livos.Kind != RunTsx || livos.Cwd != CwdPackage || livos.Probe.Kind != "http" || livos.Probe.Path != "/" {
		t.Errorf("livos = %+v; want tsx from its package, probed by HTTP GET /", livos)
	}
	if p := c.ServiceSettings("livos").Probe; p.Kind != "http" || p.Port != 8080 || p.Path != "/" || p.ExpectStatus != 200 {
		t.Errorf("livos probe = %+v", p)
	}
}

// TestHeadLayoutExample: upstream's newer layout (nexus/ renamed liv/, four apps livos,
// liv-core, liv-worker, liv-memory) is data in a config, not code.
func TestHeadLayoutExample(t *testing.T) {
	c, err := Load(filepath.Join(examplesDir, "setup.liv-head.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.ServiceNames(), []string{"livos", "liv-core", "liv-worker", "liv-memory"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ServiceNames = %q, want %q", got, want)
	}
	core, _ := c.Service("liv-core")
	if core.Tree != TreeNexus || core.Package != "core" || core.Cwd != CwdTree || core.PortEnv != "API_PORT" {
		t.Errorf("liv-core = %+v", core)
	}
	if s := c.ServiceSettings("liv-core"); s.MemoryLimitBytes != 800<<20 || s.Probe.Port != 3200 || s.Probe.Path != "/api/health" {
		t.Errorf("liv-core settings = %+v", s)
	}
	if w, _ := c.Service("liv-worker"); w.Probe.Kind != "process" || !w.Optional {
		t.Errorf("liv-worker = %+v; want a process probe, optional", w)
	}
	if c.TreeDir(TreeNexus) != "/opt/liv" {
		t.Errorf("nexus tree = %s", c.TreeDir(TreeNexus))
	}
}

func TestCatalogErrors(t *testing.T) {
	_, err := Load("testdata/invalid-catalog.json")
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		`agent.catalog[0].name: "Liv Core" is not a service name; want lowercase letters, digits and -, like "liv-core"`,
		`agent.catalog[1].tree: "liv" is not a tree; want "livos" or "nexus"`,
		`agent.catalog[1].package: "../core" is not a directory name under packages/`,
		`agent.catalog[1].kind: "deno" is not a run kind; want "node", "tsx" or "python"`,
		`agent.catalog[1].script: "/abs/index.js" is not a path inside the package`,
		`agent.catalog[1].port: "web" is not a ports key; want one of api, mcp, memory, livos`,
		`agent.catalog[1].portEnv: "api port" is not an environment variable name`,
		`agent.catalog[3].name: "nexus-mcp" is listed twice; merge the two entries`,
		`agent.catalog[4].tree: missing; a service that is not built in needs tree, package, kind and script`,
		`agent.catalog[5].disabled: true names no built-in service`,
		`agent.catalog[6].cwd: "home" is not a working directory kind; want "tree" or "package"`,
		`agent.catalog[6].probe.kind: "ping" is not a probe kind`,
		`agent.catalog[6].builds: "ui" is not tree/package; want a value like "livos/ui"`,
		`agent.catalog[6].needs: "postgres" is not a requirement; want "redis" or "dbus"`,
		`agent.catalog[6].env: "BAD KEY" is not an environment variable name`,
		`agent.services.nexus-mcp: unknown service; valid names: livos, nexus-core, nexus-worker, nexus-memory`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q; got:\n%v", want, err)
		}
	}
	// every service disabled
	c := Default()
	c.Domain = "localhost"
	for _, n := range c.ServiceNames() {
		c.Agent.Catalog = append(c.Agent.Catalog, CatalogEntry{Name: n, Disabled: true})
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "agent.catalog: disables every service; keep at least one service") {
		t.Errorf("all disabled: %v", err)
	}
}

// TestCatalogNeedsNone: "needs": [] says a service needs nothing of the box, and survives
// a write and a read of the config (an absent "needs" keeps the built-in service's).
func TestCatalogNeedsNone(t *testing.T) {
	c := Default()
	c.Domain = "localhost"
	c.Agent.Catalog = []CatalogEntry{{Name: "nexus-core", Needs: []string{}}}
	b, err := c.MarshalIndent()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"needs": []`) {
		t.Fatalf("the written config lost the empty needs:\n%s", b)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if core, _ := back.Service("nexus-core"); len(core.Needs) != 0 {
		t.Errorf("nexus-core needs %q after \"needs\": []; want nothing", core.Needs)
	}
	if worker, _ := back.Service("nexus-worker"); !reflect.DeepEqual(worker.Needs, []string{NeedRedis}) {
		t.Errorf("nexus-worker needs %q; want the built-in [redis]", worker.Needs)
	}
}
