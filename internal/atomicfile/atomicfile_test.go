package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesAndSetsMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret.env")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "new" {
		t.Fatalf("content = %q, %v; want new", got, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestWriteFileMissingDirLeavesNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", "f")
	if err := WriteFile(p, []byte("x"), 0o600); err == nil {
		t.Fatal("want error for missing directory")
	}
}

func TestLeftoversFindsInterruptedWrites(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a[1].env")
	for _, n := range []string{".a[1].env.tmp-123", ".a[1].env.tmp-9", ".b.env.tmp-1", "a[1].env"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := Leftovers(p)
	if len(got) != 2 {
		t.Fatalf("leftovers = %v, want the two temp files of a[1].env", got)
	}
}
