package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Limits that Validate enforces beyond the obvious ones.
const (
	maxSeconds       = 86400   // any seconds value: at most a day
	maxMultiplier    = 100     // restartBackoff.multiplier
	maxMemoryLimitMB = 1 << 20 // 1 TiB
	maxDomainLength  = 253
	maxLabelLength   = 63
)

var (
	// telegramToken is what @BotFather issues: the bot's numeric id, a colon, and a
	// secret of 35 URL-safe base64 characters today (a little slack either way).
	telegramToken = regexp.MustCompile(`^[0-9]{1,20}:[A-Za-z0-9_-]{30,64}$`)
	// discordToken is three dot-separated URL-safe base64 parts (id, timestamp, hmac).
	discordToken = regexp.MustCompile(`^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$`)
	// snowflake is a Discord id.
	snowflake = regexp.MustCompile(`^[0-9]{17,20}$`)
	// googleClientID is a Google OAuth client id.
	googleClientID = regexp.MustCompile(`^[A-Za-z0-9-]+\.apps\.googleusercontent\.com$`)
)

// validator collects FieldErrors in the order the checks run.
type validator struct {
	errs []error
}

func (v *validator) add(path, value, problem, fix string) {
	v.errs = append(v.errs, &FieldError{Path: path, Value: value, Problem: problem, Fix: fix})
}

// Validate reports every problem of c at once, as an errors.Join of *FieldError in
// document order (services in catalog order, then unknown ones sorted). It checks the
// Config as it is: Parse has already filled the defaults, a Config built in code should
// start from Default (and set Telegram.DMPolicy if it sets Telegram). Zero fields of
// agent.services mean "the default" and are accepted.
func (c *Config) Validate() error {
	v := &validator{}
	if problem, fix := domainProblem(c.Domain); problem != "" {
		value := quote(c.Domain)
		if c.Domain == "" {
			value = ""
		}
		v.add("domain", value, problem, fix)
	}
	if t := c.Telegram; t != nil {
		v.telegram(t)
	}
	if d := c.Discord; d != nil {
		v.discord(d)
	}
	if vo := c.Voice; vo != nil {
		v.secretChars("voice.deepgramApiKey", vo.DeepgramAPIKey)
		v.secretChars("voice.cartesiaApiKey", vo.CartesiaAPIKey)
	}
	if g := c.Gmail; g != nil {
		v.gmail(g)
	}
	v.paths(c.Paths)
	v.ports(c.Ports)
	v.agent(c)
	return errors.Join(v.errs...)
}

// domainProblem says what is wrong with a domain, or "" if nothing is.
func domainProblem(d string) (problem, fix string) {
	const want = "want a hostname like home.example.com, or localhost"
	switch {
	case d == "":
		return "missing", want
	case strings.Contains(d, "://"):
		if u, err := url.Parse(d); err == nil && u.Hostname() != "" {
			return "has a scheme", fmt.Sprintf("want the bare hostname %q", u.Hostname())
		}
		return "has a scheme", want
	}
	if host, _, err := net.SplitHostPort(d); err == nil {
		return "has a port", fmt.Sprintf("want the bare hostname %q", host)
	}
	if net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(d, "["), "]")) != nil {
		return "is an IP address", "want a hostname that points to this server, or localhost for a local-only install"
	}
	if i := strings.IndexAny(d, "/?#"); i >= 0 {
		if i > 0 {
			return "has a path", fmt.Sprintf("want the bare hostname %q", d[:i])
		}
		return "has a path", want
	}
	if len(d) > maxDomainLength {
		return fmt.Sprintf("is longer than %d characters", maxDomainLength), want
	}
	if strings.HasSuffix(d, ".") && len(d) > 1 {
		return "has a trailing dot", fmt.Sprintf("want %q", strings.TrimSuffix(d, "."))
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		if l == "" {
			return "has an empty label", "want no leading dot and no two dots in a row, like home.example.com"
		}
		if len(l) > maxLabelLength {
			return fmt.Sprintf("has a label longer than %d characters", maxLabelLength), want
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Sprintf("has an invalid character %q", r),
					"want letters, digits, hyphens and dots; write an international name in its xn-- form"
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "has a label that starts or ends with a hyphen", want
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "ends in an all-digit label", want
	}
	return "", ""
}

// badSecretChars says whether a secret has characters no token has, which would also
// break the .env files it is written to.
func badSecretChars(s string) bool {
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '\\' || r == '$' || r == '`' {
			return true
		}
	}
	return false
}

const badSecretProblem = "contains spaces, line breaks, quotes, $, ` or \\"

// secretChars checks an optional secret's characters.
func (v *validator) secretChars(path, s string) bool {
	if badSecretChars(s) {
		v.add(path, Mask(s), badSecretProblem, "want the value exactly as issued, without spaces or quotes")
		return false
	}
	return true
}

func (v *validator) telegram(t *Telegram) {
	switch {
	case t.BotToken == "":
		v.add("telegram.botToken", "", "missing", "want the token @BotFather gives, like 123456789:AAH…, or remove the telegram section")
	case !v.secretChars("telegram.botToken", t.BotToken):
	case !telegramToken.MatchString(t.BotToken):
		v.add("telegram.botToken", Mask(t.BotToken), "is not a bot token",
			"want <bot id digits>:<30 to 64 letters, digits, _ or ->, as @BotFather gives it")
	}
	if t.DMPolicy != "open" && t.DMPolicy != "pairing" {
		v.add("telegram.dmPolicy", quote(t.DMPolicy), "is not a policy", `want "open" or "pairing"`)
	}
}

func (v *validator) discord(d *Discord) {
	switch {
	case d.BotToken == "":
		v.add("discord.botToken", "", "missing", "want the bot token from the Discord developer portal (Bot, Reset Token), or remove the discord section")
	case !v.secretChars("discord.botToken", d.BotToken):
	case !discordToken.MatchString(d.BotToken):
		v.add("discord.botToken", Mask(d.BotToken), "is not a bot token",
			"want three parts of letters, digits, _ or - separated by dots, as the developer portal shows it")
	}
	switch {
	case d.ApplicationID == "":
		v.add("discord.applicationId", "", "missing", "want the application ID (17 to 20 digits) from the Discord developer portal")
	case !snowflake.MatchString(d.ApplicationID):
		v.add("discord.applicationId", quote(d.ApplicationID), "is not an application ID", "want 17 to 20 digits")
	}
}

func (v *validator) gmail(g *Gmail) {
	switch {
	case g.ClientID == "":
		v.add("gmail.clientId", "", "missing", "want the OAuth client ID ending in .apps.googleusercontent.com, or remove the gmail section")
	case !googleClientID.MatchString(g.ClientID):
		v.add("gmail.clientId", quote(g.ClientID), "is not an OAuth client ID", "want <digits>-<letters>.apps.googleusercontent.com")
	}
	switch {
	case g.ClientSecret == "":
		v.add("gmail.clientSecret", "", "missing", "want the OAuth client secret, or remove the gmail section")
	default:
		v.secretChars("gmail.clientSecret", g.ClientSecret)
	}
}

// dir checks one base directory and says whether it is usable for the nesting checks.
func (v *validator) dir(path, d, example string) bool {
	want := "want an absolute path like " + example
	switch {
	case d == "":
		v.add(path, "", "missing", want)
	case strings.ContainsFunc(d, func(r rune) bool { return r < ' ' || r == 0x7f }):
		v.add(path, quote(d), "contains a control character", want)
	case !filepath.IsAbs(d):
		v.add(path, quote(d), "is not absolute", want)
	case filepath.Clean(d) != d:
		v.add(path, quote(d), "is not clean", fmt.Sprintf("want %q", filepath.Clean(d)))
	case d == "/":
		v.add(path, quote(d), "is the root directory", "want a directory of its own like "+example)
	default:
		return true
	}
	return false
}

func (v *validator) paths(p Paths) {
	livosOK := v.dir("paths.livosBaseDir", p.LivosBaseDir, "/opt/livos")
	nexusOK := v.dir("paths.nexusBaseDir", p.NexusBaseDir, "/opt/nexus")
	if !livosOK || !nexusOK {
		return
	}
	switch {
	case p.LivosBaseDir == p.NexusBaseDir:
		v.add("paths.nexusBaseDir", quote(p.NexusBaseDir), "is the same as paths.livosBaseDir", "want a separate directory like /opt/nexus")
	case strings.HasPrefix(p.NexusBaseDir, p.LivosBaseDir+"/"):
		v.add("paths.nexusBaseDir", quote(p.NexusBaseDir), "is inside paths.livosBaseDir", "want a directory outside it like /opt/nexus")
	case strings.HasPrefix(p.LivosBaseDir, p.NexusBaseDir+"/"):
		v.add("paths.livosBaseDir", quote(p.LivosBaseDir), "is inside paths.nexusBaseDir", "want a directory outside it like /opt/livos")
	}
}

// portFields are the ports in document order, with their paths.
func portFields(p Ports) []struct {
	path string
	port int
} {
	return []struct {
		path string
		port int
	}{{"ports.api", p.API}, {"ports.mcp", p.MCP}, {"ports.memory", p.Memory}, {"ports.livos", p.Livos}}
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

func (v *validator) port(path string, p int) bool {
	if !validPort(p) {
		v.add(path, strconv.Itoa(p), "is out of range", portWant)
		return false
	}
	return true
}

func (v *validator) ports(p Ports) {
	seen := map[int]string{}
	for _, f := range portFields(p) {
		if !v.port(f.path, f.port) {
			continue
		}
		if other, dup := seen[f.port]; dup {
			v.add(f.path, strconv.Itoa(f.port), "is already used by "+other, "pick another port")
			continue
		}
		seen[f.port] = f.path
	}
}

// seconds checks a number of seconds: above 0 (or at least 0 if zeroOK), at most a day.
func (v *validator) seconds(path string, s float64, zeroOK bool, fix string) bool {
	switch {
	case zeroOK && !(s >= 0):
		v.add(path, num(s), "is below 0", fix)
	case !zeroOK && !(s > 0):
		v.add(path, num(s), "is not above 0", fix)
	case s > maxSeconds:
		v.add(path, num(s), fmt.Sprintf("is more than %d (a day)", maxSeconds), fix)
	default:
		return true
	}
	return false
}

func (v *validator) agent(c *Config) {
	a := c.Agent
	if a.Preflight.MinNodeMajor < 1 {
		v.add("agent.preflight.minNodeMajor", strconv.Itoa(a.Preflight.MinNodeMajor), "is below 1", "want a Node.js major version like 22")
	}
	if !(a.Preflight.MinDiskGB > 0) {
		v.add("agent.preflight.minDiskGB", num(a.Preflight.MinDiskGB), "is not above 0", "want a number of GB like 10")
	}
	if !(a.Preflight.MinRAMGB > 0) {
		v.add("agent.preflight.minRamGB", num(a.Preflight.MinRAMGB), "is not above 0", "want a number of GB like 4")
	}
	v.seconds("agent.healthTimeoutSeconds", a.HealthTimeoutSeconds, false, "want a number of seconds above 0 and at most 86400, like 120")

	_, probs := mergeCatalog(builtinCatalog(), a.Catalog)
	for _, p := range probs {
		v.add(p.path, p.value, p.problem, p.fix)
	}
	known := c.ServiceNames()
	names := make([]string, 0, len(a.Services))
	for name := range a.Services {
		if !slices.Contains(known, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range append(slices.Clone(known), names...) {
		if s, ok := a.Services[name]; ok {
			v.service(c, name, s)
		}
	}

	if a.MemoryBreachChecks < 1 {
		v.add("agent.memoryBreachChecks", strconv.Itoa(a.MemoryBreachChecks), "is below 1", "want a number of checks like 3")
	}

	b := a.RestartBackoff
	const bp = "agent.restartBackoff."
	initOK := v.seconds(bp+"initialSeconds", b.InitialSeconds, false, "want a number of seconds above 0 and at most 86400, like 1")
	if !(b.Multiplier >= 1 && b.Multiplier <= maxMultiplier) {
		v.add(bp+"multiplier", num(b.Multiplier), "is out of range", fmt.Sprintf("want a factor from 1 to %d, like 2", maxMultiplier))
	}
	if v.seconds(bp+"maxSeconds", b.MaxSeconds, false, "want a number of seconds above 0 and at most 86400, like 300") && initOK && b.MaxSeconds < b.InitialSeconds {
		v.add(bp+"maxSeconds", num(b.MaxSeconds), "is below initialSeconds "+num(b.InitialSeconds), "want at least "+num(b.InitialSeconds))
	}
	v.seconds(bp+"resetAfterSeconds", b.ResetAfterSeconds, false, "want a number of seconds above 0 and at most 86400, like 600")

	v.metricsListen(a.Metrics.Listen, c.Ports)
}

func (v *validator) metricsListen(addr string, ports Ports) {
	const path = "agent.metrics.listen"
	const want = "want an IP address or localhost and a port, like 127.0.0.1:9847 (0.0.0.0:9847 for every interface)"
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(path, quote(addr), "is not host:port", want)
		return
	}
	if host != "localhost" && net.ParseIP(host) == nil {
		v.add(path, quote(addr), "does not have an IP address or localhost as its host", want)
		return
	}
	port, err := strconv.Atoi(portText)
	if err != nil || !validPort(port) {
		v.add(path, quote(addr), "does not have a port from 1 to 65535", want)
		return
	}
	for _, f := range portFields(ports) {
		if f.port == port {
			v.add(path, quote(addr), "uses port "+portText+", already used by "+f.path, "pick another port")
			return
		}
	}
}

func (v *validator) service(c *Config, name string, s Service) {
	path := child("agent.services", name)
	if known := c.ServiceNames(); !slices.Contains(known, name) {
		v.add(path, "", "unknown service", "valid names: "+strings.Join(known, ", "))
		return
	}
	if s.Probe != nil {
		v.probe(path+".probe", name, *s.Probe, c.defaultProbe(name))
	}
	v.timing(path+".startup", s.Startup, startupProbe)
	v.timing(path+".liveness", s.Liveness, livenessProbe)
	v.timing(path+".readiness", s.Readiness, readinessProbe)
	if s.MemoryLimitMB < 0 || s.MemoryLimitMB > maxMemoryLimitMB {
		v.add(path+".memoryLimitMB", strconv.Itoa(s.MemoryLimitMB), "is out of range",
			fmt.Sprintf("want a number of MiB from 1 to %d, like 500", maxMemoryLimitMB))
	}
}

func (v *validator) probe(path, name string, p, def Probe) {
	kind := p.Kind
	switch kind {
	case "":
		kind = def.Kind
	case "http", "tcp", "process":
	default:
		v.add(path+".kind", quote(p.Kind), "is not a probe kind", `want "http", "tcp" or "process"`)
		return
	}
	if kind != "http" {
		const fix = `remove it or set probe.kind to "http"`
		if p.Path != "" {
			v.add(path+".path", quote(p.Path), "is only used by http probes", fix)
		}
		if p.ExpectStatus != 0 {
			v.add(path+".expectStatus", strconv.Itoa(p.ExpectStatus), "is only used by http probes", fix)
		}
		if p.BodyContains != "" {
			v.add(path+".bodyContains", quote(p.BodyContains), "is only used by http probes", fix)
		}
	}
	switch {
	case kind == "process" && p.Port != 0:
		v.add(path+".port", strconv.Itoa(p.Port), "is not used by process probes", `remove it or set probe.kind to "http" or "tcp"`)
	case p.Port != 0:
		v.port(path+".port", p.Port)
	case kind != "process" && def.Port == 0:
		v.add(path+".port", "", "missing", fmt.Sprintf("want the port %s listens on; a %s probe needs one", name, kind))
	}
	if kind != "http" {
		return
	}
	switch {
	case p.Path == "":
	case !strings.HasPrefix(p.Path, "/"):
		v.add(path+".path", quote(p.Path), "does not start with /", fmt.Sprintf("want %q", "/"+p.Path))
	case strings.ContainsFunc(p.Path, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		v.add(path+".path", quote(p.Path), "contains spaces or control characters", "want a URL path like /health, with %20 for a space")
	}
	if p.ExpectStatus != 0 && (p.ExpectStatus < 100 || p.ExpectStatus > 599) {
		v.add(path+".expectStatus", strconv.Itoa(p.ExpectStatus), "is not an HTTP status", "want a number from 100 to 599")
	}
}

// timingNames are how errors name the probe kinds.
var timingNames = map[probeKind]string{startupProbe: "startup", livenessProbe: "liveness", readinessProbe: "readiness"}

func (v *validator) timing(path string, t *Timing, kind probeKind) {
	if t == nil {
		return
	}
	defaultFix := func(what string, def float64) string {
		return fmt.Sprintf("want %s (leave it out for the default, %s)", what, num(def))
	}
	m := mergeTiming(t, kind)
	v.seconds(path+".initialDelaySeconds", t.InitialDelaySeconds, true, "want a number of seconds from 0 to 86400")
	periodOK := v.seconds(path+".periodSeconds", m.PeriodSeconds, false, defaultFix("a number of seconds above 0 and at most 86400", defaultPeriodSeconds))
	timeoutOK := v.seconds(path+".timeoutSeconds", m.TimeoutSeconds, false, defaultFix("a number of seconds above 0 and at most 86400", defaultTimeoutSeconds))
	if periodOK && timeoutOK && m.TimeoutSeconds > m.PeriodSeconds {
		value := num(m.TimeoutSeconds)
		if t.TimeoutSeconds == 0 {
			value += " (the default)"
		}
		v.add(path+".timeoutSeconds", value, "is longer than periodSeconds "+num(m.PeriodSeconds), "want at most "+num(m.PeriodSeconds))
	}
	switch {
	case kind != readinessProbe && m.SuccessThreshold != 1:
		v.add(path+".successThreshold", strconv.Itoa(m.SuccessThreshold), "is not 1, which "+timingNames[kind]+" probes require", "want 1 (or leave it out)")
	case m.SuccessThreshold < 1:
		v.add(path+".successThreshold", strconv.Itoa(m.SuccessThreshold), "is below 1", defaultFix("1 or more", defaultSuccessThreshold))
	}
	if m.FailureThreshold < 1 {
		v.add(path+".failureThreshold", strconv.Itoa(m.FailureThreshold), "is below 1", "want 1 or more (leave it out for the default)")
	}
}
