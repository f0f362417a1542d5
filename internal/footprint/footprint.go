// Package footprint gives back memory a long-running process touched only while it
// started: the heap its start left behind as garbage, and the pages of its own program
// file read then (every linked package's init, the onboarding pipeline, the interactive
// commands' code that the kernel's fault-around mapped with them) that the steady state
// does not touch again.
package footprint

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Trim returns the freed heap to the kernel and asks it to page out the read-only
// mappings of this program's file (MADV_PAGEOUT, Linux 5.4 and later): clean file pages
// that only this process maps leave its resident set and the page cache, and are read
// back from the disk (a major fault) when their code next runs. The mappings are also
// marked MADV_RANDOM, which turns off readahead for those faults, so that a page comes
// back alone instead of with the 128 KiB around it. (It does not turn off fault-around:
// each fault still maps the pages within 64 KiB of it that are in the page cache, so a
// page that another process read, or that this one read but never mapped, comes back
// beside one that runs; measured on Linux 6.18.) What stays resident is then near what
// the daemon runs: about 5 MB of this program, found page by page through
// /proc/<pid>/pagemap (bench/README.md). It returns the bytes of the file so mapped.
//
// The program file is synced first: the kernel does not page out dirty pages from here,
// and a program written moments before (installed, or built by a benchmark) has them.
//
// A page paged out waits for the disk when its code next runs: trim once, after the
// start, not again and again.
func Trim() (int64, error) {
	debug.FreeOSMemory()
	if f, err := os.Open("/proc/self/exe"); err == nil {
		f.Sync()
		f.Close()
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("footprint: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return 0, fmt.Errorf("footprint: %w", err)
	}
	dev := fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev))
	var total int64
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		start, end, ok := programMapping(sc.Text(), dev, st.Ino)
		if !ok {
			continue
		}
		for _, advice := range []int{unix.MADV_RANDOM, unix.MADV_PAGEOUT} {
			if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, uintptr(advice)); errno != 0 {
				return total, fmt.Errorf("footprint: madvise(%d): %w", advice, errno)
			}
		}
		total += int64(end - start)
	}
	return total, sc.Err()
}

// programMapping parses one line of /proc/self/maps ("start-end perms offset dev inode
// path") and reports the range when it is a read-only (never written, so clean) mapping
// of the file dev ("fe:00") and ino name.
func programMapping(line, dev string, ino uint64) (start, end uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 || strings.Contains(f[1], "w") || f[3] != dev {
		return 0, 0, false
	}
	if n, err := strconv.ParseUint(f[4], 10, 64); err != nil || n != ino {
		return 0, 0, false
	}
	lo, hi, found := strings.Cut(f[0], "-")
	if !found {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(lo, 16, 64)
	e, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || e <= s {
		return 0, 0, false
	}
	return uintptr(s), uintptr(e), true
}
