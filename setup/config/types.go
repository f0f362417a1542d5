// Package config is the schema of setup.json: the original LivOS onboarding fields plus
// the agent's own `agent` section. Load decodes strictly (unknown keys are errors), applies
// defaults, then validates; every error names the JSON path, the bad value (secrets masked)
// and what would be valid.
package config

// ServiceNames are the five PM2 apps of a LivOS box, in the order they are shown.
var ServiceNames = []string{"livos", "nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"}

// Config is one setup.json file.
type Config struct {
	Domain   string    `json:"domain"`
	UseHTTPS bool      `json:"useHttps"`
	Telegram *Telegram `json:"telegram,omitempty"`
	Discord  *Discord  `json:"discord,omitempty"`
	Voice    *Voice    `json:"voice,omitempty"`
	Gmail    *Gmail    `json:"gmail,omitempty"`
	Paths    Paths     `json:"paths"`
	Ports    Ports     `json:"ports"`
	Agent    Agent     `json:"agent"`
}

// Telegram configures the Telegram channel. BotToken is a secret.
type Telegram struct {
	BotToken string `json:"botToken"`
	DMPolicy string `json:"dmPolicy"` // "open" or "pairing"
}

// Discord configures the Discord channel. BotToken is a secret.
type Discord struct {
	BotToken      string `json:"botToken"`
	ApplicationID string `json:"applicationId"`
}

// Voice holds speech API keys (both secrets).
type Voice struct {
	DeepgramAPIKey string `json:"deepgramApiKey"`
	CartesiaAPIKey string `json:"cartesiaApiKey"`
}

// Gmail holds OAuth client credentials. ClientSecret is a secret.
type Gmail struct {
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
}

// Paths are the two source trees the agent sets up.
type Paths struct {
	LivosBaseDir string `json:"livosBaseDir"` // default /opt/livos
	NexusBaseDir string `json:"nexusBaseDir"` // default /opt/nexus
}

// Ports are the TCP ports of the services; no two may be equal.
type Ports struct {
	API    int `json:"api"`    // nexus-core, default 3200
	MCP    int `json:"mcp"`    // nexus-mcp, default 3100
	Memory int `json:"memory"` // nexus-memory, default 3300
	Livos  int `json:"livos"`  // livinityd, default 8080
}

// Agent is the agent's own settings.
type Agent struct {
	Preflight Preflight `json:"preflight"`
	// HealthTimeoutSeconds bounds the onboarding's health verification (default 120).
	HealthTimeoutSeconds float64 `json:"healthTimeoutSeconds"`
	// Services overrides probes and limits per service; keys must be ServiceNames.
	Services map[string]Service `json:"services,omitempty"`
	// MemoryBreachChecks is how many consecutive checks over the limit restart a service
	// (default 3).
	MemoryBreachChecks int     `json:"memoryBreachChecks"`
	RestartBackoff     Backoff `json:"restartBackoff"`
	Metrics            Metrics `json:"metrics"`
}

// Preflight holds the minimums checked before onboarding.
type Preflight struct {
	MinNodeMajor int     `json:"minNodeMajor"` // default 22
	MinDiskGB    float64 `json:"minDiskGB"`    // default 10
	MinRAMGB     float64 `json:"minRamGB"`     // default 4
}

// Service is one service's supervision settings; zero fields take the defaults.
type Service struct {
	Probe         *Probe  `json:"probe,omitempty"`
	Startup       *Timing `json:"startup,omitempty"`
	Liveness      *Timing `json:"liveness,omitempty"`
	Readiness     *Timing `json:"readiness,omitempty"`
	MemoryLimitMB int     `json:"memoryLimitMB,omitempty"` // default 500
}

// Probe says how a service's health is checked.
type Probe struct {
	Kind         string `json:"kind"`                   // http, tcp or process
	Path         string `json:"path,omitempty"`         // http only, starts with /
	Port         int    `json:"port,omitempty"`         // default: the service's port
	ExpectStatus int    `json:"expectStatus,omitempty"` // http only, default 200
	BodyContains string `json:"bodyContains,omitempty"` // http only
}

// Timing is a probe's schedule and thresholds, with Kubernetes semantics.
type Timing struct {
	InitialDelaySeconds float64 `json:"initialDelaySeconds"`
	PeriodSeconds       float64 `json:"periodSeconds"`
	TimeoutSeconds      float64 `json:"timeoutSeconds"`
	SuccessThreshold    int     `json:"successThreshold"`
	FailureThreshold    int     `json:"failureThreshold"`
}

// Backoff is the per-service restart backoff.
type Backoff struct {
	InitialSeconds    float64 `json:"initialSeconds"`    // default 1
	Multiplier        float64 `json:"multiplier"`        // default 2
	MaxSeconds        float64 `json:"maxSeconds"`        // default 300
	ResetAfterSeconds float64 `json:"resetAfterSeconds"` // default 600
}

// Metrics configures the Prometheus endpoint of `livinity-agent run`.
type Metrics struct {
	Listen string `json:"listen"` // default 127.0.0.1:9847
}
