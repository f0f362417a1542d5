package procfs

import (
	"os"
	"testing"
)

// FuzzParseStat: any bytes in a stat file (a command name may hold spaces, parentheses
// and newlines) never panic the parser, and what it accepts has the fields it read.
func FuzzParseStat(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("42 (a) b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0"))
	f.Add([]byte("1 (x"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, ok := parseStat(data)
		if !ok && st != (Stat{}) {
			t.Fatalf("rejected input gave %+v", st)
		}
	})
}
