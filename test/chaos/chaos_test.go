// Package chaos is the agent's chaos soak: `livinity-agent run` supervising the five demo
// services, scraped every second by a real Prometheus, while the harness injects faults
// at random from a seeded source — service kills, hangs, memory leaks, the PM2 daemon's
// death, a stolen port, the agent's own death, bursts of scrapes and status reads — one at
// a time, and measures detection and recovery against bounds derived from the config.
// See README.md.
package chaos

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/setup/ecosystem"
	"github.com/livinity/livinity-agent/setup/envfile"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/test/e2e"
)

// Environment variables of the soak.
const (
	envDuration = "LIVINITY_CHAOS_DURATION" // how long faults are injected (default 3m)
	envSeed     = "LIVINITY_CHAOS_SEED"     // the random source's seed (default: the clock)
	envReport   = "LIVINITY_CHAOS_REPORT"   // where the JSON report goes (default: in t.TempDir)

	defaultDuration = 3 * time.Minute
	longDuration    = 30 * time.Minute
)

// Supervision settings of the soak: fast probes so that many faults fit in a few minutes;
// a low memory limit on the services with the leak hook; a short restart backoff.
const (
	probePeriod      = 1 // seconds
	probeTimeout     = 1
	failureThreshold = 3
	leakLimitMB      = 200
	backoffMaxS      = 4
	backoffResetS    = 5
)

type settings struct {
	duration time.Duration
	seed     uint64
	report   string
	mode     string
}

func loadSettings(t *testing.T) settings {
	s := settings{duration: defaultDuration, mode: "ci"}
	if v := os.Getenv(envDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q is not a positive duration: use e.g. 3m or 30m", envDuration, v)
		}
		s.duration, s.mode = d, "custom"
		if d >= longDuration {
			s.mode = "long"
		}
	}
	s.seed = uint64(time.Now().UnixNano())
	if v := os.Getenv(envSeed); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q is not a seed: use the decimal number a report printed", envSeed, v)
		}
		s.seed = n
	}
	s.report = os.Getenv(envReport)
	if s.report == "" {
		s.report = filepath.Join(t.TempDir(), "chaos-report.json")
	}
	if d, ok := t.Deadline(); ok && time.Until(d) < s.duration+4*time.Minute {
		t.Fatalf("%s=%v needs about %v more than go test's -timeout leaves (%v): run with -timeout %v",
			envDuration, s.duration, 4*time.Minute, time.Until(d).Round(time.Second), (s.duration + 15*time.Minute).Round(time.Minute))
	}
	return s
}

// TestChaosSoak onboards the demo tree with `livinity-agent run`, then injects faults for
// LIVINITY_CHAOS_DURATION and fails on any broken bound, any restart of a service without
// a fault, any agent crash, restart counters that disagree with the agent's log, or a
// secret in anything collected.
func TestChaosSoak(t *testing.T) {
	set := loadSettings(t)
	testStart := time.Now()
	d := e2e.NewDemo(t)
	path, pm2Bin, base, agentBin, tree, pm2Home, metricsAddr := d.PATH, d.PM2Bin, d.Base, d.Agent, d.Tree, d.PM2Home, d.MetricsAddr
	cfg, cfgPath := writeConfig(t, base, tree)
	prom := e2e.StartPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: livinity
    static_configs:
      - targets: [%q]
`, metricsAddr))

	runDir := filepath.Join(base, "run")
	globals := []string{"--state-dir", filepath.Join(base, "state"), "--pm2-home", pm2Home, "--pm2", pm2Bin, "--runtime-dir", runDir}
	env := testenv.ChildEnv(path, "PM2_HOME="+pm2Home)
	agent := &agentRunner{
		bin:          agentBin,
		args:         append(append([]string{}, globals...), "--log-level", "debug", "run", "--config", cfgPath, "--metrics-listen", metricsAddr),
		env:          env,
		restartDelay: agentRestartDelay,
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { agent.run(ctx); close(runDone) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(pm2Home, "pm2.log")); err == nil {
				t.Logf("PM2 daemon log:\n%s", b)
			}
			for _, name := range config.Default().ServiceNames() {
				if b, err := os.ReadFile(filepath.Join(ecosystem.LogDir(cfg), name+"-error.log")); err == nil {
					t.Logf("%s's error log, the end:\n%s", name, tail(string(b), 20))
				}
			}
			lives, _ := agent.snapshotLives()
			for _, l := range lives {
				t.Logf("agent lifetime %d (%s) log:\n%s", l.n, l.exit, l.log.String())
			}
		}
	})

	obs := &observer{sock: filepath.Join(runDir, statusapi.SocketName), agentBin: agentBin, cliArgs: globals, env: env, pm2Home: pm2Home}

	// Onboarding: the first lifetime runs the pipeline, then supervises.
	var last string
	if !obs.poll(ctx, time.Now().Add(10*time.Minute), func(_ time.Time, st statusapi.Status, err error) bool {
		if _, crashes := agent.snapshotLives(); crashes > 0 {
			t.Fatalf("the agent exited while onboarding:\n%s", agent.current().log.String())
		}
		last = describe(st, err)
		return allReady(st, err)
	}) {
		t.Fatalf("the demo tree was not onboarded and ready within 10 minutes: %s", last)
	}
	onboarded := time.Since(testStart)
	t.Logf("onboarded, 5 services ready after %v", onboarded.Round(time.Second))

	secrets := append(cfg.Secrets(), envSecrets(t, cfg)...)
	obs.secrets = newSecretScan(secrets)
	if len(obs.secrets.secrets) < 8 {
		t.Fatalf("only %d secret values to look for; the config's and the .env's should give at least 8", len(obs.secrets.secrets))
	}
	prom.WaitValue("Prometheus scraping the agent", `up{job="livinity"}`, time.Minute, func(v float64) bool { return v == 1 })

	r := &Report{
		Seed:    set.seed,
		Replay:  fmt.Sprintf("%s=%d %s=%v go test -count=1 -run TestChaosSoak -v -timeout %v ./test/chaos", envSeed, set.seed, envDuration, set.duration, (set.duration + 15*time.Minute).Round(time.Minute)),
		Mode:    set.mode,
		Planned: set.duration.String(),
		Machine: machine(),
		Timings: fmt.Sprintf("probes period %ds timeout %ds failureThreshold %d successThreshold 1; memory limit %d MiB (%s), %d checks; restart backoff 1s×2 up to %ds, reset after %ds",
			probePeriod, probeTimeout, failureThreshold, leakLimitMB, strings.Join(targets[kindLeak], ", "), cfg.Agent.MemoryBreachChecks, backoffMaxS, backoffResetS),
		OnboardSeconds: round3(onboarded.Seconds()),
	}
	t.Logf("chaos soak: seed %d, injecting faults for %v; replay: %s", set.seed, set.duration, r.Replay)
	s := &soak{
		ctx: ctx, rng: mrand.New(mrand.NewPCG(set.seed, set.seed^0x9e3779b97f4a7c15)), cfg: cfg, bounds: boundsFor(cfg),
		obs: obs, agent: agent, prom: prom, metricsURL: "http://" + metricsAddr + "/metrics", pm2Home: pm2Home,
		ports:  map[string]int{"nexus-core": cfg.Ports.API, "nexus-mcp": cfg.Ports.MCP, "nexus-memory": cfg.Ports.Memory, "livos": cfg.Ports.Livos},
		report: r,
	}
	s.start = time.Now()
	if first, ok := s.quiet("at the start"); ok {
		s.base = first
	}

	// Faults, one at a time, in a random order that covers every kind each round.
	var order []kind
	for n := 1; time.Since(s.start) < set.duration; n++ {
		if len(order) == 0 {
			for _, i := range s.rng.Perm(len(allKinds)) {
				order = append(order, allKinds[i])
			}
		}
		p := s.plan(order[0])
		order = order[1:]
		f := &Fault{N: n, Kind: string(p.kind)}
		r.Faults = append(r.Faults, f)
		ok := s.inject(f, p)
		t.Logf("fault %d %s %v: detected %v in %.3fs, recovered %v in %.3fs; %s %v", f.N, f.Kind, f.Targets, f.Detected, f.Detection, f.Recovered, f.Recovery, f.Detail, f.Problems)
		if !ok {
			break
		}
		time.Sleep(p.pause)
	}
	r.InjectingSeconds = round3(time.Since(s.start).Seconds())

	// The end: counters of the last lifetime, a clean stop, then everything collected is
	// searched for secrets.
	if _, ok := s.quiet("at the end"); ok {
		s.checkCounters("at the end")
	}
	if samples, err := prom.Query(`{job="livinity"}`); err == nil {
		b, _ := json.Marshal(samples)
		obs.secrets.scan("Prometheus series", b)
	} else {
		r.problem("read the agent's series from Prometheus: %v", err)
	}
	exit, err := agent.stop(30 * time.Second)
	if err != nil {
		r.problem("%v", err)
	} else if exit != "exit status 0" {
		r.problem("the agent stopped with %q after SIGTERM, want exit status 0", exit)
	}
	lives, crashes := agent.snapshotLives()
	r.AgentLifetimes, r.AgentCrashes = len(lives), crashes
	for _, l := range lives {
		if l.killed {
			r.AgentKills++
		}
		r.AgentExits = append(r.AgentExits, fmt.Sprintf("lifetime %d: %s", l.n, l.exit))
		obs.secrets.scan(fmt.Sprintf("agent log (lifetime %d)", l.n), []byte(l.log.String()))
	}
	obs.secrets.scanFiles("PM2 log", filepath.Join(pm2Home, "pm2.log"))
	obs.secrets.scanFiles("service log", ecosystem.LogDir(cfg))
	r.WallSeconds = round3(time.Since(testStart).Seconds())
	r.summarize(s.bounds)
	obs.secrets.scan("this report", []byte(r.Text()))
	r.SecretsChecked, r.SourcesScanned, r.SecretLeaks = obs.secrets.result()
	r.summarize(s.bounds) // again, with the secret scan's result
	text := r.Text()
	if err := r.write(set.report); err != nil {
		t.Error(err)
	}
	t.Logf("\n%s\nJSON report: %s", text, set.report)
	for _, p := range r.Problems {
		t.Error(p)
	}
}

// writeConfig writes the soak's setup.json: free loopback ports, secrets in every secret
// field (so that a leak would show), fast probes, a low memory limit on the services with
// the leak hook and a short restart backoff.
func writeConfig(t *testing.T, base, tree string) (*config.Config, string) {
	t.Helper()
	cfg := demo.Config(tree, 20)
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: testenv.FreePort(t)}
	cfg.Agent.HealthTimeoutSeconds = 120
	cfg.Telegram = &config.Telegram{BotToken: randomString(t, "0123456789", 10) + ":" + randomString(t, alnum, 35)}
	cfg.Discord = &config.Discord{
		BotToken:      randomString(t, alnum, 24) + "." + randomString(t, alnum, 6) + "." + randomString(t, alnum, 27),
		ApplicationID: "1" + randomString(t, "0123456789", 17),
	}
	cfg.Voice = &config.Voice{DeepgramAPIKey: randomString(t, alnum, 40), CartesiaAPIKey: randomString(t, alnum, 32)}
	cfg.Gmail = &config.Gmail{ClientID: "1234-" + randomString(t, alnum, 12) + ".apps.googleusercontent.com", ClientSecret: "GOCSPX-" + randomString(t, alnum, 28)}
	timing := func() *config.Timing {
		return &config.Timing{PeriodSeconds: probePeriod, TimeoutSeconds: probeTimeout, FailureThreshold: failureThreshold}
	}
	cfg.Agent.Services = map[string]config.Service{}
	for _, name := range config.Default().ServiceNames() {
		sv := config.Service{Liveness: timing(), Readiness: timing(),
			Startup: &config.Timing{PeriodSeconds: probePeriod, TimeoutSeconds: probeTimeout}}
		for _, leaky := range targets[kindLeak] {
			if name == leaky {
				sv.MemoryLimitMB = leakLimitMB
			}
		}
		cfg.Agent.Services[name] = sv
	}
	cfg.Agent.RestartBackoff = config.Backoff{InitialSeconds: 1, Multiplier: 2, MaxSeconds: backoffMaxS, ResetAfterSeconds: backoffResetS}
	b, err := cfg.MarshalIndent()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := config.Parse(b)
	if err != nil {
		t.Fatalf("the soak's config: %v", err)
	}
	p := filepath.Join(base, "setup.json")
	if err := atomicfile.WriteFile(p, append(b, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return parsed, p
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomString(t *testing.T, alphabet string, n int) string {
	t.Helper()
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			t.Fatal(err)
		}
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

// envSecrets are the secret values of the .env the onboarding wrote (generated JWT
// secret, API key, database and Redis URLs, and the config's tokens).
func envSecrets(t *testing.T, cfg *config.Config) []string {
	t.Helper()
	existing, err := envfile.Read(filepath.Join(cfg.Paths.LivosBaseDir, ".env"))
	if err != nil {
		t.Fatalf("read the onboarded .env: %v", err)
	}
	env, err := envfile.Build(cfg, existing, false, nil)
	if err != nil {
		t.Fatalf("rebuild the .env from itself: %v", err)
	}
	return env.Secrets()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
