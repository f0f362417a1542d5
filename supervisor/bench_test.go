package supervisor_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// crashKills is how many times the crash benchmark kills its service.
const crashKills = 50

// BenchmarkCrashDetection kills nexus-core with SIGKILL 50 times under the real PM2 daemon
// of the supervisor fixture — each time after the agent saw the recovery and the new
// instance has been up for over 1.5 s, so that PM2 never counts an unstable restart — and
// prints, over the 50 kills, the time from the kill to the store's change to Restarting
// (p50, p99, max). In the same run a `pm2 jlist` poller at 1 s runs beside the agent, the
// baseline: it prints the latency such a poller would have (from the kill to the end of the
// first poll that shows the new instance), and the ratio. It checks only behaviour (every
// kill seen, counted as a crash, nothing else restarted), never the times: the goal, p99 <
// 50 ms, is for the reader of the figures. About two minutes:
//
//	go test ./supervisor -run '^$' -bench CrashDetection -benchtime 1x -v
func BenchmarkCrashDetection(b *testing.B) {
	for range b.N {
		crashDetection(b)
	}
}

func crashDetection(t testing.TB) {
	const target = "nexus-core"
	f := newFixture(t, nil, nil)
	before := f.procs()

	ctx, cancel := context.WithCancel(context.Background())
	poller := &jlistPoller{cli: &pm2.CLI{Bin: f.bin, Home: f.home}, target: target}
	var wg sync.WaitGroup
	wg.Go(func() { poller.run(ctx, time.Second) })

	type kill struct {
		at          time.Time
		pid, starts int
		seen        time.Duration
	}
	var kills []kill
	lastPID := 0
	// settle waits until a new instance is ready and has been up for 1.5 s
	settle := func(what string) {
		testenv.WaitFor(t, what+": "+target+" ready and up 1.5 s", 30*time.Second, func() bool {
			sv := f.service(target)
			return sv.Phase == state.Ready && sv.Ready && sv.PID != lastPID && sv.PID != 0 &&
				!sv.Started.IsZero() && time.Since(sv.Started) > 1500*time.Millisecond
		})
	}
	for i := range crashKills {
		settle(fmt.Sprintf("before kill %d", i+1))
		p := f.procs()[target]
		if p.Status != pm2.StatusOnline || p.PID <= 0 {
			t.Fatalf("kill %d: %s is %s (pid %d) before the kill", i+1, target, p.Status, p.PID)
		}
		changes, unsubscribe := f.store.Subscribe()
		k := kill{pid: p.PID, starts: p.RestartTime, at: time.Now()}
		if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", i+1, err)
		}
		timeout := time.After(10 * time.Second)
		for k.seen == 0 {
			select {
			case c := <-changes:
				if c.Service == target && c.To == state.Restarting {
					k.seen = c.At.Sub(k.at)
				}
			case <-timeout:
				t.Fatalf("kill %d: the exit never reached the state", i+1)
			}
		}
		unsubscribe()
		kills = append(kills, k)
		lastPID = k.pid
	}
	settle("after the last kill")
	cancel()
	wg.Wait()

	// the poller's latency for each kill: the end of the first poll after the kill that
	// shows another instance
	var agent, polled []time.Duration
	missed := 0
	for _, k := range kills {
		agent = append(agent, k.seen)
		i := slices.IndexFunc(poller.polls, func(p poll) bool {
			return p.end.After(k.at) && (p.restartTime != k.starts || p.pid != k.pid || p.status != pm2.StatusOnline)
		})
		if i < 0 {
			missed++
			continue
		}
		polled = append(polled, poller.polls[i].end.Sub(k.at))
	}
	t.Logf("crash → state change over %d kills of %s: agent (event bus) %s", len(kills), target, summary(agent))
	t.Logf("crash → state change over %d kills of %s: pm2 jlist poller at 1 s %s; %d polls failed, %d kills not seen",
		len(kills), target, summary(polled), poller.failed, missed)

	sv := f.service(target)
	if got := sv.Restarts[state.ReasonCrash]; got != crashKills {
		t.Errorf("%s: %d restarts counted as crashes, want %d (restarts %v)", target, got, crashKills, sv.Restarts)
	}
	if p := f.procs()[target]; p.UnstableRestarts != 0 || p.Status != pm2.StatusOnline {
		t.Errorf("%s in PM2: %s with %d unstable restarts; the kills were meant to look stable", target, p.Status, p.UnstableRestarts)
	}
	f.untouched(before, others(target)...)
}

// summary formats p50, p99 and max (nearest rank: with 50 samples, p99 is the maximum).
func summary(d []time.Duration) string {
	if len(d) == 0 {
		return "(no samples)"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms (n=%d)", ms(rank(0.50)), ms(rank(0.99)), ms(s[len(s)-1]), len(s))
}

// jlistPoller runs `pm2 jlist` once a period and records what each poll saw of target.
// Its fields are read only after run has returned.
type jlistPoller struct {
	cli    *pm2.CLI
	target string
	polls  []poll
	failed int
}

type poll struct {
	end         time.Time
	pid         int
	restartTime int
	status      pm2.Status
}

func (j *jlistPoller) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		procs, err := j.cli.List(ctx)
		end := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				j.failed++
			}
			continue
		}
		for _, p := range procs {
			if p.Name == j.target {
				j.polls = append(j.polls, poll{end: end, pid: p.PID, restartTime: p.RestartTime, status: p.Status})
			}
		}
	}
}
