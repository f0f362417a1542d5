package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/deploy/demo"
	"github.com/livinity/livinity-agent/internal/atomicfile"
	"github.com/urfave/cli/v3"
)

// Demo ports: away from a real LivOS box's defaults (8080, 3100-3300) and the real agent's
// metrics (9847) so that the demo, and `run` on it, can run beside one.
const (
	demoPortLivos     = 18080
	demoPortAPI       = 13200
	demoPortMCP       = 13100
	demoPortMemory    = 13300
	demoMetricsListen = "127.0.0.1:19847"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "onboard the bundled LivOS-shaped demo tree in a scratch directory, with its own PM2 home",
		Flags: demoFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			dir, err := filepath.Abs(cmd.String(flagDir))
			if err != nil {
				return err
			}
			cfgPath, err := prepareDemo(dir)
			if err != nil {
				return err
			}
			defaults := map[string]string{
				flagConfig:   cfgPath,
				flagStateDir: filepath.Join(dir, "state"),
				flagPM2Home:  filepath.Join(dir, "pm2"),
			}
			for name, v := range defaults {
				if !cmd.IsSet(name) {
					if err := cmd.Set(name, v); err != nil {
						return err
					}
				}
			}
			fmt.Fprintf(cmd.Root().Writer, "demo: tree %s, config %s, PM2_HOME %s\n", dir, cmd.String(flagConfig), cmd.String(flagPM2Home))
			cfg, err := config.Load(cmd.String(flagConfig))
			if err != nil {
				return err
			}
			return onboardBox(ctx, cmd, cfg)
		},
	}
}

// prepareDemo extracts the demo tree into dir (once) and writes its setup.json (once, so
// the user may edit it), returning the config's path.
func prepareDemo(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "livos", "package.json")); errors.Is(err, fs.ErrNotExist) {
		if err := demo.Extract(dir); err != nil {
			return "", err
		}
	}
	cfgPath := filepath.Join(dir, "setup.json")
	if _, err := os.Stat(cfgPath); err == nil {
		return cfgPath, nil
	}
	// LivOS needs Node.js 22 (livinityd uses the global WebSocket, which Node 20 lacks: it
	// dies with "WebSocket is not defined"), hence the default minNodeMajor 22 and the real
	// trees' engines.node. The demo's stand-ins run on the node this machine has (20 or
	// later) and need neither Redis nor D-Bus: demo.Config says so.
	cfg := demo.Config(dir, nodeMajor())
	cfg.Ports = config.Ports{API: demoPortAPI, MCP: demoPortMCP, Memory: demoPortMemory, Livos: demoPortLivos}
	cfg.Agent.Metrics.Listen = demoMetricsListen
	b, err := cfg.MarshalIndent()
	if err != nil {
		return "", err
	}
	if _, err := config.Parse(b); err != nil {
		return "", fmt.Errorf("demo config: %w", err)
	}
	return cfgPath, atomicfile.WriteFile(cfgPath, append(b, '\n'), 0o600)
}

// nodeMajor is the major version of the node on PATH, or 22 when there is none (preflight
// then reports it missing).
func nodeMajor() int {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return 22
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if err != nil || major < 1 {
		return 22
	}
	return major
}
