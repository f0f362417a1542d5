// Package proctree measures the memory of a service's whole process tree: the main pid
// and every descendant, which PM2's main-pid figure misses (a node service that spawns
// workers, a Python service that forks).
//
// Each process counts its PSS from /proc/<pid>/smaps_rollup, so pages shared inside the
// tree are not counted twice. When smaps_rollup cannot be read for some process of the
// tree (another user's process without the right to read it, or a kernel older than
// 4.14), the whole sum switches to RSS (from smaps_rollup where readable, else the VmRSS
// of /proc/<pid>/status) so that one figure never mixes the two; Usage.Kind says which.
//
// The tree is found in one pass over <proc>/*/stat building a parent map (Scan); a
// process that exits during the walk is left out. This was measured against gopsutil's
// Process.Children applied recursively, which rescans all of /proc for every process in
// the tree: on a 3-process tree the one pass was 15-20 times cheaper. A Memory call
// costs one stat read per process on the host plus one smaps_rollup read per process in
// the tree; a supervisor measuring several services per period should Scan once and
// call Table.Memory for each (see BenchmarkMemory and BenchmarkTableMemory).
//
// While Sampler.Follow runs (as root, on the host), the parent map is kept by the kernel's
// process events instead (package procconn): a Scan then lists nothing, and a Table's
// trees are those of the moment they are asked for, a worker forked a millisecond ago
// included. Without it (not root, another namespace, a kernel without the proc connector)
// Scan lists /proc as above.
package proctree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/livinity/livinity-agent/supervisor/procconn"
)

// ErrNoProcess means the main pid does not exist, or has exited and is a zombie.
var ErrNoProcess = errors.New("process not found")

// Kinds of Usage.
const (
	KindPSS = "pss"
	KindRSS = "rss"
)

// Usage is the memory of one process tree.
type Usage struct {
	// Bytes is the sum over the tree.
	Bytes uint64
	// Kind is KindPSS or KindRSS: what Bytes sums.
	Kind string
	// PIDs lists the processes counted, the main pid first, then its descendants level
	// by level, each level in ascending order.
	PIDs []int32
}

// Sampler reads process trees under a proc file system root. It keeps no state between
// calls and may be used from several goroutines; so may a Table.
type Sampler struct {
	root string

	mu    sync.Mutex
	ppids map[int32]int32 // parent of each pid at the last Scan
	scans int             // listings of the proc root
	live  *procconn.Listener
}

// NewSampler returns a Sampler reading procRoot ("" means /proc); tests pass a fixture
// directory laid out like /proc.
func NewSampler(procRoot string) *Sampler {
	if procRoot == "" {
		procRoot = "/proc"
	}
	return &Sampler{root: procRoot}
}

// Memory measures the tree of pid under /proc; see Sampler.Memory.
func Memory(pid int32) (Usage, error) {
	return NewSampler("").Memory(pid)
}

// Memory measures pid and all its descendants from a fresh Scan. It returns an error
// wrapping ErrNoProcess when pid is gone (or a zombie) and an error naming the path when
// the proc file system cannot be listed. To measure several trees in one period, Scan
// once and call Table.Memory for each.
func (s *Sampler) Memory(pid int32) (Usage, error) {
	if err := checkPID(pid); err != nil {
		return Usage{}, err
	}
	t, err := s.Scan()
	if err != nil {
		return Usage{}, err
	}
	return t.Memory(pid)
}

func checkPID(pid int32) error {
	if pid <= 0 {
		return fmt.Errorf("measure process tree: pid %d is not a process id: use a pid > 0", pid)
	}
	return nil
}

// Table is the parent/child map of the processes seen by one Scan. The memory figures
// are read when Table.Memory is called, not at the Scan.
type Table struct {
	s        *Sampler
	children map[int32][]int32 // sorted by Scan
	present  map[int32]bool
	live     *procconn.Listener // when set, the trees are asked of it
}

// fullScanEvery: every this many Scans, every process's stat is read again.
const fullScanEvery = 10

// Scan lists the processes and their parents. A Sampler remembers the parents it read:
// a Scan reads the stat file only of pids it has not seen (and, every fullScanEvery-th
// time, of all), so that a Scan per second costs one directory listing and a few reads.
func (s *Sampler) Scan() (*Table, error) { return s.scan(false) }

// ScanAll is a Scan that reads every process's stat file: for decisions that must not rest
// on a remembered parent (a pid reused since would be taken for a child), such as which
// processes to kill.
func (s *Sampler) ScanAll() (*Table, error) { return s.scan(true) }

func (s *Sampler) scan(all bool) (*Table, error) {
	if !all {
		s.mu.Lock()
		l := s.live
		s.mu.Unlock()
		if l != nil {
			return &Table{s: s, live: l}, nil
		}
	}
	d, err := os.Open(s.root)
	if err != nil {
		return nil, fmt.Errorf("measure process tree: list processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("measure process tree: list processes in %s: %w", s.root, err)
	}
	t := &Table{s: s, children: make(map[int32][]int32), present: make(map[int32]bool, len(names))}
	s.mu.Lock()
	defer s.mu.Unlock()
	// a process keeps its parent until that parent dies (then it is reparented and no
	// longer in any service's tree anyway): only new pids need their stat read, and every
	// fullScanEvery-th scan reads all of them again
	full := all || s.scans%fullScanEvery == 0
	s.scans++
	ppids := make(map[int32]int32, len(names))
	buf := make([]byte, 1024)
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		p64, err := strconv.ParseInt(name, 10, 32)
		if err != nil {
			continue
		}
		p := int32(p64)
		ppid, ok := s.ppids[p]
		if full || !ok {
			n, err := readFile(filepath.Join(s.root, name, "stat"), buf)
			if err != nil {
				continue // exited since the listing
			}
			if ppid, ok = parsePPID(buf[:n]); !ok {
				continue
			}
		}
		ppids[p] = ppid
		t.present[p] = true
		t.children[ppid] = append(t.children[ppid], p)
	}
	s.ppids = ppids
	for _, kids := range t.children {
		slices.Sort(kids)
	}
	return t, nil
}

// Follow keeps the parent map from the kernel's process events (the proc connector) until
// ctx ends, so that Scan lists nothing; it returns at once, with the reason, when they
// cannot be had (not root, not the host's namespaces, no CONFIG_PROC_EVENTS, a fixture
// root): Scan keeps listing /proc. It returns nil when ctx ends, and the error when the
// subscription fails later (Scan lists /proc again from then on).
func (s *Sampler) Follow(ctx context.Context) error {
	if s.root != "/proc" {
		return fmt.Errorf("follow process events: only for /proc, not %s", s.root)
	}
	l, err := procconn.Listen()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.live = l
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.live = nil
		s.scans += l.Stats().Scans
		s.mu.Unlock()
	}()
	return l.Run(ctx)
}

// Following reports whether Follow keeps the parent map (Scan lists nothing).
func (s *Sampler) Following() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live != nil
}

// Scans counts the listings of the proc root so far: one per Scan without Follow, the
// seed and each resynchronisation of the event table with it.
func (s *Sampler) Scans() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.scans
	if s.live != nil {
		n += s.live.Stats().Scans
	}
	return n
}

// Tree lists pid and its descendants as the Table knows them, pid first, then level by
// level; nil when pid was not present at the Scan (while Follow runs: is not a live
// process now).
func (t *Table) Tree(pid int32) []int32 {
	if t.live != nil {
		return t.live.Tree(pid)
	}
	if !t.present[pid] {
		return nil
	}
	tree := []int32{pid}
	seen := map[int32]bool{pid: true}
	for i := 0; i < len(tree); i++ {
		for _, k := range t.children[tree[i]] {
			if !seen[k] {
				seen[k] = true
				tree = append(tree, k)
			}
		}
	}
	return tree
}

// Memory measures pid and its descendants as the Table knows them; see Sampler.Memory.
// A process that exited since the Scan is left out; the main pid gone gives ErrNoProcess.
func (t *Table) Memory(pid int32) (Usage, error) {
	if err := checkPID(pid); err != nil {
		return Usage{}, err
	}
	tree := t.Tree(pid)
	if tree == nil {
		return Usage{}, fmt.Errorf("measure process tree of pid %d: %w", pid, ErrNoProcess)
	}

	u := Usage{Kind: KindPSS, PIDs: make([]int32, 0, len(tree))}
	var pss, rss uint64
	buf := make([]byte, 4096)
	for i, p := range tree {
		m, err := t.s.mem(p, buf)
		if err != nil {
			if i == 0 {
				return Usage{}, fmt.Errorf("measure process tree of pid %d: %w", pid, err)
			}
			continue // the descendant exited during the walk
		}
		if !m.hasPSS {
			u.Kind = KindRSS
		}
		pss += m.pss
		rss += m.rss
		u.PIDs = append(u.PIDs, p)
	}
	u.Bytes = pss
	if u.Kind == KindRSS {
		u.Bytes = rss
	}
	return u, nil
}

// parsePPID returns the fourth field of a stat line, "pid (comm) state ppid ...". comm
// may hold spaces and parentheses, so fields are counted after the last ')'.
func parsePPID(stat []byte) (int32, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	// ") S 1234 ...": skip the state field, then read the digits (no allocation: this
	// runs for every process on the host every period)
	rest := bytes.TrimLeft(stat[i+1:], " ")
	j := bytes.IndexByte(rest, ' ')
	if j < 0 {
		return 0, false
	}
	rest = bytes.TrimLeft(rest[j:], " ")
	var ppid int64
	n := 0
	for ; n < len(rest) && rest[n] >= '0' && rest[n] <= '9'; n++ {
		ppid = ppid*10 + int64(rest[n]-'0')
		if ppid > 1<<31-1 {
			return 0, false
		}
	}
	if n == 0 || (n < len(rest) && rest[n] != ' ' && rest[n] != '\n') {
		return 0, false
	}
	return int32(ppid), true
}

type procMem struct {
	pss, rss uint64
	hasPSS   bool
}

// mem reads one process's memory: PSS and RSS from smaps_rollup, or RSS alone from
// status when smaps_rollup is not readable. A process that is gone or a zombie gives an
// error wrapping ErrNoProcess.
func (s *Sampler) mem(pid int32, buf []byte) (procMem, error) {
	dir := filepath.Join(s.root, strconv.Itoa(int(pid)))
	n, err := readFile(filepath.Join(dir, "smaps_rollup"), buf)
	if err == nil && n > 0 {
		rss, okR := kbField(buf[:n], "Rss:")
		pss, okP := kbField(buf[:n], "Pss:")
		if okR && okP {
			return procMem{pss: pss, rss: rss, hasPSS: true}, nil
		}
	}
	if errors.Is(err, syscall.ESRCH) {
		return procMem{}, ErrNoProcess // a zombie: no memory map left
	}
	// No PSS for this process: fall back to VmRSS.
	path := filepath.Join(dir, "status")
	n, err = readFile(path, buf)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
			return procMem{}, ErrNoProcess
		}
		return procMem{}, fmt.Errorf("read %s: %w", path, err)
	}
	rss, ok := kbField(buf[:n], "VmRSS:")
	if !ok {
		return procMem{}, ErrNoProcess // status without VmRSS: a zombie
	}
	return procMem{rss: rss}, nil
}

// kbField returns the value in bytes of a "Name:   123 kB" line.
func kbField(text []byte, name string) (uint64, bool) {
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		rest, ok := bytes.CutPrefix(line, []byte(name))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, false
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, false
		}
		return v * 1024, true
	}
	return 0, false
}

// readFile reads path into buf with raw system calls (no poller registration, no
// allocation) and returns the byte count; content beyond len(buf) is cut off, which the
// callers allow for: the fields they need come first.
func readFile(path string, buf []byte) (int, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(fd)
	total := 0
	for total < len(buf) {
		n, err := syscall.Read(fd, buf[total:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			break
		}
		total += n
	}
	return total, nil
}

// pageSize converts statm's page counts to bytes.
var pageSize = uint64(os.Getpagesize())

// RSS sums the resident memory of pids from /proc/<pid>/statm, a read about a hundred
// times cheaper than smaps_rollup, and returns the pids still alive. PSS is never above
// RSS, so an RSS under a limit proves the PSS is under it too.
func (s *Sampler) RSS(pids []int32) (uint64, []int32) {
	var total uint64
	alive := make([]int32, 0, len(pids))
	buf := make([]byte, 256)
	for _, p := range pids {
		n, err := readFile(filepath.Join(s.root, strconv.Itoa(int(p)), "statm"), buf)
		if err != nil {
			continue
		}
		// size resident shared text lib data dt, in pages
		f := bytes.Fields(buf[:n])
		if len(f) < 2 {
			continue
		}
		pages, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil || pages == 0 { // a zombie has no resident pages
			continue
		}
		total += pages * pageSize
		alive = append(alive, p)
	}
	return total, alive
}
