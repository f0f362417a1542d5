package setup

import (
	"os"
	"path/filepath"
	"strings"
)

// toolEnvKeys are the variables of the agent's environment that the package managers
// need to reach a registry: proxies, CA bundles, npm, pnpm and pip settings, temp dirs.
// Nothing else is passed on: the agent's environment may hold secrets, and PM2 copies its
// caller's environment into every app.
var toolEnvKeys = []string{
	"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
	"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "PIP_CERT",
	"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "TMPDIR", "XDG_CACHE_HOME", "PNPM_HOME",
}

// toolEnvPrefixes are variable prefixes passed on for the same reason.
var toolEnvPrefixes = []string{"npm_config_", "NPM_CONFIG_"}

// ToolEnv picks from environ (KEY=value entries) the settings a package manager needs.
func ToolEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		keep := false
		for _, name := range toolEnvKeys {
			keep = keep || k == name
		}
		for _, p := range toolEnvPrefixes {
			keep = keep || strings.HasPrefix(k, p)
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// NodeHeaders is the environment that makes npm and pnpm compile native addons (Redis
// clients' parsers, better-sqlite3) against the node the services run on: the first node
// on path, whose installation prefix holds include/node. A machine's npmrc may name other
// headers (Debian's nodejs sets nodedir=/usr), which would build an addon the services'
// node refuses to load (NODE_MODULE_VERSION mismatch). Nil when node or its headers are
// not found: npm then decides as usual.
func NodeHeaders(path string) []string {
	for _, dir := range filepath.SplitList(path) {
		node := filepath.Join(dir, "node")
		if st, err := os.Stat(node); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		real, err := filepath.EvalSymlinks(node)
		if err != nil {
			return nil
		}
		prefix := filepath.Dir(filepath.Dir(real))
		if _, err := os.Stat(filepath.Join(prefix, "include", "node", "node_version.h")); err != nil {
			return nil
		}
		return []string{"npm_config_nodedir=" + prefix}
	}
	return nil
}
