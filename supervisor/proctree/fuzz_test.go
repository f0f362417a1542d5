package proctree

import (
	"bytes"
	"fmt"
	"testing"
)

// FuzzKBField: /proc/<pid>/smaps_rollup and status are outside input: any bytes give a
// value or false, never a panic, and a well-formed line gives its value in bytes.
func FuzzKBField(f *testing.F) {
	f.Add([]byte("7f00-7f10 ---p 00000000 00:00 0 [rollup]\nRss:   19824 kB\nPss:   19816 kB\n"), uint64(19816))
	f.Add([]byte("Pss:\n"), uint64(0))
	f.Add([]byte("Pss: 1 kB 2\nPss: x kB"), uint64(1))
	f.Fuzz(func(t *testing.T, text []byte, n uint64) {
		kbField(text, "Pss:") // must not panic
		n %= 1 << 40
		line := fmt.Appendf(nil, "Rss: 5 kB\nPss:%s%d kB\n", bytes.Repeat([]byte(" "), int(n%7)+1), n)
		if v, ok := kbField(append(line, text...), "Pss:"); !ok || v != n*1024 {
			t.Errorf("kbField(%q) = %d, %v; want %d", line, v, ok, n*1024)
		}
	})
}

// FuzzParsePPID: a stat line's comm may hold anything, spaces and parentheses included.
func FuzzParsePPID(f *testing.F) {
	f.Add("1234 (node) S 1 1234 1234 0 -1", "node", int32(1))
	f.Add("5 (a) b) c) R 42 5 5", "a) b) c", int32(42))
	f.Fuzz(func(t *testing.T, raw, comm string, ppid int32) {
		parsePPID([]byte(raw)) // must not panic
		if ppid < 0 {
			ppid = -ppid
		}
		if ppid < 0 { // the smallest int32
			ppid = 0
		}
		line := fmt.Sprintf("77 (%s) S %d 77 77 0 -1 4194560", comm, ppid)
		if got, ok := parsePPID([]byte(line)); !ok || got != ppid {
			t.Errorf("parsePPID(%q) = %d, %v; want %d", line, got, ok, ppid)
		}
	})
}
