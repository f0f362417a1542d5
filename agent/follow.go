package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/systemd"
)

// follow starts (verb "start") or restarts the agent's unit, says the agent's STATUS=
// lines while systemd waits for its READY=1, then waits until every service is ready (or
// the agent's first onboarding failed) on the status socket.
func follow(ctx context.Context, say func(string), verb, socket string) error {
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
			say(fmt.Sprintf("  [%5.1fs] %s", time.Since(start).Seconds(), line))
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
			say(fmt.Sprintf("livinity-agent is running: %d/%d services ready after %s",
				len(st.Services), len(st.Services), time.Since(start).Round(100*time.Millisecond)))
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
// finished after start failed — its preflight or its pipeline: the agent retries it (in a
// minute, then less often), and install has nothing left to wait for.
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
