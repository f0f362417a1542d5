package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify messages to systemd. Under systemd (NOTIFY_SOCKET set) each
// method sends one datagram; otherwise every method does nothing and returns nil. Safe for
// concurrent use.
type Notifier struct {
	log *slog.Logger
}

// NewNotifier returns a notifier that logs to logger at debug level what it sends.
func NewNotifier(logger *slog.Logger) *Notifier {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Notifier{log: logger}
}

// send sends one message; it is a no-op when NOTIFY_SOCKET is unset.
func (n *Notifier) send(state string) error {
	sent, err := daemon.SdNotify(false, state)
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", strings.SplitN(state, "=", 2)[0], err)
	}
	if sent {
		n.log.Debug("sd_notify", "state", state)
	}
	return nil
}

// Ready tells systemd the agent is up (READY=1): `systemctl start` returns and units
// ordered after the agent start. Send it once supervision runs.
func (n *Notifier) Ready() error { return n.send(daemon.SdNotifyReady) }

// Stopping tells systemd the agent is shutting down (STOPPING=1).
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Status sets the one-line status `systemctl status` shows (STATUS=). Line breaks in line
// are replaced by spaces: the protocol is line-based.
func (n *Notifier) Status(line string) error {
	line = strings.Join(strings.Fields(line), " ")
	return n.send("STATUS=" + line)
}

// ExtendTimeout asks systemd for d more time in the current state (EXTEND_TIMEOUT_USEC=):
// while starting, the start times out only if no further extension arrives within d and
// the unit's TimeoutStartSec has passed. The pipeline before READY=1 sends one per step
// event so that a long first onboarding never times out while it makes progress.
func (n *Notifier) ExtendTimeout(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("extend timeout: duration %s must be positive", d)
	}
	return n.send(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

// RunWatchdog pings systemd's watchdog (WATCHDOG=1) every half of WatchdogSec for as long
// as heartbeat() is more recent than WatchdogSec. heartbeat returns when the caller last
// proved it works (the supervision loop sets it on every pass; the pipeline before it may
// return time.Now()). A stuck caller stops the pings and systemd kills and restarts the
// agent. RunWatchdog returns nil at once when the watchdog is off (no WATCHDOG_USEC for
// this process), and nil when ctx ends.
func (n *Notifier) RunWatchdog(ctx context.Context, heartbeat func() time.Time) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return fmt.Errorf("read the watchdog interval: %w", err)
	}
	if interval <= 0 {
		return nil
	}
	n.log.Debug("watchdog enabled", "interval", interval)
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	stale := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		age := time.Since(heartbeat())
		if age >= interval {
			if !stale {
				n.log.Warn("watchdog: supervision loop stalled, not pinging systemd", "last_heartbeat_ago", age.Round(time.Millisecond), "watchdog", interval)
				stale = true
			}
			continue
		}
		if stale {
			n.log.Info("watchdog: supervision loop alive again", "last_heartbeat_ago", age.Round(time.Millisecond))
			stale = false
		}
		if err := n.send(daemon.SdNotifyWatchdog); err != nil {
			n.log.Warn("watchdog ping failed", "err", err)
		}
	}
}
