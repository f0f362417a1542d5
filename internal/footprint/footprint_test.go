package footprint

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestTrimPagesOutTheProgramsFile: after Trim, the test binary's own file pages in its
// resident set fall to a fraction of what they were (the kernel pages them out; what runs
// again comes back).
func TestTrimPagesOutTheProgramsFile(t *testing.T) {
	before := fileKB(t)
	n, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	after := fileKB(t)
	t.Logf("file pages resident: %d kB before, %d kB after (program mapped read-only: %d kB)", before, after, n>>10)
	if n <= 0 {
		t.Fatal("Trim found no read-only mapping of the program")
	}
	if after*2 > before {
		t.Errorf("file pages resident after Trim: %d kB of %d kB before; want less than half", after, before)
	}
}

// TestProgramMapping: only read-only mappings of the program's own file (device and
// inode) are taken.
func TestProgramMapping(t *testing.T) {
	for _, c := range []struct {
		line string
		ok   bool
	}{
		{"00400000-00aaf000 r-xp 00000000 fe:00 10291834 /usr/bin/livinity-agent", true},
		{"00aaf000-01208000 r--p 006af000 fe:00 10291834 /usr/bin/livinity-agent", true},
		{"01208000-012cb000 rw-p 00e08000 fe:00 10291834 /usr/bin/livinity-agent", false}, // written: not clean
		{"7f00-7f10 r--p 00000000 fe:01 10291834 /other/disk/same-inode", false},
		{"7f00-7f10 r--p 00000000 fe:00 42 /usr/lib/other", false},
		{"1ecc80c00000-1ecc81800000 rw-p 00000000 00:00 0", false},
		{"garbage", false},
	} {
		_, _, ok := programMapping(c.line, "fe:00", 10291834)
		if ok != c.ok {
			t.Errorf("%q: %v, want %v", c.line, ok, c.ok)
		}
	}
}

// fileKB is Pss_File of this process, in kB.
func fileKB(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps_rollup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pss_File:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Pss_File in /proc/self/smaps_rollup")
	return 0
}
