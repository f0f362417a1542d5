package agent

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/livinity/livinity-agent/config"
)

const dropInHeader = "# Written by `livinity-agent install` and rewritten by each install: put your own\n" +
	"# changes in another drop-in (systemctl edit %s).\n[Service]\n"

// toolDirs are the directories of the tools the installer's PATH found that systemd's
// default PATH would miss (node from nvm, a pm2 elsewhere), pm2 being the pm2 program.
func toolDirs(pm2 string) []string {
	defaults := filepath.SplitList(systemdDefaultPath)
	var extra []string
	for _, tool := range []string{"node", "npm", "pnpm", pm2, "python3"} {
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

// unitPath is what the units' PATH gets before systemd's default: the tools' directories
// (toolDirs) that only root can write to. The units run as root, so a directory someone
// else can write to (a user's node install, /tmp) would let them run anything as root.
// dropped says which were left out and why.
func unitPath(pm2 string) (extra, dropped []string) {
	for _, d := range toolDirs(pm2) {
		if err := rootOnly(d); err != nil {
			dropped = append(dropped, err.Error())
			continue
		}
		extra = append(extra, d)
	}
	return extra, dropped
}

// rootOnly fails unless dir and every directory above it — as named and after symlinks
// are resolved — is owned by root and writable by neither its group nor others. The error
// names the first that is not, and why.
func rootOnly(dir string) error {
	paths := []string{filepath.Clean(dir)}
	if real, err := filepath.EvalSymlinks(dir); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	} else if real != paths[0] {
		paths = append(paths, real)
	}
	for _, p := range paths {
		for d := p; ; d = filepath.Dir(d) {
			fi, err := os.Stat(d)
			if err != nil {
				return fmt.Errorf("%s: %w", dir, err)
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			var why string
			switch {
			case !ok:
				why = "its owner is unknown"
			case st.Uid != 0:
				why = fmt.Sprintf("owned by uid %d, not root", st.Uid)
			case fi.Mode().Perm()&0o002 != 0:
				why = "writable by others (mode " + modeText(fi.Mode()) + ")"
			case fi.Mode().Perm()&0o020 != 0:
				why = "writable by its group (mode " + modeText(fi.Mode()) + ")"
			}
			if why != "" {
				if d == paths[0] {
					return fmt.Errorf("%s: %s", dir, why)
				}
				return fmt.Errorf("%s: %s is %s", dir, d, why)
			}
			if d == "/" || d == "." {
				break
			}
		}
	}
	return nil
}

// rootOnlyProgram fails unless only root can change the program at path: the file (after
// symlinks) owned by root and writable by neither group nor others, in directories
// rootOnly accepts (as named and after symlinks).
func rootOnlyProgram(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, dir := range []string{filepath.Dir(path), filepath.Dir(real)} {
		if err := rootOnly(dir); err != nil {
			return err
		}
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch st, ok := fi.Sys().(*syscall.Stat_t); {
	case !ok:
		return fmt.Errorf("%s: its owner is unknown", real)
	case st.Uid != 0:
		return fmt.Errorf("%s: owned by uid %d, not root", real, st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%s: writable by its group or others (mode %s)", real, modeText(fi.Mode()))
	}
	return nil
}

// modeText is m's permission bits in octal, the sticky bit included: 0755, 1777.
func modeText(m os.FileMode) string {
	bits := uint32(m.Perm())
	if m&os.ModeSticky != 0 {
		bits |= 0o1000
	}
	return fmt.Sprintf("%04o", bits)
}

// writePath adds the units' PATH to a drop-in: extra, then systemd's default.
func writePath(b *bytes.Buffer, extra []string) {
	if len(extra) > 0 {
		fmt.Fprintf(b, "Environment=%s\n", systemdQuote("PATH="+strings.Join(append(slices.Clone(extra), filepath.SplitList(systemdDefaultPath)...), ":")))
	}
}

// dropIn renders install's drop-in for the agent's unit: the PATH extra dirs give, the pm2
// program when it is a path, the config's LivOS trees when they are not the unit's
// defaults (ProtectSystem=strict leaves them read-only otherwise), and the PM2 home when
// it is not UnitPM2Home.
func dropIn(extra []string, pm2 string, cfg *config.Config, home string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, dropInHeader, "livinity-agent")
	writePath(&b, extra)
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
	if home != UnitPM2Home {
		fmt.Fprintf(&b, "Environment=%s\n", systemdQuote("PM2_HOME="+home))
		fmt.Fprintf(&b, "ExecStartPre=+/bin/mkdir -p -m 0700 %s\n", execQuote(home))
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", systemdQuote("-"+home))
	}
	return b.Bytes()
}

// pm2DropIn renders install's drop-in for livinity-pm2.service: the PATH extra dirs give
// (pm2 and the services' node), the pm2 program the installer found, and the PM2 home
// when it is not UnitPM2Home.
func pm2DropIn(extra []string, pm2, home string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, dropInHeader, "livinity-pm2")
	writePath(&b, extra)
	if p, err := exec.LookPath(pm2); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			fmt.Fprintf(&b, "ExecStart=\nExecStart=%s resurrect\nExecStop=\nExecStop=-%s kill\n", execQuote(abs), execQuote(abs))
		}
	}
	if home != UnitPM2Home {
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
