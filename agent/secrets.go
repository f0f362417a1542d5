package agent

import (
	"path/filepath"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/redact"
	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"github.com/livinity/livinity-agent/setup/envfile"
)

// newSecrets is the set of values kept out of logs and errors: the config's secrets and
// those of the existing .env.
func newSecrets(cfg *config.Config) *redact.Secrets {
	secrets := &redact.Secrets{}
	secrets.Add(cfg.Secrets()...)
	secrets.Add(envSecrets(cfg, filepath.Join(cfg.Paths.LivosBaseDir, ".env"))...)
	return secrets
}

// learnSecrets adds the secrets of a freshly written .env to the agent's.
func (a *Agent) learnSecrets(e pipeline.Event) {
	if e.Step.ID == setup.StepEnv && e.Status == pipeline.StatusDone {
		a.secrets.Add(envSecrets(a.cfg, a.box.EnvFile())...)
	}
}

// envSecrets are the secret values of the .env at path: building the .env again from it
// keeps its secrets, and Env.Secrets names them (ports and paths are not secrets).
func envSecrets(cfg *config.Config, path string) []string {
	existing, err := envfile.Read(path)
	if err != nil || len(existing) == 0 {
		return nil
	}
	env, err := envfile.Build(cfg, existing, false, nil)
	if err != nil {
		return nil
	}
	return env.Secrets()
}
