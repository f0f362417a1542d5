package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/systemd"
	"github.com/urfave/cli/v3"
)

// pm2HomeFile is where every pipeline run notes the PM2 home it used, in the state dir, so
// that the commands that only look (check, status, logs) find this box's daemon without
// --pm2-home.
const pm2HomeFile = "pm2-home"

// rememberPM2Home notes home in the state dir (created if needed, 0700 as the pipeline
// wants it).
func rememberPM2Home(stateDir, home string) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, pm2HomeFile), []byte(home+"\n"), 0o600)
}

// configuredPM2Home is the PM2 home of this box's services, and where that was learned:
// --pm2-home (or LIVINITY_PM2_HOME); else the home the last pipeline run with this state
// dir used; else the installed agent unit's (its drop-in's PM2_HOME, else the unit's
// /root/.pm2); else $PM2_HOME, else $HOME/.pm2.
func configuredPM2Home(cmd *cli.Command) (home, source string, err error) {
	if cmd.IsSet(flagPM2Home) {
		h, err := pm2Home(cmd)
		return h, "--pm2-home", err
	}
	stateFile := filepath.Join(cmd.String(flagStateDir), pm2HomeFile)
	if b, err := os.ReadFile(stateFile); err == nil {
		if h := strings.TrimSpace(string(b)); filepath.IsAbs(h) {
			return h, "the last onboarding (" + stateFile + ")", nil
		}
	}
	if h, where, ok := unitPM2HomeSetting(installUnitDir); ok {
		return h, "the installed unit (" + where + ")", nil
	}
	h, err := pm2Home(cmd)
	src := "$HOME/.pm2"
	if os.Getenv("PM2_HOME") != "" {
		src = "$PM2_HOME"
	}
	return h, src, err
}

// unitPM2HomeSetting is the PM2_HOME the installed agent unit under unitDir gives the
// agent: install's drop-in's, else the unit's own default; ok is false when no unit is
// installed.
func unitPM2HomeSetting(unitDir string) (home, where string, ok bool) {
	unit := filepath.Join(unitDir, systemd.UnitName)
	if _, err := os.Stat(unit); errors.Is(err, fs.ErrNotExist) || err != nil {
		return "", "", false
	}
	home, where = unitPM2Home, unit
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
