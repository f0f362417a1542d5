package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/testenv"
)

// runCLI runs the app in-process with the tools on PATH.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("PATH", testenv.PATH(t))
	var out, errb bytes.Buffer
	err = newApp(&out, &errb).Run(context.Background(), append([]string{"livinity-agent"}, args...))
	return out.String(), errb.String(), err
}

// demoConfig extracts the demo tree and writes a valid config for it, on free ports.
func demoConfig(t *testing.T, tweak func(*config.Config)) (root, cfgFile string) {
	t.Helper()
	root = testenv.ShortTempDir(t)
	if err := demo.Extract(root); err != nil {
		t.Fatal(err)
	}
	cfg := demo.Config(root, 20)
	// free ports, never the real box's 8080/3200/3100/3300 (a box may run here)
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
	if tweak != nil {
		tweak(cfg)
	}
	b, err := cfg.MarshalIndent()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile = filepath.Join(root, "setup.json")
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return root, cfgFile
}

func TestOnboardWithoutTerminalOrConfigSaysPassConfig(t *testing.T) {
	_, _, err := runCLI(t, "--state-dir", t.TempDir(), "onboard")
	if err == nil || !strings.Contains(err.Error(), "pass --config FILE") {
		t.Fatalf("err = %v; want the hint to pass --config", err)
	}
}

func TestCheck(t *testing.T) {
	_, good := demoConfig(t, nil)
	out, _, err := runCLI(t, "--config", good, "check")
	if err != nil {
		t.Fatalf("check of a valid config on this machine: %v\n%s", err, out)
	}
	for _, want := range []string{"valid", "Node.js", "PM2", "Python venv", "Redis", "Disk space", "Memory"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	_, tooNew := demoConfig(t, func(c *config.Config) { c.Agent.Preflight.MinNodeMajor = 99 })
	out, _, err = runCLI(t, "--config", tooNew, "check")
	if err == nil || !strings.Contains(err.Error(), "Node.js") {
		t.Fatalf("check with minNodeMajor 99: err = %v; want a critical Node.js failure\n%s", err, out)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"domain":"localhost","ports":{"api":70000},"telegram":{"botToken":"12345:short-secret-value"}}`), 0o600)
	_, _, err = runCLI(t, "--config", bad, "check")
	if err == nil || !strings.Contains(err.Error(), "ports.api: 70000") || !strings.Contains(err.Error(), "telegram.botToken") {
		t.Fatalf("err = %v; want the bad fields named", err)
	}
	if strings.Contains(err.Error(), "short-secret-value") {
		t.Fatalf("the error shows the secret: %v", err)
	}
}

// TestDryRunChangesNothing prints the plan and leaves the tree and PM2 alone.
func TestDryRunChangesNothing(t *testing.T) {
	root, cfgFile := demoConfig(t, nil)
	home := filepath.Join(testenv.ShortTempDir(t), "pm2")
	before := listTree(t, root)
	out, _, err := runCLI(t, "--config", cfgFile, "--state-dir", filepath.Join(testenv.ShortTempDir(t), "state"),
		"--pm2-home", home, "onboard", "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if n := strings.Count(out, "\trun\t") + strings.Count(out, " run "); n < 16 {
		t.Errorf("the plan should list 16 steps that would run:\n%s", out)
	}
	if after := listTree(t, root); after != before {
		t.Errorf("the dry run changed the tree")
	}
	if _, err := os.Stat(home); err == nil {
		t.Errorf("the dry run created a PM2 home")
	}
}

func TestEcosystemPrintsTheFiveApps(t *testing.T) {
	_, cfgFile := demoConfig(t, nil)
	out, _, err := runCLI(t, "--config", cfgFile, "ecosystem")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(strings.TrimSpace(out), "//") && !strings.Contains(out, "module.exports") {
		t.Fatalf("not an ecosystem file:\n%s", out)
	}
	for _, n := range config.Default().ServiceNames() {
		if !strings.Contains(out, `"`+n+`"`) {
			t.Errorf("ecosystem lacks %s", n)
		}
	}
}

func listTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, _ := d.Info()
		data := []byte{}
		if info.Mode().IsRegular() {
			data, _ = os.ReadFile(p)
		}
		b.WriteString(p + " " + info.Mode().String() + " " + string(data) + "\n")
		return nil
	})
	return b.String()
}
