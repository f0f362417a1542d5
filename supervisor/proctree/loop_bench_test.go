package proctree

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTreeMemoryLoop measures the CPU this process spends on the supervisor's
// tree-memory loop — once a period: a Scan, then for each of five services (python trees
// of three processes) its tree and statm RSS, and every tenth period its PSS — when the
// Scan lists /proc (the baseline) and when Follow keeps the table from the proc connector
// (the Listener's handling of every fork and exit on the host included, and its seed
// scan, made once in an agent's life, is timed apart). The two alternate in 10 s rounds so that the host's load weighs on both alike;
// each gets LIVINITY_BENCH_LOOP_SECONDS (default 60) in all. It prints the CPU per minute
// of each, the ratio connector / scan, the host's fork and exit rate while it ran, and the
// /proc listings per second of each. Root only (the proc connector):
//
//	go test ./supervisor/proctree -run '^$' -bench TreeMemoryLoop -benchtime 1x -v
func BenchmarkTreeMemoryLoop(b *testing.B) {
	total := 60 * time.Second
	if v, err := strconv.Atoi(os.Getenv("LIVINITY_BENCH_LOOP_SECONDS")); err == nil && v > 0 {
		total = time.Duration(v) * time.Second
	}
	const (
		period = time.Second
		round  = 10 * time.Second
	)
	var services []int32
	for range 5 {
		p, _ := startTree(b, 2, 1)
		services = append(services, p)
	}
	// one period of the loop; n counts periods for the PSS every tenth
	loop := func(s *Sampler, n int) {
		table, err := s.Scan()
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range services {
			tree := table.Tree(p)
			if len(tree) != 3 {
				b.Fatalf("tree of %d = %v, want 3 processes", p, tree)
			}
			s.RSS(tree)
			if n%10 == 0 {
				if _, err := table.Memory(p); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	type mode struct {
		cpu    time.Duration
		wall   time.Duration
		scans  int
		events uint64
		setup  time.Duration // Follow until it is following: the subscription and the seed scan
		setups int
	}
	var scan, conn mode
	runRound := func(m *mode, follow bool) {
		s := NewSampler("")
		var stop func()
		if follow {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Follow(ctx) }()
			stop = func() { cancel(); <-done }
		}
		if follow {
			setup, cpu0 := time.Now(), cpuTime()
			for !s.Following() {
				if time.Since(setup) > 5*time.Second {
					b.Skip("the proc connector is not available (root on the host only)")
				}
				time.Sleep(time.Millisecond)
			}
			m.setup += cpuTime() - cpu0
			m.setups++
		}
		start, cpu0, scans0 := time.Now(), cpuTime(), s.Scans()
		tick := time.NewTicker(period)
		for n := 0; time.Since(start) < round; n++ {
			loop(s, n)
			<-tick.C
		}
		tick.Stop()
		if follow {
			s.mu.Lock()
			m.events += s.live.Stats().Events
			s.mu.Unlock()
		}
		m.cpu += cpuTime() - cpu0
		m.wall += time.Since(start)
		m.scans += s.Scans() - scans0
		if stop != nil {
			stop()
		}
	}
	b.ResetTimer()
	for scan.wall < total || conn.wall < total {
		runRound(&scan, false)
		runRound(&conn, true)
	}
	b.StopTimer()
	perMin := func(m mode) float64 { return float64(m.cpu) / float64(time.Millisecond) / m.wall.Minutes() }
	b.Logf("tree-memory loop, 5 services, period %s, %s each: /proc scan %.1f ms CPU a minute (%.2f scans/s); proc connector %.1f ms CPU a minute (%.3f scans/s, %.0f process forks+exits/s on the host); connector / scan %.3f",
		period, scan.wall.Round(time.Second), perMin(scan), float64(scan.scans)/scan.wall.Seconds(),
		perMin(conn), float64(conn.scans)/conn.wall.Seconds(), float64(conn.events)/conn.wall.Seconds(), perMin(conn)/perMin(scan))
	b.ReportMetric(perMin(scan), "scan-cpu-ms/min")
	b.ReportMetric(perMin(conn), "connector-cpu-ms/min")
	b.ReportMetric(perMin(conn)/perMin(scan), "connector/scan")
	b.ReportMetric(float64(conn.events)/conn.wall.Seconds(), "host-forks+exits/s")
	b.Logf("the proc connector's start (subscription and seed scan of /proc), once in the agent's life, not in the figures above: %.1f ms CPU",
		float64(conn.setup)/float64(time.Millisecond)/float64(conn.setups))
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
