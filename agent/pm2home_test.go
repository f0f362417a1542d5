package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/systemd"
)

// TestInstallKeepsTheInstalledPM2Home: install without --pm2-home on a box installed with
// one keeps the PM2 home its drop-in names (an upgrade must not move the services' daemon
// to /root/.pm2), and check and status find it there too (unitPM2HomeSetting reads back
// what dropIn wrote, quoting and all).
func TestInstallKeepsTheInstalledPM2Home(t *testing.T) {
	unitDir := t.TempDir()
	home := filepath.Join(t.TempDir(), `a "$b%c\d`, "pm2 home")
	if got := installedPM2Home(unitDir); got != UnitPM2Home {
		t.Errorf("first install: home %q, want %q", got, UnitPM2Home)
	}
	unit := filepath.Join(unitDir, systemd.UnitName)
	os.WriteFile(unit, systemd.Unit, 0o644)
	if got := installedPM2Home(unitDir); got != UnitPM2Home {
		t.Errorf("installed without a drop-in: home %q, want %q", got, UnitPM2Home)
	}
	os.MkdirAll(unit+".d", 0o755)
	if err := os.WriteFile(filepath.Join(unit+".d", installDropIn), dropIn(nil, "pm2", config.Default(), home), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := installedPM2Home(unitDir); got != home {
		t.Errorf("upgrade of a box installed with --pm2-home %q: home %q", home, got)
	}
}

// TestBoxPM2Home: the state dir's note (rememberPM2Home) names the box's PM2 home.
func TestBoxPM2Home(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if err := rememberPM2Home(state, "/srv/pm2 home"); err != nil {
		t.Fatal(err)
	}
	if home, src, ok := BoxPM2Home(state); !ok || home != "/srv/pm2 home" || src != "the last onboarding ("+filepath.Join(state, pm2HomeFile)+")" {
		t.Errorf("BoxPM2Home = %q, %q, %v", home, src, ok)
	}
}
