package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/systemd"
)

// Where install puts things. The unit's ExecStart, StateDirectory and ConfigurationDirectory
// name the same places.
const (
	// InstalledBinary is where install copies the agent.
	InstalledBinary = "/usr/local/bin/livinity-agent"
	installUnitDir  = "/etc/systemd/system"
	installEnvFile  = "/etc/livinity/agent.env"
	// installDropIn is install's own drop-in: the PATH of the tools it found and the
	// config's LivOS trees when they are not the unit's defaults. Rewritten by every install.
	installDropIn = "50-install.conf"
	// systemdDefaultPath is the PATH systemd gives a system service.
	systemdDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// systemdRunning exists when systemd is the running init (sd_booted).
	systemdRunning = "/run/systemd/system"
)

// unitDefaultWritable are the LivOS trees the unit already lists in ReadWritePaths.
var unitDefaultWritable = []string{"/opt/livos", "/opt/nexus"}

// RequireSystemdRoot checks that install or uninstall (what) can do its job here: systemd
// runs and this is root.
func RequireSystemdRoot(what string) error {
	if _, err := os.Stat(systemdRunning); err != nil {
		return fmt.Errorf("%s: systemd is not running on this box (no %s); without it, run the agent in the foreground: livinity-agent run --config FILE", what, systemdRunning)
	}
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("%s: must run as root (euid is %d): try sudo livinity-agent %s", what, uid, what)
	}
	return nil
}

// InstallOptions say what to install.
type InstallOptions struct {
	// Config is the box's config; it is written to DefaultConfig.
	Config *config.Config
	// PM2Home is the PM2 home both units get (see InstalledPM2Home).
	PM2Home string
	// PM2 is the pm2 program (a name looked up in PATH, or a path); its absolute path goes
	// into both units.
	PM2 string
	// RuntimeDir is where the installed agent's status socket is followed.
	RuntimeDir string
	// Timeout bounds the wait for the agent to be ready; it keeps going after.
	Timeout time.Duration
	// Say receives install's progress, a line at a time.
	Say func(line string)
	// Logger logs what Say does not show (the directories left out of the units' PATH).
	Logger *slog.Logger
}

// Install installs the agent's unit and the services' (livinity-pm2.service) with their
// drop-ins, the binary and the config, starts both and follows the agent until every
// service is ready, or its first onboarding failed. On an installed box it is an upgrade:
// the agent restarts with the new binary and the services keep running (a PM2 daemon an
// earlier version ran in the agent's unit moves into livinity-pm2.service without a
// restart). The caller runs Preflight first.
func Install(ctx context.Context, o InstallOptions) error {
	say := o.Say
	if say == nil {
		say = func(string) {}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// both units run the pm2 program as root
	if p, err := exec.LookPath(o.PM2); err == nil {
		if err := rootOnlyProgram(p); err != nil {
			return fmt.Errorf("install: the pm2 program %s: %w\n    the units run it as root, so only root may be able to change it: install pm2 where root alone can write (as root, npm install -g pm2 puts it in /usr/local/bin) and pass --pm2 with its path", p, err)
		}
	}
	upgrade := unitActive(ctx)
	if err := writeInstallConfig(o.Config); err != nil {
		return err
	}
	if err := installSelf(); err != nil {
		return err
	}
	unitPath, dropped := unitPath(o.PM2)
	for _, d := range dropped {
		say("left out of the units' PATH (they run as root, so it takes only directories no one but root can write to): " + d)
		log.Warn("left a directory out of the units' PATH", "why", d)
	}
	if len(dropped) > 0 {
		say("the units find only what systemd's PATH and the directories kept hold: install node, npm, pnpm and pm2 where root alone can write (e.g. /usr/local), or pass --pm2 with a root-owned pm2")
	}
	// The services' unit first, running — adopting a daemon that runs already — before the
	// agent's new unit is loaded: an earlier version's unit has KillMode=process, which
	// keeps a daemon in its control group alive through the agent's restart; this one has
	// not, and would end it.
	if err := writeUnit(systemd.PM2UnitName, systemd.PM2Unit, pm2DropIn(unitPath, o.PM2, o.PM2Home)); err != nil {
		return err
	}
	if err := systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	if err := systemctl(ctx, "enable", systemd.PM2UnitName); err != nil {
		return err
	}
	moved, err := startPM2UnitAdopting(ctx, o.PM2Home)
	if err != nil {
		return fmt.Errorf("install: start %s: %w; the agent's unit is left as it was; see `journalctl -u %s -e`",
			systemd.PM2UnitName, err, systemd.PM2UnitName)
	}
	if moved > 0 {
		say(fmt.Sprintf("moved the running PM2 daemon and its services (%d processes, none restarted) into %s; "+
			"they keep the restrictions they were started with until the daemon restarts (next boot, or "+
			"`systemctl restart %s`, which restarts the services)", moved, systemd.PM2UnitName, systemd.PM2UnitName))
	}
	if err := writeUnit(systemd.UnitName, systemd.Unit, dropIn(unitPath, o.PM2, o.Config, o.PM2Home)); err != nil {
		return err
	}
	if err := systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	if err := systemctl(ctx, "enable", systemd.UnitName); err != nil {
		return err
	}
	_ = systemctl(ctx, "reset-failed", systemd.UnitName) // forget earlier start-limit hits
	verb := "start"
	if upgrade {
		verb = "restart"
		say("upgrade: the agent restarts with the new binary; the services keep running")
	}
	say(fmt.Sprintf("installed %s, %s and %s; starting the agent", InstalledBinary,
		filepath.Join(installUnitDir, systemd.PM2UnitName), filepath.Join(installUnitDir, systemd.UnitName)))
	followCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	return follow(followCtx, say, verb, filepath.Join(o.RuntimeDir, statusapi.SocketName))
}

// writeInstallConfig writes the config where the unit's agent reads it (0600: it holds
// secrets).
func writeInstallConfig(cfg *config.Config) error {
	b, err := cfg.MarshalIndent()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(DefaultConfig), 0o700); err != nil {
		return fmt.Errorf("create config dir: %w", err)
	}
	return atomicfile.WriteFile(DefaultConfig, append(b, '\n'), 0o600)
}

// installSelf copies the running binary to InstalledBinary, atomically: a running agent
// keeps executing the old file until it restarts.
func installSelf() error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the running binary: %w", err)
	}
	if a, err := filepath.EvalSymlinks(self); err == nil {
		if b, err := filepath.EvalSymlinks(InstalledBinary); err == nil && a == b {
			return nil // installed copy installing itself
		}
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("read the running binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(InstalledBinary), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(InstalledBinary), err)
	}
	return atomicfile.WriteFile(InstalledBinary, b, 0o755)
}

// writeUnit writes a unit and install's drop-in for it.
func writeUnit(name string, unit, dropIn []byte) error {
	if err := atomicfile.WriteFile(filepath.Join(installUnitDir, name), unit, 0o644); err != nil {
		return err
	}
	dir := filepath.Join(installUnitDir, name+".d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create drop-in dir: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, installDropIn), dropIn, 0o644)
}
