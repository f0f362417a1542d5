package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks Parse on arbitrary input: it never panics, returns a config exactly when
// it returns no error, never shows a secret in an error, never falls through to the JSON
// decoder's own message, and what it accepts survives a MarshalIndent round trip.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.json")
	if err != nil {
		f.Fatal(err)
	}
	seeds = append(seeds, filepath.Join(examplesDir, "setup.json"), filepath.Join(examplesDir, "setup.minimal.json"))
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a config along with %v", err)
			}
			msg := err.Error()
			if strings.HasPrefix(msg, "decode setup.json:") {
				t.Fatalf("the shape check missed what the decoder rejects: %v", err)
			}
			var loose Config
			_ = json.Unmarshal(data, &loose) // best effort: whatever secrets it finds
			for _, s := range loose.Secrets() {
				if len(s) >= 12 && bytes.Count(data, []byte(s)) == 1 && strings.Contains(msg, s) {
					t.Fatalf("error shows a secret %q: %v", s, err)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
		}
		out, err := c.MarshalIndent()
		if err != nil {
			t.Fatalf("MarshalIndent: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(MarshalIndent(c)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, c) || back.Fingerprint() != c.Fingerprint() {
			t.Fatalf("round trip changed the config:\n%+v\nwant\n%+v", back, c)
		}
		for _, name := range Default().ServiceNames() {
			s := c.ServiceSettings(name)
			if s.Probe.Kind == "" || s.Liveness.PeriodSeconds <= 0 || s.Startup.FailureThreshold < 1 || s.MemoryLimitBytes == 0 {
				t.Fatalf("ServiceSettings(%s) = %+v; not fully resolved", name, s)
			}
			if s.Probe.Kind != "process" && (s.Probe.Port < 1 || s.Probe.Port > 65535) {
				t.Fatalf("ServiceSettings(%s) probe has no usable port: %+v", name, s.Probe)
			}
		}
	})
}
