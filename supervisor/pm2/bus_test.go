package pm2

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// nextEvent returns the next event for app name, skipping others.
func nextEvent(t *testing.T, events <-chan Event, name string) (Event, time.Time) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("event channel closed")
			}
			if ev.Name == name {
				return ev, time.Now()
			}
		case <-timeout:
			t.Fatalf("no event for %s within 20s", name)
		}
	}
}

// TestBusKillApp kills an app with SIGKILL and expects exit then online on the bus, with
// the restart counted; it logs how long the exit event took to arrive.
func TestBusKillApp(t *testing.T) {
	for _, major := range versions {
		t.Run("pm2-"+strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, major)
			p := d.startApp(t, "idle", "idle.js")
			ctx, cancel := context.WithCancel(t.Context())
			events, err := Subscribe(ctx, d.home)
			if err != nil {
				t.Fatal(err)
			}

			// A notification through the client shows up as a manual event; waiting for
			// it also makes sure the daemon has registered the subscription.
			c := dial(t, d.home)
			if err := c.Notify(t.Context(), p.ID, "restart"); err != nil {
				t.Fatal(err)
			}
			note, _ := nextEvent(t, events, "idle")
			if note.Kind != EventRestart || !note.Manually || note.ID != p.ID {
				t.Fatalf("notification event %+v, want a manual restart of id %d", note, p.ID)
			}

			killed := time.Now()
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			exit, at := nextEvent(t, events, "idle")
			t.Logf("pm2 %d: kill -9 of the app -> exit event received in %s", major, at.Sub(killed))
			if exit.Kind != EventExit || exit.ID != p.ID || exit.Manually {
				t.Fatalf("first event %+v, want an automatic exit of id %d", exit, p.ID)
			}
			if exit.At.Before(killed.Add(-time.Second)) || exit.At.After(time.Now().Add(time.Second)) {
				t.Fatalf("exit event time %v is not around the kill at %v", exit.At, killed)
			}
			online, _ := nextEvent(t, events, "idle")
			if online.Kind != EventOnline || online.RestartTime != p.RestartTime+1 {
				t.Fatalf("second event %+v, want online with restart_time %d", online, p.RestartTime+1)
			}

			cancel()
			for range events {
			}
		})
	}
}

// TestBusClosesWhenDaemonDies checks that the event channel closes when the daemon is
// killed, so that its owner can reconnect.
func TestBusClosesWhenDaemonDies(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, 7)
	events, err := Subscribe(t.Context(), d.home)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(d.pid(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("event channel still open 20s after the daemon was killed")
		}
	}
}

// TestBusPM2Kill checks that pm2 kill is announced with a pm2:kill event.
func TestBusPM2Kill(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, 7)
	p := d.startApp(t, "idle", "idle.js")
	events, err := Subscribe(t.Context(), d.home)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for a notification so that the daemon surely has registered the subscriber.
	if err := dial(t, d.home).Notify(t.Context(), p.ID, "sync"); err != nil {
		t.Fatal(err)
	}
	if ev, _ := nextEvent(t, events, "idle"); ev.Kind != "sync" {
		t.Fatalf("first event %+v, want the sync notification", ev)
	}
	if err := d.cli.Kill(t.Context()); err != nil {
		t.Fatal(err)
	}
	var kinds []EventKind
	for ev := range events {
		kinds = append(kinds, ev.Kind)
	}
	if len(kinds) == 0 || kinds[len(kinds)-1] != EventKill {
		t.Fatalf("events before the bus closed: %v, want pm2:kill last", kinds)
	}
}
