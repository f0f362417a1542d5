package pidwatch

import (
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkWatchFive compares, for five watched processes (the five services), the way
// Start waits — a goroutine parked on the runtime's poller per pidfd — with the other
// plain design, a goroutine blocked in poll(2) per pidfd: the OS threads this process has
// while they wait, and the time from a SIGKILL to the notification (p50, max over b.N
// rounds of five kills). The ratios are poller / poll(2).
//
//	go test ./supervisor/pidwatch -run '^$' -bench WatchFive -benchtime 20x -v
func BenchmarkWatchFive(b *testing.B) {
	if err := Supported(); err != nil {
		b.Skip(err)
	}
	type result struct {
		threads int
		lat     []time.Duration
	}
	run := func(poller bool) result {
		var r result
		for range b.N {
			cmds := make([]*exec.Cmd, 5)
			seen := make(chan time.Duration, 5)
			kills := make([]time.Time, 5)
			var stops []func()
			for i := range cmds {
				cmds[i] = exec.Command("sleep", "60")
				if err := cmds[i].Start(); err != nil {
					b.Fatal(err)
				}
				i := i
				if poller {
					w, err := Start(cmds[i].Process.Pid, time.Time{}, func(int, time.Time) { seen <- time.Since(kills[i]) })
					if err != nil {
						b.Fatal(err)
					}
					stops = append(stops, w.Stop)
				} else {
					fd, err := unix.PidfdOpen(cmds[i].Process.Pid, 0)
					if err != nil {
						b.Fatal(err)
					}
					go func() {
						p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
						for {
							if _, err := unix.Poll(p, -1); err != unix.EINTR {
								break
							}
						}
						seen <- time.Since(kills[i])
						unix.Close(fd)
					}()
				}
			}
			time.Sleep(50 * time.Millisecond) // all waiting
			r.threads = max(r.threads, threads())
			for i, c := range cmds {
				kills[i] = time.Now()
				c.Process.Signal(syscall.SIGKILL)
				r.lat = append(r.lat, <-seen)
			}
			for i, c := range cmds {
				c.Wait()
				if stops != nil {
					stops[i]()
				}
			}
		}
		return r
	}
	runtime.GC()
	base := threads()
	poller := run(true) // first: threads poll(2) made would stay in the count
	poll := run(false)
	// the runtime keeps the threads it made: only the first call (the testing package's
	// b.N = 1 round) counts them from a clean start
	firstCount.Do(func() { counted = [3]int{base, poller.threads, poll.threads} })
	base, poller.threads, poll.threads = counted[0], counted[1], counted[2]
	p50 := func(d []time.Duration) time.Duration { s := slices.Clone(d); slices.Sort(s); return s[len(s)/2] }
	b.Logf("5 watched processes: runtime poller: %d threads (%d before), kill → notified p50 %s; goroutine in poll(2) each: %d threads, p50 %s",
		poller.threads, base, p50(poller.lat), poll.threads, p50(poll.lat))
	b.ReportMetric(float64(poller.threads-base), "poller-extra-threads")
	b.ReportMetric(float64(poll.threads-base), "poll-extra-threads")
	b.ReportMetric(float64(p50(poller.lat))/float64(p50(poll.lat)), "p50-poller/poll")
	b.ReportMetric(0, "ns/op")
}

var (
	firstCount sync.Once
	counted    [3]int
)

// threads is this process's OS thread count.
func threads() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}
