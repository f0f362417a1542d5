package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/config"
	"github.com/urfave/cli/v3"
)

// TestDropInsForAnotherPM2Home renders install's drop-ins for a PM2 home and a pm2 program
// whose paths hold a space, "$" and "%": both units get the same PM2_HOME, the PM2 unit
// its pid file there and the pm2 program by absolute path, the agent's unit the home as a
// writable path it creates; every word quoted and escaped for a unit file.
func TestDropInsForAnotherPM2Home(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a $b%c")
	pm2 := filepath.Join(dir, "bin", "pm2")
	if err := os.MkdirAll(filepath.Dir(pm2), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pm2, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "pm2 home")
	var agent, daemon string
	cmd := &cli.Command{Name: "livinity-agent", Flags: globalFlags(), Action: func(_ context.Context, cmd *cli.Command) error {
		cfg := config.Default()
		cfg.Paths = config.Paths{LivosBaseDir: "/opt/livos", NexusBaseDir: "/srv/nexus"}
		agent, daemon = string(dropIn(cmd, cfg, home)), string(pm2DropIn(cmd, home))
		return nil
	}}
	if err := cmd.Run(t.Context(), []string{"livinity-agent", "--pm2", pm2}); err != nil {
		t.Fatal(err)
	}
	esc := strings.NewReplacer("%", "%%").Replace
	for _, want := range []string{
		`Environment="PM2_HOME=` + esc(home) + `"`,
		`ExecStartPre=+/bin/mkdir -p -m 0700 "` + strings.ReplaceAll(esc(home), "$", "$$") + `"`,
		`ReadWritePaths="-` + esc(home) + `"`,
		`ReadWritePaths="-/srv/nexus"`,
		`Environment="LIVINITY_PM2=` + esc(pm2) + `"`,
	} {
		if !strings.Contains(agent, "\n"+want+"\n") {
			t.Errorf("the agent's drop-in lacks %s:\n%s", want, agent)
		}
	}
	pm2Exec := `"` + strings.ReplaceAll(esc(pm2), "$", "$$") + `"`
	for _, want := range []string{
		`Environment="PM2_HOME=` + esc(home) + `"`,
		"PIDFile=" + esc(filepath.Join(home, "pm2.pid")),
		"ExecStart=\nExecStart=" + pm2Exec + " resurrect",
		"ExecStop=\nExecStop=-" + pm2Exec + " kill",
	} {
		if !strings.Contains(daemon, "\n"+want+"\n") {
			t.Errorf("the PM2 unit's drop-in lacks %s:\n%s", want, daemon)
		}
	}

	// the default home: nothing about it in either drop-in
	if err := cmd.Run(t.Context(), []string{"livinity-agent"}); err != nil {
		t.Fatal(err)
	}
	home = unitPM2Home
	agent, daemon = string(dropIn(cmd, config.Default(), home)), string(pm2DropIn(cmd, home))
	if strings.Contains(agent+daemon, "PM2_HOME") || strings.Contains(daemon, "PIDFile") {
		t.Errorf("drop-ins for the unit's own PM2 home mention it:\n%s\n%s", agent, daemon)
	}
}
