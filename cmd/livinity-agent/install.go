package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/systemd"
	"github.com/urfave/cli/v3"
	"golang.org/x/term"
)

// Where install puts things. The unit's ExecStart, StateDirectory and ConfigurationDirectory
// name the same places.
const (
	installBinary  = "/usr/local/bin/livinity-agent"
	installUnitDir = "/etc/systemd/system"
	installConfig  = "/etc/livinity/setup.json"
	installEnvFile = "/etc/livinity/agent.env"
	// installDropIn is install's own drop-in: the PATH of the tools it found and the
	// config's LivOS trees when they are not the unit's defaults. Rewritten by every install.
	installDropIn = "50-install.conf"
	// systemdDefaultPath is the PATH systemd gives a system service.
	systemdDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// systemdRunning exists when systemd is the running init (sd_booted).
	systemdRunning = "/run/systemd/system"

	// unitPM2Home is the PM2_HOME both units name; install --pm2-home changes it in both
	// drop-ins.
	unitPM2Home = "/root/.pm2"

	flagInstallTimeout = "timeout"
	flagPurge          = "purge"
	flagKeepServices   = "keep-services"
)

// unitDefaultWritable are the LivOS trees the unit already lists in ReadWritePaths.
var unitDefaultWritable = []string{"/opt/livos", "/opt/nexus"}

func installCommand() *cli.Command {
	return &cli.Command{
		Name: "install",
		Usage: "install the agent as a systemd service and the PM2 daemon that runs the services as " +
			"another (livinity-pm2.service; config from --config or asked on a terminal), start them and " +
			"follow the onboarding until every service is ready (or exit 1 at the first failed onboarding, with its error: the agent keeps retrying); on an installed box, upgrade the binary " +
			"and restart the agent (the services keep running; a daemon an earlier version ran in the " +
			"agent's unit is moved into livinity-pm2.service without a restart)",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: flagInstallTimeout, Value: time.Hour,
				Usage:   "how long to follow the agent before giving up (it keeps going in the background)",
				Sources: cli.EnvVars("LIVINITY_INSTALL_TIMEOUT")},
		},
		Action: runInstall,
	}
}

func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name: "uninstall",
		Usage: "stop and disable the agent's service and the services' (livinity-pm2.service: PM2 stops " +
			"every service) and remove the units and the binary; the LivOS trees and the PM2 home are never touched",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: flagPurge, Usage: "also remove the config (/etc/livinity) and the agent's state (/var/lib/livinity-agent)",
				Sources: cli.EnvVars("LIVINITY_PURGE")},
			&cli.BoolFlag{Name: flagKeepServices, Usage: "remove only the agent: livinity-pm2.service stays installed, enabled and running " +
				"(the services keep running and come back at boot), and so does the binary, the python services' launcher",
				Sources: cli.EnvVars("LIVINITY_KEEP_SERVICES")},
		},
		Action: runUninstall,
	}
}

// requireSystemdRoot checks that install or uninstall can do its job here.
func requireSystemdRoot(what string) error {
	if _, err := os.Stat(systemdRunning); err != nil {
		return fmt.Errorf("%s: systemd is not running on this box (no %s); without it, run the agent in the foreground: livinity-agent run --config FILE", what, systemdRunning)
	}
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("%s: must run as root (euid is %d): try sudo livinity-agent %s", what, uid, what)
	}
	return nil
}

func runInstall(ctx context.Context, cmd *cli.Command) error {
	if err := requireSystemdRoot("install"); err != nil {
		return err
	}
	out := cmd.Root().Writer
	log, err := newLogger(cmd, cmd.Root().ErrWriter)
	if err != nil {
		return err
	}
	cfg, source, err := installConfigFrom(ctx, cmd)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "config: %s\n", source)
	home, err := installPM2Home(cmd, installUnitDir)
	if err != nil {
		return err
	}
	// ports held by the box's own apps (an upgrade) are fine
	opts := preflightOptions(cmd)
	opts.PM2Home = home
	if err := runPreflight(ctx, opts, cfg, out, isTerminal(out) && os.Getenv("NO_COLOR") == "", log); err != nil {
		return err
	}
	upgrade := unitActive(ctx)
	if err := writeInstallConfig(cfg); err != nil {
		return err
	}
	if err := installSelf(); err != nil {
		return err
	}
	// The services' unit first, running — adopting a daemon that runs already — before the
	// agent's new unit is loaded: an earlier version's unit has KillMode=process, which
	// keeps a daemon in its control group alive through the agent's restart; this one has
	// not, and would end it.
	if err := writeUnit(systemd.PM2UnitName, systemd.PM2Unit, pm2DropIn(cmd, home)); err != nil {
		return err
	}
	if err := systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	if err := systemctl(ctx, "enable", systemd.PM2UnitName); err != nil {
		return err
	}
	moved, err := startPM2UnitAdopting(ctx, home)
	if err != nil {
		return fmt.Errorf("install: start %s: %w; the agent's unit is left as it was; see `journalctl -u %s -e`",
			systemd.PM2UnitName, err, systemd.PM2UnitName)
	}
	if moved > 0 {
		fmt.Fprintf(out, "moved the running PM2 daemon and its services (%d processes, none restarted) into %s; "+
			"they keep the restrictions they were started with until the daemon restarts (next boot, or "+
			"`systemctl restart %s`, which restarts the services)\n", moved, systemd.PM2UnitName, systemd.PM2UnitName)
	}
	if err := writeUnit(systemd.UnitName, systemd.Unit, dropIn(cmd, cfg, home)); err != nil {
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
		fmt.Fprintln(out, "upgrade: the agent restarts with the new binary; the services keep running")
	}
	fmt.Fprintf(out, "installed %s, %s and %s; starting the agent\n", installBinary,
		filepath.Join(installUnitDir, systemd.PM2UnitName), filepath.Join(installUnitDir, systemd.UnitName))
	followCtx, cancel := context.WithTimeout(ctx, cmd.Duration(flagInstallTimeout))
	defer cancel()
	return follow(followCtx, out, verb, filepath.Join(cmd.String(flagRuntimeDir), statusapi.SocketName))
}

// installPM2Home is the PM2 home the units get: --pm2-home, else the one the installed
// units have (an upgrade keeps it), else unitPM2Home.
func installPM2Home(cmd *cli.Command, unitDir string) (string, error) {
	if cmd.IsSet(flagPM2Home) {
		return pm2Home(cmd)
	}
	if h, _, ok := unitPM2HomeSetting(unitDir); ok {
		return h, nil
	}
	return unitPM2Home, nil
}

// installConfigFrom picks the config: --config, else the installed one (an upgrade), else
// the wizard on a terminal.
func installConfigFrom(ctx context.Context, cmd *cli.Command) (*config.Config, string, error) {
	if p := cmd.String(flagConfig); p != "" {
		cfg, err := config.Load(p)
		return cfg, p, err
	}
	if _, err := os.Stat(installConfig); err == nil {
		cfg, err := config.Load(installConfig)
		return cfg, installConfig + " (installed)", err
	}
	if term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())) {
		cfg, err := runWizard(ctx, os.Stdin, cmd.Root().Writer)
		return cfg, "answers to the wizard", err
	}
	return nil, "", errors.New("install: no terminal to ask on and no --config: pass --config FILE (see deploy/examples/setup.json)")
}

// writeInstallConfig writes the config where the unit's agent reads it (0600: it holds
// secrets).
func writeInstallConfig(cfg *config.Config) error {
	b, err := cfg.MarshalIndent()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(installConfig), 0o700); err != nil {
		return fmt.Errorf("create config dir: %w", err)
	}
	return atomicfile.WriteFile(installConfig, append(b, '\n'), 0o600)
}

// installSelf copies the running binary to installBinary, atomically: a running agent
// keeps executing the old file until it restarts.
func installSelf() error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the running binary: %w", err)
	}
	if a, err := filepath.EvalSymlinks(self); err == nil {
		if b, err := filepath.EvalSymlinks(installBinary); err == nil && a == b {
			return nil // installed copy installing itself
		}
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("read the running binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(installBinary), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(installBinary), err)
	}
	return atomicfile.WriteFile(installBinary, b, 0o755)
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

const dropInHeader = "# Written by `livinity-agent install` and rewritten by each install: put your own\n" +
	"# changes in another drop-in (systemctl edit %s).\n[Service]\n"

// toolDirs are the directories of the tools the installer's PATH found that systemd's
// default PATH would miss (node from nvm, a pm2 elsewhere).
func toolDirs(cmd *cli.Command) []string {
	defaults := filepath.SplitList(systemdDefaultPath)
	var extra []string
	for _, tool := range []string{"node", "npm", "pnpm", cmd.String(flagPM2), "python3"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			continue
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		d := filepath.Dir(p)
		if !slices.Contains(defaults, d) && !slices.Contains(extra, d) {
			extra = append(extra, d)
		}
	}
	return extra
}

// writePath adds the tools' PATH to a drop-in.
func writePath(b *bytes.Buffer, cmd *cli.Command) {
	if extra := toolDirs(cmd); len(extra) > 0 {
		fmt.Fprintf(b, "Environment=%s\n", systemdQuote("PATH="+strings.Join(append(extra, filepath.SplitList(systemdDefaultPath)...), ":")))
	}
}

// dropIn renders install's drop-in for the agent's unit: the tools' PATH, the pm2 program
// when --pm2 named one, the config's LivOS trees when they are not the unit's defaults
// (ProtectSystem=strict leaves them read-only otherwise), and the PM2 home when
// --pm2-home moved it.
func dropIn(cmd *cli.Command, cfg *config.Config, home string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, dropInHeader, "livinity-agent")
	writePath(&b, cmd)
	pm2 := cmd.String(flagPM2)
	if strings.Contains(pm2, "/") {
		if abs, err := filepath.Abs(pm2); err == nil {
			fmt.Fprintf(&b, "Environment=%s\n", systemdQuote("LIVINITY_PM2="+abs))
		}
	}
	for _, p := range []string{cfg.Paths.LivosBaseDir, cfg.Paths.NexusBaseDir} {
		if p != "" && !slices.Contains(unitDefaultWritable, filepath.Clean(p)) {
			fmt.Fprintf(&b, "ReadWritePaths=%s\n", systemdQuote("-"+filepath.Clean(p)))
		}
	}
	if home != unitPM2Home {
		fmt.Fprintf(&b, "Environment=%s\n", systemdQuote("PM2_HOME="+home))
		fmt.Fprintf(&b, "ExecStartPre=+/bin/mkdir -p -m 0700 %s\n", execQuote(home))
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", systemdQuote("-"+home))
	}
	return b.Bytes()
}

// pm2DropIn renders install's drop-in for livinity-pm2.service: the tools' PATH (pm2 and
// the services' node), the pm2 program the installer found (--pm2), and the PM2 home
// when --pm2-home moved it.
func pm2DropIn(cmd *cli.Command, home string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, dropInHeader, "livinity-pm2")
	writePath(&b, cmd)
	if p, err := exec.LookPath(cmd.String(flagPM2)); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			fmt.Fprintf(&b, "ExecStart=\nExecStart=%s resurrect\nExecStop=\nExecStop=-%s kill\n", execQuote(abs), execQuote(abs))
		}
	}
	if home != unitPM2Home {
		fmt.Fprintf(&b, "Environment=%s\n", systemdQuote("PM2_HOME="+home))
		fmt.Fprintf(&b, "PIDFile=%s\n", strings.ReplaceAll(filepath.Join(home, "pm2.pid"), "%", "%%"))
	}
	return b.Bytes()
}

// execQuote quotes one word of an Exec*= line: as systemdQuote, and "$" doubled, which
// systemd would otherwise expand.
func execQuote(s string) string {
	return strings.ReplaceAll(systemdQuote(s), "$", "$$")
}

// systemdQuote quotes one word for a unit file: double quotes, with backslashes, quotes
// and specifier percent signs escaped.
func systemdQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%")
	return `"` + r.Replace(s) + `"`
}

// unitActive reports whether the agent's unit is running (or starting): install then
// upgrades.
func unitActive(ctx context.Context) bool {
	props, err := unitProperties(ctx)
	return err == nil && (props["ActiveState"] == "active" || props["ActiveState"] == "activating" || props["ActiveState"] == "reloading")
}

// follow starts (or restarts) the unit, prints the agent's STATUS= lines while systemd
// waits for its READY=1, then waits until every service is ready.
func follow(ctx context.Context, out io.Writer, verb, socket string) error {
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- systemctl(ctx, verb, systemd.UnitName) }() // returns after READY=1
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := ""
	show := func() map[string]string {
		props, err := unitProperties(ctx)
		if err != nil {
			return nil
		}
		if line := props["StatusText"]; line != "" && line != last {
			fmt.Fprintf(out, "  [%5.1fs] %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		return props
	}
	started := false
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("install: the agent is not ready after %s; it keeps going: follow it with `livinity-agent status` or `journalctl -u %s -f`",
				time.Since(start).Round(time.Second), systemd.UnitName)
		case err := <-done:
			show()
			if err != nil {
				return fmt.Errorf("install: the agent did not start: %w; see `journalctl -u %s -e`", err, systemd.UnitName)
			}
			started = true
			done = nil
		case <-tick.C:
		}
		props := show()
		if !started {
			continue
		}
		if props != nil && props["ActiveState"] != "active" {
			return fmt.Errorf("install: the agent stopped after it started (state %s/%s, result %s); see `journalctl -u %s -e`",
				props["ActiveState"], props["SubState"], props["Result"], systemd.UnitName)
		}
		st, err := statusapi.Fetch(ctx, socket)
		if err == nil && st.Ready {
			fmt.Fprintf(out, "livinity-agent is running: %d/%d services ready after %s\n",
				len(st.Services), len(st.Services), time.Since(start).Round(100*time.Millisecond))
			return nil
		}
		if err == nil {
			if ferr := onboardingFailed(st, start); ferr != nil {
				return ferr
			}
		}
	}
}

// onboardingFailed is install's error when the agent's status says that an onboarding it
// finished after start failed: the agent rolled it back and retries it (in a minute, then
// less often), and install has nothing left to wait for.
func onboardingFailed(st statusapi.Status, start time.Time) error {
	if st.Agent == nil {
		return nil
	}
	s := st.Agent.Setup
	// a run that ended before this start is an earlier agent's
	if !s.Ran || s.OK || s.Step != "" || s.At == nil || s.At.Before(start.Add(-time.Second)) {
		return nil
	}
	return fmt.Errorf("install: onboarding failed after %s: %s\n"+
		"the agent is installed and running: it rolled the run back and retries it in a minute, then less often; "+
		"follow the retries with `journalctl -u %s -f` (or `livinity-agent status --watch`), "+
		"read a step's output with `livinity-agent logs --step STEP`, fix the cause and run install again",
		time.Since(start).Round(100*time.Millisecond), s.Error, systemd.UnitName)
}

// unitProperties reads a few properties of the agent's unit.
func unitProperties(ctx context.Context) (map[string]string, error) {
	return showUnit(ctx, systemd.UnitName, "ActiveState", "SubState", "Result", "StatusText", "MainPID", "LoadState")
}

func systemctl(ctx context.Context, args ...string) error {
	_, err := systemctlOutput(ctx, args...)
	return err
}

func systemctlOutput(ctx context.Context, args ...string) ([]byte, error) {
	c := exec.CommandContext(ctx, "systemctl", args...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return out, fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func runUninstall(ctx context.Context, cmd *cli.Command) error {
	if err := requireSystemdRoot("uninstall"); err != nil {
		return err
	}
	out := cmd.Root().Writer
	keep := cmd.Bool(flagKeepServices)
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
			fmt.Fprintln(out, "stopped and disabled", u)
		}
		unitFile := filepath.Join(installUnitDir, u)
		remove = append(remove, unitFile, filepath.Join(unitFile+".d", installDropIn))
		dirs = append(dirs, unitFile+".d")
	}
	if !keep {
		remove = append(remove, installBinary)
	}
	purge := cmd.Bool(flagPurge)
	if purge {
		remove = append(remove, dirs...)
		remove = append(remove, installConfig, installEnvFile, cmd.String(flagStateDir))
	}
	for _, p := range remove {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("uninstall: remove %s: %w", p, err)
		}
		fmt.Fprintln(out, "removed", p)
	}
	for _, d := range append(dirs, filepath.Dir(installConfig)) {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) && !isNotEmpty(err) {
			return fmt.Errorf("uninstall: remove %s: %w", d, err)
		}
	}
	if err := systemctl(ctx, "daemon-reload"); err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(out, "the services keep running under %s, which stays installed and enabled, with %s (the python services' launcher)\n",
			systemd.PM2UnitName, installBinary)
	} else {
		fmt.Fprintf(out, "the services are stopped; the LivOS trees and the PM2 home (with its saved process list) are kept: "+
			"`PM2_HOME=%s pm2 resurrect` starts them by hand, `livinity-agent install` installs everything again\n", unitPM2Home)
	}
	if !purge {
		fmt.Fprintf(out, "kept %s and %s: `livinity-agent uninstall --purge` removes them\n", installConfig, cmd.String(flagStateDir))
	}
	return nil
}

func isNotEmpty(err error) bool { return errors.Is(err, syscall.ENOTEMPTY) }
