package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/livinity/livinity-agent/internal/treemem"
	"github.com/livinity/livinity-agent/supervisor/pm2"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// pollEvery is how often the harness reads the agent's status socket while a fault is in
// flight: detection and recovery are known to within this.
const pollEvery = 50 * time.Millisecond

// observer reads the agent's state (status socket, status CLI) and PM2's, and scans all
// it reads for secrets.
type observer struct {
	sock     string   // the agent's status socket
	agentBin string   // for `livinity-agent status --json`
	cliArgs  []string // global flags of the status CLI
	env      []string
	pm2Home  string
	secrets  *secretScan
}

// fetch reads the status document once (bounded by a second).
func (o *observer) fetch(ctx context.Context) (statusapi.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := statusapi.Fetch(ctx, o.sock)
	if err == nil {
		if b, merr := json.Marshal(st); merr == nil {
			o.secrets.scan("status socket document", b)
		}
	}
	return st, err
}

// poll reads the status every pollEvery and hands each reading to fn until fn returns
// true (poll returns true) or until passes (false).
func (o *observer) poll(ctx context.Context, until time.Time, fn func(at time.Time, st statusapi.Status, err error) bool) bool {
	for {
		st, err := o.fetch(ctx)
		at := time.Now()
		if fn(at, st, err) {
			return true
		}
		if at.After(until) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Until(at.Add(pollEvery))):
		}
	}
}

// statusCLI runs `livinity-agent status --json` and returns its document and exit code.
func (o *observer) statusCLI(ctx context.Context) (statusapi.Status, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.agentBin, append(append([]string{}, o.cliArgs...), "status", "--json")...)
	cmd.Env = o.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	o.secrets.scan("livinity-agent status --json output", stdout.Bytes())
	o.secrets.scan("livinity-agent status --json errors", stderr.Bytes())
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			return statusapi.Status{}, -1, fmt.Errorf("run livinity-agent status --json: %w", err)
		}
		code = ee.ExitCode()
	}
	var st statusapi.Status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return st, code, fmt.Errorf("livinity-agent status --json (exit %d) printed no document: %w: %q %q", code, err, stdout.String(), stderr.String())
	}
	return st, code, nil
}

// pm2PIDs are the pids PM2 itself reports for the online apps.
func (o *observer) pm2PIDs(ctx context.Context) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pm2.Dial(ctx, o.pm2Home)
	if err != nil {
		return nil, fmt.Errorf("dial PM2: %w", err)
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list PM2 apps: %w", err)
	}
	out := map[string]int{}
	for _, p := range procs {
		if p.Status == pm2.StatusOnline {
			out[p.Name] = p.PID
		}
	}
	return out, nil
}

// service finds a service in a status document.
func service(st statusapi.Status, name string) (statusapi.Service, bool) {
	for _, s := range st.Services {
		if s.Name == name {
			return s, true
		}
	}
	return statusapi.Service{}, false
}

// allReady reports whether the agent answered with all five services ready and PM2
// connected.
func allReady(st statusapi.Status, err error) bool {
	if err != nil || !st.Ready || st.Agent == nil || !st.Agent.PM2Connected || len(st.Services) != 5 {
		return false
	}
	for _, s := range st.Services {
		if s.State != "ready" || s.PID <= 0 {
			return false
		}
	}
	return true
}

// restartCounts are the status document's restart counters.
func restartCounts(st statusapi.Status) counts {
	c := counts{}
	for _, s := range st.Services {
		r := s.Restarts
		c.add(s.Name, "crash", r.Crash)
		c.add(s.Name, "probe", r.Probe)
		c.add(s.Name, "memory", r.Memory)
		c.add(s.Name, "pm2", r.PM2)
		c.add(s.Name, "manual", r.Manual)
	}
	return c
}

// describe says in a few words where the services stand.
func describe(st statusapi.Status, err error) string {
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, s := range st.Services {
		parts = append(parts, fmt.Sprintf("%s=%s(pid %d, %s)", s.Name, s.State, s.PID, s.Detail))
	}
	return fmt.Sprintf("pm2Connected=%v %s", st.Agent != nil && st.Agent.PM2Connected, strings.Join(parts, " "))
}

// procStat is what the harness needs from /proc/<pid>/stat.
type procStat struct {
	ppid  int
	state byte
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return procStat{}, false
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 2 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return procStat{ppid: ppid, state: f[0][0]}, true
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z' && st.state != 'X'
}

// cmdline is pid's command line, shortened, for reports.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	s := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// tree returns pid and all its live descendants.
func tree(pid int) []int { return treemem.Tree(pid) }

// treePSS is the proportional set size of pid's process tree, in bytes, from
// /proc/<pid>/smaps_rollup (what the agent measures too).
func treePSS(pid int) uint64 { return treemem.TreePSS(pid) }

// secretScan looks for secret values in everything the harness collects.
type secretScan struct {
	mu      sync.Mutex
	secrets [][]byte
	bytes   int64
	found   map[string]bool // "source: secret #i"
}

func newSecretScan(values []string) *secretScan {
	s := &secretScan{found: map[string]bool{}}
	for _, v := range values {
		if len(v) >= 8 { // shorter values would match by chance
			s.secrets = append(s.secrets, []byte(v))
		}
	}
	return s
}

// scan searches data; a nil scan (before the secrets are known) does nothing.
func (s *secretScan) scan(source string, data []byte) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes += int64(len(data))
	for i, v := range s.secrets {
		if bytes.Contains(data, v) {
			s.found[fmt.Sprintf("%s (secret #%d of %d)", source, i+1, len(s.secrets))] = true
		}
	}
}

// scanFiles scans every regular file under dir.
func (s *secretScan) scanFiles(source, dir string) {
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil {
			s.scan(source+" "+path, b)
		}
		return nil
	})
}

func (s *secretScan) result() (checked int, scanned int64, found []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.found {
		found = append(found, k)
	}
	return len(s.secrets), s.bytes, found
}
