package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/internal/treemem"
	"github.com/livinity/livinity-agent/setup/ecosystem"
)

// peerService is one demo service as a peer supervisor runs it: the same command line,
// working directory and environment as the agent's PM2 app (from the same ecosystem code),
// on the peer's own ports, with its own log and data directories.
type peerService struct {
	name    string
	argv    []string // absolute interpreter first
	cwd     string
	env     []string // KEY=VALUE, on top of the supervisor's own environment
	port    int
	health  string // path of the HTTP check; "" for none
	logFile string
}

// peerBase is what every peer stack shares: its directory, config (the agent's with other
// ports) and services.
type peerBase struct {
	dir      string
	cfg      *config.Config
	services map[string]peerService
	cmd      *exec.Cmd
	done     chan struct{}
	log      *testenv.Buffer
	client   *http.Client
}

// newPeerBase lays out the services of a peer stack over the tree the agent onboarded.
func newPeerBase(b testing.TB, agent *agentStack, label string) *peerBase {
	dir := filepath.Join(agent.d.Base, label)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	c := *agent.cfg
	c.Ports = config.Ports{API: testenv.FreePort(b), MCP: testenv.FreePort(b), Memory: testenv.FreePort(b), Livos: testenv.FreePort(b)}
	p := &peerBase{dir: dir, cfg: &c, services: map[string]peerService{}, done: make(chan struct{}), log: &testenv.Buffer{},
		client: &http.Client{Timeout: time.Second}}
	node, err := exec.LookPath("node")
	if err != nil {
		b.Fatal(err)
	}
	defs := c.Services()
	for _, app := range ecosystem.Apps(&c, defs, ecosystem.Options{Node: node}) {
		var def config.ServiceDef
		for _, d := range defs {
			if d.Name == app.Name {
				def = d
			}
		}
		args := append([]string{}, app.Args...)
		for i := range args {
			if i > 0 && args[i-1] == "--data-directory" {
				args[i] = filepath.Join(dir, "livinityd-data")
			}
		}
		argv := append(append(append([]string{app.Interpreter}, app.NodeArgs...), app.Script), args...)
		env := []string{"NEXUS_LOGS_DIR=" + filepath.Join(dir, "nexus-logs"), "MEMORY_DATA_DIR=" + filepath.Join(dir, "memory-data")}
		for k, v := range app.Env {
			env = append(env, k+"="+v)
		}
		s := peerService{name: app.Name, argv: argv, cwd: app.Cwd, env: env, port: c.Ports.PortOf(def.Port),
			logFile: filepath.Join(dir, app.Name+".log")}
		if def.Probe.Kind == "http" {
			s.health = def.Probe.Path
		}
		p.services[app.Name] = s
	}
	return p
}

func (p *peerBase) port(svc string) int { return p.services[svc].port }

func (p *peerBase) healthURL(svc string) string {
	s := p.services[svc]
	if s.health == "" {
		return ""
	}
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, s.health)
}

// start runs the supervisor (in the foreground, its own process group) and stops it at
// cleanup with SIGTERM, then SIGKILL of its group.
func (p *peerBase) start(b testing.TB, argv []string, env []string) {
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Dir = p.dir
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", argv[0], err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
}

func (p *peerBase) stopProcess() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
}

// servicePIDs are the services' main pids as the supervisor reports them.
func servicePIDs(s stack) []int {
	var pids []int
	for _, name := range services {
		if v, err := s.view(context.Background(), name); err == nil && v.pid > 1 {
			pids = append(pids, v.pid)
		}
	}
	return pids
}

// stopAll stops the supervisor, then ends whatever is left of the services' trees (read
// before the supervisor stopped; each service leads its own group under every peer).
func (p *peerBase) stopAll(s stack) {
	pids := servicePIDs(s)
	var trees [][]int
	for _, pid := range pids {
		trees = append(trees, treemem.Tree(pid))
	}
	p.stopProcess()
	for _, t := range trees {
		for _, pid := range t {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitHealthy waits until the stack says every service is healthy and every health URL
// answers.
func waitHealthy(b testing.TB, s stack, done <-chan struct{}, log func() string) {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case <-done:
			b.Fatalf("%s exited:\n%s", s.name(), tail(log(), 40))
		default:
		}
		ok, why := true, ""
		for _, name := range services {
			v, err := s.view(context.Background(), name)
			if err != nil || !v.healthy || v.pid <= 0 {
				ok, why = false, fmt.Sprintf("%s: %+v %v", name, v, err)
				break
			}
			if u := s.healthURL(name); u != "" && !serving(client, u) {
				ok, why = false, name+": "+u+" does not answer"
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: not all services healthy after 3 min: %s\n%s", s.name(), why, tail(log(), 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ---- supervisord ----

// supervisordStack is Debian's supervisord (foreground) with one [program] per service,
// XML-RPC on a loopback port. supervisord has no health checks and no memory limits.
type supervisordStack struct {
	*peerBase
	rpc string
}

func startSupervisord(b testing.TB, agent *agentStack) *supervisordStack {
	bin, err := exec.LookPath("supervisord")
	if err != nil {
		b.Fatalf("supervisord is required: run scripts/install-peers.sh: %v", err)
	}
	p := newPeerBase(b, agent, "supervisord")
	rpcPort := testenv.FreePort(b)
	s := &supervisordStack{peerBase: p, rpc: fmt.Sprintf("http://127.0.0.1:%d/RPC2", rpcPort)}
	var conf strings.Builder
	fmt.Fprintf(&conf, `[supervisord]
nodaemon=true
user=root
logfile=%[1]s/supervisord.log
pidfile=%[1]s/supervisord.pid
childlogdir=%[1]s

[inet_http_server]
port=127.0.0.1:%[2]d

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=http://127.0.0.1:%[2]d
`, p.dir, rpcPort)
	for _, name := range services {
		sv := p.services[name]
		var env []string
		for _, kv := range sv.env {
			k, v, _ := strings.Cut(kv, "=")
			env = append(env, fmt.Sprintf("%s=%q", k, v))
		}
		// startsecs=1, startretries=3: an instance that dies within a second is a failed
		// start; after three in a row the program is FATAL (its crash-loop verdict)
		fmt.Fprintf(&conf, `
[program:%s]
command=%s
directory=%s
environment=%s
autostart=true
autorestart=true
startsecs=1
startretries=3
stopsignal=INT
stopwaitsecs=5
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=%s
`, name, strings.Join(sv.argv, " "), sv.cwd, strings.Join(env, ","), sv.logFile)
	}
	confPath := filepath.Join(p.dir, "supervisord.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	p.start(b, []string{bin, "-c", confPath}, testenv.ChildEnv(agent.d.PATH))
	b.Cleanup(func() { s.stop() })
	waitHealthy(b, s, p.done, func() string { return p.log.String() + readFile(filepath.Join(p.dir, "supervisord.log")) })
	logf("supervisord: pid %d, all five services running", p.cmd.Process.Pid)
	return s
}

func (s *supervisordStack) name() string { return "supervisord" }

func (s *supervisordStack) checks() string {
	return "none (supervisord has no health checks or memory limits); autorestart, startsecs 1, startretries 3"
}

func (s *supervisordStack) groups() []group {
	return []group{{"supervisord", s.cmd.Process.Pid}}
}

func (s *supervisordStack) stop() { s.stopAll(s) }

// view calls supervisor.getProcessInfo over XML-RPC.
func (s *supervisordStack) view(ctx context.Context, svc string) (view, error) {
	body := `<?xml version="1.0"?><methodCall><methodName>supervisor.getProcessInfo</methodName><params><param><value><string>` +
		svc + `</string></value></param></params></methodCall>`
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.rpc, strings.NewReader(body))
	if err != nil {
		return view{}, err
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := s.client.Do(req)
	if err != nil {
		return view{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return view{}, err
	}
	var r struct {
		Members []struct {
			Name  string `xml:"name"`
			Value struct {
				Inner string `xml:",innerxml"`
			} `xml:"value"`
		} `xml:"params>param>value>struct>member"`
	}
	if err := xml.Unmarshal(data, &r); err != nil {
		return view{}, fmt.Errorf("supervisord: %w: %s", err, data)
	}
	m := map[string]string{}
	for _, mem := range r.Members {
		v := mem.Value.Inner
		if i := strings.Index(v, ">"); i >= 0 && strings.HasPrefix(v, "<") {
			v = v[i+1:]
			if j := strings.Index(v, "<"); j >= 0 {
				v = v[:j]
			}
		}
		m[mem.Name] = v
	}
	if m["statename"] == "" {
		return view{}, fmt.Errorf("supervisord: no process info for %s: %s", svc, data)
	}
	pid, _ := strconv.Atoi(m["pid"])
	state := m["statename"]
	return view{state: state, up: state == "RUNNING", healthy: state == "RUNNING", pid: pid, restarts: -1}, nil
}

// ---- process-compose ----

// pcStack is process-compose (headless, REST API on a loopback port) with an HTTP
// liveness probe at 1 s where a service has a port; it has no memory limits.
type pcStack struct {
	*peerBase
	api string
}

func startProcessCompose(b testing.TB, agent *agentStack) *pcStack {
	bin := filepath.Join(testenv.Root(b), ".tools", "bin", "process-compose")
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("process-compose is required in .tools/bin: run scripts/install-peers.sh: %v", err)
	}
	p := newPeerBase(b, agent, "process-compose")
	apiPort := testenv.FreePort(b)
	s := &pcStack{peerBase: p, api: fmt.Sprintf("http://127.0.0.1:%d", apiPort)}
	type probe struct {
		HTTPGet          map[string]any `json:"http_get"`
		PeriodSeconds    int            `json:"period_seconds"`
		TimeoutSeconds   int            `json:"timeout_seconds"`
		FailureThreshold int            `json:"failure_threshold"`
		InitialDelay     int            `json:"initial_delay_seconds"`
	}
	procs := map[string]any{}
	for _, name := range services {
		sv := p.services[name]
		proc := map[string]any{
			"command":      "exec " + shellJoin(sv.argv),
			"working_dir":  sv.cwd,
			"environment":  sv.env,
			"log_location": sv.logFile,
			// restart on every exit after 1 s (process-compose's default backoff)
			"availability": map[string]any{"restart": "always", "backoff_seconds": 1},
			"shutdown":     map[string]any{"signal": 2, "timeout_seconds": 5},
		}
		if sv.health != "" {
			pr := probe{HTTPGet: map[string]any{"host": "127.0.0.1", "port": sv.port, "path": sv.health},
				PeriodSeconds: probePeriod, TimeoutSeconds: probeTimeout, FailureThreshold: failureThreshold, InitialDelay: 2}
			proc["liveness_probe"] = pr
			if *flagPCReadiness {
				// with the liveness probe alone, process-compose reported a stopped
				// (SIGSTOP) service as running and did not replace it (bench/README.md)
				proc["readiness_probe"] = pr
			}
		}
		procs[name] = proc
	}
	// JSON is YAML: process-compose reads it as its YAML config
	conf, err := json.MarshalIndent(map[string]any{"version": "0.5", "log_location": filepath.Join(p.dir, "pc-processes.log"), "processes": procs}, "", "  ")
	if err != nil {
		b.Fatal(err)
	}
	confPath := filepath.Join(p.dir, "process-compose.yaml")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		b.Fatal(err)
	}
	p.start(b, []string{bin, "up", "-f", confPath, "-t=false", "--port", strconv.Itoa(apiPort),
		"--address", "127.0.0.1", "--disable-dotenv", "-L", filepath.Join(p.dir, "process-compose.log")}, testenv.ChildEnv(agent.d.PATH, "PC_ADDRESS=127.0.0.1"))
	b.Cleanup(func() { s.stop() })
	waitHealthy(b, s, p.done, func() string { return p.log.String() + readFile(filepath.Join(p.dir, "process-compose.log")) })
	logf("process-compose: pid %d, all five services running", p.cmd.Process.Pid)
	return s
}

func (s *pcStack) name() string { return "process-compose" }

func (s *pcStack) checks() string {
	c := "HTTP liveness probe at 1 s (timeout 1 s, 3 failures) on the 4 services with a port"
	if *flagPCReadiness {
		c += ", and the same as readiness probe"
	}
	return c + "; restart always, backoff 1 s; no memory limits"
}

func (s *pcStack) groups() []group { return []group{{"process-compose", s.cmd.Process.Pid}} }

func (s *pcStack) stop() { s.stopAll(s) }

func (s *pcStack) view(ctx context.Context, svc string) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.api+"/process/"+svc, nil)
	if err != nil {
		return view{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return view{}, err
	}
	defer resp.Body.Close()
	var st struct {
		Status    string `json:"status"`
		IsReady   string `json:"is_ready"`
		HasProbe  bool   `json:"has_ready_probe"`
		Restarts  int    `json:"restarts"`
		Pid       int    `json:"pid"`
		IsRunning bool   `json:"is_running"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return view{}, fmt.Errorf("process-compose /process/%s: %s: %w", svc, resp.Status, err)
	}
	up := st.Status == "Running" && st.IsRunning
	// is_ready says something only with a readiness probe (has_ready_probe is true with a
	// liveness probe alone, and is_ready then stays "-")
	readiness := *flagPCReadiness && st.HasProbe
	healthy := up && (!readiness || st.IsReady == "Ready")
	state := st.Status
	if readiness {
		state += " (" + st.IsReady + ")"
	}
	return view{state: state, up: up, healthy: healthy, pid: st.Pid, restarts: st.Restarts}, nil
}

// ---- monit ----

// monitStack is Debian's monit (foreground, 1 s cycle) with a `check process` per service
// (pidfile, start/stop programs), an HTTP check where a service has a port and a limit on
// the tree's memory (totalmemory) of the target; status from its HTTP interface.
type monitStack struct {
	*peerBase
	http string
}

func startMonit(b testing.TB, agent *agentStack) *monitStack {
	bin, err := exec.LookPath("monit")
	if err != nil {
		b.Fatalf("monit is required: run scripts/install-peers.sh: %v", err)
	}
	p := newPeerBase(b, agent, "monit")
	httpPort := testenv.FreePort(b)
	s := &monitStack{peerBase: p, http: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	var rc strings.Builder
	fmt.Fprintf(&rc, `set daemon 1
set logfile %[1]s/monit.log
set pidfile %[1]s/monit.pid
set idfile %[1]s/monit.id
set statefile %[1]s/monit.state
set httpd port %[2]d and use address 127.0.0.1
    allow 127.0.0.1
`, p.dir, httpPort)
	for _, name := range services {
		sv := p.services[name]
		pidfile := filepath.Join(p.dir, name+".pid")
		var start strings.Builder
		fmt.Fprintf(&start, "#!/bin/sh\ncd %s || exit 1\n", shellQuote(sv.cwd))
		for _, kv := range sv.env {
			fmt.Fprintf(&start, "export %s\n", shellQuote(kv))
		}
		fmt.Fprintf(&start, "export PATH=%s\n", shellQuote(agent.d.PATH))
		// its own session and group (setsid execs in place: $! is the service)
		fmt.Fprintf(&start, "setsid %s >>%s 2>&1 </dev/null &\necho $! >%s\n", shellJoin(sv.argv), shellQuote(sv.logFile), shellQuote(pidfile))
		stop := fmt.Sprintf("#!/bin/sh\npid=$(cat %[1]s) || exit 0\nkill -INT -\"$pid\" 2>/dev/null\nfor i in 1 2 3 4 5 6 7 8 9 10; do kill -0 \"$pid\" 2>/dev/null || exit 0; sleep 0.5; done\nkill -KILL -\"$pid\" 2>/dev/null\nexit 0\n", shellQuote(pidfile))
		startPath, stopPath := filepath.Join(p.dir, name+".start"), filepath.Join(p.dir, name+".stop")
		if err := os.WriteFile(startPath, []byte(start.String()), 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(stopPath, []byte(stop), 0o700); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&rc, "\ncheck process %s with pidfile %s\n  start program = \"/bin/sh %s\" with timeout 10 seconds\n  stop program = \"/bin/sh %s\" with timeout 10 seconds\n",
			name, pidfile, startPath, stopPath)
		if sv.health != "" {
			fmt.Fprintf(&rc, "  if failed host 127.0.0.1 port %d protocol http request %q with timeout %d seconds for %d cycles then restart\n",
				sv.port, sv.health, probeTimeout, failureThreshold)
		}
		if name == target {
			fmt.Fprintf(&rc, "  if totalmemory > %d MB then restart\n", leakLimitMB)
		}
		// monit's crash-loop verdict
		rc.WriteString("  if 5 restarts within 10 cycles then unmonitor\n")
	}
	rcPath := filepath.Join(p.dir, "monitrc")
	if err := os.WriteFile(rcPath, []byte(rc.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	p.start(b, []string{bin, "-I", "-c", rcPath}, testenv.ChildEnv(agent.d.PATH))
	b.Cleanup(func() { s.stop() })
	waitHealthy(b, s, p.done, func() string { return p.log.String() + readFile(filepath.Join(p.dir, "monit.log")) })
	logf("monit: pid %d, all five services running", p.cmd.Process.Pid)
	return s
}

func (s *monitStack) name() string { return "monit" }

func (s *monitStack) checks() string {
	return "1 s cycle: pidfile, HTTP check (timeout 1 s, 3 cycles) on the 4 services with a port, totalmemory > 200 MB on nexus-core, 5 restarts in 10 cycles -> unmonitor"
}

func (s *monitStack) groups() []group { return []group{{"monit", s.cmd.Process.Pid}} }

func (s *monitStack) stop() {
	// monit's services are not its children (the start program backgrounds them): end
	// their groups by their pidfiles
	s.stopProcess()
	for _, name := range services {
		if b, err := os.ReadFile(filepath.Join(s.dir, name+".pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				syscall.Kill(-pid, syscall.SIGKILL)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// view reads monit's status XML (/_status?format=xml): the service's status bits (0 is
// fine), whether it is monitored, and its pid.
func (s *monitStack) view(ctx context.Context, svc string) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.http+"/_status?format=xml", nil)
	if err != nil {
		return view{}, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return view{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return view{}, err
	}
	var doc struct {
		Services []struct {
			Name    string `xml:"name"`
			Type    int    `xml:"type"`
			Status  int    `xml:"status"`
			Monitor int    `xml:"monitor"`
			PID     int    `xml:"pid"`
		} `xml:"service"`
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	if err := dec.Decode(&doc); err != nil {
		return view{}, fmt.Errorf("monit status: %w", err)
	}
	for _, sv := range doc.Services {
		if sv.Name != svc {
			continue
		}
		state := "ok"
		switch {
		case sv.Monitor == 0:
			state = "not monitored"
		case sv.Monitor == 2:
			state = "initializing"
		case sv.Status != 0:
			state = fmt.Sprintf("failed (status %#x)", sv.Status)
		}
		// monit's own word only: the pid and status bits are those of its last cycle
		up := sv.Monitor == 1 && sv.PID > 0
		return view{state: state, up: up, healthy: up && sv.Status == 0, pid: sv.PID, restarts: -1}, nil
	}
	return view{}, fmt.Errorf("monit's status lists no %s", svc)
}

// ---- helpers ----

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
