package sdsandbox

import (
	"context"
	"testing"
	"time"
)

// New boots a sandbox for one test in a fresh t.TempDir and powers it off at cleanup. It
// fails the test (never skips it) when the sandbox cannot boot, for instance when not
// run as root. A degraded boot is logged with its failed units. When the test has failed,
// the failed units, the whole journal and the init's console log are logged before Down.
func New(t testing.TB, opts Options) *Sandbox {
	t.Helper()
	s, err := Up(context.Background(), t.TempDir(), opts) // Up bounds itself by BootTimeout
	if err != nil {
		t.Fatalf("sdsandbox: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			s.logState(t)
		}
		if err := s.Down(); err != nil {
			t.Errorf("sdsandbox: %v", err)
		}
	})
	if s.BootState() != "running" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		failed, err := s.FailedUnits(ctx)
		t.Logf("sdsandbox: systemd is %s; failed units (err %v):\n%s", s.BootState(), err, failed)
	}
	return s
}

// logState logs what helps explain a failed test: failed units, the journal, console.log.
func (s *Sandbox) logState(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	failed, err := s.FailedUnits(ctx)
	t.Logf("sdsandbox: failed units (err %v):\n%s", err, failed)
	journal, err := s.Journal(ctx, "")
	t.Logf("sdsandbox: journal (err %v):\n%s", err, journal)
	t.Logf("sdsandbox: console.log (last lines):\n%s", s.consoleTail(60))
}
