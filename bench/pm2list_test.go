// Package bench holds the agent's benchmarks that need no package internals:
// BenchmarkTable (the side-by-side table, see README.md) and BenchmarkList. They run only
// with -bench; the normal suite only compiles them and renders a made-up table.
package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/pm2"
)

// apps is how many apps the daemon runs: as many as LivOS.
const apps = 5

// BenchmarkList reads PM2's full process list of five apps both ways, against the same
// real PM2 7 daemon: natively over its RPC socket (one connection, kept open), and by
// running `pm2 jlist`. Besides wall time per read (ns/op) it reports the client side's
// CPU per read (cpu-ns/op): getrusage of this process (RUSAGE_SELF) plus that of its
// waited-for children (RUSAGE_CHILDREN, the pm2 command) over the loop. The daemon's own
// work is the same both ways and is not counted.
func BenchmarkList(b *testing.B) {
	bin := testenv.PM2(b, 7)
	cli := &pm2.CLI{Bin: bin, Home: testenv.PM2Home(b, bin)}
	startApps(b, cli)

	b.Run("native", func(b *testing.B) {
		c, err := pm2.Dial(b.Context(), cli.Home)
		if err != nil {
			b.Fatalf("dial the PM2 daemon: %v", err)
		}
		defer c.Close()
		measure(b, func(ctx context.Context) ([]pm2.Process, error) { return c.List(ctx) })
	})
	b.Run("jlist", func(b *testing.B) {
		measure(b, cli.List)
	})
}

// startApps starts five idle apps from an ecosystem file and waits until all are online.
func startApps(b *testing.B, cli *pm2.CLI) {
	b.Helper()
	script := filepath.Join(testenv.Root(b), "supervisor", "testdata", "apps", "idle.js")
	var list []map[string]any
	for i := range apps {
		list = append(list, map[string]any{"name": "app" + strconv.Itoa(i), "script": script, "autorestart": true})
	}
	eco, err := json.Marshal(map[string]any{"apps": list})
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "bench.config.cjs")
	if err := os.WriteFile(path, append([]byte("module.exports = "), eco...), 0o644); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	if err := cli.StartEcosystem(ctx, path); err != nil {
		b.Fatalf("start the bench apps: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		procs, err := cli.List(ctx)
		if err == nil && online(procs) == apps {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the %d bench apps are not all online after 30 s (last list: %d online, %v)", apps, online(procs), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func online(procs []pm2.Process) int {
	n := 0
	for _, p := range procs {
		if p.Status == pm2.StatusOnline {
			n++
		}
	}
	return n
}

// measure runs list in the benchmark loop, checks every answer and reports cpu-ns/op.
func measure(b *testing.B, list func(context.Context) ([]pm2.Process, error)) {
	b.Helper()
	before := cpuTime(b)
	for b.Loop() {
		procs, err := list(b.Context())
		if err != nil || online(procs) != apps {
			b.Fatalf("list: %d of %d apps online, %v", online(procs), apps, err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-before)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user and system CPU time of this process and its waited-for children.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatalf("getrusage: %v", err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}
