package journal

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen: whatever a crash (or a disk) left in the journal file — a torn last line,
// garbage, huge numbers — Open never panics, and the reopened journal takes new records
// that a later Open reads back.
func FuzzOpen(f *testing.F) {
	f.Add([]byte(`{"runId":"r1"}` + "\n" + `{"op":{"seq":1,"step":"env","kind":"restore-path","path":"/opt/livos/.env"}}` + "\n"))
	f.Add([]byte(`{"runId":"r1"}` + "\n" + `{"op":{"seq":1,"step":"env","kind":"restore-path","pa`))
	f.Add([]byte(`{"op":{"seq":2,"kind":"kill-group","pid":123,"startTime":99}}` + "\n" + `{"undone":2}` + "\n" + `{"committed":true}`))
	f.Add([]byte("\x00\xff{\n}\n{\"op\":null}\n{\"undone\":-1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		j, pend, err := Open(dir)
		if err != nil {
			return
		}
		defer j.f.Close()
		_ = pend
		// the reopened journal accepts new records after whatever was there
		if _, err := j.Record(Op{Step: "x", Kind: KindRestorePath, Path: "/tmp/x"}); err != nil {
			t.Fatalf("record after reopening: %v", err)
		}
		_, again, err := Open(dir)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if n := len(again.Ops); n == 0 || again.Ops[n-1].Path != "/tmp/x" {
			t.Fatalf("the op recorded after reopening is not read back: %+v", again.Ops)
		}
	})
}
