package systemd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// notifySocket listens on a real unixgram socket, points NOTIFY_SOCKET at it and returns
// it. Reads time out after 10s so that a missing datagram fails the test instead of
// hanging it.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(testenv.ShortTempDir(t), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notify datagram: %v", err)
	}
	return string(buf[:n])
}

// queued returns the datagrams already waiting on conn (sent before the call).
func queued(conn *net.UnixConn) []string {
	var out []string
	buf := make([]byte, 4096)
	for {
		conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		n, err := conn.Read(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

func TestNotifierMessages(t *testing.T) {
	conn := notifySocket(t)
	n := NewNotifier(nil)
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{"ready", n.Ready, "READY=1"},
		{"status", func() error { return n.Status("5/5 services ready") }, "STATUS=5/5 services ready"},
		{"status with line breaks", func() error { return n.Status("a\nb\r\n c") }, "STATUS=a b c"},
		{"extend", func() error { return n.ExtendTimeout(90 * time.Second) }, "EXTEND_TIMEOUT_USEC=90000000"},
		{"stopping", n.Stopping, "STOPPING=1"},
	}
	for _, c := range cases {
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := recv(t, conn); got != c.want {
			t.Errorf("%s: sent %q, want %q", c.name, got, c.want)
		}
	}
	if err := n.ExtendTimeout(0); err == nil {
		t.Error("ExtendTimeout(0): no error")
	}
}

func TestNotifierWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	n := NewNotifier(nil)
	for name, call := range map[string]func() error{
		"Ready": n.Ready, "Stopping": n.Stopping,
		"Status":        func() error { return n.Status("x") },
		"ExtendTimeout": func() error { return n.ExtendTimeout(time.Second) },
		"RunWatchdog": func() error {
			return n.RunWatchdog(context.Background(), func() time.Time { panic("heartbeat read without a watchdog") })
		},
	} {
		if err := call(); err != nil {
			t.Errorf("%s without systemd: %v", name, err)
		}
	}
}

func TestNotifierSocketGone(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing.sock"))
	err := NewNotifier(nil).Ready()
	if err == nil || !strings.Contains(err.Error(), "sd_notify READY") {
		t.Fatalf("Ready to a missing socket: %v, want an sd_notify READY error", err)
	}
}

// TestRunWatchdog steps the watchdog loop tick by tick: heartbeat blocks until the test
// hands it a time, so every tick is under the test's control. A fresh heartbeat must
// produce a ping, a stale one none, and pings resume once it is fresh again.
func TestRunWatchdog(t *testing.T) {
	conn := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "40000") // 40ms: a tick every 20ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	var logs bytes.Buffer
	n := NewNotifier(slog.New(slog.NewTextHandler(&logs, nil)))

	// heartbeat announces each tick on asked and then waits for the test's beat: when the
	// next tick asks, the previous one has sent its ping or decided not to, so the
	// datagrams queued at that moment are exactly the previous tick's.
	asked := make(chan struct{})
	beats := make(chan time.Time)
	ctx, cancel := context.WithCancel(t.Context())
	heartbeat := func() time.Time {
		select {
		case asked <- struct{}{}:
		case <-ctx.Done():
			return time.Time{}
		}
		select {
		case b := <-beats:
			return b
		case <-ctx.Done():
			return time.Time{}
		}
	}
	done := make(chan error, 1)
	go func() { done <- n.RunWatchdog(ctx, heartbeat) }()

	fresh := func() time.Time { return time.Now() }
	stale := func() time.Time { return time.Now().Add(-time.Minute) }
	steps := []struct {
		beat  func() time.Time
		pings int
	}{
		{fresh, 1}, {fresh, 1}, {stale, 0}, {stale, 0}, {fresh, 1}, {stale, 0},
	}
	<-asked
	for i, s := range steps {
		beats <- s.beat()
		<-asked
		got := queued(conn)
		if len(got) != s.pings {
			t.Fatalf("step %d: %d pings %q, want %d", i, len(got), got, s.pings)
		}
		for _, g := range got {
			if g != "WATCHDOG=1" {
				t.Fatalf("step %d: sent %q, want WATCHDOG=1", i, g)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunWatchdog: %v", err)
	}
	for _, want := range []string{"supervision loop stalled", "supervision loop alive again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestRunWatchdogOtherPID(t *testing.T) {
	notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "40000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1)) // meant for another process
	err := NewNotifier(nil).RunWatchdog(t.Context(), func() time.Time { panic("heartbeat read") })
	if err != nil {
		t.Fatal(err)
	}
}

func TestRunStatus(t *testing.T) {
	conn := notifySocket(t)
	store := state.New(state.Agent{Version: "test"}, []string{"a", "b"})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- NewNotifier(nil).RunStatus(ctx, store) }()

	if got := recv(t, conn); got != "STATUS=0/2 ready: a stopped (+1 more)" {
		t.Fatalf("first status %q", got)
	}
	store.UpdateAgent(func(a *state.Agent) { a.Setup.Step = "3/16 install livos" })
	if got := recv(t, conn); got != "STATUS=onboarding: step 3/16 install livos" {
		t.Fatalf("status while onboarding %q", got)
	}
	store.UpdateAgent(func(a *state.Agent) { a.Setup = state.Setup{Ran: true, OK: true} })
	for _, name := range []string{"a", "b"} {
		store.Update(name, func(s *state.Service) { s.Phase, s.Ready = state.Ready, true })
	}
	// intermediate lines may be sent; the last must be 2/2
	for {
		if got := recv(t, conn); got == "STATUS=2/2 services ready" {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunStatus: %v", err)
	}
}

func TestRunStatusSendFails(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing.sock"))
	store := state.New(state.Agent{}, []string{"a"})
	err := NewNotifier(nil).RunStatus(t.Context(), store)
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("RunStatus to a missing socket: %v, want a send error", err)
	}
}

func TestStatusLine(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	ready := func(name string) state.Service { return state.Service{Name: name, Phase: state.Ready, Ready: true} }
	five := func(replace ...state.Service) []state.Service {
		s := []state.Service{ready("livos"), ready("nexus-core"), ready("nexus-worker"), ready("nexus-memory"), ready("nexus-mcp")}
		for _, r := range replace {
			for i := range s {
				if s[i].Name == r.Name {
					s[i] = r
				}
			}
		}
		return s
	}
	cases := []struct {
		name string
		snap state.Snapshot
		want string
	}{
		{"onboarding", state.Snapshot{Agent: state.Agent{Setup: state.Setup{Step: "7/16 build nexus core"}}, Services: five()},
			"onboarding: step 7/16 build nexus core"},
		{"onboarding, step said twice", state.Snapshot{Agent: state.Agent{Setup: state.Setup{Step: "step 3/16 install livos"}}},
			"onboarding: step 3/16 install livos"},
		{"no services", state.Snapshot{}, "starting"},
		{"all ready", state.Snapshot{Services: five()}, "5/5 services ready"},
		{"backoff with countdown", state.Snapshot{Services: five(
			state.Service{Name: "nexus-memory", Phase: state.Backoff, NextAttempt: now.Add(19200 * time.Millisecond)})},
			"4/5 ready: nexus-memory backoff 20s"},
		{"backoff due", state.Snapshot{Services: five(
			state.Service{Name: "nexus-memory", Phase: state.Backoff, NextAttempt: now.Add(-time.Second)})},
			"4/5 ready: nexus-memory backoff (retry due)"},
		{"worst named", state.Snapshot{Services: five(
			state.Service{Name: "livos", Phase: state.Starting},
			state.Service{Name: "nexus-mcp", Phase: state.Unhealthy},
			state.Service{Name: "nexus-worker", Phase: state.Restarting})},
			"2/5 ready: nexus-mcp unhealthy (+2 more)"},
		{"backoff beats stopped", state.Snapshot{Services: five(
			state.Service{Name: "livos", Phase: state.Stopped},
			state.Service{Name: "nexus-core", Phase: state.Backoff, NextAttempt: now.Add(2 * time.Minute)})},
			"3/5 ready: nexus-core backoff 2m0s (+1 more)"},
		{"ready phase not yet ready", state.Snapshot{Services: five(state.Service{Name: "livos", Phase: state.Ready})},
			"4/5 ready: livos ready"},
		{"failed onboarding", state.Snapshot{
			Agent:    state.Agent{Setup: state.Setup{Ran: true, OK: false, Error: "secret-bearing text"}},
			Services: []state.Service{{Name: "livos", Phase: state.Stopped}}},
			"onboarding failed (see the journal)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := statusLineAt(c.snap, now); got != c.want {
				t.Errorf("StatusLine = %q, want %q", got, c.want)
			}
		})
	}
}
