package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/systemd"
)

// underSystemd reports whether this process is a systemd service (systemd sets
// INVOCATION_ID for every unit it starts, NOTIFY_SOCKET for Type=notify ones).
func underSystemd() bool {
	return os.Getenv("INVOCATION_ID") != "" || os.Getenv("NOTIFY_SOCKET") != ""
}

// pm2UnitDaemon returns how the agent starts and stops the PM2 daemon under home when
// livinity-pm2.service owns it: the agent runs under systemd and the unit is installed.
// Otherwise (tests, the demo, a developer's shell) it returns nil and the pm2 program
// spawns the daemon as it always did.
func pm2UnitDaemon(home string) *pipeline.Daemon {
	if !underSystemd() {
		return nil
	}
	if _, err := os.Stat(filepath.Join(installUnitDir, systemd.PM2UnitName)); err != nil {
		return nil
	}
	return &pipeline.Daemon{
		Start: func(ctx context.Context) error { return startPM2Unit(ctx, home) },
		Stop:  func(ctx context.Context) error { return systemctl(ctx, "stop", systemd.PM2UnitName) },
	}
}

// pm2Options are the pipeline's PM2 options for home (see pm2UnitDaemon).
func pm2Options(home string) []pipeline.PM2Option {
	if d := pm2UnitDaemon(home); d != nil {
		return []pipeline.PM2Option{pipeline.WithDaemon(*d)}
	}
	return nil
}

// pm2StartDaemon is the supervisor's StartDaemon for home, nil when the pm2 program is to
// bring the daemon back (see pm2UnitDaemon).
func pm2StartDaemon(home string) func(context.Context) error {
	if d := pm2UnitDaemon(home); d != nil {
		return d.Start
	}
	return nil
}

// startPM2Unit starts livinity-pm2.service (a no-op when it runs; it waits for a start or
// restart in progress) and waits until the daemon answers under home. It refuses when the
// unit runs PM2 under another home: starting it would never bring this home's daemon.
func startPM2Unit(ctx context.Context, home string) error {
	unitHome, err := pm2UnitHome(ctx)
	if err != nil {
		return err
	}
	if unitHome != filepath.Clean(home) {
		return fmt.Errorf("%s runs PM2 under %s, the agent under %s: make them equal (livinity-agent install --pm2-home %s)",
			systemd.PM2UnitName, unitHome, home, home)
	}
	if err := systemctl(ctx, "start", systemd.PM2UnitName); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		c, err := pm2.Dial(ctx, home)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s started, but no PM2 daemon answers under %s: %w", systemd.PM2UnitName, home, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pm2UnitHome is the PM2 home of livinity-pm2.service: the directory of its PIDFile=
// ($PM2_HOME/pm2.pid).
func pm2UnitHome(ctx context.Context) (string, error) {
	out, err := systemctlOutput(ctx, "show", systemd.PM2UnitName, "-p", "PIDFile", "--value")
	if err != nil {
		return "", err
	}
	pidFile := strings.TrimSpace(string(out))
	if !filepath.IsAbs(pidFile) {
		return "", errors.New(systemd.PM2UnitName + " has no PIDFile= (is it installed? livinity-agent install writes it)")
	}
	return filepath.Dir(pidFile), nil
}
