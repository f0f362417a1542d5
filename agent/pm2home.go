package agent

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/systemd"
)

// pm2HomeFile is where every pipeline run notes the PM2 home it used, in the state dir, so
// that the commands that only look (check, status, logs) find this box's daemon without
// --pm2-home.
const pm2HomeFile = "pm2-home"

// UnitPM2Home is the PM2_HOME both installed units name unless install was given another.
const UnitPM2Home = "/root/.pm2"

// rememberPM2Home notes home in stateDir (created if needed, 0700 as the pipeline wants
// it), where BoxPM2Home finds it.
func rememberPM2Home(stateDir, home string) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, pm2HomeFile), []byte(home+"\n"), 0o600)
}

// BoxPM2Home is the PM2 home of this box's services as the box says it, and where that
// was learned: the home the last pipeline run with stateDir used, else the installed agent
// unit's (its drop-in's PM2_HOME, else the unit's UnitPM2Home). ok is false when neither
// says: the caller falls back to $PM2_HOME or $HOME/.pm2.
func BoxPM2Home(stateDir string) (home, source string, ok bool) {
	stateFile := filepath.Join(stateDir, pm2HomeFile)
	if b, err := os.ReadFile(stateFile); err == nil {
		if h := strings.TrimSpace(string(b)); filepath.IsAbs(h) {
			return h, "the last onboarding (" + stateFile + ")", true
		}
	}
	if h, where, ok := unitPM2HomeSetting(installUnitDir); ok {
		return h, "the installed unit (" + where + ")", true
	}
	return "", "", false
}

// InstalledPM2Home is the PM2 home the installed units give the services, or UnitPM2Home
// when none is installed: an upgrade keeps it.
func InstalledPM2Home() string {
	return installedPM2Home(installUnitDir)
}

func installedPM2Home(unitDir string) string {
	if h, _, ok := unitPM2HomeSetting(unitDir); ok {
		return h
	}
	return UnitPM2Home
}

// unitPM2HomeSetting is the PM2_HOME the installed agent unit under unitDir gives the
// agent: install's drop-in's, else the unit's own default; ok is false when no unit is
// installed.
func unitPM2HomeSetting(unitDir string) (home, where string, ok bool) {
	unit := filepath.Join(unitDir, systemd.UnitName)
	if _, err := os.Stat(unit); err != nil {
		return "", "", false
	}
	home, where = UnitPM2Home, unit
	dropIn := filepath.Join(unit+".d", installDropIn)
	f, err := os.Open(dropIn)
	if err != nil {
		return home, where, true
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, found := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Environment=")
		if !found {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		if h, found := strings.CutPrefix(v, "PM2_HOME="); found && filepath.IsAbs(h) {
			home, where = strings.ReplaceAll(h, "%%", "%"), dropIn
		}
	}
	return home, where, true
}
