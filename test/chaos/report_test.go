package chaos

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/livinity/livinity-agent/internal/atomicfile"
)

// Report is what a soak found: printed at the end and written as JSON.
type Report struct {
	Seed    uint64 `json:"seed"`
	Replay  string `json:"replay"` // the command that injects the same sequence again
	Mode    string `json:"mode"`   // ci or long
	Planned string `json:"plannedDuration"`
	// InjectingSeconds is how long faults were injected; WallSeconds the whole test,
	// onboarding included.
	InjectingSeconds float64 `json:"injectingSeconds"`
	WallSeconds      float64 `json:"wallSeconds"`
	OnboardSeconds   float64 `json:"onboardSeconds"`
	Machine          string  `json:"machine"`
	// Timings are the supervision settings the bounds are derived from.
	Timings string `json:"timings"`

	Kinds  []KindSummary `json:"kinds"`
	Faults []*Fault      `json:"faults"`

	// UnfaultedRestarts lists every restart of a service that no fault targeted (from the
	// agent's counters or PM2's pids); it must be empty.
	UnfaultedRestarts []string `json:"unfaultedRestarts"`
	// AgentLifetimes is how many times the agent ran; AgentKills how many of its ends the
	// harness caused; AgentCrashes the others (must be 0).
	AgentLifetimes int      `json:"agentLifetimes"`
	AgentKills     int      `json:"agentKills"`
	AgentCrashes   int      `json:"agentCrashes"`
	AgentExits     []string `json:"agentExits"`
	// Counters compares restart counters, within each agent lifetime, across the agent's
	// log, status (socket and CLI) and Prometheus.
	Counters []CounterCheck `json:"counters"`
	// SecretsChecked is how many secret values were looked for in SourcesScanned
	// (bytes); SecretLeaks names where one was found (never the value).
	SecretsChecked int      `json:"secretsChecked"`
	SourcesScanned int64    `json:"bytesScanned"`
	SecretLeaks    []string `json:"secretLeaks"`
	// Problems is every broken bound or expectation; the test fails when it is not empty.
	Problems []string `json:"problems"`

	mu     sync.Mutex
	during []string // problems found while running, outside any one fault
}

// KindSummary is one fault kind's figures against its bounds.
type KindSummary struct {
	Kind      string `json:"kind"`
	Injected  int    `json:"injected"`
	Detected  int    `json:"detected"`
	Recovered int    `json:"recovered"`
	// Detection and Recovery are latencies in seconds; their bounds come from the config
	// (BoundRule says how). A zero bound means not applicable (the burst).
	Detection      Stats   `json:"detectionSeconds"`
	Recovery       Stats   `json:"recoverySeconds"`
	DetectionBound float64 `json:"detectionBoundSeconds"`
	RecoveryBound  float64 `json:"recoveryBoundSeconds"`
	BoundRule      string  `json:"boundRule"`
	// Requests and Latency are the burst's requests (scrapes, status reads) and their
	// latency in seconds.
	Requests       int   `json:"requests,omitempty"`
	FailedRequests int   `json:"failedRequests,omitempty"`
	Latency        Stats `json:"requestLatencySeconds"`
	Broken         int   `json:"brokenBounds"`
}

// Stats are p50, p99 and max of some samples, in seconds.
type Stats struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// statsOf computes Stats (nearest-rank percentiles).
func statsOf(samples []float64) Stats {
	if len(samples) == 0 {
		return Stats{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return round3(s[max(i, 0)])
	}
	return Stats{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: round3(s[len(s)-1])}
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// Fault is one injected fault and what followed.
type Fault struct {
	N       int      `json:"n"`
	Kind    string   `json:"kind"`
	Targets []string `json:"targets"`
	// At is seconds since injection began.
	At        float64 `json:"at"`
	Detected  bool    `json:"detected"`
	Detection float64 `json:"detectionSeconds"`
	Recovered bool    `json:"recovered"`
	Recovery  float64 `json:"recoverySeconds"`
	// Requests and FailedRequests count the burst's requests.
	Requests       int `json:"requests,omitempty"`
	FailedRequests int `json:"failedRequests,omitempty"`
	// Detail says what happened (pids, counters); Problems what went wrong.
	Detail   string   `json:"detail"`
	Problems []string `json:"problems,omitempty"`

	latencies []float64 // the burst's, in seconds
}

func (f *Fault) problem(format string, args ...any) {
	f.Problems = append(f.Problems, fmt.Sprintf(format, args...))
}

func (f *Fault) detail(format string, args ...any) {
	if f.Detail != "" {
		f.Detail += "; "
	}
	f.Detail += fmt.Sprintf(format, args...)
}

// CounterCheck is one comparison of livinity_service_restarts_total, per service and
// reason, within one agent lifetime.
type CounterCheck struct {
	Lifetime int    `json:"lifetime"`
	When     string `json:"when"`
	// Log counts the agent's "restart counted" lines of that lifetime.
	Log        counts `json:"log"`
	Status     counts `json:"status"`
	StatusCLI  counts `json:"statusCli"`
	Prometheus counts `json:"prometheus"`
	Match      bool   `json:"match"`
}

// counts are restarts by "service/reason"; zero entries are left out.
type counts map[string]uint64

func (c counts) add(service, reason string, n uint64) {
	if n > 0 {
		c[service+"/"+reason] += n
	}
}

func (c counts) equal(o counts) bool {
	if len(c) != len(o) {
		return false
	}
	for k, v := range c {
		if o[k] != v {
			return false
		}
	}
	return true
}

func (c counts) String() string {
	if len(c) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, c[k])
	}
	return strings.Join(parts, " ")
}

func (r *Report) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.during = append(r.during, fmt.Sprintf(format, args...))
}

func (r *Report) unfaulted(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.UnfaultedRestarts = append(r.UnfaultedRestarts, fmt.Sprintf(format, args...))
}

// summarize fills Kinds from Faults and the bounds, and Problems from what was found
// while running, every fault's problems (broken bounds among them) and the end's checks.
// It may be called again after more was found.
func (r *Report) summarize(bounds map[kind]bound) {
	r.Kinds = nil
	r.Problems = slices.Clone(r.during)
	for _, k := range allKinds {
		b := bounds[k]
		ks := KindSummary{Kind: string(k), DetectionBound: b.detect.Seconds(), RecoveryBound: b.recover.Seconds(), BoundRule: b.rule}
		var det, rec, lat []float64
		for _, f := range r.Faults {
			if f.Kind != string(k) {
				continue
			}
			ks.Injected++
			ks.Requests += f.Requests
			ks.FailedRequests += f.FailedRequests
			lat = append(lat, f.latencies...)
			if f.Detected {
				ks.Detected++
				det = append(det, f.Detection)
			}
			if f.Recovered {
				ks.Recovered++
				rec = append(rec, f.Recovery)
			}
		}
		ks.Detection, ks.Recovery, ks.Latency = statsOf(det), statsOf(rec), statsOf(lat)
		if b.detect > 0 {
			for _, v := range det {
				if v > b.detect.Seconds() {
					ks.Broken++
				}
			}
		}
		if b.recover > 0 {
			for _, v := range rec {
				if v > b.recover.Seconds() {
					ks.Broken++
				}
			}
		}
		r.Kinds = append(r.Kinds, ks)
	}
	for _, f := range r.Faults {
		for _, p := range f.Problems {
			r.Problems = append(r.Problems, fmt.Sprintf("fault %d (%s %s): %s", f.N, f.Kind, strings.Join(f.Targets, ","), p))
		}
	}
	if len(r.UnfaultedRestarts) > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d restarts of services that had no fault", len(r.UnfaultedRestarts)))
	}
	if r.AgentCrashes > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("the agent exited on its own %d times", r.AgentCrashes))
	}
	for _, c := range r.Counters {
		if !c.Match {
			r.Problems = append(r.Problems, fmt.Sprintf("restart counters of agent lifetime %d (%s) disagree: log %v, status %v, status --json %v, prometheus %v",
				c.Lifetime, c.When, c.Log, c.Status, c.StatusCLI, c.Prometheus))
		}
	}
	for _, l := range r.SecretLeaks {
		r.Problems = append(r.Problems, "secret found in "+l)
	}
}

// Text renders the report for people.
func (r *Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos soak: seed %d (%s), mode %s, injected for %.0fs (planned %s), wall %.0fs (onboarding %.0fs)\n",
		r.Seed, r.Replay, r.Mode, r.InjectingSeconds, r.Planned, r.WallSeconds, r.OnboardSeconds)
	fmt.Fprintf(&b, "machine: %s\ntimings: %s\n\n", r.Machine, r.Timings)
	fmt.Fprintf(&b, "%-6s %4s %4s %4s  %-24s %-24s %s\n", "fault", "inj", "det", "rec", "detection p50/p99/max", "recovery p50/p99/max", "broken")
	for _, k := range r.Kinds {
		det := fmt.Sprintf("%.2f/%.2f/%.2f ≤%.1f", k.Detection.P50, k.Detection.P99, k.Detection.Max, k.DetectionBound)
		rec := fmt.Sprintf("%.2f/%.2f/%.2f ≤%.1f", k.Recovery.P50, k.Recovery.P99, k.Recovery.Max, k.RecoveryBound)
		if k.DetectionBound == 0 {
			det, rec = "n/a", fmt.Sprintf("%d requests, %d failed, latency %.3f/%.3f/%.3f", k.Requests, k.FailedRequests, k.Latency.P50, k.Latency.P99, k.Latency.Max)
		}
		fmt.Fprintf(&b, "%-6s %4d %4d %4d  %-24s %-24s %d\n", k.Kind, k.Injected, k.Detected, k.Recovered, det, rec, k.Broken)
	}
	b.WriteString("\nbounds (seconds; detection from injection, recovery from injection, or from the port's release):\n")
	for _, k := range r.Kinds {
		fmt.Fprintf(&b, "  %-6s %s\n", k.Kind, k.BoundRule)
	}
	b.WriteString("\nfaults:\n")
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "  %3d %6.1fs %-6s %-28s det %6.3fs rec %6.3fs  %s\n", f.N, f.At, f.Kind, strings.Join(f.Targets, ","), f.Detection, f.Recovery, f.Detail)
		for _, p := range f.Problems {
			fmt.Fprintf(&b, "      PROBLEM: %s\n", p)
		}
	}
	fmt.Fprintf(&b, "\nrestarts of services without a fault: %d %v\n", len(r.UnfaultedRestarts), r.UnfaultedRestarts)
	fmt.Fprintf(&b, "agent: %d lifetimes, %d killed by the harness, %d crashes %v\n", r.AgentLifetimes, r.AgentKills, r.AgentCrashes, r.AgentExits)
	b.WriteString("restart counters (per agent lifetime: log = status = status --json = prometheus):\n")
	for _, c := range r.Counters {
		fmt.Fprintf(&b, "  lifetime %d %-22s match=%v  log: %v\n", c.Lifetime, c.When, c.Match, c.Log)
	}
	fmt.Fprintf(&b, "secrets: %d values looked for in %d bytes of logs and output; found in: %v\n", r.SecretsChecked, r.SourcesScanned, r.SecretLeaks)
	fmt.Fprintf(&b, "problems: %d\n", len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "  - %s\n", p)
	}
	return b.String()
}

// write saves the report as indented JSON.
func (r *Report) write(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the chaos report: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the chaos report: %w", err)
	}
	return nil
}

func machine() string {
	host, _ := os.Hostname()
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores (%s), %s %s/%s, %s", host, runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH,
		time.Now().UTC().Format(time.DateOnly))
}
