// Package treemem measures the memory of a process tree the way the kernel accounts it:
// the tree is a pid and its live descendants (from the ppid in every /proc/<pid>/stat),
// and each process's figures come from /proc/<pid>/smaps_rollup. It is the harnesses'
// truth (test/chaos, bench), kept apart from the agent's own proctree so that a bug in
// one does not hide in the other.
package treemem

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Rollup is the part of /proc/<pid>/smaps_rollup the harnesses use, in bytes.
type Rollup struct {
	Rss       uint64 // resident pages
	Pss       uint64 // resident pages, shared ones divided among their sharers
	PssAnon   uint64 // the anonymous part of Pss (heap, stacks)
	PssFile   uint64 // the file-backed part of Pss (the executable, libraries)
	PssShmem  uint64 // the shared-memory part of Pss
	Anonymous uint64 // resident anonymous pages (the anonymous part of Rss)
}

// File is the resident file-backed and shared memory: Rss less its anonymous pages.
func (r Rollup) File() uint64 {
	if r.Anonymous > r.Rss {
		return 0
	}
	return r.Rss - r.Anonymous
}

// Add adds o to r.
func (r *Rollup) Add(o Rollup) {
	r.Rss += o.Rss
	r.Pss += o.Pss
	r.PssAnon += o.PssAnon
	r.PssFile += o.PssFile
	r.PssShmem += o.PssShmem
	r.Anonymous += o.Anonymous
}

// ReadRollup reads /proc/<pid>/smaps_rollup; ok is false when the process is gone (or
// its memory cannot be read).
func ReadRollup(pid int) (Rollup, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return Rollup{}, false
	}
	return parseRollup(b), true
}

func parseRollup(b []byte) Rollup {
	var r Rollup
	fields := map[string]*uint64{
		"Rss": &r.Rss, "Pss": &r.Pss, "Pss_Anon": &r.PssAnon, "Pss_File": &r.PssFile,
		"Pss_Shmem": &r.PssShmem, "Anonymous": &r.Anonymous,
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		p, want := fields[key]
		if !ok || !want {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err == nil {
			*p = kb << 10
		}
	}
	return r
}

// Sum is the sum of the rollups of pids (the gone ones count nothing).
func Sum(pids []int) Rollup {
	var total Rollup
	for _, p := range pids {
		if r, ok := ReadRollup(p); ok {
			total.Add(r)
		}
	}
	return total
}

// TreePSS is the PSS of pid's tree in bytes.
func TreePSS(pid int) uint64 { return Sum(Tree(pid)).Pss }

// stat is what Tree needs of /proc/<pid>/stat.
type stat struct {
	ppid  int
	state byte
}

func readStat(pid int) (stat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return stat{}, false
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 2 {
		return stat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return stat{ppid: ppid, state: f[0][0]}, true
}

// Alive reports whether pid runs (a zombie does not).
func Alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z' && st.state != 'X'
}

// Children maps every live process's ppid to its pids, from one listing of /proc.
func Children() map[int][]int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(p); ok && st.state != 'Z' && st.state != 'X' {
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	return children
}

// Tree returns pid and all its live descendants, pid first; nil when pid does not run.
func Tree(pid int) []int {
	return TreeOf(Children(), pid)
}

// TreeOf is Tree from a listing made by Children.
func TreeOf(children map[int][]int, pid int) []int {
	if !Alive(pid) {
		return nil
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}
