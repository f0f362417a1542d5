package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/internal/treemem"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/livinity/livinity-agent/test/e2e"
)

// Supervision settings every stack gets, as near as each supervisor can express them:
// checks every second with a 1 s timeout, three failures in a row restart, and a memory
// limit on the service the leak is injected into.
const (
	probePeriod      = 1 // seconds
	probeTimeout     = 1
	failureThreshold = 3
	leakLimitMB      = 200
	target           = "nexus-core" // the service every fault hits: HTTP probe, leak hook
)

// view is what a supervisor's own interface says of one service.
type view struct {
	state    string    // the supervisor's own word
	up       bool      // it says the service runs
	healthy  bool      // it says the service runs and passes its checks (= up without checks)
	pid      int       // the main pid it knows; 0 when none
	restarts int       // its restart counter; -1 when it has none
	since    time.Time // when the state last changed, if it says (the agent only)
}

// stack is one supervisor supervising the five demo services.
type stack interface {
	name() string
	// view reads the supervisor's view of a service through its own interface.
	view(ctx context.Context, svc string) (view, error)
	// groups are the supervisor's own processes to measure: each root with its descendants,
	// less the services' trees.
	groups() []group
	// healthURL is a URL of the service that answers 200 while it serves ("" for none).
	healthURL(svc string) string
	// port is the service's TCP port (0 for none).
	port(svc string) int
	// has says which checks it is configured with, for the table.
	checks() string
	stop()
}

// group is a set of processes measured as one row.
type group struct {
	label string
	root  int
}

// services are the demo's five services, in the catalog's order.
var services = []string{"livos", "nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"}

// agentStack is livinity-agent run, supervising through its own PM2 daemon.
type agentStack struct {
	d       *e2e.Demo
	cfg     *config.Config
	bin     string // the static build measured
	sock    string
	cmd     *exec.Cmd
	done    chan struct{}
	log     *testenv.Buffer
	pm2PID  int
	globals []string
	env     []string
}

// agentConfig is the demo's setup.json with free ports, 1 s probes for every service and
// the leak limit on the target.
func agentConfig(b testing.TB, tree string) *config.Config {
	cfg := demo.Config(tree, 20)
	cfg.Ports = config.Ports{API: testenv.FreePort(b), MCP: testenv.FreePort(b), Memory: testenv.FreePort(b), Livos: testenv.FreePort(b)}
	cfg.Agent.HealthTimeoutSeconds = 180
	timing := func() *config.Timing {
		return &config.Timing{PeriodSeconds: probePeriod, TimeoutSeconds: probeTimeout, FailureThreshold: failureThreshold}
	}
	cfg.Agent.Services = map[string]config.Service{}
	for _, name := range cfg.ServiceNames() {
		sv := config.Service{Liveness: timing(), Readiness: timing()}
		if name == target {
			sv.MemoryLimitMB = leakLimitMB
		}
		cfg.Agent.Services[name] = sv
	}
	return cfg
}

var (
	buildOnce  sync.Once
	builtAgent string // the binary every part of one run measures
	builtFrom  string // what it was built from, for the header
	builtDir   string // removed by TestMain
	buildErr   error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// buildAgent is the release build of the agent (static, as scripts/demo.sh builds it) of
// the commit at HEAD when the run started (exported with git archive: others' uncommitted
// changes are not measured), of the working tree with -agent-from tree, or -agent-bin. It
// is built once a run and copied into dir.
func buildAgent(b testing.TB, dir string) string {
	buildOnce.Do(func() { builtAgent, builtFrom, buildErr = build(testenv.Root(b)) })
	if buildErr != nil {
		b.Fatal(buildErr)
	}
	data, err := os.ReadFile(builtAgent)
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "livinity-agent-static")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		b.Fatal(err)
	}
	return bin
}

func build(root string) (bin, from string, err error) {
	if *flagAgentBin != "" {
		return *flagAgentBin, "the binary " + *flagAgentBin, nil
	}
	dir, err := os.MkdirTemp("", "lvbench")
	if err != nil {
		return "", "", err
	}
	builtDir = dir
	src := root
	switch *flagAgentFrom {
	case "head":
		rev, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
		if err != nil {
			return "", "", fmt.Errorf("git rev-parse HEAD: %w", err)
		}
		commit := strings.TrimSpace(string(rev))
		src = filepath.Join(dir, "src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return "", "", err
		}
		export := exec.Command("sh", "-c", "git -C \"$1\" archive \"$2\" | tar -x -C \"$3\"", "sh", root, commit, src)
		if o, err := export.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("export %s: %v\n%s", commit, err, o)
		}
		from = "commit " + commit + " (git archive), CGO_ENABLED=0"
	case "tree":
		from = "the working tree, CGO_ENABLED=0"
		if d, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); len(d) > 0 {
			from += ", with uncommitted changes"
		}
	default:
		return "", "", fmt.Errorf("-agent-from %q: want head or tree", *flagAgentFrom)
	}
	bin = filepath.Join(dir, "livinity-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/livinity-agent")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("build the agent (%s): %v\n%s", src, err, out)
	}
	return bin, from, nil
}

// startAgent onboards the demo tree with `livinity-agent run` and waits until all five
// services are ready.
func startAgent(b testing.TB) *agentStack {
	bin := buildAgent(b, testenv.ShortTempDir(b))
	d := e2e.NewDemoWithAgent(b, bin)
	s := &agentStack{d: d, cfg: agentConfig(b, d.Tree), bin: bin, log: &testenv.Buffer{}, done: make(chan struct{})}
	data, err := s.cfg.MarshalIndent()
	if err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(d.Base, "setup.json")
	if err := atomicfile.WriteFile(cfgPath, append(data, '\n'), 0o600); err != nil {
		b.Fatal(err)
	}
	runDir := filepath.Join(d.Base, "run")
	s.sock = filepath.Join(runDir, statusapi.SocketName)
	s.globals = []string{"--state-dir", filepath.Join(d.Base, "state"), "--pm2-home", d.PM2Home, "--pm2", d.PM2Bin, "--runtime-dir", runDir}
	s.env = testenv.ChildEnv(d.PATH, "PM2_HOME="+d.PM2Home)
	s.cmd = exec.Command(s.bin, append(append([]string{}, s.globals...), "run", "--config", cfgPath, "--metrics-listen", d.MetricsAddr)...)
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		b.Fatalf("start the agent: %v", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	b.Cleanup(s.stop)
	logf("agent: onboarding the demo tree in %s (livinity-agent run, pid %d) ...", d.Tree, s.cmd.Process.Pid)
	start := time.Now()
	deadline := start.Add(10 * time.Minute)
	for {
		select {
		case <-s.done:
			b.Fatalf("the agent exited: %v\n%s", s.cmd.ProcessState, tail(s.log.String(), 40))
		default:
		}
		st, err := statusapi.Fetch(context.Background(), s.sock)
		if err == nil && allReady(st) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the agent's services are not all ready after 10 min: %v %s\n%s", err, describe(st), tail(s.log.String(), 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
	pidText, err := os.ReadFile(filepath.Join(d.PM2Home, "pm2.pid"))
	if err != nil {
		b.Fatalf("the PM2 daemon's pid: %v", err)
	}
	s.pm2PID, _ = strconv.Atoi(strings.TrimSpace(string(pidText)))
	logf("agent: all five services ready after %v (PM2 daemon pid %d)", time.Since(start).Round(time.Second), s.pm2PID)
	return s
}

func allReady(st statusapi.Status) bool {
	if !st.Ready || st.Agent == nil || !st.Agent.PM2Connected || len(st.Services) != len(services) {
		return false
	}
	for _, sv := range st.Services {
		if sv.State != "ready" || sv.PID <= 0 {
			return false
		}
	}
	return true
}

func describe(st statusapi.Status) string {
	var parts []string
	for _, sv := range st.Services {
		parts = append(parts, fmt.Sprintf("%s=%s(pid %d, %s)", sv.Name, sv.State, sv.PID, sv.Detail))
	}
	return strings.Join(parts, " ")
}

func (s *agentStack) name() string { return "livinity-agent" }

func (s *agentStack) checks() string {
	return "HTTP /health of 3 services + TCP (livos) at 1 s (liveness and readiness), process (worker); tree PSS limit 200 MB on nexus-core"
}

func (s *agentStack) view(ctx context.Context, svc string) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := statusapi.Fetch(ctx, s.sock)
	if err != nil {
		return view{}, err
	}
	for _, sv := range st.Services {
		if sv.Name == svc {
			v := view{state: sv.State, up: sv.PM2Status == "online", healthy: sv.State == "ready", pid: sv.PID, restarts: int(sv.RestartsTotal)}
			if sv.Since != nil {
				v.since = *sv.Since
			}
			return v, nil
		}
	}
	return view{}, fmt.Errorf("the agent's status lists no %s", svc)
}

func (s *agentStack) groups() []group {
	return []group{{"livinity-agent", s.cmd.Process.Pid}, {"PM2 daemon (under the agent)", s.pm2PID}}
}

func (s *agentStack) port(svc string) int { return servicePort(s.cfg, svc) }

func (s *agentStack) healthURL(svc string) string { return healthURL(s.cfg, svc) }

func (s *agentStack) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// servicePort is a service's port in cfg (0 for none).
func servicePort(cfg *config.Config, svc string) int {
	for _, d := range cfg.Services() {
		if d.Name == svc {
			return cfg.Ports.PortOf(d.Port)
		}
	}
	return 0
}

// healthURL is the URL of the service's HTTP probe in cfg ("" for none).
func healthURL(cfg *config.Config, svc string) string {
	for _, d := range cfg.Services() {
		if d.Name == svc && d.Probe.Kind == "http" {
			return fmt.Sprintf("http://127.0.0.1:%d%s", cfg.Ports.PortOf(d.Port), d.Probe.Path)
		}
	}
	return ""
}

// serving reports whether url answers 200 within 500 ms.
func serving(client *http.Client, url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// ownPIDs are the processes of g: its root's tree less the trees of the given service pids.
func ownPIDs(children map[int][]int, g group, servicePIDs []int) []int {
	skip := map[int]bool{}
	for _, p := range servicePIDs {
		for _, q := range treemem.TreeOf(children, p) {
			skip[q] = true
		}
	}
	var out []int
	for _, p := range treemem.TreeOf(children, g.root) {
		if !skip[p] {
			out = append(out, p)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
