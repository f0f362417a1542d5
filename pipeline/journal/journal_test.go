package journal

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRecordUndoReopen(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, "run-1")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := j.Record(Op{Step: "a", Kind: KindRestorePath, Path: "/x"})
	b, _ := j.Record(Op{Step: "b", Kind: KindPM2Delete, Names: []string{"livos"}, PM2Home: "/h"})
	c, _ := j.Record(Op{Step: "c", Kind: KindRestorePath, Path: "/y", Backup: "/y.bak"})
	if a.Seq != 1 || b.Seq != 2 || c.Seq != 3 {
		t.Fatalf("seqs = %d %d %d", a.Seq, b.Seq, c.Seq)
	}
	if err := j.MarkUndone(b.Seq); err != nil {
		t.Fatal(err)
	}
	// a second run must not start while this journal exists
	if _, err := Create(dir, "run-2"); !errors.Is(err, ErrPending) {
		t.Fatalf("Create over a pending journal: %v, want ErrPending", err)
	}
	// simulate a crash: the process dies without closing; a torn line follows
	f, _ := os.OpenFile(filepath.Join(dir, FileName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"op":{"seq":4,"step":"d","ki`)
	f.Close()

	j2, pend, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if pend.RunID != "run-1" || pend.Committed {
		t.Fatalf("pending = %+v", pend)
	}
	if want := []Op{a, c}; !reflect.DeepEqual(pend.Ops, want) {
		t.Fatalf("pending ops = %+v, want %+v", pend.Ops, want)
	}
	// appending after a torn line starts a fresh record
	d, err := j2.Record(Op{Step: "e", Kind: KindPM2Kill, PM2Home: "/h"})
	if err != nil || d.Seq != 4 {
		t.Fatalf("record after reopen: %+v, %v", d, err)
	}
	if err := j2.MarkCommitted(); err != nil {
		t.Fatal(err)
	}
	_, pend, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !pend.Committed || len(pend.Ops) != 3 {
		t.Fatalf("after commit: %+v", pend)
	}
	if err := j2.Remove(); err != nil {
		t.Fatal(err)
	}
	if j3, pend, err := Open(dir); j3 != nil || pend != nil || err != nil {
		t.Fatalf("Open after Remove = %v, %v, %v; want nothing", j3, pend, err)
	}
}

func TestJournalFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir, "r")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Remove()
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
}
