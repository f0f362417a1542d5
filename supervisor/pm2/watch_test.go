package pm2

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

// nextUpdate returns the next update that satisfies ok, skipping others.
func nextUpdate(t *testing.T, updates <-chan Update, what string, ok func(Update) bool) Update {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case u := <-updates:
			if ok(u) {
				return u
			}
		case <-timeout:
			t.Fatalf("no %s update within 30s", what)
		}
	}
}

// TestWatcherReconnects follows a daemon through a kill -9 and a restart: a snapshot at
// connect, events, a disconnected update, then a new snapshot from the new daemon.
func TestWatcherReconnects(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, 7)
	p := d.startApp(t, "idle", "idle.js")

	var logs testenv.Buffer
	w := &Watcher{Home: d.home, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(t.Context())
	updates := make(chan Update)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, updates) }()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	}()

	snap := nextUpdate(t, updates, "snapshot", func(u Update) bool { return u.Snapshot != nil })
	if !snap.Connected || len(snap.Snapshot) != 1 || snap.Snapshot[0].Name != "idle" {
		t.Fatalf("first snapshot %+v, want connected with the idle app", snap)
	}

	// Events are forwarded: a restart through the client shows up.
	c := dial(t, d.home)
	if err := c.Notify(t.Context(), p.ID, "restart"); err != nil {
		t.Fatal(err)
	}
	ev := nextUpdate(t, updates, "event", func(u Update) bool { return u.Event != nil })
	if ev.Event.Kind != EventRestart || ev.Event.Name != "idle" {
		t.Fatalf("event %+v, want the restart notification", ev.Event)
	}

	killed := time.Now()
	if err := syscall.Kill(d.pid(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	down := nextUpdate(t, updates, "disconnected", func(u Update) bool { return !u.Connected })
	t.Logf("daemon kill -9 -> disconnected update in %s", time.Since(killed))
	if down.Err == nil {
		t.Fatal("disconnected update without an error")
	}

	// The listening socket can outlive the bus connection by a moment.
	waitFor(t, 10*time.Second, func() bool {
		c, err := Dial(t.Context(), d.home)
		if err == nil {
			c.Close()
		}
		return errors.Is(err, ErrDaemonNotRunning)
	}, func() string { return "the killed daemon's socket to refuse connections" })

	started := time.Now()
	d.pm2(t, "ping")
	again := nextUpdate(t, updates, "snapshot after reconnect", func(u Update) bool { return u.Snapshot != nil })
	t.Logf("new daemon -> snapshot in %s (pm2 ping included)", time.Since(started))
	if !again.Connected || len(again.Snapshot) != 0 {
		t.Fatalf("snapshot after reconnect %+v, want connected with no apps (a new daemon starts empty)", again)
	}
	if !strings.Contains(logs.String(), "lost connection to pm2 daemon") {
		t.Fatalf("log has no disconnect line:\n%s", logs.String())
	}
}

// TestWatcherNoDaemon checks that a watcher started with no daemon reports it once,
// keeps retrying without starting one, and connects when one appears.
func TestWatcherNoDaemon(t *testing.T) {
	t.Parallel()
	bin := testenv.PM2(t, 6)
	home := testenv.PM2Home(t, bin)
	tries := &countingBackOff{}
	w := &Watcher{Home: home, BackOff: tries}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	updates := make(chan Update, 16)
	go w.Run(ctx, updates)

	u := nextUpdate(t, updates, "disconnected", func(Update) bool { return true })
	if u.Connected || u.Err == nil {
		t.Fatalf("first update %+v, want disconnected with an error", u)
	}
	waitFor(t, 10*time.Second, func() bool { return tries.count() >= 3 }, func() string { return "three retries" })
	if len(updates) != 0 {
		t.Fatalf("retries sent %d more updates, want the disconnect reported once", len(updates))
	}
	if _, err := Dial(t.Context(), home); err == nil {
		t.Fatal("a daemon runs: the watcher started one")
	}

	d := &daemon{major: 6, home: home, cli: &CLI{Bin: bin, Home: home}}
	d.pm2(t, "ping")
	snap := nextUpdate(t, updates, "snapshot", func(u Update) bool { return u.Snapshot != nil })
	if !snap.Connected {
		t.Fatalf("snapshot %+v not marked connected", snap)
	}
}

// countingBackOff is a fast constant backoff that counts its uses.
type countingBackOff struct {
	mu sync.Mutex
	n  int
}

func (b *countingBackOff) NextBackOff() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	return 20 * time.Millisecond
}

func (b *countingBackOff) Reset() {}

func (b *countingBackOff) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}
