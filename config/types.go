// Package config is the schema of setup.json: the original LivOS onboarding fields plus
// the agent's own `agent` section.
//
// Parse and Load start from Default, decode strictly (unknown keys and values of the wrong
// JSON type are errors, reported all at once), then Validate. Every error is a *FieldError
// that names the JSON path, the bad value and what would be valid; values of secret fields
// (tagged `secret:"true"` below) are shown only as Mask would show them. A key that is
// absent or null keeps its default; see DefaultTable for every default.
//
// Agent.Services holds only the user's overrides; ServiceSettings resolves a service's
// probe, timings and memory limit with the defaults merged in.
package config

// Config is one setup.json file.
type Config struct {
	// Domain is the box's hostname (RFC 1123, no scheme, port or path) or "localhost".
	// IP addresses are rejected: use localhost for a local-only install.
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
	// BotToken is the token @BotFather gives: "<bot id digits>:<30 to 64 of A-Z a-z 0-9 _ ->".
	BotToken string `json:"botToken" secret:"true"`
	// DMPolicy is "open" or "pairing"; Parse sets "pairing" when the key is absent.
	DMPolicy string `json:"dmPolicy"`
}

// Discord configures the Discord channel. BotToken is a secret.
type Discord struct {
	// BotToken is three dot-separated parts of A-Z a-z 0-9 _ -.
	BotToken string `json:"botToken" secret:"true"`
	// ApplicationID is the application's snowflake: 17 to 20 digits.
	ApplicationID string `json:"applicationId"`
}

// Voice holds speech API keys (both secrets). Either may be empty.
type Voice struct {
	DeepgramAPIKey string `json:"deepgramApiKey" secret:"true"`
	CartesiaAPIKey string `json:"cartesiaApiKey" secret:"true"`
}

// Gmail holds OAuth client credentials. ClientSecret is a secret.
type Gmail struct {
	// ClientID ends in ".apps.googleusercontent.com".
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret" secret:"true"`
}

// Paths are the two source trees the agent sets up: absolute, clean, different, and
// neither inside the other.
type Paths struct {
	LivosBaseDir string `json:"livosBaseDir"` // default /opt/livos
	NexusBaseDir string `json:"nexusBaseDir"` // default /opt/nexus
}

// Ports are the TCP ports of the services, each from 1 to 65535; no two may be equal.
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
	// Catalog overrides, removes or adds services of the built-in LivOS catalog (see
	// CatalogEntry and Services).
	Catalog []CatalogEntry `json:"catalog,omitempty"`
	// Services overrides probes and limits per service; keys must be names of Services.
	Services map[string]Service `json:"services,omitempty"`
	// MemoryBreachChecks is how many consecutive checks over the limit restart a service
	// (default 3).
	MemoryBreachChecks int     `json:"memoryBreachChecks"`
	RestartBackoff     Backoff `json:"restartBackoff"`
	Metrics            Metrics `json:"metrics"`
}

// Preflight holds the minimums checked before onboarding; each must be above 0.
type Preflight struct {
	MinNodeMajor int     `json:"minNodeMajor"` // default 22
	MinDiskGB    float64 `json:"minDiskGB"`    // default 10
	MinRAMGB     float64 `json:"minRamGB"`     // default 4
}

// Service is one service's supervision settings; zero or absent fields take the defaults
// (see ServiceSettings).
type Service struct {
	Probe         *Probe  `json:"probe,omitempty"`
	Startup       *Timing `json:"startup,omitempty"`
	Liveness      *Timing `json:"liveness,omitempty"`
	Readiness     *Timing `json:"readiness,omitempty"`
	MemoryLimitMB int     `json:"memoryLimitMB,omitempty"` // MiB, default 500
}

// Probe says how a service's health is checked. An empty Kind means the service's default
// kind; fields left zero take that kind's defaults.
type Probe struct {
	Kind         string `json:"kind"`                   // http, tcp or process
	Path         string `json:"path,omitempty"`         // http only, starts with /
	Port         int    `json:"port,omitempty"`         // http and tcp; default: the service's port
	ExpectStatus int    `json:"expectStatus,omitempty"` // http only, 100 to 599, default 200
	BodyContains string `json:"bodyContains,omitempty"` // http only
}

// Timing is a probe's schedule and thresholds, with Kubernetes semantics: a field left 0
// takes its default, timeoutSeconds may not exceed periodSeconds, and successThreshold
// must be 1 for startup and liveness. Seconds are at most 86400.
type Timing struct {
	InitialDelaySeconds float64 `json:"initialDelaySeconds"` // default 0
	PeriodSeconds       float64 `json:"periodSeconds"`       // default 5
	TimeoutSeconds      float64 `json:"timeoutSeconds"`      // default 2
	SuccessThreshold    int     `json:"successThreshold"`    // default 1
	// FailureThreshold defaults to 3, and for startup to enough checks to cover 120 s
	// (ceil(120 / periodSeconds)).
	FailureThreshold int `json:"failureThreshold"`
}

// Backoff is the per-service restart backoff. Seconds are at most 86400.
type Backoff struct {
	InitialSeconds    float64 `json:"initialSeconds"`    // default 1, above 0
	Multiplier        float64 `json:"multiplier"`        // default 2, at least 1
	MaxSeconds        float64 `json:"maxSeconds"`        // default 300, at least initialSeconds
	ResetAfterSeconds float64 `json:"resetAfterSeconds"` // default 600, above 0
}

// Metrics configures the Prometheus endpoint of `livinity-agent run`.
type Metrics struct {
	// Listen is host:port where host is an IP address or "localhost" (default
	// 127.0.0.1:9847); its port may not be one of Ports.
	Listen string `json:"listen"`
}
