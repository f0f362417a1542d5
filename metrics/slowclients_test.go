package metrics_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/metrics"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// startServer runs a metrics Server on a free loopback port until the test ends.
func startServer(t *testing.T) string {
	t.Helper()
	store := state.New(state.Agent{Version: "t", PM2Connected: true}, []string{"livos"})
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- (&metrics.Server{Addr: addr, Handler: metrics.New(metrics.Options{Store: store}).Handler()}).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	testenv.WaitFor(t, "the metrics server", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// TestRequestWithoutItsBodyIsCutOff: a request announcing a body it never sends was held
// forever; the server answers it and closes the connection within its read timeout.
func TestRequestWithoutItsBodyIsCutOff(t *testing.T) {
	addr := startServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(metrics.ReadTimeout + 5*time.Second))
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	resp.Body.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("the connection was still held %s after the request: %v", time.Since(start).Round(time.Second), err)
	}
	t.Logf("closed %s after the request", time.Since(start).Round(100*time.Millisecond))
}

// slowClientsEnv makes the test binary a crowd of slow clients (see runSlowClients).
const slowClientsEnv = "LIVINITY_SLOW_CLIENTS"

func TestMain(m *testing.M) {
	if v := os.Getenv(slowClientsEnv); v != "" {
		runSlowClients(v)
		return
	}
	os.Exit(m.Run())
}

// runSlowClients keeps n connections to addr open for d: half send a request with a
// Content-Length and no body, half send their headers one line a second; a connection the
// server closes is opened again a second later. It stops by itself after d.
func runSlowClients(spec string) {
	f := strings.Split(spec, ",")
	addr := f[0]
	n, _ := strconv.Atoi(f[1])
	d, _ := time.ParseDuration(f[2])
	end := time.Now().Add(d)
	done := make(chan struct{})
	for i := range n {
		go func() {
			for time.Now().Before(end) {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				c.SetDeadline(end)
				if i%2 == 0 {
					fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
					io.Copy(io.Discard, c)
				} else {
					fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\n")
					for time.Now().Before(end) {
						if _, err := fmt.Fprintf(c, "X-Slow: %d\r\n", i); err != nil {
							break
						}
						time.Sleep(time.Second)
					}
				}
				c.Close()
				time.Sleep(time.Second) // slow clients, not a flood of requests
			}
		}()
	}
	time.AfterFunc(time.Until(end)+time.Second, func() { close(done) })
	<-done
}

func selfFDs() int {
	e, _ := os.ReadDir("/proc/self/fd")
	return len(e)
}

func selfRSS() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestSlowClientsDoNotTakeTheAgent: 1000 slow clients (another process, loopback only,
// for 10 s) against the metrics server: it holds at most its connection cap (descriptors
// stay bounded: 3000 such clients once took the fds the status socket, /proc scans and
// the watchdog needed), its memory barely grows, and /healthz still answers at once. The
// figures (descriptors, RSS, /healthz latency) are printed.
func TestSlowClientsDoNotTakeTheAgent(t *testing.T) {
	const clients, attack = 1000, 10 * time.Second
	addr := startServer(t)
	baseFDs, baseRSS := selfFDs(), selfRSS()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%s", slowClientsEnv, addr, clients, attack))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	time.Sleep(2 * time.Second) // let the crowd connect
	var lat []time.Duration
	maxFDs, maxRSS, failed := 0, uint64(0), 0
	for end := time.Now().Add(attack - 3*time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		maxFDs, maxRSS = max(maxFDs, selfFDs()), max(maxRSS, selfRSS())
		start := time.Now()
		resp, err := hc.Get("http://" + addr + "/healthz")
		if err != nil {
			failed++
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatalf("/healthz never answered under %d slow clients", clients)
	}
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))].Round(10 * time.Microsecond) }
	t.Logf("%d slow clients: server fds %d → max %d, RSS %.1f → max %.1f MB; /healthz p50 %s p99 %s max %s, %d of %d failed",
		clients, baseFDs, maxFDs, float64(baseRSS)/(1<<20), float64(maxRSS)/(1<<20), p(.5), p(.99), lat[len(lat)-1], failed, failed+len(lat))
	if maxFDs-baseFDs > metrics.DefaultMaxConns+16 {
		t.Errorf("the server held %d descriptors more under slow clients; the cap is %d connections", maxFDs-baseFDs, metrics.DefaultMaxConns)
	}
	// it keeps answering: a request may lose the race for a slot on a loaded machine (the
	// cap closes a connection not yet being served), most must not; the latency is a
	// figure, not a verdict
	if failed*10 > failed+len(lat) {
		t.Errorf("/healthz under slow clients: %d of %d failed", failed, failed+len(lat))
	}
	if maxRSS > baseRSS+16<<20 {
		t.Errorf("RSS grew by %.1f MB under slow clients", float64(maxRSS-baseRSS)/(1<<20))
	}
}
