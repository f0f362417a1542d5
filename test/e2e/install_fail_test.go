package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSystemdInstallFailsFast installs the agent on a real systemd (sdsandbox) with a tree
// whose nexus core does not compile: install must end non-zero at the first failed
// onboarding, with the failing step's error and the command to follow the agent's retries,
// instead of following the retrying agent until its --timeout. The agent stays installed and
// running (status and metrics serve the failure).
func TestSystemdInstallFailsFast(t *testing.T) {
	sb, toolsPath := newSystemdBox(t)
	// a type error: tsc exits 2, so build-core fails after both installs ran
	sb.run("sh", "-c", `echo 'export const broken: number = "not a number";' >> /opt/nexus/packages/core/src/index.ts`)

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	out, errOut, err := sb.s.Exec(ctx, "env", toolsPath, "/host/livinity-agent", "install", "--config", "/host/setup.json", "--timeout", "3m")
	took := time.Since(start)
	t.Logf("install (%s):\nstdout:\n%s\nstderr:\n%s", took.Round(time.Second), out, errOut)
	if err == nil {
		t.Fatal("install succeeded on a tree whose build fails")
	}
	if took > 2*time.Minute {
		t.Errorf("install took %s: it should end at the first failed onboarding, not follow the retries", took)
	}
	msg := string(errOut)
	for _, want := range []string{"install: onboarding failed", "build-core", "journalctl -u livinity-agent.service -f", "livinity-agent logs --step"} {
		if !strings.Contains(msg, want) {
			t.Errorf("install's error lacks %q:\n%s", want, msg)
		}
	}
	if got := sb.prop("ActiveState"); got != "active" {
		t.Errorf("the agent's unit is %q after the failed onboarding; want active (it retries)", got)
	}
	// the step's output is where the error says
	logs := sb.run("/usr/local/bin/livinity-agent", "logs", "--step", "build-core")
	if !strings.Contains(logs, "not assignable") && !strings.Contains(logs, "error TS") {
		t.Errorf("logs --step build-core does not show tsc's error:\n%s", logs)
	}
}
