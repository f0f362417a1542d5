package proctree

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/livinity/livinity-agent/internal/testenv"
)

const kB = 1024

func TestFixture(t *testing.T) {
	s := NewSampler("testdata/proc")
	tests := []struct {
		name    string
		pid     int32
		want    Usage
		wantErr string
	}{
		{name: "pss over the tree, exited child left out", pid: 100,
			want: Usage{Bytes: (80000 + 20000 + 1000) * kB, Kind: KindPSS, PIDs: []int32{100, 101, 102}}},
		{name: "subtree", pid: 101,
			want: Usage{Bytes: (20000 + 1000) * kB, Kind: KindPSS, PIDs: []int32{101, 102}}},
		{name: "one process without smaps_rollup turns the sum to rss", pid: 300,
			want: Usage{Bytes: (60000 + 7000) * kB, Kind: KindRSS, PIDs: []int32{300, 301}}},
		{name: "whole host from init", pid: 1,
			want: Usage{Bytes: (9000 + 120000 + 30000 + 2000 + 5000 + 60000 + 7000) * kB, Kind: KindRSS,
				PIDs: []int32{1, 100, 200, 300, 101, 301, 102}}},
		{name: "no such pid", pid: 999, wantErr: "measure process tree of pid 999: process not found"},
		{name: "main exited after the listing", pid: 400, wantErr: "measure process tree of pid 400: process not found"},
		{name: "zombie main", pid: 500, wantErr: "measure process tree of pid 500: process not found"},
		{name: "bad pid", pid: 0, wantErr: "measure process tree: pid 0 is not a process id: use a pid > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Memory(tt.pid)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Memory(%d) error = %v, want %q", tt.pid, err, tt.wantErr)
				}
				if strings.HasSuffix(tt.wantErr, "process not found") && !errors.Is(err, ErrNoProcess) {
					t.Errorf("error %v does not wrap ErrNoProcess", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Bytes != tt.want.Bytes || got.Kind != tt.want.Kind || !slices.Equal(got.PIDs, tt.want.PIDs) {
				t.Errorf("Memory(%d) = %+v, want %+v", tt.pid, got, tt.want)
			}
		})
	}
}

func TestTableMeasuresSeveralTrees(t *testing.T) {
	tab, err := NewSampler("testdata/proc").Scan()
	if err != nil {
		t.Fatal(err)
	}
	for pid, want := range map[int32]Usage{
		100: {Bytes: 101000 * kB, Kind: KindPSS, PIDs: []int32{100, 101, 102}},
		300: {Bytes: 67000 * kB, Kind: KindRSS, PIDs: []int32{300, 301}},
		200: {Bytes: 5000 * kB, Kind: KindPSS, PIDs: []int32{200}},
	} {
		got, err := tab.Memory(pid)
		if err != nil {
			t.Fatal(err)
		}
		if got.Bytes != want.Bytes || got.Kind != want.Kind || !slices.Equal(got.PIDs, want.PIDs) {
			t.Errorf("Memory(%d) = %+v, want %+v", pid, got, want)
		}
	}
}

// TestProcessExitsAfterScan kills a child between the Scan and the measurement: it is
// left out. Then the main process dies too: ErrNoProcess.
func TestProcessExitsAfterScan(t *testing.T) {
	parent, kids := startTree(t, 2, 20)
	tab, err := NewSampler("").Scan()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(kids[0]), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitZombie(t, kids[0])
	u, err := tab.Memory(parent)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{parent, kids[1]}; !slices.Equal(u.PIDs, want) {
		t.Errorf("pids = %v, want %v (the killed child left out)", u.PIDs, want)
	}
	if err := syscall.Kill(int(parent), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitZombie(t, parent)
	if _, err := tab.Memory(parent); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Memory of a main pid killed after the scan: %v, want ErrNoProcess", err)
	}
}

// waitZombie waits until pid has exited and is not yet reaped, or is gone.
func waitZombie(t *testing.T, pid int32) {
	t.Helper()
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(stat)
		if err != nil {
			return // reaped
		}
		if s := string(b); strings.Contains(s[strings.LastIndexByte(s, ')'):], ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d did not exit", pid)
		}
	}
}

func TestMissingProcRoot(t *testing.T) {
	_, err := NewSampler("testdata/no-such-proc").Memory(1)
	if err == nil || errors.Is(err, ErrNoProcess) || !strings.Contains(err.Error(), "testdata/no-such-proc") {
		t.Errorf("error = %v, want a listing error naming the path", err)
	}
}

func TestParsePPID(t *testing.T) {
	tests := []struct {
		stat string
		want int32
		ok   bool
	}{
		{"42 (node) S 7 42 42 0", 7, true},
		{"42 (a) b) c) R 9 1", 9, true},
		{"42 (x y z) S 1", 1, true},
		{"42 (node) S", 0, false},
		{"42 node S 7", 0, false},
		{"42 (node) S seven", 0, false},
	}
	for _, tt := range tests {
		got, ok := parsePPID([]byte(tt.stat))
		if got != tt.want || ok != tt.ok {
			t.Errorf("parsePPID(%q) = %d, %v; want %d, %v", tt.stat, got, ok, tt.want, tt.ok)
		}
	}
}

// treeScript forks children that each touch childMB of memory, then prints
// "ready <pid> <pid>..." and waits for stdin to close.
const treeScript = `
import os, sys
n, mb = int(sys.argv[1]), int(sys.argv[2])
pids = []
for _ in range(n):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        b = bytearray(mb * 1024 * 1024)
        for i in range(0, len(b), 4096):
            b[i] = 1
        os.write(w, b"x")
        sys.stdin.read()
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    pids.append(pid)
print("ready", *pids, flush=True)
sys.stdin.read()
`

// startTree runs treeScript in its own process group, killed at cleanup, and returns the
// parent's pid and the children's.
func startTree(tb testing.TB, children, childMB int) (int32, []int32) {
	tb.Helper()
	testenv.Require(tb, "python3")
	cmd := exec.Command("python3", "-c", treeScript, strconv.Itoa(children), strconv.Itoa(childMB))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		line <- sc.Text()
	}()
	var ready string
	select {
	case ready = <-line:
	case <-time.After(60 * time.Second):
		tb.Fatal("python process tree did not report ready within 60s")
	}
	f := strings.Fields(ready)
	if len(f) != children+1 || f[0] != "ready" {
		tb.Fatalf("python process tree said %q, want ready and %d pids", ready, children)
	}
	var kids []int32
	for _, s := range f[1:] {
		p, err := strconv.Atoi(s)
		if err != nil {
			tb.Fatal(err)
		}
		kids = append(kids, int32(p))
	}
	return int32(cmd.Process.Pid), kids
}

// TestMemorySeesChildren: a parent whose child holds 200 MB. PM2 measures the parent
// alone and sees little; the tree sees the child's memory too.
func TestMemorySeesChildren(t *testing.T) {
	parent, kids := startTree(t, 1, 200)
	u, err := Memory(parent)
	if err != nil {
		t.Fatal(err)
	}
	if u.Kind != KindPSS {
		t.Errorf("kind = %s, want pss for our own processes", u.Kind)
	}
	if want := []int32{parent, kids[0]}; !slices.Equal(u.PIDs, want) {
		t.Errorf("pids = %v, want %v", u.PIDs, want)
	}
	if u.Bytes < 180<<20 {
		t.Errorf("tree memory = %d MiB, want at least 180 MiB", u.Bytes>>20)
	}
	p, err := process.NewProcess(parent)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := p.MemoryInfo()
	if err != nil {
		t.Fatal(err)
	}
	if mi.RSS >= 50<<20 {
		t.Errorf("parent RSS alone = %d MiB, want < 50 MiB", mi.RSS>>20)
	}
	t.Logf("tree %s %d MiB over %v; parent RSS alone %d MiB", u.Kind, u.Bytes>>20, u.PIDs, mi.RSS>>20)

	// The child alone is a tree of one.
	c, err := Memory(kids[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.PIDs, kids) || c.Bytes < 180<<20 || c.Bytes > u.Bytes {
		t.Errorf("child tree = %d MiB over %v, want >= 180 MiB, <= the parent's tree, over %v", c.Bytes>>20, c.PIDs, kids)
	}
}

func TestMemoryOfGoneProcess(t *testing.T) {
	testenv.Require(t, "python3")
	t.Run("reaped", func(t *testing.T) {
		cmd := exec.Command("python3", "-c", "pass")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		_, err := Memory(int32(cmd.Process.Pid))
		if !errors.Is(err, ErrNoProcess) {
			t.Errorf("Memory of a reaped pid: %v, want ErrNoProcess", err)
		}
	})
	t.Run("zombie", func(t *testing.T) {
		cmd := exec.Command("python3", "-c", "pass")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		pid := int32(cmd.Process.Pid)
		waitZombie(t, pid)
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			t.Fatalf("the unreaped child should still be listed: %v", err)
		}
		_, err := Memory(pid)
		if !errors.Is(err, ErrNoProcess) {
			t.Errorf("Memory of a zombie: %v, want ErrNoProcess", err)
		}
	})
}

// BenchmarkMemory measures one call on a 3-process tree (a parent and two children),
// the scan of every process on the host included.
func BenchmarkMemory(b *testing.B) {
	parent, _ := startTree(b, 2, 1)
	for b.Loop() {
		u, err := Memory(parent)
		if err != nil {
			b.Fatal(err)
		}
		if len(u.PIDs) != 3 {
			b.Fatalf("pids = %v, want 3", u.PIDs)
		}
	}
}

// BenchmarkTableMemory measures the same tree from a Table scanned once: the cost per
// extra service when a supervisor scans once per period.
func BenchmarkTableMemory(b *testing.B) {
	parent, _ := startTree(b, 2, 1)
	tab, err := NewSampler("").Scan()
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		u, err := tab.Memory(parent)
		if err != nil {
			b.Fatal(err)
		}
		if len(u.PIDs) != 3 {
			b.Fatalf("pids = %v, want 3", u.PIDs)
		}
	}
}

// BenchmarkScan measures the one pass over /proc alone.
func BenchmarkScan(b *testing.B) {
	s := NewSampler("")
	for b.Loop() {
		if _, err := s.Scan(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRSSOfLiveAndGonePids(t *testing.T) {
	s := NewSampler("")
	self := int32(os.Getpid())
	rss, alive := s.RSS([]int32{self, 1 << 30})
	if len(alive) != 1 || alive[0] != self {
		t.Fatalf("alive = %v, want only this process", alive)
	}
	u, err := s.Memory(self)
	if err != nil {
		t.Fatal(err)
	}
	// PSS is never above RSS (the tree is this process alone, or with short-lived children)
	if rss == 0 || (u.Kind == KindPSS && len(u.PIDs) == 1 && u.Bytes > rss+rss/10) {
		t.Fatalf("statm RSS %d vs tree %s %d", rss, u.Kind, u.Bytes)
	}
}

// TestScanRemembersParentsAndFindsNewChildren: a later Scan reuses the parents it read but
// still sees a child started since.
func TestScanRemembersParentsAndFindsNewChildren(t *testing.T) {
	s := NewSampler("")
	self := int32(os.Getpid())
	if _, err := s.Scan(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	table, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if tree := table.Tree(self); !slices.Contains(tree, int32(cmd.Process.Pid)) {
		t.Fatalf("tree %v lacks the new child %d", tree, cmd.Process.Pid)
	}
	all, err := s.ScanAll()
	if err != nil || !slices.Contains(all.Tree(self), int32(cmd.Process.Pid)) {
		t.Fatalf("ScanAll: %v, %v", all, err)
	}
}
