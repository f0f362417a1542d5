package bench

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/internal/procfs"
	"github.com/livinity/livinity-agent/internal/treemem"
)

// ---- footprint ----

// footprint is one group's memory and CPU over the window.
type footprint struct {
	stack, label     string
	samples          int
	rssMax, rssSum   uint64
	pssMax, pssSum   uint64
	end              treemem.Rollup // at the end of the window
	procs            int            // processes in the group at the end
	cpu, wall        time.Duration
	restartsInWindow int // services whose pid changed during the window
}

func (f footprint) rssAvg() uint64 { return f.rssSum / uint64(max(1, f.samples)) }
func (f footprint) pssAvg() uint64 { return f.pssSum / uint64(max(1, f.samples)) }
func (f footprint) cpuPct() float64 {
	return 100 * f.cpu.Seconds() / f.wall.Seconds()
}

// cpuOf is a process's utime+stime, and with children its waited-for children's too.
func cpuOf(pid int, children bool) time.Duration {
	st, ok := procfs.ReadStat(pid)
	if !ok {
		return 0
	}
	t := st.UTime + st.STime
	if children {
		t += st.CUTime + st.CSTime
	}
	return time.Duration(t) * time.Second / procfs.TicksPerSecond
}

// groupCPU is the CPU of a group's processes: the root's own and its reaped children's
// (helpers that came and went), plus every other live process's own.
func groupCPU(root int, pids []int) time.Duration {
	t := cpuOf(root, true)
	for _, p := range pids {
		if p != root {
			t += cpuOf(p, false)
		}
	}
	return t
}

// measureFootprints samples every group of every stack once a second for window: the
// summed Rss and Pss of its processes (smaps_rollup), and its CPU between the ends. The
// services' pids are read once at each end (asking every second would add work to the
// supervisors being measured).
func measureFootprints(stacks []stack, window time.Duration) []footprint {
	type g struct {
		stack  stack
		group  group
		svcs   []int
		fp     footprint
		cpu0   time.Duration
		start  time.Time
		pidsAt map[string]int
	}
	var gs []*g
	for _, s := range stacks {
		pids := map[string]int{}
		var list []int
		for _, name := range services {
			if v, err := s.view(context.Background(), name); err == nil && v.pid > 0 {
				pids[name] = v.pid
				list = append(list, v.pid)
			}
		}
		for _, grp := range s.groups() {
			gs = append(gs, &g{stack: s, group: grp, svcs: list, pidsAt: pids, fp: footprint{stack: s.name(), label: grp.label}})
		}
	}
	children := treemem.Children()
	for _, x := range gs {
		x.start = time.Now()
		x.cpu0 = groupCPU(x.group.root, ownPIDs(children, x.group, x.svcs))
	}
	begin := time.Now()
	for tick := time.NewTicker(time.Second); time.Since(begin) < window; {
		<-tick.C
		children := treemem.Children()
		for _, x := range gs {
			r := treemem.Sum(ownPIDs(children, x.group, x.svcs))
			x.fp.samples++
			x.fp.rssSum += r.Rss
			x.fp.pssSum += r.Pss
			x.fp.rssMax = max(x.fp.rssMax, r.Rss)
			x.fp.pssMax = max(x.fp.pssMax, r.Pss)
		}
	}
	children = treemem.Children()
	var out []footprint
	for _, x := range gs {
		own := ownPIDs(children, x.group, x.svcs)
		x.fp.cpu = groupCPU(x.group.root, own) - x.cpu0
		x.fp.wall = time.Since(x.start)
		x.fp.end = treemem.Sum(own)
		x.fp.procs = len(own)
		for name, pid := range x.pidsAt {
			if v, err := x.stack.view(context.Background(), name); err != nil || v.pid != pid {
				x.fp.restartsInWindow++
			}
		}
		out = append(out, x.fp)
	}
	return out
}

// mapping is the resident memory of one mapped file (or kind of anonymous memory).
type mapping struct {
	name      string
	rss, anon uint64
}

// mappings groups /proc/<pid>/smaps by pathname ("[anon]" for unnamed), largest Rss first.
func mappings(pid int) []mapping {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		return nil
	}
	defer f.Close()
	by := map[string]*mapping{}
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's header: range perms offset dev inode [path]
			cur = "[anon]"
			if len(fields) >= 6 {
				cur = strings.Join(fields[5:], " ")
			}
			if len(fields) >= 2 && !strings.HasPrefix(cur, "[") {
				cur += " " + fields[1] // r-xp is text, r--p read-only data, rw-p data
			}
			if by[cur] == nil {
				by[cur] = &mapping{name: cur}
			}
			continue
		}
		if len(fields) < 2 || by[cur] == nil {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			by[cur].rss += kb << 10
		case "Anonymous:":
			by[cur].anon += kb << 10
		}
	}
	var out []mapping
	for _, m := range by {
		if m.rss > 0 {
			out = append(out, *m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rss > out[j].rss })
	return out
}

// section is how much of one section of the program file a process has resident.
type section struct {
	name            string
	resident, bytes uint64
}

// sections reads which pages of the program file bin that pid maps are resident
// (/proc/<pid>/pagemap's present bit, root only) and sums them by ELF section (file
// offsets, so a position-independent build is read right too), largest first: where the
// program's part of the resident set is, text against the tables the runtime reads (the
// data section's pages written since, anonymous now, are counted with it).
func sections(pid int, bin string) []section {
	f, err := elf.Open(bin)
	if err != nil {
		return nil
	}
	defer f.Close()
	pm, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return nil
	}
	defer pm.Close()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil
	}
	var st syscall.Stat_t
	if syscall.Stat(bin, &st) != nil {
		return nil
	}
	present := map[uint64]bool{} // resident pages by file offset
	entry := make([]byte, 8)
	for _, line := range strings.Split(string(maps), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 6 || fs[4] != strconv.FormatUint(st.Ino, 10) {
			continue
		}
		lo, hi, _ := strings.Cut(fs[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		off, _ := strconv.ParseUint(fs[2], 16, 64)
		for v := start; v < end; v += 4096 {
			if _, err := pm.ReadAt(entry, int64(v/4096*8)); err != nil {
				return nil
			}
			if binary.LittleEndian.Uint64(entry)&(1<<63) != 0 { // present in RAM
				present[off+v-start] = true
			}
		}
	}
	var out []section
	for _, s := range f.Sections { // in file order; a page two sections share counts for the first
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS || s.Size == 0 {
			continue
		}
		sec := section{name: s.Name, bytes: s.Size}
		for p := s.Offset &^ 4095; p < s.Offset+s.Size; p += 4096 {
			if present[p] {
				sec.resident += 4096
				delete(present, p)
			}
		}
		if sec.resident > 0 {
			out = append(out, sec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].resident > out[j].resident })
	return out
}

// ---- kill -> noticed, kill -> serving ----

// killResult is a kill loop's latencies.
type killResult struct {
	noticed, serving []time.Duration
	errs             []string
}

// pollEvery is how often a supervisor's interface and the service's health URL are read
// while a kill is in flight.
const pollEvery = 5 * time.Millisecond

// settle waits until the stack says svc is healthy on a pid other than last, that pid has
// been healthy for at least 2 s (PM2 would count a faster crash as an unstable restart),
// and its health URL answers. It returns the view.
func settle(s stack, svc string, last int, timeout time.Duration) (view, error) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	var since time.Time
	var cur view
	var err error
	for time.Now().Before(deadline) {
		cur, err = s.view(context.Background(), svc)
		switch {
		case err != nil || !cur.healthy || cur.pid <= 0 || cur.pid == last:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= 2*time.Second:
			if u := s.healthURL(svc); u == "" || serving(client, u) {
				return cur, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cur, fmt.Errorf("%s: %s not healthy on a new pid for 2 s within %v (last view %+v, %v)", s.name(), svc, timeout, cur, err)
}

// killTargets are the services the kill loop goes round: the single-process ones. livos is
// tsx with a node child: a kill -9 of its main pid leaves the child holding the port, which
// tests something else (whether the supervisor ends what an instance left behind).
var killTargets = []string{"nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"}

// killLoop kills a service's main pid with SIGKILL n times, going round svcs (PM2 delays
// the restart of an app that crashes again within 30 s of its start by 100 ms × 1.5 per
// crash: going round hides most of that wait). For each kill: noticed is from just before
// kill(2) to the first read of the supervisor's interface that shows it (another pid, not
// healthy, or a restart counted; for the agent, the time its status gives for the state
// change, when earlier); serving is to the first 200 from the service's health URL after
// one that failed (services with an HTTP check only).
func killLoop(s stack, svcs []string, n int) killResult {
	var r killResult
	last := map[string]int{}
	for i := range n {
		svc := svcs[i%len(svcs)]
		v, err := settle(s, svc, last[svc], 90*time.Second)
		if err != nil {
			r.errs = append(r.errs, fmt.Sprintf("before kill %d: %v", i+1, err))
			return r
		}
		pid, restarts0 := v.pid, v.restarts
		servedAt := make(chan time.Time, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		u := s.healthURL(svc)
		if u != "" {
			go func() {
				client := &http.Client{Timeout: 500 * time.Millisecond}
				failed := false
				for ctx.Err() == nil {
					if !serving(client, u) {
						failed = true
					} else if failed {
						servedAt <- time.Now()
						return
					}
					time.Sleep(pollEvery)
				}
				close(servedAt)
			}()
		}
		t0 := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			cancel()
			r.errs = append(r.errs, fmt.Sprintf("kill %d of %s pid %d: %v", i+1, svc, pid, err))
			return r
		}
		var noticed time.Duration
		for ctx.Err() == nil {
			w, err := s.view(ctx, svc)
			at := time.Now()
			if err == nil && (w.pid != pid || !w.healthy || (restarts0 >= 0 && w.restarts > restarts0)) {
				noticed = at.Sub(t0)
				if !w.since.IsZero() && w.since.After(t0) && w.since.Before(at) {
					noticed = w.since.Sub(t0)
				}
				break
			}
			time.Sleep(pollEvery)
		}
		if noticed == 0 {
			r.errs = append(r.errs, fmt.Sprintf("kill %d of %s: not noticed within 60 s", i+1, svc))
		} else {
			r.noticed = append(r.noticed, noticed)
		}
		if u != "" {
			if at, ok := <-servedAt; ok {
				r.serving = append(r.serving, at.Sub(t0))
			} else {
				r.errs = append(r.errs, fmt.Sprintf("kill %d of %s: not serving again within 60 s", i+1, svc))
			}
		}
		cancel()
		last[svc] = pid
	}
	return r
}

// ---- faults ----

// faultResult is whether a supervisor saw a fault, and when.
type faultResult struct {
	ran       bool
	seen      bool
	noticed   time.Duration // to the first read showing it (not healthy, another pid)
	restarted time.Duration // to another pid; 0 if none
	note      string
}

func (f faultResult) String() string {
	switch {
	case !f.ran:
		return "not run"
	case !f.seen:
		return "no" + noteText(f.note)
	case f.restarted > 0:
		return fmt.Sprintf("yes: noticed %.1f s, restarted %.1f s%s", f.noticed.Seconds(), f.restarted.Seconds(), noteText(f.note))
	default:
		return fmt.Sprintf("yes: noticed %.1f s, not restarted%s", f.noticed.Seconds(), noteText(f.note))
	}
}

func noteText(n string) string {
	if n == "" {
		return ""
	}
	return " (" + n + ")"
}

// recoverWait bounds the wait for a service to be healthy again before a fault.
const recoverWait = 90 * time.Second

// hang stops svc's whole tree (SIGSTOP) and watches the supervisor for -fault-window: seen
// if it reports the service unhealthy or replaces it. The tree is continued (SIGCONT) once
// another pid runs, or at the end of the window.
func hang(s stack, svc string) faultResult {
	res := faultResult{ran: true}
	v, err := settle(s, svc, 0, recoverWait)
	if err != nil {
		res.note = err.Error()
		return res
	}
	procs := treemem.Tree(v.pid)
	t0 := time.Now()
	for _, p := range procs {
		syscall.Kill(p, syscall.SIGSTOP)
	}
	cont := func() {
		for _, p := range procs {
			syscall.Kill(p, syscall.SIGCONT)
		}
	}
	defer cont()
	for time.Since(t0) < *flagFaultWindow {
		w, err := s.view(context.Background(), svc)
		at := time.Since(t0)
		if err == nil {
			if !res.seen && (!w.healthy || w.pid != v.pid) {
				res.seen, res.noticed = true, at
			}
			if w.pid != v.pid && w.pid > 0 {
				res.restarted = at
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	cont()
	if res.seen && res.restarted == 0 {
		res.note = "still the stopped pid at the end of the window"
	}
	if !res.seen {
		res.note = "reported healthy all the window while stopped"
	}
	return res
}

// leak sends svc SIGUSR2 (the demo's fault hook: a child that grows by 8 MiB every 100 ms)
// and watches for -fault-window: seen if the supervisor replaces the service or reports it
// unhealthy. Times are from when the tree's PSS passed the limit. A leaking child left
// behind is killed.
func leak(s stack, svc string) faultResult {
	res := faultResult{ran: true}
	v, err := settle(s, svc, 0, recoverWait)
	if err != nil {
		res.note = err.Error()
		return res
	}
	before := treemem.Tree(v.pid)
	if err := syscall.Kill(v.pid, syscall.SIGUSR2); err != nil {
		res.note = err.Error()
		return res
	}
	t0 := time.Now()
	leaker := 0
	var over time.Time
	for time.Since(t0) < *flagFaultWindow {
		if leaker == 0 {
			for _, p := range treemem.Tree(v.pid) {
				if !slices.Contains(before, p) {
					leaker = p
				}
			}
		}
		if over.IsZero() && treemem.TreePSS(v.pid) > leakLimitMB<<20 {
			over = time.Now()
		}
		w, err := s.view(context.Background(), svc)
		if err == nil && (w.pid != v.pid || !w.healthy) {
			from := over
			if from.IsZero() {
				from = t0
			}
			if !res.seen {
				res.seen, res.noticed = true, time.Since(from)
			}
			if w.pid != v.pid {
				res.restarted = time.Since(from)
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if leaker != 0 && treemem.Alive(leaker) {
		time.Sleep(2 * time.Second) // it ends with its parent
		if treemem.Alive(leaker) {
			syscall.Kill(leaker, syscall.SIGKILL)
			if res.seen {
				res.note = "the leaking child outlived the restart; killed by the harness"
			} else {
				res.note = "the leaking child was killed by the harness at the end of the window"
			}
		}
	}
	if leaker == 0 {
		res.note = "no leaking child appeared"
	}
	return res
}

// crashLoop makes svc fail at every start: it is killed and its port is taken (it exits
// with EADDRINUSE), for -fault-window. Seen if over the window's second half the supervisor
// reports it down or failed in at least 80 % of its reads (rather than running); the note
// names its states and how many instances it started.
func crashLoop(s stack, svc string) faultResult {
	res := faultResult{ran: true}
	v, err := settle(s, svc, 0, recoverWait)
	if err != nil {
		res.note = err.Error()
		return res
	}
	port := s.port(svc)
	var ln net.Listener
	for try := 0; try < 5 && ln == nil; try++ {
		cur, err := s.view(context.Background(), svc)
		if err != nil || cur.pid <= 0 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		syscall.Kill(cur.pid, syscall.SIGKILL)
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				ln = l
				break
			}
		}
	}
	if ln == nil {
		res.note = fmt.Sprintf("could not take port %d", port)
		return res
	}
	defer ln.Close()
	t0 := time.Now()
	states := map[string]int{}
	pids := map[int]bool{}
	down, reads := 0, 0
	restarts0, restarts := v.restarts, v.restarts
	for time.Since(t0) < *flagFaultWindow {
		w, err := s.view(context.Background(), svc)
		if err == nil {
			if w.pid > 0 && w.pid != v.pid {
				pids[w.pid] = true
			}
			restarts = max(restarts, w.restarts)
			if !res.seen && !w.healthy {
				res.seen, res.noticed = true, time.Since(t0)
			}
			if time.Since(t0) > *flagFaultWindow/2 {
				reads++
				states[w.state]++
				if !w.healthy {
					down++
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	var names []string
	for st, n := range states {
		names = append(names, fmt.Sprintf("%s %d%%", st, 100*n/max(1, reads)))
	}
	sort.Strings(names)
	starts := fmt.Sprintf("%d pids seen", len(pids))
	if restarts0 >= 0 {
		starts = fmt.Sprintf("%d restarts counted", restarts-restarts0)
	}
	res.note = fmt.Sprintf("second half: %s; %s", strings.Join(names, ", "), starts)
	res.seen = reads > 0 && down*5 >= reads*4
	return res
}

// recovered waits until the stack has svc healthy again (after a fault).
func recovered(s stack, svc string) error {
	_, err := settle(s, svc, 0, recoverWait)
	return err
}
