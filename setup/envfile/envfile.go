// Package envfile builds, reads and writes the LivOS .env file that livinityd and the Nexus
// services read at start. It generates the secrets (JWT, API key, Redis and PostgreSQL
// passwords) once and keeps them on later runs, and keeps keys it does not manage. Nothing
// here logs, and no error carries a value from the file.
package envfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/atomicfile"
)

// The keys the agent manages, in the order they are written. Keys of unconfigured
// integrations are left out of the file, and dropped from it if an earlier run wrote them.
const (
	KeyJWTSecret        = "JWT_SECRET"
	KeyLivAPIKey        = "LIV_API_KEY"
	KeyRedisURL         = "REDIS_URL"
	KeyDatabaseURL      = "DATABASE_URL"
	KeyDomain           = "LIVOS_DOMAIN"
	KeyUseHTTPS         = "LIVOS_USE_HTTPS"
	KeyMCPPort          = "MCP_PORT"
	KeyAPIPort          = "API_PORT"
	KeyMemoryPort       = "MEMORY_PORT"
	KeyLivosPort        = "LIVOS_PORT"
	KeyNexusAPIURL      = "NEXUS_API_URL"
	KeyMemoryServiceURL = "MEMORY_SERVICE_URL"
	KeyLivosBaseDir     = "LIVOS_BASE_DIR"
	KeyNexusBaseDir     = "NEXUS_BASE_DIR"
	KeyTelegramToken    = "TELEGRAM_BOT_TOKEN"
	KeyTelegramDMPolicy = "TELEGRAM_DM_POLICY"
	KeyDiscordToken     = "DISCORD_BOT_TOKEN"
	KeyDiscordAppID     = "DISCORD_APPLICATION_ID"
	KeyDeepgramAPIKey   = "DEEPGRAM_API_KEY"
	KeyCartesiaAPIKey   = "CARTESIA_API_KEY"
	KeyGmailClientID    = "GMAIL_CLIENT_ID"
	KeyGmailSecret      = "GMAIL_CLIENT_SECRET"
	KeyNodeEnv          = "NODE_ENV"
)

// managedKeys are all keys the agent owns, whether or not a given config writes them.
var managedKeys = []string{
	KeyJWTSecret, KeyLivAPIKey, KeyRedisURL, KeyDatabaseURL, KeyDomain, KeyUseHTTPS,
	KeyMCPPort, KeyAPIPort, KeyMemoryPort, KeyLivosPort, KeyNexusAPIURL, KeyMemoryServiceURL,
	KeyLivosBaseDir, KeyNexusBaseDir, KeyTelegramToken, KeyTelegramDMPolicy, KeyDiscordToken,
	KeyDiscordAppID, KeyDeepgramAPIKey, KeyCartesiaAPIKey, KeyGmailClientID, KeyGmailSecret,
	KeyNodeEnv,
}

// secretKeys are managed keys whose values are secrets.
var secretKeys = []string{
	KeyJWTSecret, KeyLivAPIKey, KeyRedisURL, KeyDatabaseURL, KeyTelegramToken,
	KeyDiscordToken, KeyDeepgramAPIKey, KeyCartesiaAPIKey, KeyGmailSecret,
}

// secretWords mark a key the agent does not manage as holding a secret.
var secretWords = []string{"SECRET", "TOKEN", "KEY", "PASS", "AUTH", "CREDENTIAL", "PRIVATE"}

const (
	tokenBytes    = 32 // JWT_SECRET, LIV_API_KEY
	passwordBytes = 24 // Redis and PostgreSQL passwords
)

// entry is one KEY=value; line is the value as written (quoted as needed).
type entry struct{ key, value, line string }

// Env is the content of a .env file: the managed keys in their fixed order, then the keys
// kept from the previous file, sorted.
type Env struct {
	entries       []entry
	redisPassword string
	dbPassword    string
	generated     []string
}

// Build computes the .env for cfg. existing is the current file (from Read; nil or empty on
// a first install). Unless rotate is set, JWT_SECRET, LIV_API_KEY and the Redis and
// PostgreSQL passwords in REDIS_URL and DATABASE_URL are kept when present and well-formed,
// and generated from rnd (crypto/rand.Reader when nil) otherwise. Keys of existing the agent
// does not manage are kept.
func Build(cfg *config.Config, existing map[string]string, rotate bool, rnd io.Reader) (*Env, error) {
	if cfg == nil {
		return nil, errors.New("build env: no config")
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	e := &Env{}
	keep := func(key string, ok func(string) bool) string {
		if rotate {
			return ""
		}
		if v := existing[key]; ok(v) {
			return v
		}
		return ""
	}
	gen := func(name string, n int) (string, error) {
		b := make([]byte, n)
		if _, err := io.ReadFull(rnd, b); err != nil {
			return "", fmt.Errorf("build env: generate %s: %w", name, err)
		}
		e.generated = append(e.generated, name)
		return hex.EncodeToString(b), nil
	}
	var err error
	jwt := keep(KeyJWTSecret, wellFormedToken)
	if jwt == "" {
		if jwt, err = gen(KeyJWTSecret, tokenBytes); err != nil {
			return nil, err
		}
	}
	apiKey := keep(KeyLivAPIKey, wellFormedToken)
	if apiKey == "" {
		if apiKey, err = gen(KeyLivAPIKey, tokenBytes); err != nil {
			return nil, err
		}
	}
	if !rotate {
		e.redisPassword = urlPassword(existing[KeyRedisURL], "", "redis")
		e.dbPassword = urlPassword(existing[KeyDatabaseURL], "livos", "postgresql", "postgres")
	}
	if e.redisPassword == "" {
		if e.redisPassword, err = gen("redis password", passwordBytes); err != nil {
			return nil, err
		}
	}
	if e.dbPassword == "" {
		if e.dbPassword, err = gen("database password", passwordBytes); err != nil {
			return nil, err
		}
	}

	add := func(k, v string) { e.entries = append(e.entries, entry{key: k, value: v}) }
	addIf := func(k, v string) {
		if v != "" {
			add(k, v)
		}
	}
	add(KeyJWTSecret, jwt)
	add(KeyLivAPIKey, apiKey)
	add(KeyRedisURL, "redis://:"+e.redisPassword+"@localhost:6379")
	add(KeyDatabaseURL, "postgresql://livos:"+e.dbPassword+"@localhost:5432/livos")
	add(KeyDomain, cfg.Domain)
	add(KeyUseHTTPS, strconv.FormatBool(cfg.UseHTTPS))
	add(KeyMCPPort, strconv.Itoa(cfg.Ports.MCP))
	add(KeyAPIPort, strconv.Itoa(cfg.Ports.API))
	add(KeyMemoryPort, strconv.Itoa(cfg.Ports.Memory))
	add(KeyLivosPort, strconv.Itoa(cfg.Ports.Livos))
	add(KeyNexusAPIURL, "http://localhost:"+strconv.Itoa(cfg.Ports.API))
	add(KeyMemoryServiceURL, "http://localhost:"+strconv.Itoa(cfg.Ports.Memory))
	add(KeyLivosBaseDir, cfg.Paths.LivosBaseDir)
	add(KeyNexusBaseDir, cfg.Paths.NexusBaseDir)
	if t := cfg.Telegram; t != nil {
		addIf(KeyTelegramToken, t.BotToken)
		addIf(KeyTelegramDMPolicy, t.DMPolicy)
	}
	if d := cfg.Discord; d != nil {
		addIf(KeyDiscordToken, d.BotToken)
		addIf(KeyDiscordAppID, d.ApplicationID)
	}
	if v := cfg.Voice; v != nil {
		addIf(KeyDeepgramAPIKey, v.DeepgramAPIKey)
		addIf(KeyCartesiaAPIKey, v.CartesiaAPIKey)
	}
	if g := cfg.Gmail; g != nil {
		addIf(KeyGmailClientID, g.ClientID)
		addIf(KeyGmailSecret, g.ClientSecret)
	}
	add(KeyNodeEnv, "production")
	// the catalog's path keys (NEXUS_LOGS_DIR, MEMORY_DATA_DIR, ...): the services default
	// them to /opt/nexus whatever the trees' paths, so a tree elsewhere needs them; a key
	// the file already has is the operator's and is kept below
	paths := map[string]string{}
	for _, d := range cfg.Services() {
		for k, v := range d.Env {
			if slices.Contains(managedKeys, k) {
				continue
			}
			if cur, ok := existing[k]; ok {
				paths[k] = cur
			} else {
				paths[k] = cfg.Expand(v, 0)
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(paths)) {
		add(k, paths[k])
	}

	var extra []string
	for k := range existing {
		if _, path := paths[k]; !path && !slices.Contains(managedKeys, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		if !validKey(k) {
			return nil, fmt.Errorf("build env: key %q from the existing file: a key is letters, digits, _, . or -", k)
		}
		add(k, existing[k])
	}
	for i := range e.entries {
		if e.entries[i].line, err = encode(e.entries[i].value); err != nil {
			return nil, fmt.Errorf("build env: %s: %w", e.entries[i].key, err)
		}
	}
	return e, nil
}

// wellFormedToken accepts a kept JWT_SECRET or LIV_API_KEY: at least 32 characters, none
// that would need quoting.
func wellFormedToken(v string) bool {
	return len(v) >= 32 && isPlain(v)
}

// urlPassword returns the password of a URL like redis://:PW@host or
// postgresql://livos:PW@host/db when the scheme and user match and the password is at least
// 16 letters or digits (so it sits in a URL unescaped); otherwise "".
func urlPassword(raw, user string, schemes ...string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || !slices.Contains(schemes, u.Scheme) || u.User.Username() != user {
		return ""
	}
	pw, _ := u.User.Password()
	if len(pw) < 16 {
		return ""
	}
	for i := 0; i < len(pw); i++ {
		c := pw[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return pw
}

func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isKeyByte(k[i]) {
			return false
		}
	}
	return true
}

// Get returns the value of key, or "" when the file does not set it.
func (e *Env) Get(key string) string {
	for _, en := range e.entries {
		if en.key == key {
			return en.value
		}
	}
	return ""
}

// Keys returns the keys in the order they are written.
func (e *Env) Keys() []string {
	keys := make([]string, len(e.entries))
	for i, en := range e.entries {
		keys[i] = en.key
	}
	return keys
}

// RedisPassword is the password in REDIS_URL, for configuring Redis to match.
func (e *Env) RedisPassword() string { return e.redisPassword }

// DatabasePassword is the password of the livos user in DATABASE_URL, for configuring
// PostgreSQL to match.
func (e *Env) DatabasePassword() string { return e.dbPassword }

// Generated names the secrets Build generated rather than kept (JWT_SECRET, LIV_API_KEY,
// "redis password", "database password"), so a caller can report what changed.
func (e *Env) Generated() []string { return slices.Clone(e.generated) }

// Secrets returns the secret values, for redacting logs and output: the generated secrets
// and passwords, the URLs holding them, the configured tokens and keys, and the values of
// kept keys whose names suggest a secret (containing SECRET, TOKEN, KEY, PASS, AUTH,
// CREDENTIAL or PRIVATE). Empty values are left out.
func (e *Env) Secrets() []string {
	out := []string{e.redisPassword, e.dbPassword}
	for _, en := range e.entries {
		secret := slices.Contains(secretKeys, en.key)
		if !secret && !slices.Contains(managedKeys, en.key) {
			upper := strings.ToUpper(en.key)
			secret = slices.ContainsFunc(secretWords, func(w string) bool { return strings.Contains(upper, w) })
		}
		if secret && en.value != "" && !slices.Contains(out, en.value) {
			out = append(out, en.value)
		}
	}
	return out
}

const header = "# LivOS environment, written by livinity-agent. The agent manages the keys up to\n" +
	"# NODE_ENV (edit setup.json and re-run onboarding to change them); keys you add below\n" +
	"# are kept.\n"

// Bytes renders the file.
func (e *Env) Bytes() []byte {
	var b strings.Builder
	b.WriteString(header)
	for _, en := range e.entries {
		b.WriteString(en.key)
		b.WriteByte('=')
		b.WriteString(en.line)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Write replaces the file at path atomically with mode 0600, whatever the old file's mode.
// When the old file belonged to another user (the services' account), the new one is
// given the same owner and group. A symlink at path is replaced: resolve it first to write
// through it.
func Write(path string, e *Env) error {
	old, statErr := os.Stat(path)
	if err := atomicfile.WriteFile(path, e.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	if statErr != nil {
		return nil
	}
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok || (int(st.Uid) == os.Getuid() && int(st.Gid) == os.Getgid()) {
		return nil
	}
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("write env file: keep owner %d:%d of %s: %w", st.Uid, st.Gid, path, err)
	}
	return nil
}
