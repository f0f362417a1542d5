package pidwatch

import (
	"bufio"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// nodeService is a Node.js process with a heap like a small service's, ready when it says
// so.
const nodeService = `const a = []; for (let i = 0; i < 2e5; i++) a.push({ i, s: "x" + i }); console.log("ready"); setInterval(() => {}, 1000)`

// BenchmarkKillToNotice: kill -9 of a Node.js process (what PM2 runs) → onExit, with the
// Watcher's two sources against the baseline of its pidfd alone (the design before the
// proc connector's exit events): p50 and p99 over b.N kills each, and their ratios.
//
//	go test ./supervisor/pidwatch -run '^$' -bench KillToNotice -benchtime 40x -v
func BenchmarkKillToNotice(b *testing.B) {
	both, err := NewWatcher()
	if err != nil {
		b.Skip(err)
	}
	defer both.Close()
	if err := both.ExitEvents(); err != nil {
		b.Skipf("no exit events here (%v): nothing to compare", err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		b.Skip("no node")
	}
	pidfdOnly := &Watcher{watches: map[int32]*Watch{}}
	measure := func(w *Watcher) []time.Duration {
		var lat []time.Duration
		for range b.N {
			cmd := exec.Command("node", "-e", nodeService)
			out, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
				b.Fatal(err)
			}
			seen := make(chan time.Time, 1)
			wt, err := w.Start(cmd.Process.Pid, time.Time{}, func(_ int, at time.Time) { seen <- at })
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			t0 := time.Now()
			cmd.Process.Signal(syscall.SIGKILL)
			lat = append(lat, (<-seen).Sub(t0))
			wt.Stop()
			cmd.Wait()
		}
		slices.Sort(lat)
		return lat
	}
	a, base := measure(both), measure(pidfdOnly)
	q := func(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	b.Logf("kill -9 of node → onExit over %d kills: exit events + pidfd p50 %.3f ms, p99 %.3f ms; pidfd alone p50 %.3f ms, p99 %.3f ms",
		b.N, ms(q(a, 50)), ms(q(a, 99)), ms(q(base, 50)), ms(q(base, 99)))
	b.ReportMetric(ms(q(a, 99)), "p99-ms")
	b.ReportMetric(ms(q(a, 50))/ms(q(base, 50)), "p50/pidfd-alone")
	b.ReportMetric(ms(q(a, 99))/ms(q(base, 99)), "p99/pidfd-alone")
	b.ReportMetric(0, "ns/op")
}
