package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/livinity/livinity-agent/systemd"
)

// UninstallOptions say how much uninstall removes.
type UninstallOptions struct {
	// KeepServices removes only the agent's unit: livinity-pm2.service stays installed,
	// enabled and running, and so does the binary (the python services' launcher).
	KeepServices bool
	// Purge also removes the config (/etc/livinity) and StateDir.
	Purge bool
	// StateDir is the agent's state, removed by Purge.
	StateDir string
	// Say receives what uninstall did, a line at a time.
	Say func(line string)
}

// Uninstall stops and disables the agent's unit and (unless KeepServices) the services'
// — PM2 stops every service — and removes the units, install's drop-ins and the binary.
// The LivOS trees and the PM2 home are never touched.
func Uninstall(ctx context.Context, o UninstallOptions) error {
	say := o.Say
	if say == nil {
		say = func(string) {}
	}
	keep := o.KeepServices
	units := []string{systemd.UnitName}
	if !keep {
		units = append(units, systemd.PM2UnitName) // the agent first: it would start the other again
	}
	var remove, dirs []string
	for _, u := range units {
		props, _ := showUnit(ctx, u, "LoadState")
		if props["LoadState"] == "loaded" {
			if err := systemctl(ctx, "disable", "--now", u); err != nil {
				return err
			}
			say("stopped and disabled " + u)
		}
		unitFile := filepath.Join(installUnitDir, u)
		remove = append(remove, unitFile, filepath.Join(unitFile+".d", installDropIn))
		dirs = append(dirs, unitFile+".d")
	}
	if !keep {
		remove = append(remove, InstalledBinary)
	}
	if o.Purge {
		remove = append(remove, dirs...)
		remove = append(remove, DefaultConfig, installEnvFile, o.StateDir)
	}
	for _, p := range remove {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("uninstall: remove %s: %w", p, err)
		}
		say("removed " + p)
	}
	for _, d := range append(dirs, filepath.Dir(DefaultConfig)) {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) {
			return fmt.Errorf("uninstall: remove %s: %w", d, err)
		}
	}
	if err := systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	if keep {
		say(fmt.Sprintf("the services keep running under %s, which stays installed and enabled, with %s (the python services' launcher)",
			systemd.PM2UnitName, InstalledBinary))
	} else {
		say(fmt.Sprintf("the services are stopped; the LivOS trees and the PM2 home (with its saved process list) are kept: "+
			"`PM2_HOME=%s pm2 resurrect` starts them by hand, `livinity-agent install` installs everything again", UnitPM2Home))
	}
	if !o.Purge {
		say(fmt.Sprintf("kept %s and %s: `livinity-agent uninstall --purge` removes them", DefaultConfig, o.StateDir))
	}
	return nil
}
