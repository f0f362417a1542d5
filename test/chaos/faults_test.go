package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/test/e2e"
)

// kind is a kind of fault.
type kind string

const (
	kindKill  kind = "kill"  // SIGKILL of a service's main pid
	kindHang  kind = "hang"  // SIGSTOP of a service's processes, SIGCONT once the agent restarts it
	kindLeak  kind = "leak"  // SIGUSR2: the service's child leaks memory (deploy/demo's fault hook)
	kindPM2   kind = "pm2"   // SIGKILL of the PM2 daemon
	kindPort  kind = "port"  // the service killed and its port taken until released
	kindAgent kind = "agent" // SIGKILL of the agent; the harness starts it again
	kindBurst kind = "burst" // 100 concurrent scrapes and 100 status reads, plus status --json runs
)

var allKinds = []kind{kindKill, kindHang, kindLeak, kindPM2, kindPort, kindAgent, kindBurst}

// targets are the services a kind may hit. A hang is seen only by a probe that needs the
// process to answer: livos's TCP probe is answered by the kernel for a stopped process,
// nexus-worker's process probe asks PM2, which still says online. A taken port fails only
// HTTP probes for the same reason. The leak hook is in the nexus Node.js services.
var targets = map[kind][]string{
	kindKill: config.Default().ServiceNames(),
	kindHang: {"nexus-core", "nexus-memory", "nexus-mcp"},
	kindLeak: {"nexus-core", "nexus-worker", "nexus-mcp"},
	kindPort: {"nexus-core", "nexus-memory", "nexus-mcp"},
}

// Facts the bounds use that the config does not hold.
const (
	// eventSlack: an exit (or the daemon's death, or the agent's) is seen at once, on PM2's
	// bus or as a refused socket; one second covers that and a poll.
	eventSlack = time.Second
	// pm2RestartDelayMax is PM2's cap on exp_backoff_restart_delay (the ecosystem starts it
	// at 100 ms; it grows by 1.5 per crash until the app has run 30 s).
	pm2RestartDelayMax = 15 * time.Second
	// pm2KillTimeout is the ecosystem's kill_timeout: SIGINT, then SIGKILL after it.
	pm2KillTimeout = 5 * time.Second
	// processStart is how long a service may take from its spawn to listening (tsx
	// compiles livinityd at start) on a loaded 2-core box.
	processStart = 5 * time.Second
	// resurrectMax bounds `pm2 resurrect`: a new daemon and five apps.
	resurrectMax = 20 * time.Second
	// watcherReconnectMax is the agent's PM2 watcher's longest reconnect backoff.
	watcherReconnectMax = time.Second
	// agentRestartDelay is how long the harness waits before starting a dead agent again
	// (systemd's RestartSec; the unit says 10 s, which would only add a constant).
	agentRestartDelay = time.Second
	// burstSize is how many scrapes and how many status reads the burst sends at once;
	// burstCLI how many `livinity-agent status --json` run beside them.
	burstSize = 100
	burstCLI  = 5
)

// bound is a fault kind's detection and recovery bound, and how it was derived.
type bound struct {
	detect, recover time.Duration
	rule            string
}

// boundsFor derives every kind's bounds from the config the agent runs with.
func boundsFor(cfg *config.Config) map[kind]bound {
	sv := cfg.ServiceSettings("nexus-core") // every service has the same timings
	st, lv, rd := sv.Startup, sv.Liveness, sv.Readiness
	backoffMax := cfg.Agent.RestartBackoff.Max()
	memEvery := lv.Period() // the agent samples memory once per shortest liveness period
	toReady := st.Period() + time.Duration(rd.SuccessThreshold)*rd.Period() + rd.Timeout()
	toReadyRule := fmt.Sprintf("startup period %v + readiness period %v × successThreshold %d + timeout %v",
		st.Period(), rd.Period(), rd.SuccessThreshold, rd.Timeout())
	hangDetect := time.Duration(rd.FailureThreshold)*rd.Period() + rd.Timeout() + rd.Period() + pollEvery
	leakDetect := time.Duration(cfg.Agent.MemoryBreachChecks)*memEvery + memEvery + pollEvery
	b := map[kind]bound{}
	b[kindKill] = bound{detect: eventSlack, recover: pm2RestartDelayMax + processStart + toReady,
		rule: fmt.Sprintf("detect ≤ %v (exit event); recover ≤ PM2 restart delay cap %v + process start %v + %s",
			eventSlack, pm2RestartDelayMax, processStart, toReadyRule)}
	b[kindHang] = bound{detect: hangDetect, recover: hangDetect + backoffMax + pm2KillTimeout + processStart + toReady,
		rule: fmt.Sprintf("detect ≤ readiness period %v × failureThreshold %d + timeout %v + 1 period + poll %v; recover ≤ that + restart backoff max %v + PM2 kill_timeout %v + process start %v + %s",
			rd.Period(), rd.FailureThreshold, rd.Timeout(), pollEvery, backoffMax, pm2KillTimeout, processStart, toReadyRule)}
	b[kindLeak] = bound{detect: leakDetect, recover: leakDetect + backoffMax + pm2KillTimeout + processStart + toReady,
		rule: fmt.Sprintf("from the tree's PSS passing the limit: detect ≤ memoryBreachChecks %d × sample period %v + 1 period + poll %v; recover ≤ that + backoff max %v + kill_timeout %v + process start %v + %s",
			cfg.Agent.MemoryBreachChecks, memEvery, pollEvery, backoffMax, pm2KillTimeout, processStart, toReadyRule)}
	b[kindPM2] = bound{detect: eventSlack, recover: time.Second + resurrectMax + watcherReconnectMax + processStart + toReady,
		rule: fmt.Sprintf("detect ≤ %v (the bus closes); recover ≤ 1s wait + pm2 resurrect %v + reconnect %v + process start %v + %s",
			eventSlack, resurrectMax, watcherReconnectMax, processStart, toReadyRule)}
	b[kindPort] = bound{detect: eventSlack, recover: pm2RestartDelayMax + backoffMax + processStart + toReady,
		rule: fmt.Sprintf("detect ≤ %v (exit event); recover, from the port's release, ≤ PM2 restart delay cap %v + backoff max %v + process start %v + %s",
			eventSlack, pm2RestartDelayMax, backoffMax, processStart, toReadyRule)}
	b[kindAgent] = bound{detect: eventSlack, recover: agentRestartDelay + processStart + toReady,
		rule: fmt.Sprintf("detect ≤ %v (the socket refuses); recover ≤ restart delay %v + agent start %v + %s",
			eventSlack, agentRestartDelay, processStart, toReadyRule)}
	b[kindBurst] = bound{rule: fmt.Sprintf("%d concurrent /metrics scrapes + %d status socket reads + %d status --json: every one answers, nothing restarts", burstSize, burstSize, burstCLI)}
	return b
}

// soak is one run: the agent, its observers and the report.
type soak struct {
	ctx        context.Context
	rng        *rand.Rand
	cfg        *config.Config
	bounds     map[kind]bound
	obs        *observer
	agent      *agentRunner
	prom       *e2e.Prometheus
	metricsURL string
	pm2Home    string
	ports      map[string]int
	report     *Report
	start      time.Time // injection began
	base       snapshot  // the state after the last fault
	last       *Fault    // the last fault injected
}

// snapshot is where every service stood when nothing was in flight.
type snapshot struct {
	lifetime int
	pids     map[string]int // PM2's own pids
	restarts counts         // the agent's counters
	status   statusapi.Status
}

// plan is one fault's random choices, all drawn before it is injected so that a seed
// gives the same sequence whatever the timing.
type plan struct {
	kind   kind
	target string
	hold   time.Duration // port: how long it is held
	pause  time.Duration // after recovery, before the next fault
}

func (s *soak) plan(k kind) plan {
	p := plan{kind: k}
	if ts := targets[k]; len(ts) > 0 {
		p.target = ts[s.rng.IntN(len(ts))]
	}
	if k == kindPort {
		p.hold = 3*time.Second + time.Duration(s.rng.Int64N(int64(3*time.Second)))
	}
	p.pause = 1500*time.Millisecond + time.Duration(s.rng.Int64N(int64(1500*time.Millisecond)))
	return p
}

// quiet waits until all five services are ready and returns the snapshot, after checking
// that nothing restarted since the last one (a restart no fault explains).
func (s *soak) quiet(when string) (snapshot, bool) {
	var st statusapi.Status
	var err error
	ok := s.obs.poll(s.ctx, time.Now().Add(time.Minute), func(_ time.Time, got statusapi.Status, gerr error) bool {
		st, err = got, gerr
		return allReady(got, gerr)
	})
	if !ok {
		s.report.problem("%s: the services were not all ready within a minute: %s", when, describe(st, err))
		return snapshot{}, false
	}
	pids, err := s.obs.pm2PIDs(s.ctx)
	if err != nil {
		s.report.problem("%s: %v", when, err)
		return snapshot{}, false
	}
	snap := snapshot{lifetime: s.agent.current().n, pids: pids, restarts: restartCounts(st), status: st}
	for _, sv := range st.Services {
		if pids[sv.Name] != sv.PID {
			s.report.problem("%s: the agent says %s has pid %d, PM2 says %d", when, sv.Name, sv.PID, pids[sv.Name])
		}
	}
	s.compare(when, s.base, snap, nil)
	return snap, true
}

// compare records as unfaulted restarts every service outside skip whose PM2 pid or
// whose restart counters changed between two snapshots (counters only within one agent
// lifetime).
func (s *soak) compare(when string, before, after snapshot, skip []string) {
	if before.pids == nil {
		return
	}
	for _, name := range config.Default().ServiceNames() {
		if slices.Contains(skip, name) {
			continue
		}
		var what []string
		if before.pids[name] != after.pids[name] {
			what = append(what, fmt.Sprintf("PM2 pid %d → %d", before.pids[name], after.pids[name]))
		}
		if before.lifetime == after.lifetime {
			b, a := serviceCounts(before.restarts, name), serviceCounts(after.restarts, name)
			if !b.equal(a) {
				what = append(what, fmt.Sprintf("agent counters %v → %v", b, a))
			}
		}
		if len(what) > 0 {
			after := ""
			if s.last != nil {
				after = fmt.Sprintf(" (the last fault: %d %s %s)", s.last.N, s.last.Kind, strings.Join(s.last.Targets, ","))
			}
			s.report.unfaulted("%s: %s at %.1fs%s: %s", when, name, time.Since(s.start).Seconds(), after, strings.Join(what, ", "))
		}
	}
}

func serviceCounts(c counts, name string) counts {
	out := counts{}
	for k, v := range c {
		if strings.HasPrefix(k, name+"/") {
			out[k] = v
		}
	}
	return out
}

// want is the allowed change of a target's restart counter per reason: [min, max];
// reasons not listed must not change.
type want map[string][2]uint64

const many = ^uint64(0)

// settle waits for the targets' counters to reach what the fault should have caused, then
// takes the new baseline and checks it: targets changed as wanted, nothing else restarted.
func (s *soak) settle(f *Fault, pre snapshot, wants map[string]want, pidsChange bool) {
	met := func(st statusapi.Status) bool {
		c := restartCounts(st)
		for name, w := range wants {
			for reason, r := range w {
				d := c[name+"/"+reason] - pre.restarts[name+"/"+reason]
				if d < r[0] {
					return false
				}
			}
		}
		return true
	}
	s.obs.poll(s.ctx, time.Now().Add(5*time.Second), func(_ time.Time, st statusapi.Status, err error) bool {
		return allReady(st, err) && met(st)
	})
	post, ok := s.quietNoCompare(fmt.Sprintf("after fault %d", f.N))
	if !ok {
		f.problem("the services did not settle after the fault")
		return
	}
	var targetNames []string
	for name := range wants {
		targetNames = append(targetNames, name)
	}
	s.compare(fmt.Sprintf("during fault %d (%s)", f.N, f.Kind), pre, post, targetNames)
	if pre.lifetime == post.lifetime {
		var deltas []string
		for _, name := range targetNames {
			for _, reason := range []string{"crash", "probe", "memory", "pm2", "manual"} {
				k := name + "/" + reason
				d := post.restarts[k] - pre.restarts[k]
				r := wants[name][reason]
				if d > 0 {
					deltas = append(deltas, fmt.Sprintf("%s +%d", k, d))
				}
				if d < r[0] || d > r[1] {
					f.problem("%s restarts counted %d, want %s", k, d, rangeText(r))
				}
			}
			if pidsChange && post.pids[name] == pre.pids[name] {
				f.problem("%s still has PM2 pid %d: it was not restarted", name, pre.pids[name])
			}
		}
		if len(deltas) > 0 {
			f.detail("counted %s", strings.Join(deltas, ", "))
		}
	}
	s.base = post
}

func rangeText(r [2]uint64) string {
	switch {
	case r[0] == r[1]:
		return strconv.FormatUint(r[0], 10)
	case r[1] == many:
		return fmt.Sprintf("at least %d", r[0])
	}
	return fmt.Sprintf("%d to %d", r[0], r[1])
}

// quietNoCompare is quiet without the between-faults check (settle compares instead).
func (s *soak) quietNoCompare(when string) (snapshot, bool) {
	base := s.base
	s.base = snapshot{}
	snap, ok := s.quiet(when)
	s.base = base
	return snap, ok
}

// detect polls until changed holds and records the detection latency from t0. It gives up
// at the kind's bound plus grace.
func (s *soak) detect(f *Fault, t0 time.Time, b bound, changed func(statusapi.Status, error) bool) bool {
	s.obs.poll(s.ctx, t0.Add(b.detect+10*time.Second), func(at time.Time, st statusapi.Status, err error) bool {
		if changed(st, err) {
			f.Detected, f.Detection = true, round3(at.Sub(t0).Seconds())
		}
		return f.Detected
	})
	switch {
	case !f.Detected:
		f.problem("not detected within %v", b.detect+10*time.Second)
	case f.Detection > b.detect.Seconds():
		f.problem("detection took %.3fs, bound %v", f.Detection, b.detect)
	}
	return f.Detected
}

// recoverFrom polls until recovered holds and records the recovery time from `from`. It
// gives up a minute past the bound: then the soak stops (later faults could not be told
// apart from this one).
func (s *soak) recoverFrom(f *Fault, from time.Time, b bound, recovered func(statusapi.Status, error) bool) bool {
	var last string
	s.obs.poll(s.ctx, from.Add(b.recover+time.Minute), func(at time.Time, st statusapi.Status, err error) bool {
		if recovered(st, err) {
			f.Recovered, f.Recovery = true, round3(at.Sub(from).Seconds())
		}
		last = describe(st, err)
		return f.Recovered
	})
	switch {
	case !f.Recovered:
		f.problem("not recovered within %v (bound %v); stopping the soak; last state: %s", b.recover+time.Minute, b.recover, last)
	case f.Recovery > b.recover.Seconds():
		f.problem("recovery took %.3fs, bound %v", f.Recovery, b.recover)
	}
	return f.Recovered
}

// inject runs one fault from its plan to its settled end. It returns false when the box
// did not recover and the soak must stop.
func (s *soak) inject(f *Fault, p plan) bool {
	pre, ok := s.quiet(fmt.Sprintf("before fault %d", f.N))
	if !ok {
		f.problem("the box was not ready before the fault")
		return false
	}
	f.At = round3(time.Since(s.start).Seconds())
	s.last = f
	if p.target != "" {
		f.Targets = []string{p.target}
	}
	switch p.kind {
	case kindKill:
		return s.kill(f, pre, p.target)
	case kindHang:
		return s.hang(f, pre, p.target)
	case kindLeak:
		return s.leak(f, pre, p.target)
	case kindPM2:
		f.Targets = config.Default().ServiceNames()
		return s.pm2(f, pre)
	case kindPort:
		return s.port(f, pre, p.target, p.hold)
	case kindAgent:
		return s.killAgent(f, pre)
	case kindBurst:
		return s.burst(f, pre)
	}
	f.problem("the harness has no injector for fault kind %q", p.kind)
	return true
}

// notReadyOrNew is a detection predicate: the service left ready, or passed through
// another state since t0, or has another pid.
func notReadyOrNew(name string, pid0 int, t0 time.Time) func(statusapi.Status, error) bool {
	return func(st statusapi.Status, err error) bool {
		sv, ok := service(st, name)
		return err == nil && ok && (sv.State != "ready" || sv.PID != pid0 || (sv.Since != nil && sv.Since.After(t0)))
	}
}

// readyAgain is a recovery predicate: the service is ready with another pid than pid0.
func readyAgain(name string, pid0 int) func(statusapi.Status, error) bool {
	return func(st statusapi.Status, err error) bool {
		sv, ok := service(st, name)
		return err == nil && ok && sv.State == "ready" && sv.Ready && sv.PID > 0 && sv.PID != pid0 && alive(sv.PID)
	}
}

// survivors are the processes of procs still running, minus those of keep's trees.
func survivors(procs []int, keep map[string]int) []int {
	live := map[int]bool{}
	for _, pid := range keep {
		for _, p := range tree(pid) {
			live[p] = true
		}
	}
	var out []int
	for _, p := range procs {
		if alive(p) && !live[p] {
			out = append(out, p)
		}
	}
	return out
}

func (s *soak) kill(f *Fault, pre snapshot, name string) bool {
	pid0 := pre.pids[name]
	procs := tree(pid0)
	t0 := time.Now()
	if err := syscall.Kill(pid0, syscall.SIGKILL); err != nil {
		f.problem("SIGKILL pid %d: %v", pid0, err)
	}
	f.detail("SIGKILL pid %d (%d processes in its tree)", pid0, len(procs))
	s.detect(f, t0, s.bounds[kindKill], notReadyOrNew(name, pid0, t0))
	if !s.recoverFrom(f, t0, s.bounds[kindKill], readyAgain(name, pid0)) {
		var left []string
		for _, p := range procs {
			if alive(p) {
				left = append(left, fmt.Sprintf("%d (%s)", p, cmdline(p)))
			}
		}
		f.problem("processes of the killed instance still running: %v", left)
		return false
	}
	s.settle(f, pre, map[string]want{name: {"crash": {1, 1}}}, true)
	if left := survivors(procs, s.base.pids); len(left) > 0 {
		f.problem("processes of the killed instance still run after the recovery: %v", left)
	}
	return true
}

func (s *soak) hang(f *Fault, pre snapshot, name string) bool {
	pid0 := pre.pids[name]
	procs := tree(pid0)
	t0 := time.Now()
	for _, p := range procs {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	cont := func() {
		for _, p := range procs {
			syscall.Kill(p, syscall.SIGCONT)
		}
	}
	defer cont() // never leave a stopped process behind
	f.detail("SIGSTOP pid %d and %d descendants", pid0, len(procs)-1)
	b := s.bounds[kindHang]
	s.detect(f, t0, b, notReadyOrNew(name, pid0, t0))
	// SIGCONT once the agent restarts it (PM2's SIGINT is then delivered), or at the bound
	probes0 := pre.restarts[name+"/probe"]
	restartBy := b.detect + s.cfg.Agent.RestartBackoff.Max() + time.Second
	restarted := s.obs.poll(s.ctx, t0.Add(restartBy), func(_ time.Time, st statusapi.Status, err error) bool {
		sv, ok := service(st, name)
		return err == nil && ok && (sv.State == "restarting" || sv.PID != pid0 || sv.Restarts.Probe > probes0)
	})
	cont()
	f.detail("SIGCONT after %.1fs", time.Since(t0).Seconds())
	if !restarted {
		f.problem("the agent did not restart the hung service within %v", restartBy)
	}
	if !s.recoverFrom(f, t0, b, readyAgain(name, pid0)) {
		return false
	}
	s.settle(f, pre, map[string]want{name: {"probe": {1, 1}}}, true)
	return true
}

func (s *soak) leak(f *Fault, pre snapshot, name string) bool {
	pid0 := pre.pids[name]
	before := tree(pid0)
	t0 := time.Now()
	if err := syscall.Kill(pid0, syscall.SIGUSR2); err != nil {
		f.problem("SIGUSR2 pid %d: %v", pid0, err)
	}
	// the leaking child, to check that it ends with the restart
	leaker := 0
	deadline := time.Now().Add(2 * time.Second)
	for leaker == 0 && time.Now().Before(deadline) {
		for _, p := range tree(pid0) {
			if !slices.Contains(before, p) {
				leaker = p
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if leaker == 0 {
		f.problem("no leaking child appeared under pid %d within 2s of SIGUSR2", pid0)
	}
	// the bounds start when the tree passes the limit, as the harness reads it in /proc
	limit := s.cfg.ServiceSettings(name).MemoryLimitBytes
	var over time.Time
	var pss uint64
	early := !s.obs.poll(s.ctx, t0.Add(30*time.Second), func(at time.Time, st statusapi.Status, err error) bool {
		if pss = treePSS(pid0); pss > limit {
			over = at
			return true
		}
		return notReadyOrNew(name, pid0, t0)(st, err)
	}) || over.IsZero()
	if early {
		f.problem("the agent restarted the service before its tree passed the limit (or it never did): tree PSS %d MiB, limit %d MiB", pss>>20, limit>>20)
		over = t0
	}
	var maxMem, lastMem uint64
	// for a broken bound: when the agent's figures changed, the target's and the others'
	var timeline, others []string
	lastOthers := ""
	track := func(pred func(statusapi.Status, error) bool) func(statusapi.Status, error) bool {
		return func(st statusapi.Status, err error) bool {
			if sv, ok := service(st, name); ok && err == nil && sv.PID == pid0 {
				maxMem = max(maxMem, sv.MemoryBytes)
				if sv.MemoryBytes != lastMem {
					lastMem = sv.MemoryBytes
					timeline = append(timeline, fmt.Sprintf("%+.2fs %dMiB", time.Since(over).Seconds(), sv.MemoryBytes>>20))
				}
				var o []string
				for _, x := range st.Services {
					if x.Name != name {
						o = append(o, strconv.FormatUint(x.MemoryBytes, 10))
					}
				}
				if j := strings.Join(o, ","); j != lastOthers {
					lastOthers = j
					others = append(others, fmt.Sprintf("%+.2fs", time.Since(over).Seconds()))
				}
			}
			return pred(st, err)
		}
	}
	b := s.bounds[kindLeak]
	s.detect(f, over, b, track(notReadyOrNew(name, pid0, t0)))
	if f.Detection > b.detect.Seconds() {
		f.problem("the tree's memory in the agent's status, from the crossing: %s; the other services' figures changed at %s",
			strings.Join(timeline, ", "), strings.Join(others, " "))
	}
	if !s.recoverFrom(f, over, b, track(readyAgain(name, pid0))) {
		return false
	}
	f.detail("SIGUSR2 pid %d, leaking child %d; tree over %d MiB after %.1fs; the agent's status showed up to %d MiB",
		pid0, leaker, limit>>20, over.Sub(t0).Seconds(), maxMem>>20)
	if maxMem <= limit {
		f.problem("the status never showed the tree over its limit (max %d MiB, limit %d MiB)", maxMem>>20, limit>>20)
	}
	if leaker != 0 {
		gone := s.obs.poll(s.ctx, time.Now().Add(2*time.Second), func(time.Time, statusapi.Status, error) bool { return !alive(leaker) })
		if !gone {
			f.problem("the leaking child %d outlived the restart", leaker)
			syscall.Kill(leaker, syscall.SIGKILL)
		}
	}
	s.settle(f, pre, map[string]want{name: {"memory": {1, 1}}}, true)
	return true
}

func (s *soak) pm2(f *Fault, pre snapshot) bool {
	b, err := os.ReadFile(filepath.Join(s.pm2Home, "pm2.pid"))
	daemon, aerr := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || aerr != nil || daemon <= 1 {
		f.problem("read the PM2 daemon's pid: %v %v", err, aerr)
		return true
	}
	var procs []int
	for _, pid := range pre.pids {
		procs = append(procs, tree(pid)...)
	}
	t0 := time.Now()
	if err := syscall.Kill(daemon, syscall.SIGKILL); err != nil {
		f.problem("SIGKILL the PM2 daemon (pid %d): %v", daemon, err)
	}
	f.detail("SIGKILL PM2 daemon pid %d (services: %d processes)", daemon, len(procs))
	bd := s.bounds[kindPM2]
	s.detect(f, t0, bd, func(st statusapi.Status, err error) bool {
		return err == nil && st.Agent != nil && (!st.Agent.PM2Connected || !allReady(st, err))
	})
	ok := s.recoverFrom(f, t0, bd, func(st statusapi.Status, err error) bool {
		if !allReady(st, err) {
			return false
		}
		for _, sv := range st.Services {
			if sv.PID == pre.pids[sv.Name] {
				return false
			}
		}
		return true
	})
	if !ok {
		return false
	}
	wants := map[string]want{}
	for _, name := range config.Default().ServiceNames() {
		wants[name] = want{"crash": {1, 1}}
	}
	s.settle(f, pre, wants, true)
	if left := survivors(procs, s.base.pids); len(left) > 0 {
		f.problem("processes of the dead daemon's instances still run beside the new ones: %v", left)
	}
	if b2, err := os.ReadFile(filepath.Join(s.pm2Home, "pm2.pid")); err == nil {
		f.detail("new daemon pid %s", strings.TrimSpace(string(b2)))
	}
	return true
}

func (s *soak) port(f *Fault, pre snapshot, name string, hold time.Duration) bool {
	pid0 := pre.pids[name]
	port := s.ports[name]
	procs := tree(pid0)
	t0 := time.Now()
	// the whole instance (PM2 gives each app its own process group), so the port frees
	for _, p := range procs {
		syscall.Kill(p, syscall.SIGKILL)
	}
	var l net.Listener
	deadline := time.Now().Add(3 * time.Second)
	for l == nil && time.Now().Before(deadline) {
		var err error
		if l, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			l = nil
			time.Sleep(time.Millisecond)
		}
	}
	if l == nil {
		f.problem("could not take port %d before PM2 restarted %s", port, name)
	} else {
		f.detail("killed pid %d, took port %d after %.0fms, held %.1fs", pid0, port, float64(time.Since(t0).Microseconds())/1000, hold.Seconds())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // answer every connection by closing it: HTTP probes fail
			defer wg.Done()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		defer func() { l.Close(); wg.Wait() }()
	}
	b := s.bounds[kindPort]
	s.detect(f, t0, b, notReadyOrNew(name, pid0, t0))
	// while the port is held the service must never be ready
	pids := map[int]bool{}
	readyWhileHeld := 0
	s.obs.poll(s.ctx, t0.Add(hold), func(at time.Time, st statusapi.Status, err error) bool {
		if sv, ok := service(st, name); ok && err == nil {
			if sv.PID > 0 {
				pids[sv.PID] = true
			}
			if sv.Ready {
				readyWhileHeld++
			}
		}
		return false
	})
	if l != nil {
		l.Close()
	}
	released := time.Now()
	f.detail("%d instances seen while held", len(pids))
	if readyWhileHeld > 0 {
		f.problem("%s reported ready in %d readings while its port was held by another process", name, readyWhileHeld)
	}
	if !s.recoverFrom(f, released, b, readyAgain(name, pid0)) {
		return false
	}
	s.settle(f, pre, map[string]want{name: {"crash": {1, many}}}, true)
	return true
}

func (s *soak) killAgent(f *Fault, pre snapshot) bool {
	s.checkCounters(fmt.Sprintf("before fault %d", f.N))
	t0 := time.Now()
	l, err := s.agent.kill()
	if err != nil {
		f.problem("%v", err)
		return true
	}
	f.detail("SIGKILL agent pid %d (lifetime %d)", l.cmd.Process.Pid, l.n)
	b := s.bounds[kindAgent]
	s.detect(f, t0, b, func(_ statusapi.Status, err error) bool { return err != nil })
	ok := s.recoverFrom(f, t0, b, func(st statusapi.Status, err error) bool {
		return allReady(st, err) && st.Agent.Started != nil && st.Agent.Started.After(t0)
	})
	if !ok {
		return false
	}
	post, ok := s.quietNoCompare(fmt.Sprintf("after fault %d", f.N))
	if !ok {
		f.problem("the services did not settle after the agent came back")
		return true
	}
	s.compare(fmt.Sprintf("during fault %d (agent)", f.N), pre, post, nil) // pids must not change
	if len(post.restarts) > 0 {
		f.problem("the new agent counted restarts of services it adopted: %v", post.restarts)
	}
	f.detail("agent lifetime %d adopted the running services", post.lifetime)
	s.base = post
	return true
}

func (s *soak) burst(f *Fault, pre snapshot) bool {
	t0 := time.Now()
	var (
		mu        sync.Mutex
		latencies []float64
		failures  []string
		wg        sync.WaitGroup
	)
	done := func(start time.Time, err error) {
		mu.Lock()
		defer mu.Unlock()
		latencies = append(latencies, time.Since(start).Seconds())
		if err != nil && len(failures) < 5 {
			failures = append(failures, err.Error())
		}
		if err != nil {
			f.FailedRequests++
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	for range burstSize {
		wg.Add(2)
		go func() {
			defer wg.Done()
			start := time.Now()
			done(start, s.scrape(ctx, client))
		}()
		go func() {
			defer wg.Done()
			start := time.Now()
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			defer rcancel()
			st, err := statusapi.Fetch(rctx, s.obs.sock)
			if err == nil && len(st.Services) != 5 {
				err = fmt.Errorf("status document with %d services", len(st.Services))
			}
			done(start, err)
		}()
	}
	for range burstCLI {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			st, code, err := s.obs.statusCLI(ctx)
			if err == nil && (code != 0 || !st.Ready || st.Source != statusapi.SourceAgent) {
				err = fmt.Errorf("status --json exit %d, ready %v, source %q; want 0, true, agent", code, st.Ready, st.Source)
			}
			done(start, err)
		}()
	}
	wg.Wait()
	f.Requests, f.latencies = len(latencies), latencies
	lat := statsOf(latencies)
	f.detail("%d requests in %.2fs, %d failed; latency p50 %.3fs p99 %.3fs max %.3fs", len(latencies), time.Since(t0).Seconds(), f.FailedRequests, lat.P50, lat.P99, lat.Max)
	if f.FailedRequests > 0 {
		f.problem("%d of %d requests failed: %v", f.FailedRequests, len(latencies), failures)
	}
	s.settle(f, pre, nil, false)
	return true
}

// scrape GETs /metrics once and checks it is the agent's exposition.
func (s *soak) scrape(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.metricsURL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	s.obs.secrets.scan("/metrics", body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "livinity_service_ready{") {
		return fmt.Errorf("GET /metrics: %s, %d bytes without livinity_service_ready", resp.Status, len(body))
	}
	return nil
}

// checkCounters compares, within the current agent lifetime, the restart counters from
// the agent's log lines, the status socket, `status --json` and Prometheus.
func (s *soak) checkCounters(when string) {
	l := s.agent.current()
	c := CounterCheck{Lifetime: l.n, When: when}
	st, err := s.obs.fetch(s.ctx)
	if err != nil {
		s.report.problem("counter check %s: %v", when, err)
		return
	}
	c.Status = restartCounts(st)
	cli, code, err := s.obs.statusCLI(s.ctx)
	if err != nil {
		s.report.problem("counter check %s: %v", when, err)
	} else if code != 0 {
		s.report.problem("counter check %s: status --json exited %d on a ready box", when, code)
	}
	c.StatusCLI = restartCounts(cli)
	c.Log = l.restartsLogged()
	// Prometheus scrapes every second: wait for a scrape that has the status's figures
	deadline := time.Now().Add(15 * time.Second)
	for {
		c.Prometheus, err = s.promCounts()
		if (err == nil && c.Prometheus.equal(c.Status)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		s.report.problem("counter check %s: prometheus: %v", when, err)
	}
	c.Match = c.Log.equal(c.Status) && c.StatusCLI.equal(c.Status) && c.Prometheus.equal(c.Status)
	s.report.mu.Lock()
	s.report.Counters = append(s.report.Counters, c)
	s.report.mu.Unlock()
}

// promCounts reads livinity_service_restarts_total from Prometheus.
func (s *soak) promCounts() (counts, error) {
	samples, err := s.prom.Query(`livinity_service_restarts_total{job="livinity"}`)
	if err != nil {
		return nil, err
	}
	if len(samples) == 0 {
		return nil, errors.New("no livinity_service_restarts_total series")
	}
	c := counts{}
	for _, sm := range samples {
		c.add(sm.Metric["service"], sm.Metric["reason"], uint64(sm.Value))
	}
	return c, nil
}
