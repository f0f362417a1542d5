package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// onboardedBox is the demo tree onboarded by the real binary under a real PM2 of its own,
// on free ports, as an operator's box is after `onboard`: no agent runs. env gives the
// commands after it the box's state dir and config, and neither PM2_HOME nor a HOME with
// the box's PM2 home: they have to find it themselves.
type onboardedBox struct {
	cfgFile, stateDir, pm2Home string
	env                        []string
}

func newOnboardedBox(t *testing.T) *onboardedBox {
	t.Helper()
	_, cfgFile := demoConfig(t, nil)
	b := &onboardedBox{cfgFile: cfgFile, stateDir: filepath.Join(testenv.ShortTempDir(t), "state"),
		pm2Home: testenv.PM2Home(t, filepath.Join(testenv.ToolsBin(t), "pm2"))}
	stdout, stderr, code := runBinary(t, []string{"PM2_HOME=" + b.pm2Home},
		"--config", cfgFile, "--state-dir", b.stateDir, "onboard")
	if code != 0 {
		t.Fatalf("onboard the demo: exit %d\n%s\n%s", code, stdout, stderr)
	}
	b.env = []string{"PM2_HOME=", "HOME=" + t.TempDir(), "LIVINITY_STATE_DIR=" + b.stateDir,
		"LIVINITY_RUNTIME_DIR=" + t.TempDir()}
	return b
}

// TestOnARunningBox: the commands that look at a box find its PM2 home through the state
// dir (the last onboarding's), not $PM2_HOME or $HOME/.pm2.
func TestOnARunningBox(t *testing.T) {
	box := newOnboardedBox(t)

	t.Run("check passes: the ports are held by the box's own apps", func(t *testing.T) {
		stdout, stderr, code := runBinary(t, box.env, "--config", box.cfgFile, "check")
		if code != 0 {
			t.Fatalf("check on the running box: exit %d\n%s\n%s", code, stdout, stderr)
		}
		for _, want := range []string{"PM2 home " + box.pm2Home + " (from the last onboarding", "held by this box's PM2 apps", "OK    Paths"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("check output lacks %q:\n%s", want, stdout)
			}
		}
		stdout, stderr, code = runBinary(t, box.env, "--config", box.cfgFile, "check", "--json")
		var rep checkReport
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 {
			t.Fatalf("check --json: exit %d, %v\n%s\n%s", code, err, stdout, stderr)
		}
		if !rep.OK || !rep.Valid || rep.PM2Home != box.pm2Home || len(rep.Checks) < 9 {
			t.Errorf("check --json: %+v", rep)
		}
		for _, c := range rep.Checks {
			if (c.Name == "Ports" || c.Name == namePaths) && c.Status != "OK" {
				t.Errorf("check --json: %+v", c)
			}
		}
	})

	t.Run("status without the agent shows PM2's view of the box's PM2 home", func(t *testing.T) {
		stdout, stderr, code := runBinary(t, box.env, "status")
		if code != statusExitNotRunning {
			t.Fatalf("status: exit %d, want 3\n%s%s", code, stdout, stderr)
		}
		if !strings.Contains(stdout, "showing PM2's view (PM2_HOME "+box.pm2Home) || !strings.Contains(stdout, "5/5 apps online") {
			t.Errorf("status does not show the box's PM2 home and its five apps:\n%s", stdout)
		}
		stdout, _, code = runBinary(t, box.env, "status", "--json", "nexus-core")
		var doc statusapi.Status
		if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != statusExitNotRunning ||
			len(doc.Services) != 1 || doc.Services[0].Name != "nexus-core" || doc.Services[0].PM2Status != "online" {
			t.Errorf("status --json nexus-core from PM2: exit %d, %v, %+v", code, err, doc)
		}
		_, stderr, code = runBinary(t, box.env, "status", "nexus")
		if code != exitUsage || !strings.Contains(stderr, `"nexus" is not a service; the services are livos, nexus-core`) {
			t.Errorf("status nexus: exit %d: %s", code, stderr)
		}
	})

	t.Run("logs finds the box's logs through the state dir", func(t *testing.T) {
		stdout, stderr, code := runBinary(t, box.env, "logs", "nexus-core", "-n", "0")
		if code != 0 || !strings.Contains(stdout, "nexus-core") || !strings.Contains(stdout, "listening on") {
			t.Errorf("logs nexus-core: exit %d\n%s%s", code, stdout, stderr)
		}
		stdout, _, code = runBinary(t, box.env, "logs", "--step", "build-core")
		if code != 0 {
			t.Errorf("logs --step build-core: exit %d\n%s", code, stdout)
		}
	})

	t.Run("without the state dir the ports are someone else's", func(t *testing.T) {
		env := append(append([]string{}, box.env...), "LIVINITY_STATE_DIR="+t.TempDir())
		stdout, _, code := runBinary(t, env, "--config", box.cfgFile, "check")
		if code != 1 || !strings.Contains(stdout, "FAIL  Ports (critical)") {
			t.Errorf("check with another state dir: exit %d\n%s", code, stdout)
		}
	})
}

// TestCheckMissingPaths: a tree the config names that does not exist fails check, and
// --json says so.
func TestCheckMissingPaths(t *testing.T) {
	_, cfgFile := demoConfig(t, func(c *config.Config) { c.Paths.NexusBaseDir = "/nonexistent/nexus" })
	stdout, _, code := runBinary(t, []string{"LIVINITY_STATE_DIR=" + t.TempDir()}, "--config", cfgFile, "check")
	if code != 1 || !strings.Contains(stdout, "FAIL  Paths (critical)  paths.nexusBaseDir /nonexistent/nexus does not exist") {
		t.Errorf("check with a missing tree: exit %d\n%s", code, stdout)
	}
	stdout, _, code = runBinary(t, []string{"LIVINITY_STATE_DIR=" + t.TempDir()}, "--config", cfgFile, "check", "--json")
	var rep checkReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 1 || rep.OK || rep.Checks[0].Status != "FAIL" {
		t.Errorf("check --json with a missing tree: exit %d, %v, %+v", code, err, rep)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"domain":"localhost","ports":{"api":70000}}`), 0o600)
	stdout, _, code = runBinary(t, nil, "--config", bad, "check", "--json")
	rep = checkReport{}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 1 || rep.Valid || !strings.Contains(rep.Error, "ports.api: 70000") {
		t.Errorf("check --json of an invalid config: exit %d, %v, %+v", code, err, rep)
	}
}
