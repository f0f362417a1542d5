package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestLoadInvalid maps each testdata/invalid-*.json to the exact error text.
func TestLoadInvalid(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"testdata/invalid-backoff.json",
			"load testdata/invalid-backoff.json: 3 problems:\nagent.restartBackoff.multiplier: 0.5 is out of range; want a factor from 1 to 100, like 2\nagent.restartBackoff.maxSeconds: 5 is below initialSeconds 10; want at least 10\nagent.restartBackoff.resetAfterSeconds: 0 is not above 0; want a number of seconds above 0 and at most 86400, like 600"},
		{"testdata/invalid-catalog.json",
			"load testdata/invalid-catalog.json: 19 problems:\nagent.catalog[0].name: \"Liv Core\" is not a service name; want lowercase letters, digits and -, like \"liv-core\"\nagent.catalog[1].tree: \"liv\" is not a tree; want \"livos\" or \"nexus\"\nagent.catalog[1].package: \"../core\" is not a directory name under packages/; want a name like \"core\"\nagent.catalog[1].kind: \"deno\" is not a run kind; want \"node\", \"tsx\" or \"python\"\nagent.catalog[1].script: \"/abs/index.js\" is not a path inside the package; want a relative path like \"dist/index.js\"\nagent.catalog[1].port: \"web\" is not a ports key; want one of api, mcp, memory, livos, or \"\" for none\nagent.catalog[1].portEnv: \"api port\" is not an environment variable name; want a name like \"API_PORT\"\nagent.catalog[3].name: \"nexus-mcp\" is listed twice; merge the two entries\nagent.catalog[4].tree: missing; a service that is not built in needs tree, package, kind and script\nagent.catalog[4].package: missing; a service that is not built in needs tree, package, kind and script\nagent.catalog[4].kind: missing; a service that is not built in needs tree, package, kind and script\nagent.catalog[4].script: missing; a service that is not built in needs tree, package, kind and script\nagent.catalog[5].disabled: true names no built-in service; remove the entry, or name one of the built-in services\nagent.catalog[6].cwd: \"home\" is not a working directory kind; want \"tree\" or \"package\"\nagent.catalog[6].probe.kind: \"ping\" is not a probe kind; want \"http\", \"tcp\" or \"process\"\nagent.catalog[6].builds: \"ui\" is not tree/package; want a value like \"livos/ui\"\nagent.catalog[6].needs: \"postgres\" is not a requirement; want \"redis\" or \"dbus\"\nagent.catalog[6].env: \"BAD KEY\" is not an environment variable name; want a name like \"NEXUS_LOGS_DIR\"\nagent.services.nexus-mcp: unknown service; valid names: livos, nexus-core, nexus-worker, nexus-memory"},
		{"testdata/invalid-discord.json",
			"load testdata/invalid-discord.json: 2 problems:\ndiscord.botToken: (secret, 19 chars) is not a bot token; want three parts of letters, digits, _ or - separated by dots, as the developer portal shows it\ndiscord.applicationId: \"my-app\" is not an application ID; want 17 to 20 digits"},
		{"testdata/invalid-domain-character.json",
			"load testdata/invalid-domain-character.json: domain: \"my_server.example.com\" has an invalid character '_'; want letters, digits, hyphens and dots; write an international name in its xn-- form"},
		{"testdata/invalid-domain-ip.json",
			"load testdata/invalid-domain-ip.json: domain: \"192.168.1.10\" is an IP address; want a hostname that points to this server, or localhost for a local-only install"},
		{"testdata/invalid-domain-missing.json",
			"load testdata/invalid-domain-missing.json: domain: missing; want a hostname like home.example.com, or localhost"},
		{"testdata/invalid-domain-scheme.json",
			"load testdata/invalid-domain-scheme.json: domain: \"https://home.example.com/\" has a scheme; want the bare hostname \"home.example.com\""},
		{"testdata/invalid-duplicate-key.json",
			"load testdata/invalid-duplicate-key.json: 2 problems:\nports.api: appears more than once; keep one\ndomain: appears more than once; keep one"},
		{"testdata/invalid-empty.json",
			"load testdata/invalid-empty.json: setup.json is empty; want an object like {\"domain\": \"localhost\"}"},
		{"testdata/invalid-gmail-voice.json",
			"load testdata/invalid-gmail-voice.json: 3 problems:\nvoice.deepgramApiKey: (secret, 15 chars) contains spaces, line breaks, quotes, $, ` or \\; want the value exactly as issued, without spaces or quotes\ngmail.clientId: \"1234-abc.googleusercontent.com\" is not an OAuth client ID; want <digits>-<letters>.apps.googleusercontent.com\ngmail.clientSecret: missing; want the OAuth client secret, or remove the gmail section"},
		{"testdata/invalid-metrics-host.json",
			"load testdata/invalid-metrics-host.json: agent.metrics.listen: \"metrics.local:9847\" does not have an IP address or localhost as its host; want an IP address or localhost and a port, like 127.0.0.1:9847 (0.0.0.0:9847 for every interface)"},
		{"testdata/invalid-metrics-nohost.json",
			"load testdata/invalid-metrics-nohost.json: agent.metrics.listen: \":9847\" does not have an IP address or localhost as its host; want an IP address or localhost and a port, like 127.0.0.1:9847 (0.0.0.0:9847 for every interface)"},
		{"testdata/invalid-metrics-port.json",
			"load testdata/invalid-metrics-port.json: agent.metrics.listen: \"127.0.0.1:3200\" uses port 3200, already used by ports.api; pick another port"},
		{"testdata/invalid-paths-form.json",
			"load testdata/invalid-paths-form.json: 2 problems:\npaths.livosBaseDir: \"opt/livos\" is not absolute; want an absolute path like /opt/livos\npaths.nexusBaseDir: \"/opt//nexus/\" is not clean; want \"/opt/nexus\""},
		{"testdata/invalid-paths-nested.json",
			"load testdata/invalid-paths-nested.json: paths.nexusBaseDir: \"/opt/livos/nexus\" is inside paths.livosBaseDir; want a directory outside it like /opt/nexus"},
		{"testdata/invalid-paths-same.json",
			"load testdata/invalid-paths-same.json: paths.nexusBaseDir: \"/srv/x\" is the same as paths.livosBaseDir; want a separate directory like /opt/nexus"},
		{"testdata/invalid-ports-duplicate.json",
			"load testdata/invalid-ports-duplicate.json: 2 problems:\nports.mcp: 3200 is already used by ports.api; pick another port\nports.livos: 3300 is already used by ports.memory; pick another port"},
		{"testdata/invalid-ports-range.json",
			"load testdata/invalid-ports-range.json: 3 problems:\nports.api: 0 is out of range; want a number from 1 to 65535\nports.mcp: 70000 is out of range; want a number from 1 to 65535\nports.memory: -1 is out of range; want a number from 1 to 65535"},
		{"testdata/invalid-preflight.json",
			"load testdata/invalid-preflight.json: 5 problems:\nagent.preflight.minNodeMajor: 0 is below 1; want a Node.js major version like 22\nagent.preflight.minDiskGB: 0 is not above 0; want a number of GB like 10\nagent.preflight.minRamGB: -1 is not above 0; want a number of GB like 4\nagent.healthTimeoutSeconds: 0 is not above 0; want a number of seconds above 0 and at most 86400, like 120\nagent.memoryBreachChecks: 0 is below 1; want a number of checks like 3"},
		{"testdata/invalid-probe-fields.json",
			"load testdata/invalid-probe-fields.json: 7 problems:\nagent.services.livos.probe.path: \"/\" is only used by http probes; remove it or set probe.kind to \"http\"\nagent.services.livos.probe.expectStatus: 200 is only used by http probes; remove it or set probe.kind to \"http\"\nagent.services.nexus-core.probe.port: 70000 is out of range; want a number from 1 to 65535\nagent.services.nexus-core.probe.path: \"api/health\" does not start with /; want \"/api/health\"\nagent.services.nexus-core.probe.expectStatus: 99 is not an HTTP status; want a number from 100 to 599\nagent.services.nexus-worker.probe.port: missing; want the port nexus-worker listens on; a tcp probe needs one\nagent.services.nexus-mcp.probe.port: 3100 is not used by process probes; remove it or set probe.kind to \"http\" or \"tcp\""},
		{"testdata/invalid-probe-kind.json",
			"load testdata/invalid-probe-kind.json: agent.services.nexus-core.probe.kind: \"grpc\" is not a probe kind; want \"http\", \"tcp\" or \"process\""},
		{"testdata/invalid-services.json",
			"load testdata/invalid-services.json: 2 problems:\nagent.services.livos.memoryLimitMB: -5 is out of range; want a number of MiB from 1 to 1048576, like 500\nagent.services.nexus-cor: unknown service; valid names: livos, nexus-core, nexus-worker, nexus-memory, nexus-mcp"},
		{"testdata/invalid-syntax.json",
			"load testdata/invalid-syntax.json: invalid JSON at line 3, column 25: invalid character '}' looking for beginning of object key string"},
		{"testdata/invalid-telegram-missing.json",
			"load testdata/invalid-telegram-missing.json: telegram.botToken: missing; want the token @BotFather gives, like 123456789:AAH…, or remove the telegram section"},
		{"testdata/invalid-telegram-newline.json",
			"load testdata/invalid-telegram-newline.json: telegram.botToken: (secret, 45 chars) contains spaces, line breaks, quotes, $, ` or \\; want the value exactly as issued, without spaces or quotes"},
		{"testdata/invalid-telegram.json",
			"load testdata/invalid-telegram.json: 2 problems:\ntelegram.botToken: (secret, 22 chars) is not a bot token; want <bot id digits>:<30 to 64 letters, digits, _ or ->, as @BotFather gives it\ntelegram.dmPolicy: \"closed\" is not a policy; want \"open\" or \"pairing\""},
		{"testdata/invalid-timings.json",
			"load testdata/invalid-timings.json: 7 problems:\nagent.services.nexus-memory.startup.periodSeconds: -1 is not above 0; want a number of seconds above 0 and at most 86400 (leave it out for the default, 5)\nagent.services.nexus-memory.startup.successThreshold: 2 is not 1, which startup probes require; want 1 (or leave it out)\nagent.services.nexus-memory.liveness.timeoutSeconds: 2 (the default) is longer than periodSeconds 1; want at most 1\nagent.services.nexus-memory.readiness.initialDelaySeconds: -3 is below 0; want a number of seconds from 0 to 86400\nagent.services.nexus-memory.readiness.timeoutSeconds: 90000 is more than 86400 (a day); want a number of seconds above 0 and at most 86400 (leave it out for the default, 2)\nagent.services.nexus-memory.readiness.successThreshold: -1 is below 1; want 1 or more (leave it out for the default, 1)\nagent.services.nexus-memory.readiness.failureThreshold: -2 is below 1; want 1 or more (leave it out for the default)"},
		{"testdata/invalid-top-array.json",
			"load testdata/invalid-top-array.json: (top level): [...] is an array; want an object like {\"domain\": \"localhost\"}"},
		{"testdata/invalid-trailing-data.json",
			"load testdata/invalid-trailing-data.json: invalid JSON at line 2, column 1: unexpected data after the top-level object; want a single object"},
		{"testdata/invalid-truncated.json",
			"load testdata/invalid-truncated.json: invalid JSON at line 3, column 1: the file ends inside a value; want every { and [ closed"},
		{"testdata/invalid-type-many.json",
			"load testdata/invalid-type-many.json: 6 problems:\nuseHttps: \"yes\" is a string; want true or false\npaths: [...] is an array; want an object\nports.livos: 80.0 is written with a fraction or exponent; want 80\nagent.preflight.minNodeMajor: 99999999999999999999 is out of range; want a whole number\nagent.healthTimeoutSeconds: 1e999 is out of range; want a number\nagent.memoryBreachChecks: 2.5 is not a whole number; want digits only, like 3"},
		{"testdata/invalid-type-port.json",
			"load testdata/invalid-type-port.json: ports.api: \"abc\" is a string; want a number from 1 to 65535"},
		{"testdata/invalid-type-secret.json",
			"load testdata/invalid-type-secret.json: telegram.botToken: (secret, 18 chars) is a number; want a string"},
		{"testdata/invalid-unknown-key-nested.json",
			"load testdata/invalid-unknown-key-nested.json: 2 problems:\nagent.metrics.path: unknown key; valid keys here: listen\nagent.servics: unknown key; valid keys here: preflight, healthTimeoutSeconds, catalog, services, memoryBreachChecks, restartBackoff, metrics"},
		{"testdata/invalid-unknown-key-service.json",
			"load testdata/invalid-unknown-key-service.json: agent.services.livos.probe.timeout: unknown key; valid keys here: kind, path, port, expectStatus, bodyContains"},
		{"testdata/invalid-unknown-key-top.json",
			"load testdata/invalid-unknown-key-top.json: 2 problems:\nPorts: unknown key; valid keys here: domain, useHttps, telegram, discord, voice, gmail, paths, ports, agent\ndomian: unknown key; valid keys here: domain, useHttps, telegram, discord, voice, gmail, paths, ports, agent"},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.file] = true
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			c, err := Load(tt.file)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Load(%q) error =\n%v\nwant\n%s", tt.file, err, tt.want)
			}
			if c != nil {
				t.Errorf("Load(%q) returned a config along with the error", tt.file)
			}
		})
	}
	files, err := filepath.Glob("testdata/invalid-*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !covered[f] {
			t.Errorf("%s has no expected error in this table", f)
		}
	}
}

// TestSecretsNotInErrors checks that bad secret values never reach an error message.
func TestSecretsNotInErrors(t *testing.T) {
	tests := []struct {
		file    string
		secrets []string
	}{
		{"testdata/invalid-type-secret.json", []string{"123456789987654321", "1234567899"}},
		{"testdata/invalid-telegram.json", []string{"12345:short-secret-xyz", "short-secret"}},
		{"testdata/invalid-telegram-newline.json", []string{"AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"}},
		{"testdata/invalid-discord.json", []string{"not-a-discord-token"}},
		{"testdata/invalid-gmail-voice.json", []string{"key with spaces"}},
	}
	for _, tt := range tests {
		data, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(data)
		if err == nil {
			t.Fatalf("Parse(%s) succeeded; want an error", tt.file)
		}
		for _, s := range tt.secrets {
			if !strings.Contains(string(data), s) {
				t.Fatalf("%s does not contain %q; the test is wrong", tt.file, s)
			}
			if strings.Contains(err.Error(), s) {
				t.Errorf("Parse(%s) error shows the secret %q: %v", tt.file, s, err)
			}
		}
	}
}

// TestFieldErrors checks that callers can take the problems apart.
func TestFieldErrors(t *testing.T) {
	_, err := Parse([]byte(`{"domain": "localhost", "ports": {"mcp": 3200, "livos": 70000}}`))
	var got []FieldError
	for _, e := range unjoin(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("problem %v is a %T; want *FieldError", e, e)
		}
		got = append(got, *fe)
	}
	want := []FieldError{
		{Path: "ports.mcp", Value: "3200", Problem: "is already used by ports.api", Fix: "pick another port"},
		{Path: "ports.livos", Value: "70000", Problem: "is out of range", Fix: "want a number from 1 to 65535"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems = %+v\nwant %+v", got, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "ports.mcp" {
		t.Errorf("errors.As(joined) = %+v; want the first problem", fe)
	}
}

func TestDomain(t *testing.T) {
	valid := []string{
		"localhost", "LOCALHOST", "home.example.com", "a-b.example", "xn--bcher-kva.example", "myserver",
		"x1.example.io", strings.Repeat("a", 63) + ".example",
		strings.Repeat(strings.Repeat("a", 49)+".", 5) + "com", // 253 characters
	}
	for _, d := range valid {
		if _, err := Parse([]byte(fmt.Sprintf(`{"domain": %q}`, d))); err != nil {
			t.Errorf("domain %q: %v; want it accepted", d, err)
		}
	}
	long := strings.Repeat(strings.Repeat("a", 49)+".", 5) + "comm"
	invalid := []struct{ domain, want string }{
		{"http://example.com:8080/x", `domain: "http://example.com:8080/x" has a scheme; want the bare hostname "example.com"`},
		{"example.com:8080", `domain: "example.com:8080" has a port; want the bare hostname "example.com"`},
		{"[::1]:80", `domain: "[::1]:80" has a port; want the bare hostname "::1"`},
		{"::1", `domain: "::1" is an IP address; want a hostname that points to this server, or localhost for a local-only install`},
		{"[2001:db8::1]", `domain: "[2001:db8::1]" is an IP address; want a hostname that points to this server, or localhost for a local-only install`},
		{"example.com/livos", `domain: "example.com/livos" has a path; want the bare hostname "example.com"`},
		{"/livos", `domain: "/livos" has a path; want a hostname like home.example.com, or localhost`},
		{long, `domain: "` + long[:48] + `…" (254 chars) is longer than 253 characters; want a hostname like home.example.com, or localhost`},
		{"example.com.", `domain: "example.com." has a trailing dot; want "example.com"`},
		{".", `domain: "." has an empty label; want no leading dot and no two dots in a row, like home.example.com`},
		{"a..example", `domain: "a..example" has an empty label; want no leading dot and no two dots in a row, like home.example.com`},
		{strings.Repeat("a", 64) + ".example", `domain: "` + strings.Repeat("a", 48) + `…" (72 chars) has a label longer than 63 characters; want a hostname like home.example.com, or localhost`},
		{"bücher.example", `domain: "bücher.example" has an invalid character 'ü'; want letters, digits, hyphens and dots; write an international name in its xn-- form`},
		{" example.com", `domain: " example.com" has an invalid character ' '; want letters, digits, hyphens and dots; write an international name in its xn-- form`},
		{"-a.example", `domain: "-a.example" has a label that starts or ends with a hyphen; want a hostname like home.example.com, or localhost`},
		{"a.example-", `domain: "a.example-" has a label that starts or ends with a hyphen; want a hostname like home.example.com, or localhost`},
		{"1.2.3", `domain: "1.2.3" ends in an all-digit label; want a hostname like home.example.com, or localhost`},
	}
	for _, tt := range invalid {
		_, err := Parse([]byte(fmt.Sprintf(`{"domain": %q}`, tt.domain)))
		if err == nil || err.Error() != tt.want {
			t.Errorf("domain %q: error = %v\nwant %s", tt.domain, err, tt.want)
		}
	}
}

// documentedDefaults is the minimal config as the doc comments and README describe it,
// written out independently of Default.
func documentedDefaults() *Config {
	return &Config{
		Domain: "localhost",
		Paths:  Paths{LivosBaseDir: "/opt/livos", NexusBaseDir: "/opt/nexus"},
		Ports:  Ports{API: 3200, MCP: 3100, Memory: 3300, Livos: 8080},
		Agent: Agent{
			Preflight:            Preflight{MinNodeMajor: 22, MinDiskGB: 10, MinRAMGB: 4},
			HealthTimeoutSeconds: 120,
			MemoryBreachChecks:   3,
			RestartBackoff:       Backoff{InitialSeconds: 1, Multiplier: 2, MaxSeconds: 300, ResetAfterSeconds: 600},
			Metrics:              Metrics{Listen: "127.0.0.1:9847"},
		},
	}
}

func TestValidMinimal(t *testing.T) {
	c, err := Load("testdata/valid-minimal.json")
	if err != nil {
		t.Fatal(err)
	}
	if want := documentedDefaults(); !reflect.DeepEqual(c, want) {
		t.Errorf("Load = %+v\nwant %+v", c, want)
	}
	startup := Timing{PeriodSeconds: 5, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 24}
	probe := Timing{PeriodSeconds: 5, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 3}
	svc := func(name string, p Probe) ResolvedService {
		return ResolvedService{Name: name, Probe: p, Startup: startup, Liveness: probe, Readiness: probe, MemoryLimitBytes: 500 << 20}
	}
	want := []ResolvedService{
		svc("livos", Probe{Kind: "http", Path: "/", Port: 8080, ExpectStatus: 200}),
		svc("nexus-core", Probe{Kind: "http", Path: "/api/health", Port: 3200, ExpectStatus: 200}),
		svc("nexus-worker", Probe{Kind: "process"}),
		svc("nexus-memory", Probe{Kind: "http", Path: "/health", Port: 3300, ExpectStatus: 200}),
		svc("nexus-mcp", Probe{Kind: "http", Path: "/health", Port: 3100, ExpectStatus: 200}),
	}
	if got := c.ResolvedServices(); !reflect.DeepEqual(got, want) {
		t.Errorf("ResolvedServices =\n%+v\nwant\n%+v", got, want)
	}
	if got := c.ServiceSettings("nexus-core"); !reflect.DeepEqual(got, want[1]) {
		t.Errorf("ServiceSettings(nexus-core) = %+v; want %+v", got, want[1])
	}
	if got, want := c.ServiceSettings("other"), svc("other", Probe{Kind: "process"}); !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceSettings(other) = %+v; want %+v", got, want)
	}
	if c.Secrets() != nil {
		t.Errorf("Secrets() = %q; want none", c.Secrets())
	}
}

func TestValidFull(t *testing.T) {
	data, err := os.ReadFile("testdata/valid-full.json")
	if err != nil {
		t.Fatal(err)
	}
	if missing := missingKeys(t, data); len(missing) > 0 {
		t.Errorf("valid-full.json lacks keys %v; it should set every field", missing)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	core := c.ServiceSettings("nexus-core")
	want := ResolvedService{
		Name:             "nexus-core",
		Probe:            Probe{Kind: "http", Path: "/api/health?deep=1", Port: 4201, ExpectStatus: 204, BodyContains: "ok"},
		Startup:          Timing{InitialDelaySeconds: 1, PeriodSeconds: 2, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 30},
		Liveness:         Timing{PeriodSeconds: 10, TimeoutSeconds: 3, SuccessThreshold: 1, FailureThreshold: 5},
		Readiness:        Timing{InitialDelaySeconds: 0.5, PeriodSeconds: 3, TimeoutSeconds: 1.5, SuccessThreshold: 2, FailureThreshold: 2},
		MemoryLimitBytes: 1 << 30,
	}
	if !reflect.DeepEqual(core, want) {
		t.Errorf("nexus-core = %+v\nwant %+v", core, want)
	}
	if got, want := c.ServiceSettings("livos").Probe, (Probe{Kind: "http", Path: "/", Port: 8081, ExpectStatus: 200}); got != want {
		t.Errorf("livos probe = %+v; want %+v (the other kind keeps only the port)", got, want)
	}
	if got := c.ServiceSettings("nexus-worker"); got.MemoryLimitBytes != 256<<20 || got.Probe != (Probe{Kind: "process"}) {
		t.Errorf("nexus-worker = %+v; want a process probe and 256 MiB", got)
	}
	if got, want := c.ServiceSettings("nexus-mcp").Probe, (Probe{Kind: "http", Path: "/health", Port: 4100, ExpectStatus: 200}); got != want {
		t.Errorf("nexus-mcp probe = %+v; want %+v (port follows ports.mcp)", got, want)
	}
	wantSecrets := []string{
		"123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
		"MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
		"0123456789abcdef0123456789abcdef01234567",
		"sk_car_AbCdEfGhIjKlMnOpQrStUv",
		"GOCSPX-AbCdEfGhIjKlMnOpQrStUvWxYz12",
	}
	if got := c.Secrets(); !slices.Equal(got, wantSecrets) {
		t.Errorf("Secrets() = %q\nwant %q", got, wantSecrets)
	}
}

// missingKeys lists the schema keys that a JSON document does not set. A map counts a key
// as set if any of its entries sets it.
func missingKeys(t *testing.T, data []byte) []string {
	t.Helper()
	var tree any
	if err := json.Unmarshal(data, &tree); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	var walk func(path string, v any, typ reflect.Type)
	walk = func(path string, v any, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		obj, _ := v.(map[string]any)
		switch typ.Kind() {
		case reflect.Map:
			for _, e := range obj {
				walk(path+".*", e, typ.Elem())
			}
			if len(obj) == 0 {
				walk(path+".*", nil, typ.Elem())
			}
		case reflect.Struct:
			for i := range typ.NumField() {
				name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
				p := strings.TrimPrefix(path+"."+name, ".")
				if _, ok := count[p]; !ok {
					count[p] = 0
				}
				if val, ok := obj[name]; ok {
					count[p]++
					walk(p, val, typ.Field(i).Type)
				} else {
					walk(p, nil, typ.Field(i).Type)
				}
			}
		}
	}
	walk("", tree, reflect.TypeFor[Config]())
	var missing []string
	for k, n := range count {
		if n == 0 {
			missing = append(missing, k)
		}
	}
	slices.Sort(missing)
	return missing
}

func TestServiceSettingsMerge(t *testing.T) {
	c, err := Parse([]byte(`{"domain": "localhost", "ports": {"api": 4000}, "agent": {"services": {
		"nexus-core": {"probe": {"path": "/healthz"}, "startup": {"periodSeconds": 7}, "liveness": {"failureThreshold": 6}},
		"nexus-memory": {"probe": {"kind": "tcp"}, "readiness": {"timeoutSeconds": 0.5, "successThreshold": 3}},
		"nexus-worker": {"probe": {"kind": "tcp", "port": 9000}},
		"nexus-mcp": {"probe": {"kind": "process"}, "memoryLimitMB": 2048}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	core := c.ServiceSettings("nexus-core")
	if want := (Probe{Kind: "http", Path: "/healthz", Port: 4000, ExpectStatus: 200}); core.Probe != want {
		t.Errorf("nexus-core probe = %+v; want %+v", core.Probe, want)
	}
	if want := (Timing{PeriodSeconds: 7, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 18}); core.Startup != want {
		t.Errorf("nexus-core startup = %+v; want %+v (ceil(120/7) checks)", core.Startup, want)
	}
	if want := (Timing{PeriodSeconds: 5, TimeoutSeconds: 2, SuccessThreshold: 1, FailureThreshold: 6}); core.Liveness != want {
		t.Errorf("nexus-core liveness = %+v; want %+v", core.Liveness, want)
	}
	mem := c.ServiceSettings("nexus-memory")
	if want := (Probe{Kind: "tcp", Port: 3300}); mem.Probe != want {
		t.Errorf("nexus-memory probe = %+v; want %+v", mem.Probe, want)
	}
	if want := (Timing{PeriodSeconds: 5, TimeoutSeconds: 0.5, SuccessThreshold: 3, FailureThreshold: 3}); mem.Readiness != want {
		t.Errorf("nexus-memory readiness = %+v; want %+v", mem.Readiness, want)
	}
	if got := c.ServiceSettings("nexus-worker").Probe; got != (Probe{Kind: "tcp", Port: 9000}) {
		t.Errorf("nexus-worker probe = %+v; want tcp on 9000", got)
	}
	mcp := c.ServiceSettings("nexus-mcp")
	if mcp.Probe != (Probe{Kind: "process"}) || mcp.MemoryLimitBytes != 2048<<20 {
		t.Errorf("nexus-mcp = %+v; want a process probe and 2 GiB", mcp)
	}
	if d := core.Startup.Period(); d.Seconds() != 7 {
		t.Errorf("Period() = %v; want 7s", d)
	}
	if d := mem.Readiness.Timeout(); d.Milliseconds() != 500 {
		t.Errorf("Timeout() = %v; want 500ms", d)
	}
}

func TestDurations(t *testing.T) {
	tm := Timing{InitialDelaySeconds: 1.5, PeriodSeconds: 5, TimeoutSeconds: 0.25}
	b := Backoff{InitialSeconds: 0.5, MaxSeconds: 300, ResetAfterSeconds: 600}
	a := Agent{HealthTimeoutSeconds: 120}
	got := []string{tm.InitialDelay().String(), tm.Period().String(), tm.Timeout().String(),
		b.Initial().String(), b.Max().String(), b.ResetAfter().String(), a.HealthTimeout().String()}
	want := []string{"1.5s", "5s", "250ms", "500ms", "5m0s", "10m0s", "2m0s"}
	if !slices.Equal(got, want) {
		t.Errorf("durations = %v; want %v", got, want)
	}
}

func TestValidateBuiltConfig(t *testing.T) {
	c := Default()
	c.Domain = "box.example.org"
	if err := c.Validate(); err != nil {
		t.Errorf("Default() with a domain: %v", err)
	}
	err := (&Config{Domain: "localhost", Telegram: &Telegram{BotToken: "1:" + strings.Repeat("x", 30)}}).Validate()
	want := strings.Join([]string{
		`telegram.dmPolicy: "" is not a policy; want "open" or "pairing"`,
		"paths.livosBaseDir: missing; want an absolute path like /opt/livos",
		"paths.nexusBaseDir: missing; want an absolute path like /opt/nexus",
		"ports.api: 0 is out of range; want a number from 1 to 65535",
		"ports.mcp: 0 is out of range; want a number from 1 to 65535",
		"ports.memory: 0 is out of range; want a number from 1 to 65535",
		"ports.livos: 0 is out of range; want a number from 1 to 65535",
		"agent.preflight.minNodeMajor: 0 is below 1; want a Node.js major version like 22",
		"agent.preflight.minDiskGB: 0 is not above 0; want a number of GB like 10",
		"agent.preflight.minRamGB: 0 is not above 0; want a number of GB like 4",
		"agent.healthTimeoutSeconds: 0 is not above 0; want a number of seconds above 0 and at most 86400, like 120",
		"agent.memoryBreachChecks: 0 is below 1; want a number of checks like 3",
		"agent.restartBackoff.initialSeconds: 0 is not above 0; want a number of seconds above 0 and at most 86400, like 1",
		"agent.restartBackoff.multiplier: 0 is out of range; want a factor from 1 to 100, like 2",
		"agent.restartBackoff.maxSeconds: 0 is not above 0; want a number of seconds above 0 and at most 86400, like 300",
		"agent.restartBackoff.resetAfterSeconds: 0 is not above 0; want a number of seconds above 0 and at most 86400, like 600",
		`agent.metrics.listen: "" is not host:port; want an IP address or localhost and a port, like 127.0.0.1:9847 (0.0.0.0:9847 for every interface)`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Validate of a zero Config = \n%v\nwant\n%s", err, want)
	}
}

func TestParseDetails(t *testing.T) {
	c, err := Parse([]byte("\uFEFF" + `{"domain": "localhost", "telegram": {"botToken": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"}, "ports": null, "agent": {"preflight": {"minNodeMajor": null}}}`))
	if err != nil {
		t.Fatalf("Parse with a byte order mark and nulls: %v", err)
	}
	if c.Telegram.DMPolicy != "pairing" {
		t.Errorf("dmPolicy = %q; want the default pairing", c.Telegram.DMPolicy)
	}
	if c.Ports != Default().Ports || c.Agent.Preflight.MinNodeMajor != 22 {
		t.Errorf("null values did not keep the defaults: %+v %+v", c.Ports, c.Agent.Preflight)
	}
	_, err = Parse([]byte(`{"domain": "localhost", "DOMAIN": "x"}`))
	want := "DOMAIN: unknown key; valid keys here: domain, useHttps, telegram, discord, voice, gmail, paths, ports, agent"
	if err == nil || err.Error() != want {
		t.Errorf("key in the wrong case: error = %v; want %s", err, want)
	}
	_, err = Parse([]byte(`{"domain": "localhost", "agent": {"services": {"a.b": {"probe": {"x": 1}}}}}`))
	want = `agent.services["a.b"].probe.x: unknown key; valid keys here: kind, path, port, expectStatus, bodyContains`
	if err == nil || err.Error() != want {
		t.Errorf("odd map key: error = %v; want %s", err, want)
	}
	_, err = Parse([]byte(`{"domain": "` + strings.Repeat("x", 100) + `", "ports": {"api": 1e2, "mcp": -0.0, "memory": 1e30}}`))
	want = strings.Join([]string{
		"ports.api: 1e2 is written with a fraction or exponent; want 100",
		"ports.mcp: -0.0 is written with a fraction or exponent; want 0",
		"ports.memory: 1e30 is out of range; want a number from 1 to 65535",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("number forms: error = %v\nwant\n%s", err, want)
	}
}

func TestNesting(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"domain":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, "invalid JSON: nested more than 32 levels deep; setup.json needs 6"},
		{strings.Repeat("[", 20000) + strings.Repeat("]", 20000), "invalid JSON at line 1, column 10001: invalid character '[' exceeded max depth"},
	} {
		if _, err := Parse([]byte(tt.in)); err == nil || err.Error() != tt.want {
			t.Errorf("Parse of deep nesting: %v; want %s", err, tt.want)
		}
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"":          `""`,
		"abc":       "(secret, 3 chars)",
		"ünïcödé":   "(secret, 7 chars)",
		"123:token": "(secret, 9 chars)",
	} {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestLoadReadsOnly(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "setup.json")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "load "+missing+": ") {
		t.Errorf("Load of a missing file: %v; want a not-exist error naming it", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Load created %v", entries)
	}
	path := filepath.Join(dir, "given.json")
	if err := os.WriteFile(path, []byte(`{"domain": "localhost"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Errorf("Load changed the directory: %v, mode %v -> %v", entries, before.Mode(), after.Mode())
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"domain": "localhost"}`+strings.Repeat(" ", maxFileBytes)), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "load " + big + ": file is larger than 1048576 bytes; want a setup.json of a few KB"
	if _, err := Load(big); err == nil || err.Error() != want {
		t.Errorf("Load of a big file: %v; want %s", err, want)
	}
}

func BenchmarkParseFull(b *testing.B) {
	data, err := os.ReadFile("testdata/valid-full.json")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestParseCases covers checks that the testdata files leave out, with the exact text.
func TestParseCases(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"domain": "localhost", "discord": {}, "gmail": {"clientSecret": "x"}}`,
			"discord.botToken: missing; want the bot token from the Discord developer portal (Bot, Reset Token), or remove the discord section\ndiscord.applicationId: missing; want the application ID (17 to 20 digits) from the Discord developer portal\ngmail.clientId: missing; want the OAuth client ID ending in .apps.googleusercontent.com, or remove the gmail section"},
		{`{"domain": "localhost", "paths": {"livosBaseDir": "/", "nexusBaseDir": "/opt/ne\u0001xus"}}`,
			"paths.livosBaseDir: \"/\" is the root directory; want a directory of its own like /opt/livos\npaths.nexusBaseDir: \"/opt/ne\\x01xus\" contains a control character; want an absolute path like /opt/nexus"},
		{`{"domain": "localhost", "paths": {"livosBaseDir": "/opt/nexus/livos"}}`,
			"paths.livosBaseDir: \"/opt/nexus/livos\" is inside paths.nexusBaseDir; want a directory outside it like /opt/livos"},
		{`{"domain": "localhost", "agent": {"metrics": {"listen": "127.0.0.1:http"}}}`,
			"agent.metrics.listen: \"127.0.0.1:http\" does not have a port from 1 to 65535; want an IP address or localhost and a port, like 127.0.0.1:9847 (0.0.0.0:9847 for every interface)"},
		{`{"domain": "localhost", "agent": {"metrics": {"listen": "[::1]:0"}}}`,
			"agent.metrics.listen: \"[::1]:0\" does not have a port from 1 to 65535; want an IP address or localhost and a port, like 127.0.0.1:9847 (0.0.0.0:9847 for every interface)"},
		{`{"domain": "localhost", "agent": {"services": {"livos": {"probe": {"kind": "tcp", "bodyContains": "ok"}}, "nexus-mcp": {"probe": {"path": "/he alth"}}}}}`,
			"agent.services.livos.probe.bodyContains: \"ok\" is only used by http probes; remove it or set probe.kind to \"http\"\nagent.services.nexus-mcp.probe.path: \"/he alth\" contains spaces or control characters; want a URL path like /health, with %20 for a space"},
		{`{"domain": true, "useHttps": {}, "voice": {"deepgramApiKey": true, "cartesiaApiKey": {"a": 1}}, "gmail": {"clientSecret": [1]}, "discord": {"botToken": 12.5e3}}`,
			"domain: true is a boolean; want a string\nuseHttps: {...} is an object; want true or false\ndiscord.botToken: (secret, 6 chars) is a number; want a string\nvoice.deepgramApiKey: (secret, 4 chars) is a boolean; want a string\nvoice.cartesiaApiKey: {...} is an object; want a string\ngmail.clientSecret: [...] is an array; want a string"},
	}
	for _, tt := range tests {
		c, err := Parse([]byte(tt.in))
		if err == nil || err.Error() != tt.want || c != nil {
			t.Errorf("Parse(%s) error =\n%v\nwant\n%s", tt.in, err, tt.want)
		}
	}
	c, err := Parse([]byte(`{"domain": "localhost", "useHttps": null, "telegram": null, "agent": {"services": null}}`))
	if err != nil || c.Telegram != nil || c.Agent.Services != nil {
		t.Errorf("nulls: %+v, %v; want the defaults", c, err)
	}
}
