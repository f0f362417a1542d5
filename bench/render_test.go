package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Goals the table prints against.
const (
	goalRSSMB       = 10.0 // agent RSS max, MB (10^6 bytes)
	goalCPUPct      = 0.3  // agent CPU, % of one core
	goalCrashP99MS  = 2.0  // crash -> agent state p99, ms (strictly below)
	goalParSeq      = 0.6  // first onboarding, parallel / sequential
	goalNoopS       = 3.0  // no-op re-run, s
	goalListSpeedup = 50.0 // pm2 jlist / native read, wall and CPU
)

func mb(b uint64) float64 { return float64(b) / 1e6 }

// underLoad reports whether the 1-minute load average passed the core count at any
// recorded point, and the highest value.
func (r *results) underLoad() (bool, float64) {
	peak := 0.0
	for _, l := range r.loads {
		_, v, _ := strings.Cut(l, ": ")
		if f, err := strconv.ParseFloat(strings.Fields(v + " 0")[0], 64); err == nil && f > peak {
			peak = f
		}
	}
	return peak > float64(runtime.NumCPU()), peak
}

func (r *results) footprint(label string) (footprint, bool) {
	for _, f := range r.footprints {
		if f.label == label {
			return f, true
		}
	}
	return footprint{}, false
}

// goalRow is one line of the goals table; ratio is measured / goal.
type goalRow struct {
	what, goal, measured string
	ratio                float64
	met                  bool
	upper                bool // taken under load: an upper bound
}

func (r *results) goals() []goalRow {
	loaded, _ := r.underLoad()
	var rows []goalRow
	if f, ok := r.footprint("livinity-agent"); ok {
		rows = append(rows,
			goalRow{fmt.Sprintf("agent RSS, 5 services with 1 s probes, %v window", r.window.Round(time.Second)), "≤ 10 MB",
				fmt.Sprintf("max %.1f MB (avg %.1f; PSS avg %.1f)", mb(f.rssMax), mb(f.rssAvg()), mb(f.pssAvg())),
				mb(f.rssMax) / goalRSSMB, mb(f.rssMax) <= goalRSSMB, false},
			goalRow{"agent CPU over the same window", "≤ 0.3 % of one core",
				fmt.Sprintf("%.3f %% (%.2f s in %.0f s)", f.cpuPct(), f.cpu.Seconds(), f.wall.Seconds()),
				f.cpuPct() / goalCPUPct, f.cpuPct() <= goalCPUPct, loaded})
	}
	if k, ok := r.kills["livinity-agent"]; ok && len(k.noticed) > 0 {
		p99 := ms(pct(k.noticed, 0.99))
		rows = append(rows, goalRow{fmt.Sprintf("crash (kill -9) → agent state, %d kills", len(k.noticed)), "p99 < 2 ms",
			fmt.Sprintf("p99 %.2f ms (p50 %.2f, max %.2f)", p99, ms(pct(k.noticed, 0.5)), ms(pct(k.noticed, 1))),
			p99 / goalCrashP99MS, p99 < goalCrashP99MS, loaded})
	}
	if len(r.setupPar) > 0 {
		p, s, n := median(r.setupPar), median(r.setupSeq), median(r.setupNoop)
		ratio := p.Seconds() / s.Seconds()
		rows = append(rows,
			goalRow{fmt.Sprintf("first onboarding of the demo, parallel / sequential (median of %d)", len(r.setupPar)), "≤ 0.6",
				fmt.Sprintf("%.2f (%.2f s vs %.2f s)", ratio, p.Seconds(), s.Seconds()), ratio / goalParSeq, ratio <= goalParSeq, loaded},
			goalRow{"no-op re-run of the onboarding", "≤ 3 s", fmt.Sprintf("%.2f s", n.Seconds()),
				n.Seconds() / goalNoopS, n.Seconds() <= goalNoopS, loaded})
	}
	if r.listNative[0] > 0 {
		w := float64(r.listJlist[0]) / float64(r.listNative[0])
		c := float64(r.listJlist[1]) / float64(r.listNative[1])
		rows = append(rows, goalRow{"PM2 process list, `pm2 jlist` / native client (wall, CPU)", "≥ 50× both",
			fmt.Sprintf("%.0f× wall, %.0f× CPU (%.2f vs %.1f ms)", w, c, ms(r.listNative[0]), ms(r.listJlist[0])),
			min(w, c) / goalListSpeedup, min(w, c) >= goalListSpeedup, loaded})
	}
	return rows
}

func latency(d []time.Duration) string {
	if len(d) == 0 {
		return "—"
	}
	return fmt.Sprintf("%s / %s", fmtMS(pct(d, 0.5)), fmtMS(pct(d, 0.99)))
}

func fmtMS(d time.Duration) string {
	switch v := ms(d); {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func (r *results) render() string {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format+"\n", args...) }
	for _, h := range r.header {
		p("%s  ", h)
	}
	loaded, peak := r.underLoad()
	p("load average (1, 5, 15 min) at each step:  ")
	for _, l := range r.loads {
		p("- %s", l)
	}
	if loaded {
		p("\n**Under load**: the 1-minute load average reached %.1f on %d cores. CPU figures and latencies marked ↑ are upper bounds (the machine was shared).", peak, runtime.NumCPU())
	}
	up := func(g goalRow) string {
		if g.upper {
			return " ↑"
		}
		return ""
	}
	p("\n### Goals\n")
	p("| Figure | Goal | Measured | Measured / goal | Met |")
	p("|---|---|---|---|---|")
	for _, g := range r.goals() {
		met := "no"
		if g.met {
			met = "yes"
		}
		p("| %s | %s | %s%s | %.2f | %s |", g.what, g.goal, g.measured, up(g), g.ratio, met)
	}

	if len(r.stacks) > 0 {
		p("\n### Side by side: the same five demo services, the same machine, the same run\n")
		p("Memory and CPU: the supervisor's own processes (its process tree less the services' trees) over the %v window, all supervisors at once; sampled every second from /proc/<pid>/smaps_rollup. Latencies p50 / p99 in ms.\n", r.window.Round(time.Second))
		p("| Supervisor | RSS max / avg MB | PSS avg MB | CPU %% of a core | kill → noticed | kill → serving again | hung (SIGSTOP) seen | leaking child seen | crash loop seen |")
		p("|---|---|---|---|---|---|---|---|---|")
		mem := func(label string) (string, string, string) {
			f, ok := r.footprint(label)
			if !ok {
				return "—", "—", "—"
			}
			cpu := fmt.Sprintf("%.3f", f.cpuPct())
			if loaded {
				cpu += " ↑"
			}
			return fmt.Sprintf("%.1f / %.1f", mb(f.rssMax), mb(f.rssAvg())), fmt.Sprintf("%.1f", mb(f.pssAvg())), cpu
		}
		for _, s := range r.stacks {
			name := s.name()
			k := r.kills[name]
			kn, ks := latency(k.noticed), latency(k.serving)
			if len(k.noticed) > 0 {
				kn += fmt.Sprintf(" (n=%d)", len(k.noticed))
			}
			if loaded && len(k.noticed) > 0 {
				kn, ks = kn+" ↑", ks+" ↑"
			}
			fault := func(m map[string]faultResult) string {
				f, ok := m[name]
				if !ok {
					return "not run"
				}
				return f.String()
			}
			for i, g := range s.groups() {
				rss, pss, cpu := mem(g.label)
				label := name
				if i > 0 {
					label = "  " + g.label
				}
				if i == 0 {
					p("| %s | %s | %s | %s | %s | %s | %s | %s | %s |", label, rss, pss, cpu, kn, ks, fault(r.hangs), fault(r.leaks), fault(r.loops))
				} else {
					p("| %s | %s | %s | %s | | | | | |", label, rss, pss, cpu)
				}
			}
			if len(s.groups()) > 1 {
				var sum footprint
				n := 0
				for _, g := range s.groups() {
					if f, ok := r.footprint(g.label); ok {
						sum.rssMax += f.rssMax
						sum.rssSum += f.rssAvg()
						sum.pssSum += f.pssAvg()
						sum.cpu += f.cpu
						sum.wall = f.wall
						n++
					}
				}
				if n > 0 {
					sum.samples = 1
					cpu := fmt.Sprintf("%.3f", sum.cpuPct())
					if loaded {
						cpu += " ↑"
					}
					p("| %s + PM2 (sum) | ≤ %.1f / %.1f | %.1f | %s | | | | | |", name, mb(sum.rssMax), mb(sum.rssSum), mb(sum.pssSum), cpu)
				}
			}
		}
		p("\nWhat each supervisor was configured with:\n")
		for _, s := range r.stacks {
			p("- **%s**: %s", s.name(), s.checks())
		}
		for _, f := range r.footprints {
			if f.restartsInWindow > 0 {
				p("- %s: %d services had another pid at the end of the footprint window", f.label, f.restartsInWindow)
			}
		}
	}

	if f, ok := r.footprint("livinity-agent"); ok {
		e := f.end
		p("\n### The agent's memory at the end of the window (smaps_rollup)\n")
		p("RSS %.1f MB = anonymous %.1f MB + file-backed and shared %.1f MB; PSS %.1f MB = anon %.1f + file %.1f + shmem %.1f MB.\n",
			mb(e.Rss), mb(e.Anonymous), mb(e.File()), mb(e.Pss), mb(e.PssAnon), mb(e.PssFile), mb(e.PssShmem))
		if len(r.agentMaps) > 0 {
			p("| Mapping (/proc/<pid>/smaps) | RSS MB | of it anonymous MB |")
			p("|---|---|---|")
			for i, m := range r.agentMaps {
				if i == 8 {
					break
				}
				p("| %s | %.2f | %.2f |", m.name, mb(m.rss), mb(m.anon))
			}
		}
		if len(r.agentSecs) > 0 {
			p("\n| Section of the program file (/proc/<pid>/pagemap) | resident MB | of size MB |")
			p("|---|---|---|")
			for _, s := range r.agentSecs {
				p("| %s | %.2f | %.2f |", s.name, mb(s.resident), mb(s.bytes))
			}
		}
	}
	if len(r.notes) > 0 {
		p("\nNotes:\n")
		for _, n := range r.notes {
			p("- %s", n)
		}
	}
	return w.String()
}

// TestRender renders a table from made-up results (the smoke test the normal suite runs;
// the benchmark itself needs -bench).
func TestRender(t *testing.T) {
	ms := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
	agent := &fakeStack{n: "livinity-agent", gs: []group{{"livinity-agent", 1}, {"PM2 daemon (under the agent)", 2}}}
	peer := &fakeStack{n: "supervisord", gs: []group{{"supervisord", 3}}}
	r := &results{
		header: []string{"date: test"}, loads: []string{"start: 0.50 0.40 0.30"}, window: time.Minute,
		setupPar: []time.Duration{6 * time.Second}, setupSeq: []time.Duration{10 * time.Second}, setupNoop: []time.Duration{200 * time.Millisecond},
		listNative: [2]time.Duration{ms(1.4), ms(0.6)}, listJlist: [2]time.Duration{ms(145), ms(150)},
		stacks: []stack{agent, peer},
		footprints: []footprint{
			{label: "livinity-agent", samples: 2, rssMax: 9e6, rssSum: 17e6, pssSum: 16e6, cpu: 150 * time.Millisecond, wall: time.Minute},
			{label: "PM2 daemon (under the agent)", samples: 2, rssMax: 60e6, rssSum: 110e6, cpu: time.Second, wall: time.Minute},
			{label: "supervisord", samples: 2, rssMax: 20e6, rssSum: 40e6, cpu: 100 * time.Millisecond, wall: time.Minute},
		},
		kills: map[string]killResult{"livinity-agent": {noticed: []time.Duration{ms(1), ms(1.5)}, serving: []time.Duration{ms(900)}}},
		hangs: map[string]faultResult{"livinity-agent": {ran: true, seen: true, noticed: 3 * time.Second, restarted: 9 * time.Second}},
	}
	text := r.render()
	for _, want := range []string{"| agent RSS", "max 9.0 MB", "| 0.90 | yes |", "0.250 %", "| 0.83 | yes |", "p99 1.50 ms", "0.60 (6.00 s vs 10.00 s)",
		"| livinity-agent | 9.0 / 8.5", "livinity-agent + PM2 (sum)", "yes: noticed 3.0 s, restarted 9.0 s", "| supervisord | 20.0 / 20.0"} {
		if !strings.Contains(text, want) {
			t.Errorf("the table lacks %q:\n%s", want, text)
		}
	}
}

type fakeStack struct {
	stack
	n  string
	gs []group
}

func (f *fakeStack) name() string    { return f.n }
func (f *fakeStack) groups() []group { return f.gs }
func (f *fakeStack) checks() string  { return "test" }

// TestSections: the test binary's own resident pages, by section, include its running
// text, are never more than a section's size, and add up to no more than the resident set
// smaps reports for the binary's mappings.
func TestSections(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	secs := sections(os.Getpid(), exe)
	var sum uint64
	text := false
	for _, s := range secs {
		if s.resident > (s.bytes+8191)&^4095 {
			t.Errorf("section %s: %d bytes resident of %d", s.name, s.resident, s.bytes)
		}
		text = text || s.name == ".text"
		sum += s.resident
	}
	if !text {
		t.Fatalf("no resident .text in %+v", secs)
	}
	var rss uint64
	for _, m := range mappings(os.Getpid()) {
		if strings.HasPrefix(m.name, exe+" ") {
			rss += m.rss
		}
	}
	if sum > rss {
		t.Errorf("sections add up to %d resident bytes, smaps has %d for %s", sum, rss, exe)
	}
	t.Logf("%d resident bytes of %s by section (smaps: %d): %+v", sum, exe, rss, secs)
}
