package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"time"
)

// ResolvedService is one service's supervision settings with every default filled in.
type ResolvedService struct {
	Name string
	// Probe always has a Kind. For http it has Path, Port and ExpectStatus; for tcp, Port;
	// for process, nothing else.
	Probe                        Probe
	Startup, Liveness, Readiness Timing
	MemoryLimitBytes             uint64
}

// ServiceSettings resolves a service's settings: the user's overrides from
// agent.services[name] merged field by field over the defaults (see DefaultTable), the
// probe port taken from Ports unless set. A name that is not in the catalog gets a
// process probe and the default timings. Call it on a validated Config.
func (c *Config) ServiceSettings(name string) ResolvedService {
	user := c.Agent.Services[name]
	mb := user.MemoryLimitMB
	if mb == 0 {
		mb = defaultMemoryLimitMB
	}
	return ResolvedService{
		Name:             name,
		Probe:            c.resolveProbe(name, user.Probe),
		Startup:          mergeTiming(user.Startup, startupProbe),
		Liveness:         mergeTiming(user.Liveness, livenessProbe),
		Readiness:        mergeTiming(user.Readiness, readinessProbe),
		MemoryLimitBytes: uint64(mb) << 20,
	}
}

// ResolvedServices is ServiceSettings of every service of the catalog, in its order.
func (c *Config) ResolvedServices() []ResolvedService {
	names := c.ServiceNames()
	out := make([]ResolvedService, len(names))
	for i, name := range names {
		out[i] = c.ServiceSettings(name)
	}
	return out
}

// resolveProbe merges the user's probe over the service's default. When the user picks
// another kind than the default, only the service's port carries over.
func (c *Config) resolveProbe(name string, user *Probe) Probe {
	def := c.defaultProbe(name)
	if user == nil {
		return def
	}
	p := *user
	if p.Kind == "" {
		p.Kind = def.Kind
	}
	if p.Kind != def.Kind {
		def = Probe{Kind: p.Kind, Port: def.Port}
		if p.Kind == "http" {
			def.Path, def.ExpectStatus = "/", defaultExpectStatus
		}
	}
	if p.Kind == "process" {
		return Probe{Kind: "process"}
	}
	if p.Port == 0 {
		p.Port = def.Port
	}
	if p.Kind != "http" {
		return Probe{Kind: p.Kind, Port: p.Port}
	}
	if p.Path == "" {
		p.Path = def.Path
	}
	if p.ExpectStatus == 0 {
		p.ExpectStatus = def.ExpectStatus
	}
	return p
}

// InitialDelay is InitialDelaySeconds as a Duration.
func (t Timing) InitialDelay() time.Duration { return seconds(t.InitialDelaySeconds) }

// Period is PeriodSeconds as a Duration.
func (t Timing) Period() time.Duration { return seconds(t.PeriodSeconds) }

// Timeout is TimeoutSeconds as a Duration.
func (t Timing) Timeout() time.Duration { return seconds(t.TimeoutSeconds) }

// Initial is InitialSeconds as a Duration.
func (b Backoff) Initial() time.Duration { return seconds(b.InitialSeconds) }

// Max is MaxSeconds as a Duration.
func (b Backoff) Max() time.Duration { return seconds(b.MaxSeconds) }

// ResetAfter is ResetAfterSeconds as a Duration.
func (b Backoff) ResetAfter() time.Duration { return seconds(b.ResetAfterSeconds) }

// HealthTimeout is HealthTimeoutSeconds as a Duration.
func (a Agent) HealthTimeout() time.Duration { return seconds(a.HealthTimeoutSeconds) }

// seconds converts validated seconds (0 to 86400) to a Duration.
func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// fingerprintVersion changes whenever the canonical form below changes meaning.
const fingerprintVersion = 1

// Fingerprint is the sha256 (hex) of a canonical JSON encoding of the resolved config:
// every default filled in and agent.services replaced by ResolvedServices, so two files
// that differ only in spelling out defaults, key order or whitespace have the same
// fingerprint. It is meant for validated configs. Secrets are part of it, so changing a token changes it; being a hash of
// high-entropy tokens it reveals nothing of them.
func (c *Config) Fingerprint() string {
	flat := *c
	flat.Agent.Services = nil
	flat.Agent.Catalog = nil
	b, err := json.Marshal(struct {
		Version  int
		Config   Config
		Catalog  []ServiceDef
		Services []ResolvedService
	}{fingerprintVersion, flat, c.Services(), c.ResolvedServices()})
	if err != nil {
		// Only a NaN or infinite number, which Validate rejects and JSON cannot hold, fails
		// to encode; hash the error so the result is still stable.
		b = []byte("unencodable: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Secrets returns every non-empty secret value (fields tagged `secret:"true"`), in
// document order, so that logs and command output can be redacted.
func (c *Config) Secrets() []string {
	var out []string
	collectSecrets(reflect.ValueOf(c).Elem(), &out)
	return out
}

func collectSecrets(v reflect.Value, out *[]string) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			collectSecrets(v.Elem(), out)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := v.Field(i)
			if t.Field(i).Tag.Get("secret") == "true" {
				if s := f.String(); s != "" {
					*out = append(*out, s)
				}
				continue
			}
			collectSecrets(f, out)
		}
	}
}

// MarshalIndent encodes c as setup.json, indented by two spaces, ending in a newline;
// Parse of the result gives back an equal Config. The output holds the secrets in clear:
// write it with mode 0600 (internal/atomicfile.WriteFile).
func (c *Config) MarshalIndent() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
