package systemd

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// journalFile returns a temp file and sets JOURNAL_STREAM to its device and inode, as
// systemd does for a service whose output goes to the journal.
func journalFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	return f
}

func readBack(t *testing.T, f *os.File) []string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestLogHandlerJournal(t *testing.T) {
	f := journalFile(t)
	log := slog.New(NewLogHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log = log.With("service", "nexus-core").WithGroup("probe")
	log.Debug("probe ok", "ms", 3)
	log.Info("ready")
	log.Warn("slow", "detail", "line one\nline two")
	log.Error("restart failed", "err", "boom")

	lines := readBack(t, f)
	want := []string{
		`<7>level=DEBUG msg="probe ok" service=nexus-core probe.ms=3`,
		`<6>level=INFO msg=ready service=nexus-core`,
		`<4>level=WARN msg=slow service=nexus-core probe.detail="line one\nline two"`,
		`<3>level=ERROR msg="restart failed" service=nexus-core probe.err=boom`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, lines[i], want[i])
		}
	}
}

func TestLogHandlerJournalLevelFilter(t *testing.T) {
	f := journalFile(t)
	log := slog.New(NewLogHandler(f, nil)) // default: info
	log.Debug("hidden")
	log.Info("shown")
	if lines := readBack(t, f); len(lines) != 1 || lines[0] != "<6>level=INFO msg=shown" {
		t.Fatalf("lines %q", lines)
	}
}

func TestLogHandlerPlain(t *testing.T) {
	check := func(t *testing.T, h slog.Handler, out func() string) {
		t.Helper()
		slog.New(h).Info("hello", "k", "v")
		got := out()
		if !strings.HasPrefix(got, "time=") || strings.HasPrefix(got, "<") || !strings.Contains(got, "level=INFO msg=hello k=v") {
			t.Errorf("plain handler wrote %q, want a timestamped text line", got)
		}
	}
	t.Run("not a file", func(t *testing.T) {
		journalFile(t)
		var b bytes.Buffer
		check(t, NewLogHandler(&b, nil), b.String)
	})
	t.Run("another file", func(t *testing.T) {
		journalFile(t)
		other, err := os.Create(filepath.Join(t.TempDir(), "other"))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		check(t, NewLogHandler(other, nil), func() string { return strings.Join(readBack(t, other), "\n") })
	})
	t.Run("no JOURNAL_STREAM", func(t *testing.T) {
		f := journalFile(t)
		t.Setenv("JOURNAL_STREAM", "")
		check(t, NewLogHandler(f, nil), func() string { return strings.Join(readBack(t, f), "\n") })
	})
	t.Run("garbage JOURNAL_STREAM", func(t *testing.T) {
		f := journalFile(t)
		t.Setenv("JOURNAL_STREAM", "not-a-stream")
		check(t, NewLogHandler(f, nil), func() string { return strings.Join(readBack(t, f), "\n") })
	})
}

func TestPriority(t *testing.T) {
	for l, want := range map[slog.Level]int{
		slog.LevelDebug - 4: 7, slog.LevelDebug: 7, slog.LevelInfo: 6, slog.LevelInfo + 2: 6,
		slog.LevelWarn: 4, slog.LevelError: 3, slog.LevelError + 8: 3,
	} {
		if got := Priority(l); got != want {
			t.Errorf("Priority(%v) = %d, want %d", l, got, want)
		}
	}
}

func TestUnitEmbedded(t *testing.T) {
	disk, err := os.ReadFile(UnitName)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk, Unit) {
		t.Fatal("embedded Unit differs from livinity-agent.service")
	}
	for _, want := range []string{"Type=notify", "ExecStart=/usr/local/bin/livinity-agent run", "WatchdogSec=", "Wants=" + PM2UnitName} {
		if !bytes.Contains(Unit, []byte("\n"+want)) {
			t.Errorf("unit lacks %s", want)
		}
	}
	// the services live in the PM2 unit: the agent's own unit needs no KillMode=process
	if bytes.Contains(Unit, []byte("\nKillMode=")) {
		t.Error("the agent's unit sets KillMode=: the PM2 daemon no longer lives in its control group")
	}
	disk, err = os.ReadFile(PM2UnitName)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(disk, PM2Unit) {
		t.Fatal("embedded PM2Unit differs from livinity-pm2.service")
	}
	for _, want := range []string{"Type=forking", "PIDFile=/root/.pm2/pm2.pid", "Environment=HOME=/root PM2_HOME=/root/.pm2", "WantedBy=multi-user.target"} {
		if !bytes.Contains(PM2Unit, []byte("\n"+want)) {
			t.Errorf("PM2 unit lacks %s", want)
		}
	}
}
