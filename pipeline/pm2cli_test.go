package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/pipeline/journal"
)

// fakePM2 writes a pm2 program that only records its arguments in $PM2_HOME/calls: the
// tests below check that the owner of the daemon is asked instead of pm2, and a real pm2
// would spawn a daemon of its own.
func fakePM2(t *testing.T) (bin, home string) {
	t.Helper()
	dir := t.TempDir()
	bin, home = filepath.Join(dir, "pm2"), filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho \"$*\" >>\"$PM2_HOME/calls\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, home
}

func pm2Calls(t *testing.T, home string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "calls"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// recorder is a Daemon that records what it was asked.
type recorder struct{ starts, stops int }

func (r *recorder) daemon() Daemon {
	return Daemon{
		Start: func(context.Context) error { r.starts++; return nil },
		Stop:  func(context.Context) error { r.stops++; return nil },
	}
}

func TestWithDaemonStartsTheOwnerBeforeAPM2CommandWouldSpawnOne(t *testing.T) {
	bin, home := fakePM2(t)
	var r recorder
	pm := NewPM2(bin, home, WithDaemon(r.daemon()))
	ctx := t.Context()
	eco := filepath.Join(t.TempDir(), "ecosystem.config.js")
	if err := pm.StartEcosystem(ctx, eco, "a"); err != nil {
		t.Fatal(err)
	}
	if err := pm.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pm.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	// no daemon answers under home (the fake starts none): asked before each command
	if r.starts != 3 {
		t.Errorf("the daemon's owner was asked to start it %d times, want 3 (before start, save, delete)", r.starts)
	}
	if got := pm2Calls(t, home); len(got) != 3 || !strings.HasPrefix(got[0], "start "+eco) {
		t.Errorf("pm2 ran %q, want start, save, delete", got)
	}
	if err := pm.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if r.stops != 1 || len(pm2Calls(t, home)) != 3 {
		t.Errorf("Kill: owner asked to stop %d times, pm2 ran %q; want the owner once and no pm2 kill", r.stops, pm2Calls(t, home))
	}
}

func TestUndoPM2KillStopsTheOwnerEvenWithoutADaemon(t *testing.T) {
	bin, home := fakePM2(t)
	var r recorder
	op := journal.Op{Kind: journal.KindPM2Kill, PM2Home: home}
	opts := Options{PM2: func(h string) PM2 { return NewPM2(bin, h, WithDaemon(r.daemon())) }}
	if err := undo(t.Context(), op, opts); err != nil {
		t.Fatal(err)
	}
	if r.stops != 1 || r.starts != 0 || pm2Calls(t, home) != nil {
		t.Errorf("undo of %s: %d stops, %d starts, pm2 ran %q; want one stop through the owner and nothing else", op.Kind, r.stops, r.starts, pm2Calls(t, home))
	}

	// without an owner a daemon that is not there is left alone, as before
	opts.PM2 = func(h string) PM2 { return NewPM2(bin, h) }
	if err := undo(t.Context(), op, opts); err != nil {
		t.Fatal(err)
	}
	if got := pm2Calls(t, home); got != nil {
		t.Errorf("undo of %s without an owner and without a daemon ran pm2 %q", op.Kind, got)
	}
}

// TestDeleteAppsToleratesWhatIsGone: the rollback's list of apps can be older than PM2's
// (a pm2 command of the killed run was still deleting): `pm2 delete a b` fails when a is
// gone, and the undo must still delete b (a CI rehearsal's kill inside pm2-start wedged
// every later rollback on "Process or Namespace livos not found").
func TestDeleteAppsToleratesWhatIsGone(t *testing.T) {
	bin := testenv.PM2(t, 7)
	home := testenv.PM2Home(t, bin)
	idle := filepath.Join(testenv.Root(t), "supervisor", "testdata", "apps", "idle.js")
	eco := filepath.Join(t.TempDir(), "eco.config.cjs")
	os.WriteFile(eco, []byte(`module.exports = { apps: [
  { name: "a", script: `+strconv.Quote(idle)+` }, { name: "b", script: `+strconv.Quote(idle)+` } ] };`), 0o644)
	pm := NewPM2(bin, home)
	ctx := t.Context()
	if err := pm.StartEcosystem(ctx, eco); err != nil {
		t.Fatal(err)
	}
	if err := pm.Delete(ctx, "a"); err != nil { // what the killed run's pm2 did meanwhile
		t.Fatal(err)
	}
	if err := deleteApps(ctx, pm, []string{"a", "b"}); err != nil {
		t.Fatalf("deleteApps of a gone and a present app: %v", err)
	}
	apps, _, err := pm.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 0 {
		t.Errorf("PM2 still runs %+v", apps)
	}
}
