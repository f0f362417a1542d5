package envfile

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
)

func testConfig() *config.Config {
	return &config.Config{
		Domain:   "home.example.com",
		UseHTTPS: true,
		Telegram: &config.Telegram{BotToken: "123456:tg-token-value", DMPolicy: "pairing"},
		Discord:  &config.Discord{BotToken: "discord-token-value", ApplicationID: "998877"},
		Voice:    &config.Voice{DeepgramAPIKey: "dg-key-value", CartesiaAPIKey: "ca-key-value"},
		Gmail:    &config.Gmail{ClientID: "client.apps.example", ClientSecret: "gmail-secret-value"},
		Paths:    config.Paths{LivosBaseDir: "/opt/livos", NexusBaseDir: "/opt/nexus"},
		Ports:    config.Ports{API: 3200, MCP: 3100, Memory: 3300, Livos: 8080},
		Agent: config.Agent{
			Preflight:            config.Preflight{MinNodeMajor: 22, MinDiskGB: 10, MinRAMGB: 4},
			HealthTimeoutSeconds: 120,
			MemoryBreachChecks:   3,
			RestartBackoff:       config.Backoff{InitialSeconds: 1, Multiplier: 2, MaxSeconds: 300, ResetAfterSeconds: 600},
			Metrics:              config.Metrics{Listen: "127.0.0.1:9847"},
		},
	}
}

// counter is a deterministic byte source: 0, 1, 2, ... wrapping at 256.
type counter struct{ n byte }

func (c *counter) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = c.n
		c.n++
	}
	return len(p), nil
}

func seq(from, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(from + i)
	}
	return hex.EncodeToString(b)
}

func TestBuildFirstInstall(t *testing.T) {
	e, err := Build(testConfig(), nil, false, &counter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"JWT_SECRET", "LIV_API_KEY", "REDIS_URL", "DATABASE_URL", "LIVOS_DOMAIN", "LIVOS_USE_HTTPS",
		"MCP_PORT", "API_PORT", "MEMORY_PORT", "LIVOS_PORT", "NEXUS_API_URL", "MEMORY_SERVICE_URL",
		"LIVOS_BASE_DIR", "NEXUS_BASE_DIR", "TELEGRAM_BOT_TOKEN", "TELEGRAM_DM_POLICY",
		"DISCORD_BOT_TOKEN", "DISCORD_APPLICATION_ID", "DEEPGRAM_API_KEY", "CARTESIA_API_KEY",
		"GMAIL_CLIENT_ID", "GMAIL_CLIENT_SECRET", "NODE_ENV",
		// the catalog's path keys, derived from paths.nexusBaseDir
		"MEMORY_DATA_DIR", "NEXUS_LOGS_DIR", "NEXUS_SKILLS_DIR", "SKILL_CACHE_DIR", "SKILL_INSTALL_DIR",
	}
	if got := e.Keys(); !slices.Equal(got, want) {
		t.Errorf("Keys() =\n%q\nwant\n%q", got, want)
	}
	redisPW, dbPW := seq(64, 24), seq(88, 24)
	for k, v := range map[string]string{
		"JWT_SECRET":         seq(0, 32),
		"LIV_API_KEY":        seq(32, 32),
		"REDIS_URL":          "redis://:" + redisPW + "@localhost:6379",
		"DATABASE_URL":       "postgresql://livos:" + dbPW + "@localhost:5432/livos",
		"LIVOS_USE_HTTPS":    "true",
		"MCP_PORT":           "3100",
		"NEXUS_API_URL":      "http://localhost:3200",
		"MEMORY_SERVICE_URL": "http://localhost:3300",
		"NEXUS_BASE_DIR":     "/opt/nexus",
		"TELEGRAM_DM_POLICY": "pairing",
		"NODE_ENV":           "production",
		"NEXUS_LOGS_DIR":     "/opt/nexus/logs",
		"MEMORY_DATA_DIR":    "/opt/nexus/data/memory",
		"SKILL_INSTALL_DIR":  "/opt/nexus/skills/marketplace",
	} {
		if got := e.Get(k); got != v {
			t.Errorf("Get(%s) = %q, want %q", k, got, v)
		}
	}
	if e.RedisPassword() != redisPW || e.DatabasePassword() != dbPW {
		t.Errorf("passwords = %q, %q; want %q, %q", e.RedisPassword(), e.DatabasePassword(), redisPW, dbPW)
	}
	if g := e.Generated(); !slices.Equal(g, []string{"JWT_SECRET", "LIV_API_KEY", "redis password", "database password"}) {
		t.Errorf("Generated() = %q", g)
	}
}

func TestBuildRealRandomness(t *testing.T) {
	a, err := Build(testConfig(), nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(testConfig(), nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, k := range []string{"JWT_SECRET", "LIV_API_KEY"} {
		if !hex64.MatchString(a.Get(k)) {
			t.Errorf("%s is not 32 bytes of hex: %d chars", k, len(a.Get(k)))
		}
		if a.Get(k) == b.Get(k) {
			t.Errorf("%s is the same in two builds", k)
		}
	}
	if len(a.RedisPassword()) != 48 || a.RedisPassword() == a.DatabasePassword() {
		t.Errorf("redis/db passwords: %d chars, equal=%v", len(a.RedisPassword()), a.RedisPassword() == a.DatabasePassword())
	}
}

func TestBuildLeavesOutUnconfiguredIntegrations(t *testing.T) {
	cfg := testConfig()
	cfg.Telegram, cfg.Discord, cfg.Gmail = nil, nil, nil
	cfg.Voice = &config.Voice{DeepgramAPIKey: "dg"}
	existing := map[string]string{"TELEGRAM_BOT_TOKEN": "old-token", "DISCORD_APPLICATION_ID": "1"}
	e, err := Build(cfg, existing, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"TELEGRAM_BOT_TOKEN", "TELEGRAM_DM_POLICY", "DISCORD_BOT_TOKEN", "DISCORD_APPLICATION_ID", "CARTESIA_API_KEY", "GMAIL_CLIENT_ID", "GMAIL_CLIENT_SECRET"} {
		if slices.Contains(e.Keys(), k) {
			t.Errorf("%s written although not configured", k)
		}
	}
	if e.Get("DEEPGRAM_API_KEY") != "dg" {
		t.Errorf("DEEPGRAM_API_KEY = %q", e.Get("DEEPGRAM_API_KEY"))
	}
}

func TestRerunKeepsSecretsAndUserKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	first, err := Build(testConfig(), nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(path, first); err != nil {
		t.Fatal(err)
	}
	// The user adds their own keys to the file.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("\n# mine\nGEMINI_API_KEY=gm-secret-123\nexport A_FLAG=\"on\"\nNEXUS_LOGS_DIR=/var/log/nexus\n")
	f.Close()

	existing, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Ports.API = 4200
	second, err := Build(cfg, existing, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"JWT_SECRET", "LIV_API_KEY", "REDIS_URL", "DATABASE_URL"} {
		if second.Get(k) != first.Get(k) {
			t.Errorf("%s changed on re-run", k)
		}
	}
	if g := second.Generated(); len(g) != 0 {
		t.Errorf("Generated() = %q on re-run, want none", g)
	}
	if second.Get("API_PORT") != "4200" || second.Get("NEXUS_API_URL") != "http://localhost:4200" {
		t.Errorf("config change not applied: API_PORT=%q NEXUS_API_URL=%q", second.Get("API_PORT"), second.Get("NEXUS_API_URL"))
	}
	keys := second.Keys()
	if got := keys[len(keys)-8:]; !slices.Equal(got, []string{"NODE_ENV", "MEMORY_DATA_DIR", "NEXUS_LOGS_DIR",
		"NEXUS_SKILLS_DIR", "SKILL_CACHE_DIR", "SKILL_INSTALL_DIR", "A_FLAG", "GEMINI_API_KEY"}) {
		t.Errorf("last keys = %q, want NODE_ENV, the path keys, then the user's keys sorted", got)
	}
	// a path key the file has is kept (the operator may have moved logs elsewhere)
	if second.Get("NEXUS_LOGS_DIR") != "/var/log/nexus" {
		t.Errorf("NEXUS_LOGS_DIR = %q; the operator's value must be kept", second.Get("NEXUS_LOGS_DIR"))
	}
	if second.Get("GEMINI_API_KEY") != "gm-secret-123" || second.Get("A_FLAG") != "on" {
		t.Errorf("user keys = %q, %q", second.Get("GEMINI_API_KEY"), second.Get("A_FLAG"))
	}
	if !slices.Contains(second.Secrets(), "gm-secret-123") {
		t.Error("Secrets() misses the user's GEMINI_API_KEY")
	}
	if slices.Contains(second.Secrets(), "on") {
		t.Error("Secrets() has A_FLAG, not a secret")
	}

	rotated, err := Build(cfg, existing, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"JWT_SECRET", "LIV_API_KEY", "REDIS_URL", "DATABASE_URL"} {
		if rotated.Get(k) == first.Get(k) {
			t.Errorf("%s kept although rotate was set", k)
		}
	}
	if rotated.Get("GEMINI_API_KEY") != "gm-secret-123" {
		t.Error("rotate dropped the user's key")
	}
}

func TestBuildReplacesMalformedSecrets(t *testing.T) {
	goodPW := strings.Repeat("ab", 24)
	cases := []struct {
		name     string
		existing map[string]string
		kept     []string
	}{
		{"all good", map[string]string{
			"JWT_SECRET": strings.Repeat("a", 32), "LIV_API_KEY": strings.Repeat("b", 64),
			"REDIS_URL": "redis://:" + goodPW + "@localhost:6379", "DATABASE_URL": "postgres://livos:" + goodPW + "@db:5432/livos",
		}, []string{"JWT_SECRET", "LIV_API_KEY", "redis password", "database password"}},
		{"short or quoted tokens", map[string]string{"JWT_SECRET": "short", "LIV_API_KEY": strings.Repeat("b", 40) + " x"}, nil},
		{"redis url without password", map[string]string{"REDIS_URL": "redis://localhost:6379"}, nil},
		{"redis password too short", map[string]string{"REDIS_URL": "redis://:abc@localhost:6379"}, nil},
		{"redis wrong scheme", map[string]string{"REDIS_URL": "http://:" + goodPW + "@localhost:6379"}, nil},
		{"db wrong user", map[string]string{"DATABASE_URL": "postgresql://root:" + goodPW + "@localhost:5432/livos"}, nil},
		{"db password with symbols", map[string]string{"DATABASE_URL": "postgresql://livos:" + goodPW + "%21@localhost:5432/livos"}, nil},
		{"garbage url", map[string]string{"DATABASE_URL": "::not a url"}, nil},
	}
	all := []string{"JWT_SECRET", "LIV_API_KEY", "redis password", "database password"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Build(testConfig(), tc.existing, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			var wantGen []string
			for _, k := range all {
				if !slices.Contains(tc.kept, k) {
					wantGen = append(wantGen, k)
				}
			}
			if g := e.Generated(); !slices.Equal(g, wantGen) {
				t.Errorf("Generated() = %q, want %q", g, wantGen)
			}
			if slices.Contains(tc.kept, "redis password") && e.RedisPassword() != goodPW {
				t.Errorf("redis password not kept")
			}
			if slices.Contains(tc.kept, "database password") && e.Get("DATABASE_URL") != "postgresql://livos:"+goodPW+"@localhost:5432/livos" {
				t.Errorf("DATABASE_URL = %q", e.Get("DATABASE_URL"))
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	e, err := Build(testConfig(), map[string]string{"MY_TOKEN": "tok-1", "EMPTY_SECRET": "", "PLAIN": "value"}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := e.Secrets()
	for _, want := range []string{
		e.Get("JWT_SECRET"), e.Get("LIV_API_KEY"), e.RedisPassword(), e.DatabasePassword(),
		e.Get("REDIS_URL"), e.Get("DATABASE_URL"), "123456:tg-token-value", "discord-token-value",
		"dg-key-value", "ca-key-value", "gmail-secret-value", "tok-1",
	} {
		if !slices.Contains(s, want) {
			t.Errorf("Secrets() misses %.6s…", want)
		}
	}
	for _, not := range []string{"", "value", "home.example.com", "998877", "client.apps.example", "3200", "production"} {
		if slices.Contains(s, not) {
			t.Errorf("Secrets() has %q, not a secret", not)
		}
	}
}

// tricky holds values that need quoting, each with the readers it must survive.
var tricky = map[string]string{
	"T_ALL":       `he said "hi" & it's $(touch PWNED) # not a comment`,
	"T_SPACES":    "  leading and trailing  ",
	"T_HASH":      "a#b",
	"T_DOLLAR":    "$HOME and ${HOME} and $(id)",
	"T_BACKSLASH": `C:\path\to\n\file`,
	"T_NEWLINE":   "line one\nline two",
	"T_NL_QUOTES": "it's \"x\"\nsecond",
	"T_BACKTICK":  "run `id` now",
	"T_UNICODE":   "héllo wörld ☃",
	"T_EMPTY":     "",
	"T_SINGLE":    "it's",
	"T_DOUBLE":    `say "x"`,
	"T_URL":       "https://user:pw@host:8080/a?b=c&d=e",
}

func writeTricky(t *testing.T) (string, *Env) {
	t.Helper()
	dir := t.TempDir()
	values := maps.Clone(tricky)
	values["T_ALL"] = strings.ReplaceAll(values["T_ALL"], "PWNED", filepath.Join(dir, "pwned"))
	cfg := testConfig()
	cfg.Paths.LivosBaseDir = "/srv/it's a \"dir\"/$(touch " + filepath.Join(dir, "pwned2") + ")"
	e, err := Build(cfg, values, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ".env")
	if err := Write(path, e); err != nil {
		t.Fatal(err)
	}
	return path, e
}

func TestTrickyValuesRoundTrip(t *testing.T) {
	path, e := writeTricky(t)
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range e.Keys() {
		if got[k] != e.Get(k) {
			t.Errorf("%s: read back %q, wrote %q", k, got[k], e.Get(k))
		}
	}
	if len(got) != len(e.Keys()) {
		t.Errorf("read %d keys, wrote %d", len(got), len(e.Keys()))
	}
}

// TestNodeReadsWhatWeWrite loads the written file with Node's own .env reader
// (process.loadEnvFile) and compares every value.
func TestNodeReadsWhatWeWrite(t *testing.T) {
	testenv.Require(t, "node")
	path, e := writeTricky(t)
	const script = `process.loadEnvFile(process.argv[1]);
const out = {};
for (const k of JSON.parse(process.argv[2])) out[k] = process.env[k] ?? null;
console.log(JSON.stringify(out));`
	keys, _ := json.Marshal(e.Keys())
	cmd := exec.Command("node", "-e", script, path, string(keys))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // nothing preset that the file would not override
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.Bytes())
	}
	var got map[string]*string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	for _, k := range e.Keys() {
		if got[k] == nil {
			t.Errorf("node did not read %s", k)
		} else if *got[k] != e.Get(k) {
			t.Errorf("node read %s = %q, wrote %q", k, *got[k], e.Get(k))
		}
	}
	for _, f := range []string{"pwned", "pwned2"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), f)); err == nil {
			t.Errorf("reading the file ran a command: %s exists", f)
		}
	}
}

func TestEncodeForms(t *testing.T) {
	cases := []struct{ in, want string }{
		{"abc-1.2_3:/x@y+z=,%~^", "abc-1.2_3:/x@y+z=,%~^"},
		{"", ""},
		{"a b", "'a b'"},
		{`say "x" $(id) # c`, `'say "x" $(id) # c'`},
		{"it's", `"it's"`},
		{"it's\nme", `"it's\nme"`},
		{"${HOME}", `'${HOME}'`},
		{`a\b`, `'a\b'`},
		{`it's \ "x"`, "`it's \\ \"x\"`"},
		{"ü", "'ü'"},
	}
	for _, tc := range cases {
		got, err := encode(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("encode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestBuildRejectsUnwritableValueWithoutLeakingIt(t *testing.T) {
	for _, v := range []string{"s3cr3t'\"`", "s3cr3t\rx", "s3cr3t\x00"} {
		_, err := Build(testConfig(), map[string]string{"USER_SECRET": v}, false, nil)
		if err == nil {
			t.Fatalf("Build accepted %q", v)
		}
		if !strings.Contains(err.Error(), "USER_SECRET") || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error %q: want the key named and the value left out", err)
		}
	}
	cfg := testConfig()
	cfg.Telegram.BotToken = "s3cr3t'\"`"
	_, err := Build(cfg, nil, false, nil)
	if err == nil || !strings.Contains(err.Error(), "TELEGRAM_BOT_TOKEN") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %v: want TELEGRAM_BOT_TOKEN named and the value left out", err)
	}
}

func TestBuildRandomFailure(t *testing.T) {
	_, err := Build(testConfig(), nil, false, bytes.NewReader(make([]byte, 40)))
	if err == nil || !strings.Contains(err.Error(), "generate LIV_API_KEY") {
		t.Errorf("err = %v, want a failure generating LIV_API_KEY", err)
	}
}

func TestParse(t *testing.T) {
	in := "# comment\n" +
		"\n" +
		"   \t\n" +
		"A=plain\n" +
		"B = spaced value   # trailing comment\n" +
		"export C=exported\n" +
		"  export\tD='single $(x) # kept'\n" +
		"E=\"double\\nnewline 'q'\" # c\n" +
		"F=`back \"q\" 'q'`\n" +
		"G=\"multi\nline\"\n" +
		"H=\n" +
		"I=#only comment\n" +
		"dotted.key-1=ok\r\n" +
		"A=last wins\n" +
		"J='no newline at end'"
	want := map[string]string{
		"A": "last wins", "B": "spaced value", "C": "exported", "D": "single $(x) # kept",
		"E": "double\nnewline 'q'", "F": `back "q" 'q'`, "G": "multi\nline", "H": "", "I": "",
		"dotted.key-1": "ok", "J": "no newline at end",
	}
	got, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("Parse =\n%q\nwant\n%q", got, want)
	}
}

func TestParseErrorsNameTheLineNotTheValue(t *testing.T) {
	cases := []struct{ in, want string }{
		{"A=1\nno equals s3cr3t\n", "line 2: expected '=' after no"},
		{"A=1\n=s3cr3t\n", "line 2: expected KEY=VALUE"},
		{"A=1\nB=\"s3cr3t\nC=2\n", `line 2: B: unterminated " quote`},
		{"A='x\ny'\nB='s3cr3t'junk\n", "line 3: B: unexpected text after the closing ' quote"},
		{"A=1\n$KEY=s3cr3t\n", "line 2: expected KEY=VALUE"},
	}
	for _, tc := range cases {
		_, err := Parse([]byte(tc.in))
		if err == nil {
			t.Errorf("Parse(%q) succeeded", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Parse(%q) error %q, want it to contain %q and not the value", tc.in, err, tc.want)
		}
	}
}

func TestReadMissingFile(t *testing.T) {
	m, err := Read(filepath.Join(t.TempDir(), "none"))
	if err != nil || m == nil || len(m) != 0 {
		t.Errorf("Read(missing) = %v, %v; want an empty map and no error", m, err)
	}
	dir := t.TempDir()
	if _, err := Read(dir); err == nil {
		t.Error("Read(a directory) succeeded")
	}
}

func TestWriteMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("OLD=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	e, err := Build(testConfig(), nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(path, e); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !bytes.Equal(b, e.Bytes()) {
		t.Error("file content differs from Bytes()")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only .env (no temp files left)", len(entries))
	}
}

func TestWriteKeepsOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("OLD=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	e, err := Build(testConfig(), nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(path, e); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65534 || st.Gid != 65534 || fi.Mode().Perm() != 0o600 {
		t.Errorf("owner %d:%d mode %v, want 65534:65534 0600", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

func TestWriteFailsInMissingDir(t *testing.T) {
	e, err := Build(testConfig(), nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = Write(filepath.Join(t.TempDir(), "no", ".env"), e)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Write into a missing dir: %v, want ErrNotExist", err)
	}
	for _, s := range e.Secrets() {
		if strings.Contains(err.Error(), s) {
			t.Error("error holds a secret")
		}
	}
}
