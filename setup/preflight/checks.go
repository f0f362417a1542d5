package preflight

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/livinity/livinity-agent/config"
)

// gb is the unit of MinDiskGB and MinRAMGB: decimal gigabytes, as machines are sold.
const gb = 1e9

// Run runs every check at once and returns the results in a fixed order: Node.js, PM2,
// Python venv, Docker, Redis, disk space, memory, ports. Node.js, PM2 and ports are
// critical.
func Run(ctx context.Context, cfg *config.Config, opts Options) []Result {
	if cfg == nil {
		cfg = &config.Config{}
	}
	o := opts.withDefaults()
	if o.DiskPath == "" {
		o.DiskPath = cfg.Paths.LivosBaseDir
	}
	pf := cfg.Agent.Preflight
	needs := map[string][]string{}
	python := false
	for _, d := range cfg.Services() {
		for _, n := range d.Needs {
			needs[n] = append(needs[n], d.Name)
		}
		python = python || d.Kind == config.RunPython
	}
	return run(ctx, []func(context.Context) Result{
		func(ctx context.Context) Result { return o.checkNode(ctx, pf.MinNodeMajor, cfg) },
		func(ctx context.Context) Result { return o.checkPM2() },
		func(ctx context.Context) Result { return o.checkPython(ctx, python) },
		o.checkDocker,
		func(ctx context.Context) Result { return o.checkRedis(ctx, needs[config.NeedRedis]) },
		func(ctx context.Context) Result { return o.checkDBus(ctx, needs[config.NeedDBus]) },
		func(ctx context.Context) Result { return o.checkDisk(ctx, pf.MinDiskGB) },
		func(ctx context.Context) Result { return o.checkMemory(ctx, pf.MinRAMGB) },
		func(ctx context.Context) Result { return o.checkPorts(cfg) },
	})
}

var nodeVersion = regexp.MustCompile(`^v(\d+)\.\d+\.\d+`)

// enginesMajor is the lowest Node.js major a package.json "engines.node" range allows
// (">=22.0.0", "^22", "22.x", ">= 20 <23"); 0 when there is none or it cannot be read.
var enginesMajor = regexp.MustCompile(`^\s*(?:>=|\^|~|=)?\s*v?(\d+)`)

// treeNodeMajor is the lowest Node.js major the trees of cfg require, and the range that
// says so.
func treeNodeMajor(cfg *config.Config) (int, string, string) {
	best, why, where := 0, "", ""
	for _, tree := range []string{config.TreeLivos, config.TreeNexus} {
		dir := cfg.TreeDir(tree)
		b, err := os.ReadFile(filepath.Join(dir, "package.json"))
		if err != nil {
			continue
		}
		var m struct{ Engines map[string]string }
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		if mm := enginesMajor.FindStringSubmatch(m.Engines["node"]); mm != nil {
			if n, _ := strconv.Atoi(mm[1]); n > best {
				best, why, where = n, m.Engines["node"], filepath.Join(dir, "package.json")
			}
		}
	}
	return best, why, where
}

func (o Options) checkNode(ctx context.Context, minMajor int, cfg *config.Config) Result {
	want := minMajor
	if want <= 0 {
		want = 22
	}
	// the trees' own engines.node: a lower agent.preflight.minNodeMajor does not silence it
	treeMajor, treeRange, treeFile := treeNodeMajor(cfg)
	if treeMajor > want {
		want = treeMajor
	}
	minMajor = want
	r := Result{
		Name:     NameNode,
		Critical: true,
		Fix: fmt.Sprintf("install Node.js %d or later: https://nodejs.org/en/download "+
			"(Debian/Ubuntu: curl -fsSL https://deb.nodesource.com/setup_%d.x | bash - && apt-get install -y nodejs)", want, want),
	}
	bin, err := lookPath(o.Node, o.Path)
	if err != nil {
		return r.fail(err.Error())
	}
	out, err := o.command(ctx, bin, "--version")
	if err != nil {
		return r.fail(err.Error())
	}
	m := nodeVersion.FindStringSubmatch(out)
	if m == nil {
		return r.fail(fmt.Sprintf("%s --version printed %q, not a version", bin, firstLine(out)))
	}
	major, err := strconv.Atoi(m[1])
	if err != nil {
		return r.fail(fmt.Sprintf("%s --version printed %q, not a version", bin, firstLine(out)))
	}
	if major < minMajor {
		if treeMajor == minMajor {
			return r.fail(fmt.Sprintf("%s at %s; the tree needs node %s (engines.node in %s)", m[0], bin, treeRange, treeFile))
		}
		return r.fail(fmt.Sprintf("%s at %s; %d or later is needed", m[0], bin, minMajor))
	}
	return r.ok(fmt.Sprintf("%s at %s", m[0], bin))
}

// checkPM2 finds pm2 and reads its version from the package.json of the npm package the
// binary belongs to. Running `pm2 --version` would start a PM2 daemon as a side effect.
func (o Options) checkPM2() Result {
	r := Result{Name: NamePM2, Critical: true, Fix: "npm install -g pm2@7"}
	bin, err := lookPath(o.PM2, o.Path)
	if err != nil {
		return r.fail(err.Error())
	}
	version, err := pm2Version(bin)
	if err != nil {
		return r.ok(fmt.Sprintf("found at %s; version unknown (%v)", bin, err))
	}
	major, _, _ := strings.Cut(version, ".")
	if n, err := strconv.Atoi(major); err == nil && n < 5 {
		return r.warn(fmt.Sprintf("%s at %s is older than the 5 to 7 the agent works with", version, bin))
	}
	return r.ok(fmt.Sprintf("%s at %s", version, bin))
}

// pm2Version reads the version of the pm2 npm package whose bin/pm2 the (symlinked) binary
// is.
func pm2Version(bin string) (string, error) {
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", bin, err)
	}
	pkgFile := filepath.Join(filepath.Dir(filepath.Dir(real)), "package.json")
	data, err := os.ReadFile(pkgFile)
	if err != nil {
		return "", fmt.Errorf("read pm2 package.json: %w", err)
	}
	var pkg struct{ Name, Version string }
	if err := json.Unmarshal(data, &pkg); err != nil {
		return "", fmt.Errorf("decode %s: %w", pkgFile, err)
	}
	if pkg.Name != "pm2" || pkg.Version == "" {
		return "", fmt.Errorf("%s is not pm2's", pkgFile)
	}
	return pkg.Version, nil
}

func (o Options) checkPython(ctx context.Context, needed bool) Result {
	r := Result{Name: NamePython, Fix: "apt-get install -y python3 python3-venv (a python service runs in a venv)"}
	if !needed {
		return r.ok("not needed: no service of the catalog runs on Python")
	}
	bin, err := lookPath(o.Python, o.Path)
	if err != nil {
		return r.warn(err.Error())
	}
	out, err := o.command(ctx, bin, "-c", "import sys, venv, ensurepip; print('%d.%d.%d' % sys.version_info[:3])")
	if err != nil {
		return r.warn(fmt.Sprintf("%s cannot create a venv: %v", bin, err))
	}
	return r.ok(fmt.Sprintf("Python %s at %s, with venv and ensurepip", strings.TrimSpace(out), bin))
}

func (o Options) checkDocker(ctx context.Context) Result {
	r := Result{Name: NameDocker, Fix: "install Docker Engine (LivOS apps run in containers): https://docs.docker.com/engine/install/"}
	bin, err := lookPath(o.Docker, o.Path)
	if err != nil {
		return r.warn(err.Error())
	}
	out, err := o.command(ctx, bin, "info", "--format", "{{.ServerVersion}}")
	if err != nil {
		r.Fix = "start the Docker engine: systemctl enable --now docker"
		return r.warn(fmt.Sprintf("the engine does not answer: %v", err))
	}
	return r.ok(fmt.Sprintf("engine %s", strings.TrimSpace(out)))
}

// checkRedis asks Redis for a PING: critical when a service needs Redis (users), a
// warning otherwise. An answer asking for a password counts: Redis runs.
func (o Options) checkRedis(ctx context.Context, users []string) Result {
	r := Result{Name: NameRedis, Critical: len(users) > 0,
		Fix: "install and start Redis on " + o.RedisAddr + ": apt-get install -y redis-server && systemctl enable --now redis-server"}
	bad := r.warn
	if r.Critical {
		bad = r.fail
	}
	d := net.Dialer{Timeout: o.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", o.RedisAddr)
	if err != nil {
		who := "needed by " + strings.Join(users, ", ")
		if len(users) == 0 {
			who = "no service of the catalog needs it"
		}
		return bad(fmt.Sprintf("cannot connect to %s (%s): %v", o.RedisAddr, who, err))
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(o.DialTimeout))
	buf := make([]byte, 64)
	_, err = conn.Write([]byte("PING\r\n"))
	n := 0
	if err == nil {
		n, err = conn.Read(buf)
	}
	reply := string(buf[:n])
	switch {
	case err != nil:
		return bad(fmt.Sprintf("%s accepts connections but does not answer PING: %v", o.RedisAddr, err))
	case strings.HasPrefix(reply, "+PONG"), strings.HasPrefix(reply, "-NOAUTH"):
		return r.ok(o.RedisAddr + " answers PING")
	default:
		return bad(fmt.Sprintf("%s answered PING with %q: not Redis", o.RedisAddr, firstLine(reply)))
	}
}

// checkDBus connects to the D-Bus system bus: critical when a service needs it (users;
// livinityd exits with "connect ENOENT /var/run/dbus/system_bus_socket" without one).
func (o Options) checkDBus(ctx context.Context, users []string) Result {
	r := Result{Name: NameDBus, Critical: len(users) > 0,
		Fix: "install and start the D-Bus system bus: apt-get install -y dbus && systemctl enable --now dbus"}
	if len(users) == 0 {
		return r.ok("not needed: no service of the catalog uses it")
	}
	path := o.SystemBus
	if path == "" {
		path = "/var/run/dbus/system_bus_socket"
		if addr, ok := strings.CutPrefix(os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"), "unix:path="); ok {
			path, _, _ = strings.Cut(addr, ",")
		}
	}
	d := net.Dialer{Timeout: o.DialTimeout}
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return r.fail(fmt.Sprintf("no system bus at %s (needed by %s): %v", path, strings.Join(users, ", "), err))
	}
	conn.Close()
	return r.ok("system bus at " + path)
}

func (o Options) checkDisk(ctx context.Context, minGB float64) Result {
	r := Result{Name: NameDisk}
	dir := nearestExisting(o.DiskPath)
	r.Fix = fmt.Sprintf("free up space on the filesystem holding %s or grow it to at least %g GB free", dir, minGB)
	u, err := disk.UsageWithContext(ctx, dir)
	if err != nil {
		return r.warn(fmt.Sprintf("cannot measure free space at %s: %v", dir, err))
	}
	detail := fmt.Sprintf("%.1f GB free at %s", float64(u.Free)/gb, dir)
	if float64(u.Free) < minGB*gb {
		return r.warn(fmt.Sprintf("%s; %g GB recommended", detail, minGB))
	}
	return r.ok(detail)
}

func (o Options) checkMemory(ctx context.Context, minGB float64) Result {
	r := Result{Name: NameMemory, Fix: fmt.Sprintf("use a server with at least %g GB of RAM: LivOS runs five services plus its apps", minGB)}
	v, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return r.warn(fmt.Sprintf("cannot read the memory size: %v", err))
	}
	detail := fmt.Sprintf("%.1f GB total", float64(v.Total)/gb)
	if float64(v.Total) < minGB*gb {
		return r.warn(fmt.Sprintf("%s; %g GB recommended", detail, minGB))
	}
	return r.ok(detail)
}

func (r Result) ok(detail string) Result {
	r.Status, r.Detail, r.Fix = OK, detail, ""
	return r
}

func (r Result) warn(detail string) Result {
	r.Status, r.Detail = Warn, detail
	return r
}

func (r Result) fail(detail string) Result {
	r.Status, r.Detail = Fail, detail
	return r
}

// lookPath finds an executable like exec.LookPath, but in the given PATH list. A name
// with a slash is checked as it is. Empty PATH entries (the current directory) are
// skipped.
func lookPath(name, pathList string) (string, error) {
	if strings.Contains(name, "/") {
		abs, err := filepath.Abs(name)
		if err == nil {
			err = isExecutable(abs)
		}
		if err != nil {
			return "", fmt.Errorf("%s is not an executable file: %w", name, err)
		}
		return abs, nil
	}
	if pathList == "" {
		pathList = os.Getenv("PATH")
	}
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if isExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH", name)
}

func isExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable regular file")
	}
	return nil
}

// command runs bin with args under o.CommandTimeout and returns its standard output. The
// program runs in its own process group, which is killed when the time is up.
func (o Options) command(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if o.Path != "" {
		env := []string{"PATH=" + o.Path}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PATH=") {
				env = append(env, kv)
			}
		}
		cmd.Env = env
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	name := filepath.Base(bin) + " " + strings.Join(args[:min(len(args), 1)], " ")
	switch {
	case err == nil:
		return stdout.String(), nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", fmt.Errorf("%s did not finish within %s", name, o.CommandTimeout)
	case ctx.Err() != nil:
		return "", fmt.Errorf("%s: %w", name, ctx.Err())
	}
	if msg := lastLine(stderr.String()); msg != "" {
		return "", fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return "", fmt.Errorf("%s: %w", name, err)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// nearestExisting returns path, or its nearest ancestor that exists, made absolute.
func nearestExisting(path string) string {
	if path == "" {
		return "/"
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return "/"
	}
	for {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p
		}
		p = parent
	}
}
