package demo

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFSHoldsSourcesOnly guards the binary's size and secrets: build output, installed
// dependencies, venvs, env files and what install scripts and builds write (the UI's
// generated icons and compile cache) must never be embedded (someone built inside the repo).
func TestFSHoldsSourcesOnly(t *testing.T) {
	forbidden := map[string]bool{
		"node_modules": true, "dist": true, "venv": true, ".env": true, "data": true, "logs": true,
		"generated-icons": true, "node-compile-cache": true,
	}
	files := 0
	err := fs.WalkDir(FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, part := range strings.Split(name, "/") {
			if forbidden[part] {
				t.Errorf("embedded FS contains %s: remove it from deploy/demo (build in a copy made with demo.Extract)", name)
				if d.IsDir() {
					return fs.SkipDir
				}
			}
		}
		if !d.IsDir() {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files > 60 {
		t.Errorf("embedded FS holds %d files; the demo tree is meant to stay minimal", files)
	}
}

func TestExtract(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "new", "demo")
	if err := Extract(dst); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"livos/package.json",
		"livos/pnpm-lock.yaml",
		"livos/pnpm-workspace.yaml",
		"livos/ecosystem.config.cjs",
		"livos/packages/config/package.json",
		"livos/packages/ui/build.mjs",
		"livos/packages/ui/postinstall.mjs",
		"livos/packages/ui/public/favicon.svg",
		"livos/packages/livinityd/package.json",
		"livos/packages/livinityd/source/cli.ts",
		"nexus/package.json",
		"nexus/package-lock.json",
		"nexus/packages/core/src/index.ts",
		"nexus/packages/core/src/lib.ts",
		"nexus/packages/worker/src/index.ts",
		"nexus/packages/worker/src/env.ts",
		"nexus/packages/worker/src/fault.ts",
		"nexus/packages/mcp-server/src/index.ts",
		"nexus/packages/mcp-server/src/env.ts",
		"nexus/packages/mcp-server/src/fault.ts",
		"nexus/packages/memory/package.json",
		"nexus/packages/memory/src/index.ts",
		"nexus/packages/memory/src/fault.ts",
	} {
		want, err := FS.ReadFile(name)
		if err != nil {
			t.Fatalf("embedded %s: %v", name, err)
		}
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil {
			t.Errorf("extracted tree lacks %s: %v", name, err)
			continue
		}
		if string(got) != string(want) {
			t.Errorf("extracted %s differs from the embedded file", name)
		}
	}

	modes := map[string]os.FileMode{
		"livos/packages/ui/postinstall.mjs": 0o755,
		"livos/package.json":                0o644,
		"livos/packages":                    0o755 | os.ModeDir,
	}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dst, name))
		if err != nil {
			t.Fatal(err)
		}
		// The umask may clear group/other bits; the owner's bits must match exactly.
		if got := fi.Mode() & (os.ModeDir | 0o700); got != want&(os.ModeDir|0o700) {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), want)
		}
	}
}

func TestExtractOverwritesAndKeepsOthers(t *testing.T) {
	dst := t.TempDir()
	if err := Extract(dst); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dst, "livos", "package.json")
	script := filepath.Join(dst, "livos", "packages", "ui", "postinstall.mjs")
	extra := filepath.Join(dst, "livos", "node_modules", "kept")
	if err := os.WriteFile(pkg, []byte("changed"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(script, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(extra), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(extra, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	if err := Extract(dst); err != nil {
		t.Fatalf("second extract: %v", err)
	}
	want, err := FS.ReadFile("livos/package.json")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(pkg); err != nil || string(got) != string(want) {
		t.Errorf("livos/package.json not restored: %q", got)
	}
	if fi, err := os.Stat(script); err != nil {
		t.Error(err)
	} else if fi.Mode()&0o100 == 0 {
		t.Errorf("postinstall.mjs exec bit not restored: mode %v", fi.Mode())
	}
	if _, err := os.Stat(extra); err != nil {
		t.Errorf("file outside the embedded tree was removed: %v", err)
	}
}

func TestExtractReportsFailure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := Extract(filepath.Join(file, "sub"))
	if err == nil || !strings.Contains(err.Error(), "extract demo tree") {
		t.Fatalf("Extract under a regular file: err = %v, want an error that says what failed", err)
	}
}

// TestFSShapes guards the shapes the real LivOS tree has and the agent's catalog relies on.
func TestFSShapes(t *testing.T) {
	for _, gone := range []string{
		"nexus/packages/memory/src/server.py",
		"nexus/packages/memory/src/requirements.txt",
	} {
		if _, err := FS.Open(gone); err == nil {
			t.Errorf("embedded FS holds %s: nexus-memory is TypeScript (the Python service is test/fixtures/python-memory)", gone)
		}
	}
	pkg := func(name string) map[string]any {
		t.Helper()
		b, err := FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return m
	}
	deps := func(m map[string]any, field string) map[string]any {
		d, _ := m[field].(map[string]any)
		return d
	}
	root := pkg("livos/package.json")
	if _, ok := deps(root, "devDependencies")["tsx"]; ok {
		t.Error("livos/package.json depends on tsx: tsx is a dependency of packages/livinityd only")
	}
	livinityd := deps(pkg("livos/packages/livinityd/package.json"), "dependencies")
	if livinityd["tsx"] == nil {
		t.Error("packages/livinityd does not depend on tsx")
	}
	if got := livinityd["@nexus/core"]; got != "file:../../../nexus/packages/core" {
		t.Errorf("packages/livinityd's @nexus/core dependency = %v, want file:../../../nexus/packages/core", got)
	}
	for _, name := range []string{"nexus/packages/worker/package.json", "nexus/packages/mcp-server/package.json", "nexus/packages/memory/package.json"} {
		m := pkg(name)
		for _, field := range []string{"dependencies", "devDependencies"} {
			if _, ok := deps(m, field)["@nexus/core"]; ok {
				t.Errorf("%s depends on @nexus/core", name)
			}
		}
	}
	memory := pkg("nexus/packages/memory/package.json")
	scripts, _ := memory["scripts"].(map[string]any)
	if memory["name"] != "@nexus/memory" || memory["type"] != "module" || memory["main"] != "dist/index.js" || scripts["build"] != "tsc -p tsconfig.json" {
		t.Errorf("nexus/packages/memory/package.json = %v", memory)
	}
	ui, _ := pkg("livos/packages/ui/package.json")["scripts"].(map[string]any)
	if ui["postinstall"] == nil {
		t.Error("@livos/ui has no postinstall script")
	}
}
