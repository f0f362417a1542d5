package agent

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
)

// TestDropInsForAnotherPM2Home renders install's drop-ins for a PM2 home and a pm2 program
// whose paths hold a space, "$" and "%": both units get the same PM2_HOME, the PM2 unit
// its pid file there and the pm2 program by absolute path, the agent's unit the home as a
// writable path it creates; every word quoted and escaped for a unit file.
func TestDropInsForAnotherPM2Home(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a $b%c")
	pm2 := filepath.Join(dir, "bin", "pm2")
	if err := os.MkdirAll(filepath.Dir(pm2), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pm2, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "pm2 home")
	cfg := config.Default()
	cfg.Paths = config.Paths{LivosBaseDir: "/opt/livos", NexusBaseDir: "/srv/nexus"}
	agent, daemon := string(dropIn(nil, pm2, cfg, home)), string(pm2DropIn(nil, pm2, home))
	esc := strings.NewReplacer("%", "%%").Replace
	for _, want := range []string{
		`Environment="PM2_HOME=` + esc(home) + `"`,
		`ExecStartPre=+/bin/mkdir -p -m 0700 "` + strings.ReplaceAll(esc(home), "$", "$$") + `"`,
		`ReadWritePaths="-` + esc(home) + `"`,
		`ReadWritePaths="-/srv/nexus"`,
		`Environment="LIVINITY_PM2=` + esc(pm2) + `"`,
	} {
		if !strings.Contains(agent, "\n"+want+"\n") {
			t.Errorf("the agent's drop-in lacks %s:\n%s", want, agent)
		}
	}
	pm2Exec := `"` + strings.ReplaceAll(esc(pm2), "$", "$$") + `"`
	for _, want := range []string{
		`Environment="PM2_HOME=` + esc(home) + `"`,
		"PIDFile=" + esc(filepath.Join(home, "pm2.pid")),
		"ExecStart=\nExecStart=" + pm2Exec + " resurrect",
		"ExecStop=\nExecStop=-" + pm2Exec + " kill",
	} {
		if !strings.Contains(daemon, "\n"+want+"\n") {
			t.Errorf("the PM2 unit's drop-in lacks %s:\n%s", want, daemon)
		}
	}

	// the default home: nothing about it in either drop-in
	home = UnitPM2Home
	agent, daemon = string(dropIn(nil, "pm2", config.Default(), home)), string(pm2DropIn(nil, "pm2", home))
	if strings.Contains(agent+daemon, "PM2_HOME") || strings.Contains(daemon, "PIDFile") {
		t.Errorf("drop-ins for the unit's own PM2 home mention it:\n%s\n%s", agent, daemon)
	}
}

// TestUnitPathKeepsOnlyRootOnlyDirectories: the units run as root, so the tools'
// directories install puts first in their PATH are only those root owns and no one else
// can write to, up to /: a user's node install, or anything under /tmp, would let that
// user run code as root. What is left out is named, with why.
func TestUnitPathKeepsOnlyRootOnlyDirectories(t *testing.T) {
	base := t.TempDir()
	tool := func(dir string, mode os.FileMode, name string) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	open := tool(filepath.Join(base, "open"), 0o777, "node")           // writable by everyone
	group := tool(filepath.Join(base, "group"), 0o775, "npm")          // writable by its group
	under := tool(filepath.Join(base, "parent", "bin"), 0o755, "pnpm") // fine itself, but its parent is not
	os.Chmod(filepath.Join(base, "parent"), 0o777)
	dirs := []string{open, group, under}
	if os.Geteuid() == 0 {
		user := tool(filepath.Join(base, "user"), 0o755, "python3") // a user's own directory
		if err := os.Chown(user, 1000, 1000); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, user)
	}
	t.Setenv("PATH", strings.Join(dirs, ":")+":/usr/bin:/bin")
	// a root-owned directory outside systemd's default PATH is kept
	pm2 := ""
	if gobin := filepath.Join(runtime.GOROOT(), "bin"); rootOnly(gobin) == nil {
		pm2 = filepath.Join(gobin, "go")
	}

	extra, dropped := unitPath(pm2)
	for _, d := range dirs {
		if slices.Contains(extra, d) {
			t.Errorf("%s is in the units' PATH %v", d, extra)
		}
	}
	if pm2 != "" && !slices.Equal(extra, []string{filepath.Dir(pm2)}) {
		t.Errorf("the units' PATH adds %v, want only %s", extra, filepath.Dir(pm2))
	}
	want := []string{
		open + ": writable by others (mode 0777)",
		group + ": writable by its group (mode 0775)",
		under + ": " + filepath.Join(base, "parent") + " is writable by others (mode 0777)",
	}
	if len(dirs) == 4 {
		want = append(want, dirs[3]+": owned by uid 1000, not root")
	}
	if !slices.Equal(dropped, want) {
		t.Errorf("dropped:\n%s\nwant:\n%s", strings.Join(dropped, "\n"), strings.Join(want, "\n"))
	}
	if b := string(dropIn(extra, pm2, config.Default(), UnitPM2Home)); strings.Contains(b, base) {
		t.Errorf("the agent's drop-in names a directory under %s:\n%s", base, b)
	}
	if err := rootOnly("/usr/bin"); err != nil {
		t.Errorf("rootOnly(/usr/bin) = %v", err)
	}
}

// TestPM2ProgramMustBeRootOnly: both units run the pm2 program as root, so install takes
// only one that root alone can change (the file, after symlinks, and every directory above
// it); a pm2 in a directory others can write to, or a file they can, is refused.
func TestPM2ProgramMustBeRootOnly(t *testing.T) {
	// not under /tmp (mode 1777: nothing below it is root-only): under the clone's .tools
	base, err := os.MkdirTemp(filepath.Join(testenv.Root(t), ".tools"), "rootonly-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	prog := func(dir string, dirMode, fileMode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "pm2")
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), fileMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, fileMode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, dirMode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := rootOnly(base); err != nil {
		t.Fatalf("the test needs a root-only directory (run it as root, in a clone only root can write to): %v", err)
	}
	good := prog(filepath.Join(base, "good"), 0o755, 0o755)
	if err := rootOnlyProgram(good); err != nil {
		t.Errorf("a root-only pm2: %v", err)
	}
	link := filepath.Join(base, "good", "pm2-link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if err := rootOnlyProgram(link); err != nil {
		t.Errorf("a symlink to a root-only pm2: %v", err)
	}
	for _, c := range []struct{ path, want string }{
		{prog(filepath.Join(base, "open"), 0o777, 0o755), "writable by others (mode 0777)"},
		{prog(filepath.Join(base, "file"), 0o755, 0o777), "writable by its group or others (mode 0777)"},
	} {
		err := rootOnlyProgram(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to say %q", c.path, err, c.want)
		}
	}
	// a symlink in a root-only directory to a pm2 someone else can change
	evil := prog(filepath.Join(base, "evil"), 0o777, 0o755)
	link = filepath.Join(base, "good", "pm2-evil")
	if err := os.Symlink(evil, link); err != nil {
		t.Fatal(err)
	}
	if err := rootOnlyProgram(link); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("a symlink to a pm2 in an open directory: err = %v, want it refused", err)
	}
}
