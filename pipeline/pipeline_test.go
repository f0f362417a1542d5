package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/pipeline/journal"
)

func testPlan(t *testing.T, steps ...*Step) (*Plan, Options, *testenv.Buffer) {
	t.Helper()
	logs := &testenv.Buffer{}
	return &Plan{StateDir: filepath.Join(t.TempDir(), "state"), Path: os.Getenv("PATH"), Home: t.TempDir(), Steps: steps},
		Options{Logger: slog.New(slog.NewTextHandler(logs, nil))}, logs
}

func statuses(res *Result) map[string]Status {
	out := map[string]Status{}
	for _, s := range res.Steps {
		out[s.Step.ID] = s.Status
	}
	return out
}

func write(path, text string) func(context.Context, *Exec) error {
	return func(context.Context, *Exec) error { return os.WriteFile(path, []byte(text), 0o644) }
}

// TestDependencyFailed: a step whose dependency failed does not run; an optional one is
// reported "not run" and the run goes on, a required one fails the run with the cause.
func TestDependencyFailed(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran")
	boom := errors.New("registry unreachable")
	install := &Step{ID: "install", Optional: true, Action: func(context.Context, *Exec) error { return boom }}
	optBuild := &Step{ID: "build-opt", Optional: true, After: []string{"install"}, Action: write(ran, "opt")}
	independent := &Step{ID: "other", Action: write(filepath.Join(dir, "other"), "x")}
	eco := &Step{ID: "eco", After: []string{"other"}, Wait: []string{"build-opt"}, Action: write(filepath.Join(dir, "eco"), "x")}
	plan, opts, _ := testPlan(t, install, optBuild, independent, eco)
	res, err := Run(context.Background(), plan, opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	st := statuses(res)
	if st["install"] != StatusWarned || st["build-opt"] != StatusNotRun || st["other"] != StatusDone || st["eco"] != StatusDone {
		t.Errorf("statuses = %v; want install warned, build-opt not run, other and eco done", st)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("a step ran after the step it needs failed")
	}
	if e := res.Steps[1].Err; e == nil || !errors.Is(e, boom) || !strings.Contains(e.Error(), "needs step install") {
		t.Errorf("not-run reason = %v; want it to name install and its error", e)
	}

	// the same with a required dependent: the run fails with the dependency's error
	required := &Step{ID: "build", After: []string{"install"}, Action: write(ran, "req")}
	install2 := &Step{ID: "install", Optional: true, Action: func(context.Context, *Exec) error { return boom }}
	plan, opts, _ = testPlan(t, install2, required)
	_, err = Run(context.Background(), plan, opts)
	if err == nil || !errors.Is(err, boom) || !strings.Contains(err.Error(), "step build not run: needs step install") {
		t.Errorf("required dependent: err = %v; want the run to fail naming install's error", err)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("a required step ran after the step it needs failed")
	}
}

// TestWatchRemovesWhatCommandsWrote: files a step's command writes beyond what it
// declares are removed when the run rolls back; what was there before stays.
func TestWatchRemovesWhatCommandsWrote(t *testing.T) {
	tree := t.TempDir()
	for _, p := range []string{"kept/old.txt", "node_modules/dep/index.js"} {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), []byte("before"), 0o644)
	}
	install := &Step{ID: "install", Watch: func() []string { return []string{tree} },
		Action: func(ctx context.Context, x *Exec) error {
			// an install script that generates files outside node_modules
			return x.Command(ctx, tree, "sh", "-c", "mkdir -p public/generated-icons kept/new && touch public/generated-icons/a.svg kept/new/b kept/c")
		}}
	fail := &Step{ID: "build", After: []string{"install"}, Action: func(context.Context, *Exec) error { return errors.New("tsc failed") }}
	plan, opts, _ := testPlan(t, install, fail)
	if _, err := Run(context.Background(), plan, opts); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("run: %v; want a rollback", err)
	}
	for _, p := range []string{"public", "kept/new", "kept/c"} {
		if _, err := os.Lstat(filepath.Join(tree, p)); err == nil {
			t.Errorf("%s, written by the rolled-back step, is still there", p)
		}
	}
	for _, p := range []string{"kept/old.txt", "node_modules/dep/index.js"} {
		if b, err := os.ReadFile(filepath.Join(tree, p)); err != nil || string(b) != "before" {
			t.Errorf("%s, there before the run, is gone or changed: %v", p, err)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(plan.StateDir, "watch", "*")); len(m) != 0 {
		t.Errorf("listings left after the rollback: %v", m)
	}
}

// TestSilentCommandReportedAlive: a command that prints nothing is reported alive every
// Heartbeat, in the log and to the observer.
func TestSilentCommandReportedAlive(t *testing.T) {
	old := Heartbeat
	Heartbeat = 200 * time.Millisecond
	t.Cleanup(func() { Heartbeat = old })
	var notes testenv.Buffer
	step := &Step{ID: "install", Action: func(ctx context.Context, x *Exec) error {
		return x.Command(ctx, t.TempDir(), "sleep", "0.7")
	}}
	plan, opts, logs := testPlan(t, step)
	opts.Observe = func(e Event) {
		if e.Note != "" {
			notes.Write([]byte(e.Note + "\n"))
		}
	}
	if _, err := Run(context.Background(), plan, opts); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "command still running"); n < 2 {
		t.Errorf("%d alive lines for a 0.7 s silent command at a 0.2 s heartbeat; log:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "silentSeconds=") || !strings.Contains(notes.String(), "sleep running") {
		t.Errorf("alive reports lack the silence or the command: log %q notes %q", logs.String(), notes.String())
	}
}

// TestFailedRunKeepsLogs: the logs of a failed run are copied into the state dir before the
// rollback removes them, and the error names where.
func TestFailedRunKeepsLogs(t *testing.T) {
	tree := t.TempDir()
	logs := filepath.Join(tree, "logs")
	mk := &Step{ID: "dirs", Creates: func() []string { return []string{logs} }, Action: func(context.Context, *Exec) error {
		os.MkdirAll(logs, 0o755)
		return os.WriteFile(filepath.Join(logs, "svc-error.log"), []byte("Error: connect ENOENT /var/run/dbus/system_bus_socket\n"), 0o644)
	}}
	fail := &Step{ID: "verify", After: []string{"dirs"}, Action: func(context.Context, *Exec) error { return errors.New("svc not healthy") }}
	plan, opts, _ := testPlan(t, mk, fail)
	plan.KeepOnFailure = []string{logs}
	_, err := Run(context.Background(), plan, opts)
	if !errors.Is(err, ErrRolledBack) || !strings.Contains(err.Error(), "kept in "+FailedRunsDir(plan.StateDir)) {
		t.Fatalf("err = %v; want a rollback naming the kept logs", err)
	}
	if _, err := os.Stat(logs); err == nil {
		t.Error("the rollback left the logs dir it created")
	}
	kept, _ := filepath.Glob(filepath.Join(FailedRunsDir(plan.StateDir), "*", "logs", "svc-error.log"))
	if len(kept) != 1 {
		t.Fatalf("kept service logs: %v", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !strings.Contains(string(b), "system_bus_socket") {
		t.Errorf("kept log = %q", b)
	}
	if steps, _ := filepath.Glob(filepath.Join(FailedRunsDir(plan.StateDir), "*", "steps", "verify.log")); len(steps) != 1 {
		t.Errorf("kept step logs: %v", steps)
	}
}

// TestUntrustedStateDir: a state dir (or journal) that another user could write decides
// what root deletes and kills; the agent refuses it before reading anything.
func TestUntrustedStateDir(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	planted := `{"op":{"seq":1,"step":"x","kind":"restore-path","path":"` + victim + `"},"runId":"evil"}` + "\n"
	for _, tc := range []struct {
		name    string
		prepare func(dir string)
		want    string
	}{
		{"world-writable dir", func(dir string) { os.Chmod(dir, 0o777) }, "lets others write it"},
		{"foreign owner", func(dir string) { os.Chown(dir, 4321, 4321) }, "belongs to uid 4321"},
		{"journal writable by group", func(dir string) {
			os.WriteFile(filepath.Join(dir, "journal.jsonl"), []byte(planted), 0o660)
			os.Chmod(filepath.Join(dir, "journal.jsonl"), 0o660)
		}, "journal.jsonl: mode -rw-rw----"},
		{"journal a symlink", func(dir string) {
			other := filepath.Join(t.TempDir(), "j")
			os.WriteFile(other, []byte(planted), 0o600)
			os.Symlink(other, filepath.Join(dir, "journal.jsonl"))
		}, "it is a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			os.MkdirAll(dir, 0o700)
			tc.prepare(dir)
			_, err := Recover(context.Background(), dir, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--state-dir") {
				t.Errorf("Recover = %v; want a refusal saying %q with the fix", err, tc.want)
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Fatal("a planted journal removed a file")
			}
		})
	}
}

// TestTreesLocked: a second run on the same trees or PM2 home is refused even with another
// state dir.
func TestTreesLocked(t *testing.T) {
	tree := t.TempDir()
	started, release := make(chan struct{}), make(chan struct{})
	hold := &Step{ID: "build", Action: func(context.Context, *Exec) error { close(started); <-release; return nil }}
	plan, opts, _ := testPlan(t, hold)
	plan.Locks = []string{tree}
	errc := make(chan error, 1)
	go func() { _, err := Run(context.Background(), plan, opts); errc <- err }()
	<-started
	other, opts2, _ := testPlan(t, &Step{ID: "build", Action: write(filepath.Join(tree, "clobbered"), "x")})
	other.Locks = []string{tree}
	_, err := Run(context.Background(), other, opts2)
	if err == nil || !strings.Contains(err.Error(), "another livinity-agent is running a pipeline on "+tree) {
		t.Errorf("second run on the same tree: %v; want a refusal", err)
	}
	if _, err := os.Stat(filepath.Join(tree, "clobbered")); err == nil {
		t.Error("the second run changed the locked tree")
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), other, opts2); err != nil {
		t.Errorf("after the first run ended: %v", err)
	}
}

// journalOps writes an interrupted run's journal holding ops, as a killed run leaves it.
func journalOps(t *testing.T, stateDir string, ops ...journal.Op) {
	t.Helper()
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	j, err := journal.Create(stateDir, "killed")
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if _, err := j.Record(op); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStalePM2PidIsNotKilled: the rollback of a run that started a daemon finds pm2.pid
// naming a process that is not a PM2 daemon (pid reuse after a crash): it is left alone.
func TestStalePM2PidIsNotKilled(t *testing.T) {
	bin := testenv.PM2(t, 7)
	home := testenv.PM2Home(t, bin)
	stranger := exec.Command("sleep", "600")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	defer stranger.Process.Kill()
	exited := make(chan struct{})
	go func() { stranger.Wait(); close(exited) }()
	os.WriteFile(filepath.Join(home, "pm2.pid"), []byte(strconv.Itoa(stranger.Process.Pid)), 0o644)
	state := filepath.Join(t.TempDir(), "state")
	journalOps(t, state, journal.Op{Step: "pm2-start", Kind: journal.KindPM2Kill, PM2Home: home})
	if _, err := Recover(context.Background(), state, Options{PM2: func(h string) PM2 { return NewPM2(bin, h) }}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatal("the rollback killed a process that was not the PM2 daemon")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestUndoToleratesWhatIsAlreadyUndone: a rollback killed halfway left one app of a
// replaced set deleted; running the rollback again re-creates every app and succeeds.
func TestUndoToleratesWhatIsAlreadyUndone(t *testing.T) {
	bin := testenv.PM2(t, 7)
	home := testenv.PM2Home(t, bin)
	idle := filepath.Join(testenv.Root(t), "supervisor", "testdata", "apps", "idle.js")
	eco := filepath.Join(t.TempDir(), "eco.config.cjs")
	os.WriteFile(eco, []byte(`module.exports = { apps: [
  { name: "a", script: `+strconv.Quote(idle)+` }, { name: "b", script: `+strconv.Quote(idle)+` }, { name: "c", script: `+strconv.Quote(idle)+` } ] };`), 0o644)
	pm := NewPM2(bin, home)
	ctx := context.Background()
	if err := pm.StartEcosystem(ctx, eco, "a", "b"); err != nil { // c is gone already
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	journalOps(t, state, journal.Op{Step: "pm2-start", Kind: journal.KindPM2Restart, PM2Home: home, Names: []string{"a", "b", "c"}, Path: eco})
	if _, err := Recover(ctx, state, Options{PM2: func(h string) PM2 { return NewPM2(bin, h) }}); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	apps, _, err := pm.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Errorf("after the rollback PM2 runs %q, want a, b and c from the previous definitions", names)
	}
	if _, err := os.Stat(filepath.Join(state, "journal.jsonl")); err == nil {
		t.Error("the journal is left after a complete rollback")
	}
}

// TestRollbackIsNewestFirst: two steps replace the same file in turn; only undoing the
// newest change first brings the original back (an oldest-first rollback leaves the first
// step's version).
func TestRollbackIsNewestFirst(t *testing.T) {
	f := filepath.Join(t.TempDir(), "app.conf")
	os.WriteFile(f, []byte("original"), 0o644)
	first := &Step{ID: "first", Replaces: func() []string { return []string{f} }, Action: write(f, "first")}
	second := &Step{ID: "second", After: []string{"first"}, Replaces: func() []string { return []string{f} }, Action: write(f, "second")}
	fail := &Step{ID: "fail", After: []string{"second"}, Action: func(context.Context, *Exec) error { return errors.New("boom") }}
	plan, opts, _ := testPlan(t, first, second, fail)
	if _, err := Run(context.Background(), plan, opts); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("run: %v", err)
	}
	if b, _ := os.ReadFile(f); string(b) != "original" {
		t.Errorf("after the rollback the file holds %q, want %q", b, "original")
	}
}

// TestRecoverCommittedRun: a run that committed but was killed before its journal was
// removed succeeded: Recover removes its backups and the journal, rolls nothing back and
// says there was no run to roll back.
func TestRecoverCommittedRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(dir, 0o700)
	made := filepath.Join(t.TempDir(), "made")
	os.WriteFile(made, []byte("kept"), 0o600)
	j := `{"op":{"seq":1,"step":"x","kind":"restore-path","path":"` + made + `"},"runId":"r1"}` + "\n" + `{"committed":true}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "journal.jsonl"), []byte(j), 0o600); err != nil {
		t.Fatal(err)
	}
	rolled, err := Recover(context.Background(), dir, Options{})
	if err != nil || rolled {
		t.Fatalf("Recover of a committed run = %v, %v; want false, nil", rolled, err)
	}
	if b, err := os.ReadFile(made); err != nil || string(b) != "kept" {
		t.Errorf("a committed run's output was undone: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "journal.jsonl")); !os.IsNotExist(err) {
		t.Errorf("the journal is still there: %v", err)
	}
}
