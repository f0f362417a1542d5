package setup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/livinity/livinity-agent/internal/atomicfile"
)

// appPrints maps a PM2 app name to the fingerprint of the definition it was started with.
type appPrints map[string]string

const appPrintsFile = "apps.json"

func loadAppPrints(stateDir string) (appPrints, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, appPrintsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return appPrints{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read app fingerprints: %w", err)
	}
	ap := appPrints{}
	if err := json.Unmarshal(b, &ap); err != nil {
		return appPrints{}, nil
	}
	return ap, nil
}

func saveAppPrints(stateDir string, ap appPrints) error {
	b, err := json.MarshalIndent(ap, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(stateDir, appPrintsFile), append(b, '\n'), 0o600)
}
