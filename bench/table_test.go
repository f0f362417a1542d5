package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/pm2"
)

// Flags of the table (after -args, or directly: go test accepts unknown test-binary flags).
var (
	flagWindow      = flag.Duration("window", 5*time.Minute, "footprint window (all supervisors at once)")
	flagKills       = flag.Int("kills", 100, "kill -9 of a service under the agent (round the four nexus services), for crash -> state")
	flagPeerKills   = flag.Int("peer-kills", 20, "kill -9 of a service under each peer supervisor (round the four nexus services)")
	flagSetupRounds = flag.Int("setup-rounds", 3, "rounds of first run (parallel), no-op re-run, first run (sequential)")
	flagPeers       = flag.String("peers", "supervisord,monit,process-compose", "peer supervisors to run beside the agent (comma-separated; \"\" for none)")
	flagFaultWindow = flag.Duration("fault-window", 30*time.Second, "how long each fault (hang, leak, crash loop) is watched")
	flagPCReadiness = flag.Bool("pc-readiness", false, "give process-compose the same HTTP probe as readiness probe too (with the liveness probe alone it did not act on a hung service)")
	flagSkip        = flag.String("skip", "", "parts to leave out, comma-separated: setup, list, footprint, kills, faults")
	flagAgentBin    = flag.String("agent-bin", "", "measure this livinity-agent binary instead of a static build of ./cmd/livinity-agent")
	flagAgentFrom   = flag.String("agent-from", "head", "build the agent from the commit at HEAD (head) or from the working tree (tree)")
	flagTableOut    = flag.String("table-out", "", "also write the table to this file")
)

func skipped(part string) bool {
	return slices.Contains(strings.Split(*flagSkip, ","), part)
}

// out is where progress and the table go: stdout, as the benchmark's own output.
var out io.Writer = os.Stdout

func logf(format string, args ...any) {
	fmt.Fprintf(out, "%s  %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

var tableOnce sync.Once

// BenchmarkTable is the side-by-side benchmark: the agent's goals and the same figures for
// Monit, supervisord and process-compose supervising the same five demo services, from one
// run on one machine, printed as one table. It runs once whatever b.N (about 15 min with
// the default 5 min window):
//
//	go test -run '^$' -bench Table -benchtime 1x -timeout 60m ./bench/ -args -window 5m
func BenchmarkTable(b *testing.B) {
	ran := false
	tableOnce.Do(func() { ran = true; table(b) })
	if !ran {
		b.Skip("the table ran already")
	}
}

// results are everything the table prints.
type results struct {
	header     []string
	loads      []string
	setupPar   []time.Duration
	setupNoop  []time.Duration
	setupSeq   []time.Duration
	listNative [2]time.Duration // wall, CPU per read
	listJlist  [2]time.Duration
	stacks     []stack
	footprints []footprint
	agentMaps  []mapping
	agentSecs  []section
	kills      map[string]killResult
	hangs      map[string]faultResult
	leaks      map[string]faultResult
	loops      map[string]faultResult
	window     time.Duration
	notes      []string
}

func table(b *testing.B) {
	r := &results{kills: map[string]killResult{}, hangs: map[string]faultResult{}, leaks: map[string]faultResult{}, loops: map[string]faultResult{}}
	r.header = machine(b)
	for _, h := range r.header {
		logf("%s", h)
	}
	load := func(what string) {
		l := loadavg()
		r.loads = append(r.loads, fmt.Sprintf("%s: %s", what, l))
		logf("load average %s (%s)", l, what)
	}

	if !skipped("list") {
		load("before the process-list read")
		r.listNative, r.listJlist = listRead(b)
	}
	if !skipped("setup") {
		load("before setup")
		r.setupPar, r.setupNoop, r.setupSeq = setupTimes(b, *flagSetupRounds)
	}

	load("before onboarding the stacks")
	agent := startAgent(b)
	r.stacks = []stack{agent}
	for _, p := range strings.Split(*flagPeers, ",") {
		switch strings.TrimSpace(p) {
		case "":
		case "supervisord":
			r.stacks = append(r.stacks, startSupervisord(b, agent))
		case "monit":
			r.stacks = append(r.stacks, startMonit(b, agent))
		case "process-compose":
			r.stacks = append(r.stacks, startProcessCompose(b, agent))
		default:
			b.Fatalf("-peers: unknown supervisor %q", p)
		}
	}

	if !skipped("footprint") {
		time.Sleep(10 * time.Second) // past the start-up work
		load("footprint window start")
		logf("footprint: sampling %d stacks every second for %v ...", len(r.stacks), *flagWindow)
		r.window = *flagWindow
		r.footprints = measureFootprints(r.stacks, *flagWindow)
		r.agentMaps = mappings(agent.cmd.Process.Pid)
		r.agentSecs = sections(agent.cmd.Process.Pid, agent.bin)
		load("footprint window end")
	}
	if !skipped("kills") {
		for _, s := range r.stacks {
			n := *flagPeerKills
			if s == stack(agent) {
				n = *flagKills
			}
			load(fmt.Sprintf("before %d kills under %s", n, s.name()))
			logf("%s: %d x kill -9, round the four nexus services ...", s.name(), n)
			r.kills[s.name()] = killLoop(s, killTargets, n)
			if k := r.kills[s.name()]; len(k.noticed) > 0 {
				logf("%s: kill → noticed p50 %.2f, p90 %.2f, p99 %.2f, max %.2f ms", s.name(),
					ms(pct(k.noticed, 0.5)), ms(pct(k.noticed, 0.9)), ms(pct(k.noticed, 0.99)), ms(pct(k.noticed, 1)))
				logf("%s: the slowest kills: %s", s.name(), slowest(k.noticed, killTargets, 3))
			}
			for _, e := range r.kills[s.name()].errs {
				r.notes = append(r.notes, s.name()+": "+e)
			}
		}
	}
	if !skipped("faults") {
		for _, s := range r.stacks {
			load("before the faults under " + s.name())
			logf("%s: hang (SIGSTOP of %s's tree) ...", s.name(), target)
			r.hangs[s.name()] = hang(s, target)
			if err := recovered(s, target); err != nil {
				r.notes = append(r.notes, s.name()+" after the hang: "+err.Error())
			}
			logf("%s: leaking child (SIGUSR2 to %s) ...", s.name(), target)
			r.leaks[s.name()] = leak(s, target)
			if err := recovered(s, target); err != nil {
				r.notes = append(r.notes, s.name()+" after the leak: "+err.Error())
			}
			logf("%s: crash loop (%s's port taken, then kill -9) ...", s.name(), target)
			r.loops[s.name()] = crashLoop(s, target)
		}
	}
	load("end")
	text := r.render()
	fmt.Fprint(out, "\n"+text)
	if *flagTableOut != "" {
		if err := os.WriteFile(*flagTableOut, []byte(text), 0o644); err != nil {
			b.Error(err)
		}
	}
	for _, f := range r.footprints {
		if f.label == "livinity-agent" {
			b.ReportMetric(float64(f.rssMax)/1e6, "agent-rss-max-MB")
			b.ReportMetric(f.cpuPct(), "agent-cpu-%")
		}
	}
	if k, ok := r.kills["livinity-agent"]; ok && len(k.noticed) > 0 {
		b.ReportMetric(ms(pct(k.noticed, 0.99)), "crash-state-p99-ms")
	}
}

// ---- machine ----

func machine(b *testing.B) []string {
	run := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = testenv.Root(b)
		o, err := cmd.Output()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(strings.SplitN(string(o), "\n", 2)[0])
	}
	model := "unknown CPU"
	if c, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(c), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	if m, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb uint64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(m), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	buildAgent(b, testenv.ShortTempDir(b)) // built once, now: the header names what is measured
	commit := run("git", "rev-parse", "--short", "HEAD") + "; the agent measured: " + builtFrom
	pcVersion := run(filepath.Join(testenv.Root(b), ".tools", "bin", "process-compose"), "version", "--short")
	return []string{
		fmt.Sprintf("date: %s, commit %s", time.Now().UTC().Format("2006-01-02 15:04 MST"), commit),
		fmt.Sprintf("machine: %d cores (%s), %s RAM, %s", runtime.NumCPU(), model, mem, run("uname", "-sr")),
		fmt.Sprintf("tools: %s, node %s, pm2 %s, %s, supervisord %s, process-compose %s",
			runtime.Version(), run("node", "--version"), pm2Version(b), run("monit", "-V"), run("supervisord", "-v"), pcVersion),
	}
}

func pm2Version(b *testing.B) string {
	data, err := os.ReadFile(filepath.Join(testenv.Root(b), ".tools", "pm2-7", "node_modules", "pm2", "package.json"))
	if err != nil {
		return "?"
	}
	s := string(data)
	if i := strings.Index(s, `"version"`); i >= 0 {
		s = s[i+len(`"version"`):]
		if j := strings.Index(s, `"`); j >= 0 {
			s = s[j+1:]
			if k := strings.Index(s, `"`); k >= 0 {
				return s[:k]
			}
		}
	}
	return "?"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// ---- process-list read ----

// listRead reads PM2's list of five apps natively (for 3 s) and with `pm2 jlist` (10
// times): wall and client CPU per read, as BenchmarkList does.
func listRead(b *testing.B) (native, jlist [2]time.Duration) {
	bin := testenv.PM2(b, 7)
	cli := &pm2.CLI{Bin: bin, Home: testenv.PM2Home(b, bin)}
	startApps(b, cli)
	c, err := pm2.Dial(b.Context(), cli.Home)
	if err != nil {
		b.Fatalf("dial the PM2 daemon: %v", err)
	}
	defer c.Close()
	loop := func(list func(context.Context) ([]pm2.Process, error), until func(n int, d time.Duration) bool) [2]time.Duration {
		cpu0, t0, n := cpuTime(b), time.Now(), 0
		for !until(n, time.Since(t0)) {
			procs, err := list(b.Context())
			if err != nil || online(procs) != apps {
				b.Fatalf("list: %d of %d apps online, %v", online(procs), apps, err)
			}
			n++
		}
		return [2]time.Duration{time.Since(t0) / time.Duration(n), (cpuTime(b) - cpu0) / time.Duration(n)}
	}
	native = loop(c.List, func(_ int, d time.Duration) bool { return d >= 3*time.Second })
	jlist = loop(cli.List, func(n int, _ time.Duration) bool { return n >= 10 })
	logf("process-list read: native %v wall, %v CPU; pm2 jlist %v wall, %v CPU", native[0], native[1], jlist[0], jlist[1])
	return native, jlist
}

// ---- setup ----

// setupTimes onboards the bundled demo tree (`livinity-agent demo --dir`) after an
// untimed warm-up run (package caches): per round a first run (parallel steps), the same
// copy again (no-op re-run) and a fresh copy with --jobs 1 (sequential).
func setupTimes(b *testing.B, rounds int) (par, noop, seq []time.Duration) {
	base := testenv.ShortTempDir(b)
	bin := buildAgent(b, base)
	path := testenv.PATH(b)
	pm2Bin := filepath.Join(testenv.ToolsBin(b), "pm2")
	demoRun := func(dir string, args ...string) {
		cmd := exec.Command(bin, append([]string{"demo", "--dir", dir}, args...)...)
		cmd.Env = testenv.ChildEnv(path)
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("livinity-agent demo --dir %s %v: %v\n%s", dir, args, err, tail(string(o), 30))
		}
	}
	// onboard times one onboarding of dir; a new dir is given a setup.json first, the demo
	// command's own with free ports (its fixed defaults may be taken on a shared machine)
	onboard := func(dir string, args ...string) time.Duration {
		cfgPath := filepath.Join(dir, "setup.json")
		if _, err := os.Stat(cfgPath); err != nil {
			b.Cleanup(func() { testenv.KillPM2(filepath.Join(dir, "pm2"), pm2Bin) })
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			cfg := demo.Config(dir, 20)
			cfg.Ports = config.Ports{API: testenv.FreePort(b), MCP: testenv.FreePort(b), Memory: testenv.FreePort(b), Livos: testenv.FreePort(b)}
			cfg.Agent.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(b))
			data, err := cfg.MarshalIndent()
			if err != nil {
				b.Fatal(err)
			}
			if err := atomicfile.WriteFile(cfgPath, append(data, '\n'), 0o600); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		demoRun(dir, args...)
		return time.Since(t0)
	}
	logf("setup: warm-up onboarding (untimed) ...")
	onboard(filepath.Join(base, "warm"))
	testenv.KillPM2(filepath.Join(base, "warm", "pm2"), pm2Bin)
	for i := range rounds {
		p := filepath.Join(base, fmt.Sprintf("p%d", i))
		par = append(par, onboard(p))
		noop = append(noop, onboard(p))
		testenv.KillPM2(filepath.Join(p, "pm2"), pm2Bin)
		s := filepath.Join(base, fmt.Sprintf("s%d", i))
		seq = append(seq, onboard(s, "--jobs", "1"))
		testenv.KillPM2(filepath.Join(s, "pm2"), pm2Bin)
		logf("setup round %d: first run %.2f s, no-op re-run %.2f s, sequential first run %.2f s",
			i+1, par[i].Seconds(), noop[i].Seconds(), seq[i].Seconds())
	}
	return par, noop, seq
}

// ---- statistics ----

// pct is the nearest-rank percentile of d.
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func median(d []time.Duration) time.Duration { return pct(d, 0.5) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// slowest names the n slowest of a kill loop's times, in order: which kill (1-based, of
// which service) and how long, to tell a cold first kill from a tail spread over the run.
func slowest(noticed []time.Duration, svcs []string, n int) string {
	idx := make([]int, len(noticed))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return noticed[idx[a]] > noticed[idx[b]] })
	var out []string
	for _, i := range idx[:min(n, len(idx))] {
		out = append(out, fmt.Sprintf("kill %d (%s) %.2f ms", i+1, svcs[i%len(svcs)], ms(noticed[i])))
	}
	return strings.Join(out, ", ")
}
