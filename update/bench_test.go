package update_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/update"
)

// downtime polls each service's probe every 20 ms until stop is closed and returns, per
// service, how long it did not answer (a process probe counts the port-less worker as up).
func downtime(cfg *config.Config, stop <-chan struct{}) func() map[string]time.Duration {
	var mu sync.Mutex
	down := map[string]time.Duration{}
	var wg sync.WaitGroup
	client := http.Client{Timeout: 200 * time.Millisecond}
	for _, name := range cfg.ServiceNames() {
		p := cfg.ServiceSettings(name).Probe
		if p.Kind == "process" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			last := time.Now()
			for {
				select {
				case <-stop:
					return
				case now := <-tick.C:
					ok := false
					if p.Kind == "http" {
						if resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.Port, p.Path)); err == nil {
							ok = resp.StatusCode == p.ExpectStatus
							resp.Body.Close()
						}
					} else if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port), 200*time.Millisecond); err == nil {
						ok = true
						c.Close()
					}
					if !ok {
						mu.Lock()
						down[name] += now.Sub(last)
						mu.Unlock()
					}
					last = now
				}
			}
		}()
	}
	return func() map[string]time.Duration {
		wg.Wait()
		return down
	}
}

// BenchmarkCoreOnlyUpdate measures, on the demo tree, an update whose release changes only
// nexus core against the baseline of the same change applied in place with a full `setup`
// re-run: each service's time without an answer and the wall time; and, for a release that
// fails at start, the time from the failed health check to the previous release answering.
//
//	go test -run '^$' -bench CoreOnlyUpdate -benchtime 1x ./update/
func BenchmarkCoreOnlyUpdate(b *testing.B) {
	for range b.N {
		bx := newBox(b)
		measure := func(run func() error) (time.Duration, map[string]time.Duration) {
			stop := make(chan struct{})
			result := downtime(bx.cfg, stop)
			time.Sleep(100 * time.Millisecond)
			start := time.Now()
			if err := run(); err != nil {
				b.Fatal(err)
			}
			wall := time.Since(start)
			time.Sleep(100 * time.Millisecond)
			close(stop)
			return wall, result()
		}
		// baseline: the change made in the live tree, then `setup` (rebuild in place)
		core := bx.cfg.Paths.NexusBaseDir + "/packages/core/src/index.ts"
		setupWall, setupDown := measure(func() error {
			src, err := os.ReadFile(core)
			if err != nil {
				return err
			}
			if err := os.WriteFile(core, append(src, "\nexport const inPlace = 1;\n"...), 0o644); err != nil {
				return err
			}
			box, err := setup.NewBox(bx.cfg, bx.state, bx.home)
			if err != nil {
				return err
			}
			_, err = pipeline.Run(context.Background(), box.Plan(bx.options().Path, bx.options().Home, bx.options().Env), bx.pipelineOptions())
			return err
		})
		// the same kind of change as a release: built aside, switched, health-gated
		bx.edit("nexus/packages/core/src/index.ts", coreHealthLine, `res.end(JSON.stringify({ status: "ok", release: 2 }));`)
		bx.commit("release 2")
		updWall, updDown := measure(func() error { _, err := update.Run(context.Background(), bx.options()); return err })
		// a release that fails at start: how long until the previous one answers again
		bx.edit("livos/packages/livinityd/source/cli.ts", "import ", "throw new Error('release 3 refuses to start');\nimport ")
		bx.commit("release 3")
		res, err := update.Run(context.Background(), bx.options())
		if err == nil {
			b.Fatal("the failing release was not rolled back")
		}
		fmt.Printf("\n%-14s %12s %12s\n", "", "update", "setup (base)")
		fmt.Printf("%-14s %11.2fs %11.2fs   ratio %.2f\n", "wall time", updWall.Seconds(), setupWall.Seconds(), updWall.Seconds()/setupWall.Seconds())
		for _, name := range bx.cfg.ServiceNames() {
			if bx.cfg.ServiceSettings(name).Probe.Kind == "process" {
				continue
			}
			fmt.Printf("%-14s %11.2fs %11.2fs   not answering\n", name, updDown[name].Seconds(), setupDown[name].Seconds())
		}
		fmt.Printf("%-14s %11.2fs   from the failed health check to the previous release answering\n", "rollback", res.Record.RollbackSeconds)
		b.ReportMetric(updWall.Seconds(), "update-s")
		b.ReportMetric(setupWall.Seconds(), "setup-s")
		b.ReportMetric(res.Record.RollbackSeconds, "rollback-s")
		b.ReportMetric(updDown["nexus-core"].Seconds(), "core-down-s")
	}
}
