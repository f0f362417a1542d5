package metrics_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/metrics"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// supervise stands in for the supervisor's writes while a benchmark scrapes: a state
// update and a probe observation per service every 10 ms (ten times the rate of 1 s
// probes). It stops when ctx ends.
func supervise(ctx context.Context, s *state.Store, m *metrics.Metrics) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, n := range serviceNames {
			s.Update(n, func(sv *state.Service) { sv.MemoryBytes = uint64(100<<20 + i) })
			m.ObserveProbe(n, "liveness", time.Duration(200+i%800)*time.Microsecond, false)
		}
	}
}

// scrape is one GET /metrics as Prometheus sends it (gzip accepted); the compressed body
// is read and discarded, not decompressed. It returns the request's latency.
func scrape(b *testing.B, client *http.Client, url string) time.Duration {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
	req.Header.Set("Accept-Encoding", "gzip")
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return 0
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Errorf("scrape: status %d, %v", resp.StatusCode, err)
	}
	return d
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchServer starts a Server on loopback for a store being updated.
func benchServer(b *testing.B) (url string, client *http.Client) {
	s := knownStore()
	m := metrics.New(metrics.Options{Store: s})
	url = serve(b, m.Handler()) + "/metrics"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { supervise(ctx, s, m); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	return url, client
}

// report sorts the latencies and reports p50, p99, scrapes per second and the test
// process's CPU (scrapers included) in cores.
func report(b *testing.B, lat [][]time.Duration, wall, cpu time.Duration) {
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(all))/wall.Seconds(), "scrapes/s")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu-cores")
}

// BenchmarkScrape is one /metrics request over loopback at a time.
func BenchmarkScrape(b *testing.B) {
	url, client := benchServer(b)
	b.ReportAllocs()
	for b.Loop() {
		scrape(b, client, url)
	}
}

// BenchmarkScrape100 is 100 scrapers, each scraping once a second at its own phase (like
// 100 Prometheus servers with a 1 s scrape interval, ten times the shortest interval one
// sets in practice), while the store is being updated. One op is one 1 s round;
// -benchtime 30x runs the 30 s. It reports the latency percentiles of single
// scrapes; cpu-cores is the whole test process, scrapers included. Goal: p99 < 5 ms.
func BenchmarkScrape100(b *testing.B) {
	const scrapers, interval = 100, time.Second
	url, client := benchServer(b)
	scrape(b, client, url)
	lat := make([][]time.Duration, scrapers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for w := range scrapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(rand.N(interval)) // the scraper's phase
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for range b.N {
				lat[w] = append(lat[w], scrape(b, client, url))
				<-tick.C
			}
		}()
	}
	wg.Wait()
	wall, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	report(b, lat, wall, cpu)
}

// BenchmarkScrape100Saturated is 100 scrapers scraping back to back (b.N scrapes in
// all): the server's throughput when overloaded, and the queueing latency that results.
func BenchmarkScrape100Saturated(b *testing.B) {
	const scrapers = 100
	url, client := benchServer(b)
	scrape(b, client, url)
	var next atomic.Int64
	lat := make([][]time.Duration, scrapers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for w := range scrapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				lat[w] = append(lat[w], scrape(b, client, url))
			}
		}()
	}
	wg.Wait()
	wall, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	report(b, lat, wall, cpu)
}
