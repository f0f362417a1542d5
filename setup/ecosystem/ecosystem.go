// Package ecosystem turns the service catalog into PM2 app definitions and renders them
// as a PM2 ecosystem file. Every value is encoded as JSON, which is valid JavaScript, so paths with
// quotes, spaces or $(...) are data and never code.
package ecosystem

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/livinity/livinity-agent/config"
)

// App is one entry of an ecosystem file's apps array; the JSON names are PM2's.
type App struct {
	Name string `json:"name"`
	// Script is relative to Cwd. PM2 runs a script whose path holds a space as
	// `bash -c <script>`, so an absolute path under a base directory with a space (or a
	// `$(...)`) would be executed by a shell; the relative paths never hold one.
	Script      string `json:"script"`
	Interpreter string `json:"interpreter"`
	// NodeArgs go to the interpreter before the script: `--env-file=<.env>` gives the
	// service the .env in its environment while PM2 only ever sees the file's path.
	NodeArgs []string `json:"node_args,omitempty"`
	Args     []string `json:"args,omitempty"`
	Cwd      string   `json:"cwd"`
	// Env holds only non-secret settings: PM2 shows an app's env in `pm2 show` and
	// `pm2 jlist`. The secrets reach the service through NodeArgs.
	Env                    map[string]string `json:"env"`
	MaxMemoryRestart       string            `json:"max_memory_restart"`
	ExpBackoffRestartDelay int               `json:"exp_backoff_restart_delay"`
	Autorestart            bool              `json:"autorestart"`
	KillTimeout            int               `json:"kill_timeout"`
	OutFile                string            `json:"out_file"`
	ErrorFile              string            `json:"error_file"`
	LogFile                string            `json:"log_file"`
	Time                   bool              `json:"time"`
}

// Options are what the apps need beyond the config.
type Options struct {
	// Node is the node binary; "" means "node" looked up on PATH by PM2.
	Node string
	// Python is the python for a python service whose venv does not exist; "" means
	// "python3".
	Python string
	// Launcher is the livinity-agent binary, which starts a python service with the .env
	// in its environment (`livinity-agent exec-env`); python has no --env-file.
	Launcher string
}

const (
	expBackoffRestartDelayMS = 100
	killTimeoutMS            = 5000
)

// LogDir is the directory of the apps' log files, <livos>/logs. It must exist before PM2
// starts the apps.
func LogDir(cfg *config.Config) string {
	return filepath.Join(cfg.Paths.LivosBaseDir, "logs")
}

// EnvFile is the LivOS .env every app gets in its environment.
func EnvFile(cfg *config.Config) string {
	return filepath.Join(cfg.Paths.LivosBaseDir, ".env")
}

// PackageDir is the directory of a service's package.
func PackageDir(cfg *config.Config, d config.ServiceDef) string {
	return filepath.Join(cfg.TreeDir(d.Tree), "packages", d.Package)
}

// Cwd is a service's working directory.
func Cwd(cfg *config.Config, d config.ServiceDef) string {
	if d.Cwd == config.CwdPackage {
		return PackageDir(cfg, d)
	}
	return cfg.TreeDir(d.Tree)
}

// VenvPython is the interpreter of a python service once its venv is built.
func VenvPython(cfg *config.Config, d config.ServiceDef) string {
	return filepath.Join(PackageDir(cfg, d), "venv", "bin", "python3")
}

// Tsx is the tsx of a tsx service: its package's own, else the tree's.
func Tsx(cfg *config.Config, d config.ServiceDef) string {
	own := filepath.Join(PackageDir(cfg, d), "node_modules", ".bin", "tsx")
	if _, err := os.Stat(own); err == nil {
		return own
	}
	if root := filepath.Join(cfg.TreeDir(d.Tree), "node_modules", ".bin", "tsx"); fileExists(root) {
		return root
	}
	return own
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// Apps returns the PM2 apps of defs, in their order. Each restarts above its service's
// memory limit (agent.services.<name>.memoryLimitMB, default 500) and gets the .env in
// its environment without PM2 holding any of it.
func Apps(cfg *config.Config, defs []config.ServiceDef, opts Options) []App {
	node := opts.Node
	if node == "" {
		node = "node"
	}
	envArg := "--env-file=" + EnvFile(cfg)
	logs := LogDir(cfg)
	apps := make([]App, 0, len(defs))
	for _, d := range defs {
		port := cfg.Ports.PortOf(d.Port)
		env := map[string]string{"NODE_ENV": "production"}
		if d.PortEnv != "" && port != 0 {
			env[d.PortEnv] = strconv.Itoa(port)
		}
		cwd := Cwd(cfg, d)
		// relative to cwd: PM2 runs a script path with a space through bash -c
		script, _ := filepath.Rel(cwd, filepath.Join(PackageDir(cfg, d), filepath.FromSlash(d.Script)))
		args := make([]string, len(d.Args))
		for i, a := range d.Args {
			args[i] = cfg.Expand(a, port)
		}
		if len(args) == 0 {
			args = nil
		}
		a := App{
			Name: d.Name, Script: script, Args: args, Cwd: cwd, Env: env,
			MaxMemoryRestart:       strconv.FormatUint(cfg.ServiceSettings(d.Name).MemoryLimitBytes>>20, 10) + "M",
			ExpBackoffRestartDelay: expBackoffRestartDelayMS,
			Autorestart:            true,
			KillTimeout:            killTimeoutMS,
			OutFile:                filepath.Join(logs, d.Name+"-out.log"),
			ErrorFile:              filepath.Join(logs, d.Name+"-error.log"),
			LogFile:                filepath.Join(logs, d.Name+"-combined.log"),
			Time:                   true,
		}
		switch d.Kind {
		case config.RunTsx:
			a.Interpreter, a.NodeArgs = Tsx(cfg, d), []string{envArg}
		case config.RunPython:
			python := VenvPython(cfg, d)
			if !fileExists(python) {
				python = opts.Python
				if python == "" {
					python = "python3"
				}
			}
			a.Interpreter = opts.Launcher
			a.NodeArgs = []string{"exec-env", "--env-file", EnvFile(cfg), "--", python}
		default:
			a.Interpreter, a.NodeArgs = node, []string{envArg}
		}
		apps = append(apps, a)
	}
	return apps
}

// ScriptPath is the absolute path of the app's script.
func (a App) ScriptPath() string {
	return filepath.Join(a.Cwd, a.Script)
}

const header = "// PM2 ecosystem file for LivOS, written by livinity-agent. Do not edit: change\n" +
	"// setup.json and re-run onboarding. The apps are plain JSON data.\n"

// Render returns the ecosystem file: `module.exports = { apps: [...] };` with the apps as
// indented JSON. The output depends only on apps (struct fields in order, env keys sorted).
func Render(apps []App) ([]byte, error) {
	if apps == nil {
		apps = []App{}
	}
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("module.exports = { apps: ")
	// encoding/json also escapes U+2028 and U+2029, which older JavaScript engines reject
	// in string literals, so the JSON is valid JavaScript.
	data, err := json.MarshalIndent(apps, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render ecosystem file: %w", err)
	}
	b.Write(data)
	b.WriteString(" };\n")
	return b.Bytes(), nil
}

// Fingerprint is the SHA-256 of app's JSON encoding, in hex: two apps have the same
// fingerprint exactly when PM2 would be given the same definition.
func Fingerprint(app App) string {
	// An App holds only strings, ints, bools and a string map, which always encode.
	data, _ := json.Marshal(app)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
