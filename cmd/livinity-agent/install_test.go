package main

import (
	"context"
	"testing"

	"github.com/urfave/cli/v3"
)

// TestInstallPM2HomeFlag: install --pm2-home (or LIVINITY_PM2_HOME) names the units' PM2
// home; without it the installed units' is kept (agent.InstalledPM2Home, tested there).
func TestInstallPM2HomeFlag(t *testing.T) {
	run := func(args ...string) (got string) {
		t.Helper()
		cmd := &cli.Command{Name: "livinity-agent", Flags: globalFlags(), Action: func(_ context.Context, cmd *cli.Command) error {
			var err error
			got, err = installPM2Home(cmd)
			return err
		}}
		if err := cmd.Run(t.Context(), append([]string{"livinity-agent"}, args...)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := run("--pm2-home", "/srv/pm2"); got != "/srv/pm2" {
		t.Errorf("--pm2-home /srv/pm2: home %q", got)
	}
	t.Setenv("LIVINITY_PM2_HOME", "/srv/other")
	if got := run(); got != "/srv/other" {
		t.Errorf("LIVINITY_PM2_HOME=/srv/other: home %q", got)
	}
}
