package agent

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/atomicfile"
)

// DefaultConfig is the config the box runs by: install writes it there, and run, setup and
// update read it when no config is named.
const DefaultConfig = "/etc/livinity/setup.json"

// savedConfig is where every successful pipeline run keeps the config it used, in the
// state dir, so that `run` and a later `setup` find it without --config.
const savedConfig = "setup.json"

// LoadConfig reads path, else DefaultConfig, else the config of the last successful run
// in stateDir.
func LoadConfig(path, stateDir string) (*config.Config, error) {
	if path != "" {
		return config.Load(path)
	}
	saved := filepath.Join(stateDir, savedConfig)
	for _, path := range []string{DefaultConfig, saved} {
		if _, err := os.Stat(path); err == nil {
			return config.Load(path)
		}
	}
	return nil, fmt.Errorf("no --config given, and neither %s nor a saved config at %s exists: pass --config FILE", DefaultConfig, saved)
}

// saveConfig keeps cfg in stateDir as the config of the last successful run (0600: it
// holds secrets).
func saveConfig(stateDir string, cfg *config.Config) error {
	b, err := cfg.MarshalIndent()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, savedConfig), append(b, '\n'), 0o600)
}
