package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/systemd"
	"github.com/urfave/cli/v3"
)

// TestOnboardingFailed: install stops following at a failed onboarding that ended after it
// started the agent, never at an earlier agent's, one still running or a success.
func TestOnboardingFailed(t *testing.T) {
	start := time.Now()
	at := func(d time.Duration) *time.Time { v := start.Add(d); return &v }
	doc := func(s statusapi.Setup) statusapi.Status { return statusapi.Status{Agent: &statusapi.Agent{Setup: s}} }
	for _, tc := range []struct {
		name string
		doc  statusapi.Status
		fail bool
	}{
		{"no agent section", statusapi.Status{}, false},
		{"not run yet", doc(statusapi.Setup{}), false},
		{"running", doc(statusapi.Setup{Ran: true, Step: "7/16 build nexus core"}), false},
		{"succeeded", doc(statusapi.Setup{Ran: true, OK: true, At: at(time.Second)}), false},
		{"an earlier agent's failure", doc(statusapi.Setup{Ran: true, Error: "old", At: at(-time.Hour)}), false},
		{"failed", doc(statusapi.Setup{Ran: true, Error: "step build-core: exit status 2", At: at(3 * time.Second)}), true},
	} {
		err := onboardingFailed(tc.doc, start)
		if (err != nil) != tc.fail {
			t.Errorf("%s: err = %v, want failure %v", tc.name, err, tc.fail)
		}
		if err != nil && (!strings.Contains(err.Error(), "step build-core: exit status 2") || !strings.Contains(err.Error(), "journalctl -u livinity-agent.service -f")) {
			t.Errorf("%s: %v lacks the step's error or the command to follow", tc.name, err)
		}
	}
}

// TestInstallKeepsTheInstalledPM2Home: install without --pm2-home on a box installed with
// one keeps the PM2 home its drop-in names (an upgrade must not move the services' daemon
// to /root/.pm2), and check and status find it there too (unitPM2HomeSetting reads back
// what dropIn wrote, quoting and all).
func TestInstallKeepsTheInstalledPM2Home(t *testing.T) {
	unitDir := t.TempDir()
	home := filepath.Join(t.TempDir(), `a "$b%c\d`, "pm2 home")
	run := func(args ...string) (got string) {
		t.Helper()
		cmd := &cli.Command{Name: "livinity-agent", Flags: globalFlags(), Action: func(_ context.Context, cmd *cli.Command) error {
			var err error
			got, err = installPM2Home(cmd, unitDir)
			return err
		}}
		if err := cmd.Run(t.Context(), append([]string{"livinity-agent"}, args...)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := run(); got != unitPM2Home {
		t.Errorf("first install: home %q, want %q", got, unitPM2Home)
	}
	unit := filepath.Join(unitDir, systemd.UnitName)
	os.WriteFile(unit, systemd.Unit, 0o644)
	if got := run(); got != unitPM2Home {
		t.Errorf("installed without a drop-in: home %q, want %q", got, unitPM2Home)
	}
	cmd := &cli.Command{Name: "livinity-agent", Flags: globalFlags(), Action: func(_ context.Context, cmd *cli.Command) error {
		os.MkdirAll(unit+".d", 0o755)
		return os.WriteFile(filepath.Join(unit+".d", installDropIn), dropIn(cmd, config.Default(), home), 0o644)
	}}
	if err := cmd.Run(t.Context(), []string{"livinity-agent"}); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != home {
		t.Errorf("upgrade of a box installed with --pm2-home %q: home %q", home, got)
	}
	if got := run("--pm2-home", "/srv/pm2"); got != "/srv/pm2" {
		t.Errorf("--pm2-home /srv/pm2: home %q", got)
	}
}
