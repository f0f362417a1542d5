package main

import (
	"io"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
)

// TestEveryFlagHasALivinityVariable: every flag of every command also reads a LIVINITY_*
// variable (a systemd EnvironmentFile sets any of them).
func TestEveryFlagHasALivinityVariable(t *testing.T) {
	pending := map[string]bool{}
	var walk func(c *cli.Command, path string)
	walk = func(c *cli.Command, path string) {
		for _, f := range c.Flags {
			name := strings.TrimSpace(path + " --" + f.Names()[0])
			if pending[name] {
				continue
			}
			src := ""
			if v, ok := f.(interface{ GetEnvVars() []string }); ok {
				src = strings.Join(v.GetEnvVars(), ",")
			}
			if !strings.HasPrefix(src, "LIVINITY_") {
				t.Errorf("%s reads no LIVINITY_* variable (%q)", name, src)
			}
		}
		for _, sub := range c.Commands {
			walk(sub, strings.TrimSpace(path+" "+sub.Name))
		}
	}
	walk(newApp(io.Discard, io.Discard), "")
}
