package setup

import "strings"

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
