package setup

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLastLinesShowsTheMessage: what a failed verification quotes of a Node.js crash is
// its message, not its stack (the real tree's nexus-memory crash, as PM2 logged it).
func TestLastLinesShowsTheMessage(t *testing.T) {
	log := `2026-12-01T08:45:56: Error: The module '/t/nexus/node_modules/better-sqlite3/build/Release/better_sqlite3.node'
2026-12-01T08:45:56: was compiled against a different Node.js version using
2026-12-01T08:45:56: NODE_MODULE_VERSION 115. This version of Node.js requires
2026-12-01T08:45:56: NODE_MODULE_VERSION 127. Please try re-compiling or re-installing
2026-12-01T08:45:56:     at Object..node (node:internal/modules/cjs/loader:1939:18)
2026-12-01T08:45:56:     at bindings (/t/nexus/node_modules/bindings/bindings.js:112:48)
2026-12-01T08:45:56:     at ModuleJob.run (node:internal/modules/esm/module_job:343:25) {
2026-12-01T08:45:56:   code: 'ERR_DLOPEN_FAILED'
2026-12-01T08:45:56: }

`
	path := filepath.Join(t.TempDir(), "err.log")
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got := lastLines(path, 4)
	want := "2026-12-01T08:45:56: was compiled against a different Node.js version using\n" +
		"2026-12-01T08:45:56: NODE_MODULE_VERSION 115. This version of Node.js requires\n" +
		"2026-12-01T08:45:56: NODE_MODULE_VERSION 127. Please try re-compiling or re-installing\n" +
		"2026-12-01T08:45:56:   code: 'ERR_DLOPEN_FAILED'"
	if got != want {
		t.Errorf("lastLines =\n%s\nwant\n%s", got, want)
	}
	if lastLines(filepath.Join(t.TempDir(), "missing"), 4) != "" {
		t.Error("a missing log quotes something")
	}
}
