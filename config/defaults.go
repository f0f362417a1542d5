package config

import (
	"encoding/json"
	"math"
)

// Defaults of the per-service settings (see ServiceSettings).
const (
	defaultPeriodSeconds    = 5
	defaultTimeoutSeconds   = 2
	defaultFailureThreshold = 3
	defaultSuccessThreshold = 1
	// startupWindowSeconds is how long a service may take to start by default: the startup
	// probe's failureThreshold defaults to ceil(startupWindowSeconds / periodSeconds).
	startupWindowSeconds = 120
	defaultMemoryLimitMB = 500
	defaultExpectStatus  = 200
	defaultDMPolicy      = "pairing"
)

// Default returns a Config holding every default and no domain: the starting point of
// Parse, and of a config built in code (set Domain, then Validate).
func Default() *Config {
	return &Config{
		Paths: Paths{LivosBaseDir: "/opt/livos", NexusBaseDir: "/opt/nexus"},
		Ports: Ports{API: 3200, MCP: 3100, Memory: 3300, Livos: 8080},
		Agent: Agent{
			Preflight:            Preflight{MinNodeMajor: 22, MinDiskGB: 10, MinRAMGB: 4},
			HealthTimeoutSeconds: 120,
			MemoryBreachChecks:   3,
			RestartBackoff: Backoff{
				InitialSeconds: 1, Multiplier: 2, MaxSeconds: 300, ResetAfterSeconds: 600,
			},
			Metrics: Metrics{Listen: "127.0.0.1:9847"},
		},
	}
}

// defaultProbe is the probe of a service when setup.json does not override it: the
// catalog's, on the service's port.
func (c *Config) defaultProbe(name string) Probe {
	d, ok := c.Service(name)
	if !ok {
		return Probe{Kind: "process"}
	}
	p := d.Probe
	if p.Kind != "process" && p.Port == 0 {
		p.Port = c.Ports.PortOf(d.Port)
	}
	return p
}

// probeKind tells how a Timing's defaults are chosen.
type probeKind int

const (
	startupProbe probeKind = iota
	livenessProbe
	readinessProbe
)

// mergeTiming fills the zero fields of t (nil means all) with the defaults of kind.
func mergeTiming(t *Timing, kind probeKind) Timing {
	var m Timing
	if t != nil {
		m = *t
	}
	if m.PeriodSeconds == 0 {
		m.PeriodSeconds = defaultPeriodSeconds
	}
	if m.TimeoutSeconds == 0 {
		m.TimeoutSeconds = defaultTimeoutSeconds
	}
	if m.SuccessThreshold == 0 {
		m.SuccessThreshold = defaultSuccessThreshold
	}
	if m.FailureThreshold == 0 {
		m.FailureThreshold = defaultFailureThreshold
		if kind == startupProbe && m.PeriodSeconds > 0 {
			m.FailureThreshold = int(math.Ceil(startupWindowSeconds / m.PeriodSeconds))
		}
	}
	return m
}

// DefaultEntry is one row of the defaults table: a JSON key, its default as JSON, and
// what it means.
type DefaultEntry struct {
	Key   string
	Value string
	Doc   string
}

// DefaultTable lists every default, taken from Default and ServiceSettings so it cannot
// drift from them. deploy/examples/README.md carries it as a Markdown table.
func DefaultTable() []DefaultEntry {
	d := Default()
	d.Domain = "localhost"
	rows := []DefaultEntry{
		{"paths.livosBaseDir", js(d.Paths.LivosBaseDir), "LivOS source tree (livinityd, UI)"},
		{"paths.nexusBaseDir", js(d.Paths.NexusBaseDir), "Nexus source tree (core, worker, memory, mcp)"},
		{"ports.api", js(d.Ports.API), "nexus-core HTTP API"},
		{"ports.mcp", js(d.Ports.MCP), "nexus-mcp"},
		{"ports.memory", js(d.Ports.Memory), "nexus-memory"},
		{"ports.livos", js(d.Ports.Livos), "livinityd"},
		{"telegram.dmPolicy", js(defaultDMPolicy), "when a telegram section is present"},
		{"agent.preflight.minNodeMajor", js(d.Agent.Preflight.MinNodeMajor), "lowest Node.js major version"},
		{"agent.preflight.minDiskGB", js(d.Agent.Preflight.MinDiskGB), "free disk space needed, GB"},
		{"agent.preflight.minRamGB", js(d.Agent.Preflight.MinRAMGB), "memory needed, GB"},
		{"agent.healthTimeoutSeconds", js(d.Agent.HealthTimeoutSeconds), "onboarding waits this long for all services to be healthy"},
		{"agent.memoryBreachChecks", js(d.Agent.MemoryBreachChecks), "checks in a row over memoryLimitMB before a restart"},
		{"agent.restartBackoff.initialSeconds", js(d.Agent.RestartBackoff.InitialSeconds), "delay before the second restart in a row (the first is immediate)"},
		{"agent.restartBackoff.multiplier", js(d.Agent.RestartBackoff.Multiplier), "delay grows by this factor per restart"},
		{"agent.restartBackoff.maxSeconds", js(d.Agent.RestartBackoff.MaxSeconds), "longest restart delay"},
		{"agent.restartBackoff.resetAfterSeconds", js(d.Agent.RestartBackoff.ResetAfterSeconds), "a run this long resets the delay"},
		{"agent.metrics.listen", js(d.Agent.Metrics.Listen), "Prometheus /metrics address"},
	}
	for _, def := range d.Services() {
		doc := "no port: checks that the PM2 process is online"
		if def.Port != "" {
			doc = "port follows ports." + def.Port
		}
		rows = append(rows, DefaultEntry{"agent.services." + def.Name + ".probe", js(d.ServiceSettings(def.Name).Probe), doc})
	}
	s := d.ServiceSettings(d.ServiceNames()[0])
	rows = append(rows,
		DefaultEntry{"agent.services.*.startup", js(s.Startup), "failureThreshold = ceil(120 / periodSeconds)"},
		DefaultEntry{"agent.services.*.liveness", js(s.Liveness), "a failing service is restarted"},
		DefaultEntry{"agent.services.*.readiness", js(s.Readiness), "a failing service is reported not ready"},
		DefaultEntry{"agent.services.*.memoryLimitMB", js(defaultMemoryLimitMB), "MiB of resident memory"},
	)
	return rows
}

// js is v as compact JSON; v is always one of this package's plain types.
func js(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
