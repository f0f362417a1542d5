package pm2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CLI runs the pm2 command for what the sockets do not offer (starting an ecosystem file,
// save, resurrect, kill). Most pm2 commands start a daemon under Home when none runs.
//
// pm2 merges the environment it runs in into the environment of the apps it starts (and of
// a daemon it spawns), so commands run with a minimal environment: PATH, HOME and LANG
// from this process, PM2_HOME=Home, then Env.
type CLI struct {
	Bin  string   // path of the pm2 executable
	Home string   // PM2_HOME
	Env  []string // extra "KEY=value" entries; their values are redacted from errors
}

// maxOutput bounds the command output quoted in an error.
const maxOutput = 2048

var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// redact replaces the values of Env in s.
func (c *CLI) redact(s string) string {
	for _, kv := range c.Env {
		if _, v, ok := strings.Cut(kv, "="); ok && v != "" {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// environ returns the minimal environment for a pm2 command.
func (c *CLI) environ() []string {
	env := []string{"PM2_HOME=" + c.Home}
	for _, k := range []string{"PATH", "HOME", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, c.Env...)
}

// run executes pm2 with args in the current directory; see runIn.
func (c *CLI) run(ctx context.Context, args ...string) ([]byte, error) {
	return c.runIn(ctx, "", args...)
}

// runIn executes pm2 with args in dir and returns its stdout. A failure reports the
// command and the tail of its output with ANSI colours removed and Env values redacted.
func (c *CLI) runIn(ctx context.Context, dir string, args ...string) ([]byte, error) {
	if c.Bin == "" || c.Home == "" {
		return nil, fmt.Errorf("run pm2 %s: CLI.Bin and CLI.Home must be set (Bin=%q, Home=%q)", strings.Join(args, " "), c.Bin, c.Home)
	}
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Env = c.environ()
	cmd.Dir = dir
	// A daemon spawned by the command must not hold the output pipes open for long.
	cmd.WaitDelay = 5 * time.Second
	// The command ends with the agent (not a daemon it spawns: fork clears the setting): a
	// killed onboarding's `pm2 start` must not go on changing the apps while the next run
	// rolls that onboarding back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		out := c.clean(append(stdout.Bytes(), stderr.Bytes()...))
		return nil, fmt.Errorf("run pm2 %s: %w: %s", c.redact(strings.Join(args, " ")), err, out)
	}
	return stdout.Bytes(), nil
}

// clean prepares command output for an error message.
func (c *CLI) clean(out []byte) string {
	s := strings.TrimSpace(c.redact(ansiEscape.ReplaceAllString(string(out), "")))
	if len(s) > maxOutput {
		s = "..." + s[len(s)-maxOutput:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}

// List returns every app, from `pm2 jlist`. It starts a daemon if none runs.
func (c *CLI) List(ctx context.Context) ([]Process, error) {
	out, err := c.run(ctx, "jlist")
	if err != nil {
		return nil, err
	}
	// A daemon spawned by this command prints a banner first; the list is the last line.
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	last := bytes.TrimSpace(lines[len(lines)-1])
	if !bytes.HasPrefix(last, []byte("[")) {
		return nil, fmt.Errorf("run pm2 jlist: %w: output does not end in a JSON list", ErrProtocol)
	}
	procs, err := decodeProcesses(last)
	if err != nil {
		return nil, fmt.Errorf("run pm2 jlist: %w", err)
	}
	return procs, nil
}

// Restart runs `pm2 restart ID`. pm2 takes an app name or namespace spelled like ID first.
func (c *CLI) Restart(ctx context.Context, id int) error {
	_, err := c.run(ctx, "restart", strconv.Itoa(id))
	return err
}

// RestartName runs `pm2 restart NAME`, which restarts every app of that name (or, failing
// that, of that namespace) and keeps their environment.
func (c *CLI) RestartName(ctx context.Context, name string) error {
	if name == "" || name == "all" {
		return fmt.Errorf("restart app: name %q is not an app name: give the name of one app", name)
	}
	_, err := c.run(ctx, "restart", name)
	return err
}

// StartEcosystem runs `pm2 start FILE [--only a,b]`. The file must be a *.config.js,
// *.config.cjs, *.json or *.yml ecosystem file. Apps that already exist by name are
// restarted, the others started: it is not idempotent.
func (c *CLI) StartEcosystem(ctx context.Context, path string, only ...string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("start ecosystem %s: %w", path, err)
	}
	args := []string{"start", abs}
	if len(only) > 0 {
		for _, n := range only {
			if n == "" || strings.Contains(n, ",") {
				return fmt.Errorf("start ecosystem %s: app name %q in only: names must be non-empty and contain no comma", path, n)
			}
		}
		args = append(args, "--only", strings.Join(only, ","))
	}
	// Run beside the file so that relative paths in it resolve as they do for a person.
	_, err = c.runIn(ctx, filepath.Dir(abs), args...)
	return err
}

// Delete runs `pm2 delete NAME...`.
func (c *CLI) Delete(ctx context.Context, names ...string) error {
	if len(names) == 0 {
		return errors.New("delete apps: no names given")
	}
	_, err := c.run(ctx, append([]string{"delete"}, names...)...)
	return err
}

// Save runs `pm2 save --force`, writing the running list to $PM2_HOME/dump.pm2 (the
// previous one is kept as dump.pm2.bak). --force makes an empty list a valid state to save:
// without it pm2 silently keeps the old dump, and a later resurrect would bring back apps
// that were deleted on purpose.
func (c *CLI) Save(ctx context.Context) error {
	_, err := c.run(ctx, "save", "--force")
	return err
}

// Resurrect runs `pm2 resurrect`, starting the apps saved in dump.pm2 that do not run.
func (c *CLI) Resurrect(ctx context.Context) error {
	_, err := c.run(ctx, "resurrect")
	return err
}

// Kill runs `pm2 kill`: it stops every app and the daemon.
func (c *CLI) Kill(ctx context.Context) error {
	_, err := c.run(ctx, "kill")
	return err
}

// Version returns the version of the pm2 package Bin belongs to. `pm2 --version` would
// spawn a daemon, so it reads the package.json beside the resolved executable instead.
func (c *CLI) Version() (string, error) {
	bin, err := filepath.EvalSymlinks(c.Bin)
	if err != nil {
		return "", fmt.Errorf("find pm2 version: resolve CLI.Bin %q: %w", c.Bin, err)
	}
	// bin is <package>/bin/pm2.
	pkgFile := filepath.Join(filepath.Dir(filepath.Dir(bin)), "package.json")
	b, err := os.ReadFile(pkgFile)
	if err != nil {
		return "", fmt.Errorf("find pm2 version: %w", err)
	}
	var pkg struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return "", fmt.Errorf("find pm2 version: decode %s: %w", pkgFile, err)
	}
	if pkg.Name != "pm2" || pkg.Version == "" {
		return "", fmt.Errorf("find pm2 version: %s is not the pm2 package (name %q)", pkgFile, pkg.Name)
	}
	return pkg.Version, nil
}
