package systemd

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/livinity/livinity-agent/internal/tick"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// statusRefresh is how often RunStatus recomputes the line without a change notification
// (backoff countdowns move; the store notifies only on phase and readiness changes).
const statusRefresh = time.Second

// RunStatus keeps systemd's STATUS= line in step with store until ctx ends: it sends
// StatusLine on start, after every change notification, and when the line changes on its
// own (a backoff counting down). An unchanged line is not sent again. Under systemd a
// failed send is returned; without systemd RunStatus only waits for ctx.
func (n *Notifier) RunStatus(ctx context.Context, store *state.Store) error {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil // not under systemd: nobody to tell
	}
	changes, cancel := store.Subscribe()
	defer cancel()
	t := tick.New(statusRefresh)
	defer t.Stop()
	last := ""
	for {
		if line := StatusLine(store.Snapshot()); line != last {
			if err := n.Status(line); err != nil {
				return err
			}
			last = line
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-t.C:
		}
	}
}

// StatusLine summarises s in one line for `systemctl status`:
//
//	onboarding: step 7/16 build nexus core      while the pipeline runs
//	5/5 services ready
//	4/5 ready: nexus-memory backoff 20s         the worst service that is not ready
//	3/5 ready: nexus-memory backoff 20s (+1 more)
//	onboarding failed (see the journal)         the last pipeline failed, nothing ready
//
// It never includes error texts (they may quote configuration).
func StatusLine(s state.Snapshot) string { return statusLineAt(s, time.Now()) }

func statusLineAt(s state.Snapshot, now time.Time) string {
	if step := strings.TrimPrefix(s.Agent.Setup.Step, "step "); step != "" {
		return "onboarding: step " + step
	}
	total := len(s.Services)
	if total == 0 {
		return "starting"
	}
	ready := 0
	var worst *state.Service
	for i := range s.Services {
		sv := &s.Services[i]
		if sv.Ready {
			ready++
			continue
		}
		if worst == nil || severity(sv.Phase) > severity(worst.Phase) {
			worst = sv
		}
	}
	if worst == nil {
		return fmt.Sprintf("%d/%d services ready", ready, total)
	}
	if ready == 0 && s.Agent.Setup.Ran && !s.Agent.Setup.OK {
		return "onboarding failed (see the journal)"
	}
	line := fmt.Sprintf("%d/%d ready: %s %s", ready, total, worst.Name, worst.Phase)
	if worst.Phase == state.Backoff && !worst.NextAttempt.IsZero() {
		if left := worst.NextAttempt.Sub(now); left > 0 {
			line += " " + (time.Duration(math.Ceil(left.Seconds())) * time.Second).String()
		} else {
			line += " (retry due)"
		}
	}
	if more := total - ready - 1; more > 0 {
		line += fmt.Sprintf(" (+%d more)", more)
	}
	return line
}

// severity ranks the phases of services that are not ready: the highest is named in the
// status line.
func severity(p state.Phase) int {
	switch p {
	case state.Backoff:
		return 6
	case state.Stopped:
		return 5
	case state.Unhealthy:
		return 4
	case state.Restarting:
		return 3
	case state.Starting:
		return 2
	default: // ready phase but not (yet) ready
		return 1
	}
}
