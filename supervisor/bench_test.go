package supervisor_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/state"
	"golang.org/x/sys/unix"
)

// BenchmarkCrashDetection kills nexus-core with SIGKILL b.N times under the real PM2
// daemon of the supervisor fixture — each time after the new instance has been up for over
// 1.5 s, so that PM2 never counts an unstable restart — and prints, over the kills, the
// time from the kill to the store's change to Restarting (p50, p99, max) for two agents
// supervising the same daemon in the same run: the fixture's, which watches each main pid
// through a pidfd (PM2's bus second), and the baseline, one that sees exits on PM2's bus
// only (Options.NoPIDWatch), with the ratios pidfd / bus; and the floor, when a thread
// blocked in poll(2) on a pidfd of its own sees the process gone (the kernel's teardown of
// the process and the scheduling of that thread on a busy host). It checks only behaviour (every
// kill seen by both, counted as one crash by both, nothing else restarted), never the
// times: the goal, p99 < 2 ms, is for the reader of the figures. 100 kills take about five
// minutes (the run with b.N = 1 that the testing package makes first takes 15 s):
//
//	go test ./supervisor -run '^$' -bench CrashDetection -benchtime 100x -v
func BenchmarkCrashDetection(b *testing.B) {
	crashDetection(b, b.N)
}

func crashDetection(t testing.TB, kills int) {
	const target = "nexus-core"
	f := newFixture(t, nil, nil)
	before := f.procs()

	// the baseline: a second agent on the same daemon, exits from the bus alone
	busStore := state.New(state.Agent{Version: "test"}, config.Default().ServiceNames())
	bus, err := supervisor.New(supervisor.Options{Config: f.cfg, PM2Home: f.home, PM2Bin: f.bin, Ecosystem: f.eco,
		Store: busStore, Logger: slog.New(slog.DiscardHandler), ReconcileEvery: time.Second, NoPIDWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- bus.Run(ctx) }()
	defer func() { cancel(); <-done }()

	stores := []*state.Store{f.store, busStore}
	names := []string{"pidfd", "bus"}
	lastPID := 0
	// settle waits until both agents see a new instance ready that has been up for 1.5 s
	settle := func(what string) {
		testenv.WaitFor(t, what+": "+target+" ready and up 1.5 s in both agents", 30*time.Second, func() bool {
			for _, st := range stores {
				sv, _ := st.Snapshot().Service(target)
				if sv.Phase != state.Ready || !sv.Ready || sv.PID == lastPID || sv.PID == 0 ||
					sv.Started.IsZero() || time.Since(sv.Started) <= 1500*time.Millisecond {
					return false
				}
			}
			return true
		})
	}
	if b, ok := t.(*testing.B); ok {
		b.ResetTimer()
	}
	seen := make([][]time.Duration, len(stores))
	var floors, over []time.Duration
	for i := range kills {
		settle(fmt.Sprintf("before kill %d", i+1))
		p := f.procs()[target]
		if p.Status != pm2.StatusOnline || p.PID <= 0 {
			t.Fatalf("kill %d: %s is %s (pid %d) before the kill", i+1, target, p.Status, p.PID)
		}
		chans := make([]<-chan state.Change, len(stores))
		unsubscribe := make([]func(), len(stores))
		for j, st := range stores {
			chans[j], unsubscribe[j] = st.Subscribe()
		}
		// the floor: the pidfd turning readable, seen by a thread blocked in poll(2)
		floor := make(chan time.Time, 1)
		if fd, err := unix.PidfdOpen(p.PID, 0); err == nil {
			go func() {
				defer unix.Close(fd)
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				for {
					if _, err := unix.Poll(pfd, 10000); err != unix.EINTR {
						break
					}
				}
				floor <- time.Now()
			}()
		}
		at := time.Now()
		if err := sendSignal(p.PID, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", i+1, err)
		}
		for j, changes := range chans {
			timeout := time.After(10 * time.Second)
			for found := false; !found; {
				select {
				case c := <-changes:
					if c.Service == target && c.To == state.Restarting {
						seen[j] = append(seen[j], c.At.Sub(at))
						found = true
					}
				case <-timeout:
					t.Fatalf("kill %d: the exit never reached the %s agent's state", i+1, names[j])
				}
			}
		}
		select {
		case end := <-floor:
			floors = append(floors, end.Sub(at))
			// the agent's own share: its state change after the kernel had the process gone
			over = append(over, seen[0][len(seen[0])-1]-end.Sub(at))
		case <-time.After(10 * time.Second):
		}
		for _, u := range unsubscribe {
			u()
		}
		lastPID = p.PID
	}
	settle("after the last kill")
	if b, ok := t.(*testing.B); ok {
		b.StopTimer()
	}

	pidfd, viaBus := quantiles(seen[0]), quantiles(seen[1])
	t.Logf("crash → state change over %d kills of %s: pidfd agent %s", kills, target, summary(seen[0]))
	t.Logf("crash → state change over %d kills of %s: bus-only agent (baseline) %s", kills, target, summary(seen[1]))
	t.Logf("crash → pidfd readable (the floor: a thread blocked in poll on it): %s", summary(floors))
	t.Logf("pidfd agent's state change after the floor, kill by kill (the agent's own share; negative when its poller woke first): %s", summary(over))
	t.Logf("pidfd / bus: p50 %.3f, p99 %.3f", ratio(pidfd.p50, viaBus.p50), ratio(pidfd.p99, viaBus.p99))
	if b, ok := t.(*testing.B); ok {
		b.ReportMetric(ms(pidfd.p50), "pidfd-p50-ms")
		b.ReportMetric(ms(pidfd.p99), "pidfd-p99-ms")
		b.ReportMetric(ms(viaBus.p50), "bus-p50-ms")
		b.ReportMetric(ms(viaBus.p99), "bus-p99-ms")
		b.ReportMetric(ratio(pidfd.p50, viaBus.p50), "p50-pidfd/bus")
		b.ReportMetric(ratio(pidfd.p99, viaBus.p99), "p99-pidfd/bus")
		b.ReportMetric(ms(quantiles(floors).p99), "floor-p99-ms")
		b.ReportMetric(0, "ns/op")
	}

	for j, st := range stores {
		sv, _ := st.Snapshot().Service(target)
		if got := sv.Restarts[state.ReasonCrash]; got != uint64(kills) {
			t.Errorf("%s agent: %s: %d restarts counted as crashes, want %d (restarts %v)", names[j], target, got, kills, sv.Restarts)
		}
		if sv.LastExit.Signal != "SIGKILL" {
			t.Errorf("%s agent: last exit %+v, want PM2's SIGKILL", names[j], sv.LastExit)
		}
	}
	if p := f.procs()[target]; p.UnstableRestarts != 0 || p.Status != pm2.StatusOnline {
		t.Errorf("%s in PM2: %s with %d unstable restarts; the kills were meant to look stable", target, p.Status, p.UnstableRestarts)
	}
	f.untouched(before, others(target)...)
}

type quants struct{ p50, p99, max time.Duration }

// quantiles by nearest rank: with 100 samples p99 is the second highest.
func quantiles(d []time.Duration) quants {
	if len(d) == 0 {
		return quants{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return quants{rank(0.50), rank(0.99), s[len(s)-1]}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// summary formats p50, p99 and max.
func summary(d []time.Duration) string {
	if len(d) == 0 {
		return "(no samples)"
	}
	q := quantiles(d)
	return fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, max %.2f ms (n=%d)", ms(q.p50), ms(q.p99), ms(q.max), len(d))
}
