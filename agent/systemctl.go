package agent

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/livinity/livinity-agent/systemd"
)

// unitActive reports whether the agent's unit is running (or starting): install then
// upgrades.
func unitActive(ctx context.Context) bool {
	props, err := unitProperties(ctx)
	return err == nil && (props["ActiveState"] == "active" || props["ActiveState"] == "activating" || props["ActiveState"] == "reloading")
}

// unitProperties reads a few properties of the agent's unit.
func unitProperties(ctx context.Context) (map[string]string, error) {
	return showUnit(ctx, systemd.UnitName, "ActiveState", "SubState", "Result", "StatusText", "MainPID", "LoadState")
}

// systemctl runs systemctl with args; the error quotes what it wrote on stderr.
func systemctl(ctx context.Context, args ...string) error {
	_, err := systemctlOutput(ctx, args...)
	return err
}

// systemctlOutput runs systemctl with args and returns its standard output.
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

// showUnit reads properties of a unit.
func showUnit(ctx context.Context, unit string, props ...string) (map[string]string, error) {
	args := []string{"show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out, err := systemctlOutput(ctx, args...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\n"), "="); ok {
			m[k] = v
		}
	}
	return m, nil
}
