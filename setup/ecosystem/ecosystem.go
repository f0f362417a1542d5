// Package ecosystem describes the five LivOS PM2 apps as data and renders them as a PM2
// ecosystem file. Every value is encoded as JSON, which is valid JavaScript, so paths with
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

	"github.com/livinity/livinity-agent/setup/config"
)

// App is one entry of an ecosystem file's apps array; the JSON names are PM2's.
type App struct {
	Name string `json:"name"`
	// Script is relative to Cwd. PM2 runs a script whose path holds a space as
	// `bash -c <script>`, so an absolute path under a base directory with a space (or a
	// `$(...)`) would be executed by a shell; the relative paths never hold one.
	Script      string   `json:"script"`
	Interpreter string   `json:"interpreter"`
	Args        []string `json:"args,omitempty"`
	Cwd         string   `json:"cwd"`
	// Env holds only non-secret settings: PM2 shows an app's env in `pm2 show` and
	// `pm2 jlist`. The services read their secrets from the .env file.
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

// Options are the interpreters to use where the config does not fix one.
type Options struct {
	// Node is the node binary for the Nexus apps; "" means "node" looked up on PATH by PM2.
	Node string
	// Python is the python for nexus-memory when its venv does not exist; "" means "python3".
	Python string
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

// MemoryVenvPython is the interpreter nexus-memory uses once its venv is built.
func MemoryVenvPython(cfg *config.Config) string {
	return filepath.Join(cfg.Paths.NexusBaseDir, "packages", "memory", "venv", "bin", "python3")
}

// Apps returns the five LivOS apps in config.ServiceNames order. Each restarts above its
// service's memory limit (agent.services.<name>.memoryLimitMB, default 500). nexus-memory
// runs on its venv's python when that file exists, else on opts.Python.
func Apps(cfg *config.Config, opts Options) []App {
	livos, nexus := cfg.Paths.LivosBaseDir, cfg.Paths.NexusBaseDir
	node := opts.Node
	if node == "" {
		node = "node"
	}
	python := MemoryVenvPython(cfg)
	if _, err := os.Stat(python); err != nil {
		python = opts.Python
		if python == "" {
			python = "python3"
		}
	}
	app := func(name, interpreter, script string, args []string, cwd, portKey string, port int) App {
		env := map[string]string{"NODE_ENV": "production"}
		if portKey != "" {
			env[portKey] = strconv.Itoa(port)
		}
		limitMB := cfg.ServiceSettings(name).MemoryLimitBytes >> 20
		logs := LogDir(cfg)
		return App{
			Name:                   name,
			Script:                 script,
			Interpreter:            interpreter,
			Args:                   args,
			Cwd:                    cwd,
			Env:                    env,
			MaxMemoryRestart:       strconv.FormatUint(limitMB, 10) + "M",
			ExpBackoffRestartDelay: expBackoffRestartDelayMS,
			Autorestart:            true,
			KillTimeout:            killTimeoutMS,
			OutFile:                filepath.Join(logs, name+"-out.log"),
			ErrorFile:              filepath.Join(logs, name+"-error.log"),
			LogFile:                filepath.Join(logs, name+"-combined.log"),
			Time:                   true,
		}
	}
	nexusScript := func(pkg string) string {
		return filepath.Join("packages", pkg, "dist", "index.js")
	}
	return []App{
		app("livos",
			filepath.Join(livos, "node_modules", ".bin", "tsx"),
			filepath.Join("packages", "livinityd", "source", "cli.ts"),
			[]string{"--data-directory", filepath.Join(livos, "data"), "--port", strconv.Itoa(cfg.Ports.Livos)},
			livos, "LIVOS_PORT", cfg.Ports.Livos),
		app("nexus-core", node, nexusScript("core"), nil, nexus, "API_PORT", cfg.Ports.API),
		app("nexus-worker", node, nexusScript("worker"), nil, nexus, "", 0),
		app("nexus-memory", python,
			filepath.Join("packages", "memory", "src", "server.py"),
			nil, nexus, "MEMORY_PORT", cfg.Ports.Memory),
		app("nexus-mcp", node, nexusScript("mcp-server"), nil, nexus, "MCP_PORT", cfg.Ports.MCP),
	}
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
