package treemem

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestTreeAndRollup(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	tree := Tree(os.Getpid())
	if len(tree) < 2 || tree[0] != os.Getpid() || !slices.Contains(tree, cmd.Process.Pid) {
		t.Fatalf("Tree(self) = %v, want this process first and the child %d", tree, cmd.Process.Pid)
	}
	r, ok := ReadRollup(os.Getpid())
	if !ok || r.Pss == 0 || r.Rss < r.Pss || r.Anonymous == 0 || r.File() == 0 {
		t.Fatalf("ReadRollup(self) = %+v, %v", r, ok)
	}
	if sum := Sum(tree); sum.Pss <= r.Pss {
		t.Errorf("the tree's PSS %d is not above this process's %d", sum.Pss, r.Pss)
	}
	if Tree(1<<22+1) != nil {
		t.Errorf("Tree of a pid that does not exist is not nil")
	}
}

func TestParseRollup(t *testing.T) {
	r := parseRollup([]byte("55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:  2048 kB\nPss:  1024 kB\nPss_Anon: 512 kB\nPss_File: 500 kB\nPss_Shmem: 12 kB\nAnonymous: 600 kB\n"))
	want := Rollup{Rss: 2048 << 10, Pss: 1024 << 10, PssAnon: 512 << 10, PssFile: 500 << 10, PssShmem: 12 << 10, Anonymous: 600 << 10}
	if r != want {
		t.Errorf("parseRollup = %+v, want %+v", r, want)
	}
	if r.File() != (2048-600)<<10 {
		t.Errorf("File = %d", r.File())
	}
}
