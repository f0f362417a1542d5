package ecosystem

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
)

func testConfig(livos, nexus string) *config.Config {
	return &config.Config{
		Domain:   "home.example.com",
		Telegram: &config.Telegram{BotToken: "tg-secret-token", DMPolicy: "open"},
		Paths:    config.Paths{LivosBaseDir: livos, NexusBaseDir: nexus},
		Ports:    config.Ports{API: 3200, MCP: 3100, Memory: 3300, Livos: 8080},
		Agent: config.Agent{
			Preflight:            config.Preflight{MinNodeMajor: 22, MinDiskGB: 10, MinRAMGB: 4},
			HealthTimeoutSeconds: 120,
			Services:             map[string]config.Service{"nexus-core": {MemoryLimitMB: 800}},
			MemoryBreachChecks:   3,
			RestartBackoff:       config.Backoff{InitialSeconds: 1, Multiplier: 2, MaxSeconds: 300, ResetAfterSeconds: 600},
			Metrics:              config.Metrics{Listen: "127.0.0.1:9847"},
		},
	}
}

func logs(dir, name string) (string, string, string) {
	return filepath.Join(dir, "logs", name+"-out.log"), filepath.Join(dir, "logs", name+"-error.log"), filepath.Join(dir, "logs", name+"-combined.log")
}

func TestApps(t *testing.T) {
	root := t.TempDir()
	livos, nexus := filepath.Join(root, "livos"), filepath.Join(root, "nexus")
	cfg := testConfig(livos, nexus)
	apps := Apps(cfg, cfg.Services(), Options{Node: "/usr/local/bin/node", Python: "/usr/bin/python3"})

	envArg := []string{"--env-file=" + livos + "/.env"}
	mk := func(name, interp, script string, args []string, cwd string, env map[string]string, mem string) App {
		out, errf, comb := logs(livos, name)
		return App{Name: name, Script: script, Interpreter: interp, NodeArgs: envArg, Args: args, Cwd: cwd, Env: env,
			MaxMemoryRestart: mem, ExpBackoffRestartDelay: 100, Autorestart: true, KillTimeout: 5000,
			OutFile: out, ErrorFile: errf, LogFile: comb, Time: true}
	}
	want := []App{
		mk("livos", livos+"/packages/livinityd/node_modules/.bin/tsx", "source/cli.ts",
			[]string{"--data-directory", livos + "/data", "--port", "8080"}, livos+"/packages/livinityd",
			map[string]string{"NODE_ENV": "production", "LIVOS_PORT": "8080"}, "500M"),
		mk("nexus-core", "/usr/local/bin/node", "packages/core/dist/index.js", nil, nexus,
			map[string]string{"NODE_ENV": "production", "API_PORT": "3200"}, "800M"),
		mk("nexus-worker", "/usr/local/bin/node", "packages/worker/dist/index.js", nil, nexus,
			map[string]string{"NODE_ENV": "production"}, "500M"),
		mk("nexus-memory", "/usr/local/bin/node", "packages/memory/dist/index.js", nil, nexus,
			map[string]string{"NODE_ENV": "production", "MEMORY_PORT": "3300"}, "500M"),
		mk("nexus-mcp", "/usr/local/bin/node", "packages/mcp-server/dist/index.js", nil, nexus,
			map[string]string{"NODE_ENV": "production", "MCP_PORT": "3100"}, "500M"),
	}
	if !reflect.DeepEqual(apps, want) {
		got, _ := json.MarshalIndent(apps, "", " ")
		exp, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("Apps =\n%s\nwant\n%s", got, exp)
	}
	for i, a := range apps {
		if a.Name != config.Default().ServiceNames()[i] {
			t.Errorf("app %d is %s, want %s", i, a.Name, config.Default().ServiceNames()[i])
		}
	}
	rendered, err := Render(apps)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rendered, []byte("tg-secret-token")) {
		t.Error("the ecosystem file holds the Telegram token")
	}
}

func TestAppsInterpreterDefaultsAndVenv(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(filepath.Join(root, "livos"), filepath.Join(root, "nexus"))
	port := "memory"
	cfg.Agent.Catalog = []config.CatalogEntry{{Name: "nexus-memory", Kind: config.RunPython, Script: "src/server.py", Port: &port}}
	mem, _ := cfg.Service("nexus-memory")
	apps := Apps(cfg, cfg.Services(), Options{Launcher: "/usr/local/bin/livinity-agent"})
	envFile := filepath.Join(root, "livos", ".env")
	if apps[1].Interpreter != "node" {
		t.Errorf("nexus-core interpreter = %q, want node", apps[1].Interpreter)
	}
	wantArgs := []string{"exec-env", "--env-file", envFile, "--", "python3"}
	if apps[3].Interpreter != "/usr/local/bin/livinity-agent" || !reflect.DeepEqual(apps[3].NodeArgs, wantArgs) || apps[3].Script != "packages/memory/src/server.py" {
		t.Errorf("python nexus-memory runs %q %q %q; want the launcher with %q", apps[3].Interpreter, apps[3].NodeArgs, apps[3].Script, wantArgs)
	}
	venvPython := VenvPython(cfg, mem)
	if err := os.MkdirAll(filepath.Dir(venvPython), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(venvPython, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	apps = Apps(cfg, cfg.Services(), Options{Python: "/usr/bin/python3", Launcher: "/l"})
	if got := apps[3].NodeArgs[len(apps[3].NodeArgs)-1]; got != venvPython {
		t.Errorf("nexus-memory python = %q, want the venv's %q", got, venvPython)
	}
}

// hostile is a directory name that breaks any ecosystem file built by pasting paths into
// JavaScript source.
const hostile = `it's a "q" dir $(touch PWNED) ` + "`touch PWNED`" + ` back\slash ü ☃ ${x}` + "\u2028"

func hostileDirs(t *testing.T) (root, livos, nexus string) {
	root = t.TempDir()
	name := strings.ReplaceAll(hostile, "PWNED", filepath.Join(root, "pwned"))
	livos = filepath.Join(root, "l "+name)
	nexus = filepath.Join(root, "n "+name)
	return root, livos, nexus
}

func TestRenderLoadsInNode(t *testing.T) {
	testenv.Require(t, "node")
	root, livos, nexus := hostileDirs(t)
	cfg := testConfig(livos, nexus)
	apps := Apps(cfg, cfg.Services(), Options{Node: "/opt/it's \"node\"/bin/node"})
	data, err := Render(apps)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("// PM2 ecosystem file")) || !bytes.HasSuffix(data, []byte(" };\n")) {
		t.Errorf("rendered file does not have the expected frame:\n%s", data)
	}
	again, _ := Render(Apps(cfg, cfg.Services(), Options{Node: "/opt/it's \"node\"/bin/node"}))
	if !bytes.Equal(data, again) {
		t.Error("Render is not deterministic")
	}
	path := filepath.Join(root, "ecosystem.config.js")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "-e", "console.log(JSON.stringify(require(process.argv[1])))", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node require: %v\n%s", err, stderr.Bytes())
	}
	var loaded struct{ Apps []App }
	if err := json.Unmarshal(out, &loaded); err != nil {
		t.Fatalf("node output: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(loaded.Apps, apps) {
		t.Errorf("node read\n%+v\nwant\n%+v", loaded.Apps, apps)
	}
	if _, err := os.Stat(filepath.Join(root, "pwned")); err == nil {
		t.Error("loading the ecosystem file ran a command")
	}
}

func TestFingerprint(t *testing.T) {
	cfg := testConfig("/opt/livos", "/opt/nexus")
	a := Apps(cfg, cfg.Services(), Options{})[0]
	b := Apps(cfg, cfg.Services(), Options{})[0]
	// The same env built in another insertion order.
	b.Env = map[string]string{}
	b.Env["LIVOS_PORT"] = "8080"
	b.Env["NODE_ENV"] = "production"
	if Fingerprint(a) != Fingerprint(b) {
		t.Error("equal apps have different fingerprints")
	}
	if len(Fingerprint(a)) != 64 {
		t.Errorf("fingerprint %q is not hex SHA-256", Fingerprint(a))
	}
	cfg.Ports.Livos = 8081
	c := Apps(cfg, cfg.Services(), Options{})[0]
	if Fingerprint(a) == Fingerprint(c) {
		t.Error("a changed port does not change the fingerprint")
	}
	cfg.Agent.Services = map[string]config.Service{"livos": {MemoryLimitMB: 900}}
	if d := Apps(cfg, cfg.Services(), Options{})[0]; Fingerprint(d) == Fingerprint(c) {
		t.Error("a changed memory limit does not change the fingerprint")
	}
}

// TestPM2StartsRenderedApps starts two rendered apps on a real PM2 7 daemon from
// directories whose names hold quotes, spaces and $(...), and checks what PM2 recorded and
// what the processes received.
func TestPM2StartsRenderedApps(t *testing.T) {
	testenv.Require(t, "node")
	pm2 := testenv.PM2(t, 7)
	home := testenv.PM2Home(t, pm2)
	root, livos, nexus := hostileDirs(t)
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatal(err)
	}
	nodeBin, _ = filepath.Abs(nodeBin)
	cfg := testConfig(livos, nexus)
	apps := Apps(cfg, cfg.Services(), Options{Node: nodeBin})
	// the apps get the .env in their environment; PM2 must never hold its values
	const secret = "s3cret-from-the-env-file-0123456789"
	if err := os.MkdirAll(livos, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(EnvFile(cfg), []byte("LIV_API_KEY="+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Each app reports what it was given to a file, then stays up.
	const report = `require('fs').writeFileSync(require('path').join(process.cwd(), process.env.REPORT_NAME),
  JSON.stringify({argv: process.argv.slice(2), cwd: process.cwd(), env: process.env.NODE_ENV,
    livosPort: process.env.LIVOS_PORT, apiPort: process.env.API_PORT, key: process.env.LIV_API_KEY}));
setInterval(() => {}, 1000);
`
	for _, a := range apps[:2] {
		if err := os.MkdirAll(filepath.Dir(a.ScriptPath()), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(a.ScriptPath(), []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// livinityd runs under tsx; here "tsx" is node itself, which runs the plain-JS cli.ts.
	if err := os.MkdirAll(filepath.Dir(apps[0].Interpreter), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(nodeBin, apps[0].Interpreter); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(LogDir(cfg), 0o755); err != nil {
		t.Fatal(err)
	}
	apps[0].Env["REPORT_NAME"] = "livos.report"
	apps[1].Env["REPORT_NAME"] = "core.report"
	data, err := Render(apps)
	if err != nil {
		t.Fatal(err)
	}
	eco := filepath.Join(root, "eco system's.config.js")
	if err := os.WriteFile(eco, data, 0o644); err != nil {
		t.Fatal(err)
	}

	pm2Run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, pm2, args...)
		cmd.Env = append(os.Environ(), "PM2_HOME="+home)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("pm2 %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return out
	}
	pm2Run("start", eco, "--only", "livos,nexus-core")

	type reported struct {
		Argv      []string
		Cwd       string
		Env       string
		LivosPort string
		ApiPort   string
		Key       string
	}
	readReport := func(path string) reported {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			b, err := os.ReadFile(path)
			var r reported
			if err == nil && json.Unmarshal(b, &r) == nil {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("no report at %s after 30s: %v\npm2 logs:\n%s", path, err, pm2Run("logs", "--nostream", "--lines", "20"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	lr := readReport(filepath.Join(apps[0].Cwd, "livos.report"))
	if !reflect.DeepEqual(lr.Argv, apps[0].Args) || lr.Cwd != apps[0].Cwd || lr.Env != "production" || lr.LivosPort != "8080" || lr.Key != secret {
		t.Errorf("livos received %+v; want args %q, cwd %q, LIVOS_PORT 8080 and the .env's key", lr, apps[0].Args, apps[0].Cwd)
	}
	cr := readReport(filepath.Join(nexus, "core.report"))
	if len(cr.Argv) != 0 || cr.Cwd != nexus || cr.ApiPort != "3200" || cr.Key != secret {
		t.Errorf("nexus-core received %+v; want no args, cwd %q, API_PORT 3200 and the .env's key", cr, nexus)
	}

	out := pm2Run("jlist")
	if bytes.Contains(out, []byte(secret)) {
		t.Error("pm2 jlist shows a value of the .env")
	}
	pm2Run("save")
	if dump, err := os.ReadFile(filepath.Join(home, "dump.pm2")); err != nil || bytes.Contains(dump, []byte(secret)) {
		t.Errorf("dump.pm2 holds a value of the .env (read error %v)", err)
	}
	var list []struct {
		Name   string `json:"name"`
		PM2Env struct {
			Args            []string `json:"args"`
			Cwd             string   `json:"pm_cwd"`
			ExecPath        string   `json:"pm_exec_path"`
			Interpreter     string   `json:"exec_interpreter"`
			MaxMemory       int64    `json:"max_memory_restart"`
			ExpBackoff      int      `json:"exp_backoff_restart_delay"`
			OutFile         string   `json:"pm_out_log_path"`
			ErrFile         string   `json:"pm_err_log_path"`
			CombinedLogFile string   `json:"pm_log_path"`
		} `json:"pm2_env"`
	}
	if i := bytes.IndexByte(out, '['); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("pm2 jlist: %v\n%s", err, out)
	}
	if len(list) != 2 {
		t.Fatalf("pm2 runs %d apps, want 2 (--only livos,nexus-core)", len(list))
	}
	for _, p := range list {
		var want App
		for _, a := range apps {
			if a.Name == p.Name {
				want = a
			}
		}
		e := p.PM2Env
		if want.Name == "" || !reflect.DeepEqual(e.Args, want.Args) && !(len(e.Args) == 0 && len(want.Args) == 0) ||
			e.Cwd != want.Cwd || e.ExecPath != want.ScriptPath() || e.Interpreter != want.Interpreter ||
			e.ExpBackoff != 100 || e.OutFile != want.OutFile || e.ErrFile != want.ErrorFile || e.CombinedLogFile != want.LogFile {
			t.Errorf("pm2 recorded %s as %+v; want %+v", p.Name, e, want)
		}
		wantMem := int64(500 << 20)
		if p.Name == "nexus-core" {
			wantMem = 800 << 20
		}
		if e.MaxMemory != wantMem {
			t.Errorf("%s max_memory_restart = %d, want %d", p.Name, e.MaxMemory, wantMem)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "pwned")); err == nil {
		t.Error("starting the apps ran a command from a path")
	}
}
