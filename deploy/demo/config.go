package demo

import (
	"path/filepath"

	"github.com/livinity/livinity-agent/config"
)

// Config is the setup for a demo tree extracted under dir (dir/livos and dir/nexus): the
// defaults with domain localhost, and two differences that say what the stand-ins are. They
// use nothing newer than Node.js 20 and name no engines, so preflight's minimum is minNode;
// and they use neither Redis nor D-Bus, so the catalog says so (the real services need both,
// and the built-in catalog keeps saying that). Disk and memory minimums are 1 GB.
func Config(dir string, minNode int) *config.Config {
	cfg := config.Default()
	cfg.Domain = "localhost"
	cfg.Paths = config.Paths{LivosBaseDir: filepath.Join(dir, "livos"), NexusBaseDir: filepath.Join(dir, "nexus")}
	cfg.Agent.Preflight = config.Preflight{MinNodeMajor: minNode, MinDiskGB: 1, MinRAMGB: 1}
	for _, name := range cfg.ServiceNames() {
		cfg.Agent.Catalog = append(cfg.Agent.Catalog, config.CatalogEntry{Name: name, Needs: []string{}})
	}
	return cfg
}
