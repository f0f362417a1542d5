// Package demo bundles a small, real, LivOS-shaped source tree: a pnpm workspace (livos/)
// and an npm workspace of TypeScript services (nexus/), with the real LivOS tree's shapes
// (see README.md). The onboarding pipeline installs, builds and starts it with PM2; it is
// the README demo's default and the tests' fixture.
//
// Never install or build inside this directory: everything under it is embedded into the
// binary. Work in a copy made with Extract.
package demo

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// FS holds livos/ and nexus/.
//
//go:embed all:livos all:nexus
var FS embed.FS

// Extract writes livos/ and nexus/ under dst (creating dst), keeping exec bits where needed:
// files that start with "#!" are written 0755, others 0644, directories 0755. Existing files
// of the same name are overwritten; other files under dst are left alone.
func Extract(dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("extract demo tree: %w", err)
	}
	err := fs.WalkDir(FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dst, filepath.FromSlash(name))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := FS.ReadFile(name)
		if err != nil {
			return err
		}
		perm := os.FileMode(0o644)
		if bytes.HasPrefix(data, []byte("#!")) {
			perm = 0o755
		}
		if err := os.WriteFile(target, data, perm); err != nil {
			return err
		}
		// WriteFile keeps the mode of a file that already existed.
		return os.Chmod(target, perm)
	})
	if err != nil {
		return fmt.Errorf("extract demo tree to %s: %w", dst, err)
	}
	return nil
}
