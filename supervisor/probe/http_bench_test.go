package probe

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

// BenchmarkHTTPProbe: the CPU this process spends per HTTP check of a Node.js server (the
// kind LivOS runs), with the probe's own exchange (a connection kept for keepFor) against
// the baseline of an http.Client on a transport without keep-alive (the design before: a
// connection dialed, accepted and closed per check, both ends' TCP work on loopback
// charged to the dialer). cpu-us/check is user+system time (getrusage) over b.N checks;
// the ratio is exchange / client.
//
//	go test ./supervisor/probe -run '^$' -bench HTTPProbe -benchtime 2000x
func BenchmarkHTTPProbe(b *testing.B) {
	if _, err := exec.LookPath("node"); err != nil {
		b.Skip("no node")
	}
	port := testenv.FreePort(b)
	srv := exec.Command("node", "-e", `require("http").createServer((q, s) => s.end("ok")).listen(`+strconv.Itoa(port)+`, "127.0.0.1", () => console.log("ready"))`)
	out, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	spec := Spec{Kind: KindHTTP, Port: port, Path: "/"}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{}).DialContext,
		DisableKeepAlives: true, DisableCompression: true, MaxResponseHeaderBytes: MaxBodyBytes}}
	baseline := func(ctx context.Context) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+"/", nil)
		req.Header.Set("User-Agent", userAgent)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	exchange := func(ctx context.Context) bool { o, _ := probeHTTP(ctx, spec, nil); return o == Success }
	cpuPer := func(check func(context.Context) bool) time.Duration {
		before := cpuTime()
		for range b.N {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if !check(ctx) {
				b.Fatal("a check failed")
			}
			cancel()
		}
		return (cpuTime() - before) / time.Duration(b.N)
	}
	base := cpuPer(baseline)
	own := cpuPer(exchange)
	b.Logf("CPU per HTTP check over %d checks: exchange %s, http.Client %s", b.N, own, base)
	b.ReportMetric(float64(own)/1e3, "cpu-us/check")
	b.ReportMetric(float64(base)/1e3, "client-cpu-us/check")
	b.ReportMetric(float64(own)/float64(base), "exchange/client")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is this process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
