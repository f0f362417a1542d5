package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the defaults table in deploy/examples/README.md")

const examplesDir = "../deploy/examples"

// validFiles are every config that must parse.
func validFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/valid-*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/valid-*.json: %v", err)
	}
	return append(files, filepath.Join(examplesDir, "setup.json"), filepath.Join(examplesDir, "setup.minimal.json"))
}

func TestRoundTrip(t *testing.T) {
	for _, f := range validFiles(t) {
		c, err := Load(f)
		if err != nil {
			t.Fatalf("Load(%s): %v", f, err)
		}
		out, err := c.MarshalIndent()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(MarshalIndent(%s)): %v\n%s", f, err, out)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s: round trip changed the config:\n%+v\nwant\n%+v", f, back, c)
		}
		if back.Fingerprint() != c.Fingerprint() {
			t.Errorf("%s: round trip changed the fingerprint", f)
		}
		again, _ := back.MarshalIndent()
		if !bytes.Equal(again, out) {
			t.Errorf("%s: MarshalIndent is not stable:\n%s\nthen\n%s", f, out, again)
		}
	}
}

func TestExamples(t *testing.T) {
	full := filepath.Join(examplesDir, "setup.json")
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	if missing := missingKeys(t, data); len(missing) > 0 {
		t.Errorf("%s lacks keys %v; it should show every field", full, missing)
	}
	c, err := Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", full, err)
	}
	for _, s := range c.Secrets() {
		if !strings.Contains(s, "REPLACE") {
			t.Errorf("%s: secret %s is not an obvious placeholder", full, Mask(s))
		}
	}
	if len(c.Secrets()) != 5 {
		t.Errorf("%s has %d secrets; want all 5 shown", full, len(c.Secrets()))
	}
	min, err := Load(filepath.Join(examplesDir, "setup.minimal.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(min, documentedDefaults()) {
		t.Errorf("setup.minimal.json = %+v; want the documented defaults", min)
	}
}

func TestFingerprint(t *testing.T) {
	parse := func(s string) *Config {
		t.Helper()
		c, err := Parse([]byte(s))
		if err != nil {
			t.Fatalf("Parse(%s): %v", s, err)
		}
		return c
	}
	base := parse(`{"domain": "localhost"}`).Fingerprint()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(base) {
		t.Fatalf("Fingerprint() = %q; want 64 hex digits", base)
	}
	explicit, err := documentedDefaults().MarshalIndent()
	if err != nil {
		t.Fatal(err)
	}
	same := []string{
		"  {\n\"domain\":\"localhost\",   \"useHttps\": false}\n",
		string(explicit),
		`{"domain": "localhost", "ports": {"livos": 8080, "api": 3200}, "agent": {"services": {"livos": {}, "nexus-core": {"probe": {"kind": "http", "path": "/api/health"}, "startup": {"failureThreshold": 24}, "memoryLimitMB": 500}}}}`,
	}
	for _, s := range same {
		if got := parse(s).Fingerprint(); got != base {
			t.Errorf("Fingerprint of %s differs from the minimal config's; want equal (only defaults spelled out)", s)
		}
	}
	tg := `{"domain": "localhost", "telegram": {"botToken": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"%s}}`
	withPolicy := parse(strings.Replace(tg, "%s", `, "dmPolicy": "pairing"`, 1)).Fingerprint()
	noPolicy := parse(strings.Replace(tg, "%s", "", 1))
	if noPolicy.Fingerprint() != withPolicy {
		t.Error("an absent dmPolicy and \"pairing\" give different fingerprints")
	}
	different := []string{
		`{"domain": "localhost", "useHttps": true}`,
		`{"domain": "example.com"}`,
		`{"domain": "localhost", "ports": {"api": 3201}}`,
		`{"domain": "localhost", "agent": {"services": {"livos": {"memoryLimitMB": 501}}}}`,
		`{"domain": "localhost", "agent": {"services": {"livos": {"liveness": {"periodSeconds": 6}}}}}`,
		strings.Replace(tg, "%s", "", 1),
		strings.Replace(strings.Replace(tg, "%s", "", 1), "saw", "sax", 1),
	}
	seen := map[string]string{base: `{"domain": "localhost"}`}
	for _, s := range different {
		fp := parse(s).Fingerprint()
		if prev, dup := seen[fp]; dup {
			t.Errorf("%s and %s have the same fingerprint; want different", s, prev)
		}
		seen[fp] = s
	}
}

// TestREADMEDefaults checks that deploy/examples/README.md carries DefaultTable.
func TestREADMEDefaults(t *testing.T) {
	path := filepath.Join(examplesDir, "README.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- defaults:begin -->\n", "<!-- defaults:end -->"
	i, j := bytes.Index(data, []byte(begin)), bytes.Index(data, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q ... %q markers", path, begin, end)
	}
	var table strings.Builder
	table.WriteString("| key | default | meaning |\n| --- | --- | --- |\n")
	for _, e := range DefaultTable() {
		table.WriteString("| `" + e.Key + "` | `" + e.Value + "` | " + e.Doc + " |\n")
	}
	got := string(data[i+len(begin) : j])
	if got == table.String() {
		return
	}
	if !*update {
		t.Fatalf("%s defaults table is stale; run go test ./config -run TestREADME -update\nwant:\n%s", path, table.String())
	}
	out := append(append(append([]byte{}, data[:i+len(begin)]...), table.String()...), data[j:]...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
