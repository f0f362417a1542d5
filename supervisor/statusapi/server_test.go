package statusapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/state"
)

var names = []string{"livos", "nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"}

// serve runs a Server for store at path until the test ends and waits until it answers.
// It returns a function that stops the server and returns Run's error.
func serve(t *testing.T, path string, store *state.Store) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- (&Server{Path: path, Store: store}).Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := Fetch(t.Context(), path)
		if err == nil {
			return stop
		}
		select {
		case err := <-done:
			t.Fatalf("server stopped before answering: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server does not answer on %s: %v", path, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestServeFetchModeAndShutdown(t *testing.T) {
	path := filepath.Join(testenv.ShortTempDir(t), "run", SocketName) // the directory is created
	store := state.New(state.Agent{Version: "9.9.9", Started: time.Now(), PM2Connected: true}, names)
	for _, n := range names {
		store.Update(n, func(s *state.Service) { s.Phase = state.Ready; s.Ready = true; s.PID = 100 })
	}
	stop := serve(t, path, store)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode = %v, want socket 0660", fi.Mode())
	}
	wantGID := 0
	if g, err := user.LookupGroup("livinity"); err == nil {
		wantGID, _ = strconv.Atoi(g.Gid)
	}
	if os.Geteuid() == 0 {
		if gid := fi.Sys().(*syscall.Stat_t).Gid; int(gid) != wantGID {
			t.Fatalf("socket group = %d, want %d", gid, wantGID)
		}
	}

	st, err := Fetch(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Source != SourceAgent || !st.Ready || st.Agent.Version != "9.9.9" || len(st.Services) != len(names) {
		t.Fatalf("status = %+v", st)
	}
	for i, sv := range st.Services {
		if sv.Name != names[i] || sv.State != "ready" || sv.PID != 100 {
			t.Fatalf("service %d = %+v", i, sv)
		}
	}

	// Other methods and paths are refused.
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
	defer c.CloseIdleConnections()
	for _, tc := range []struct {
		method, path string
		want         int
	}{{"POST", StatusPath, 405}, {"GET", "/v1/other", 404}, {"GET", StatusPath, 200}} {
		req, _ := http.NewRequestWithContext(t.Context(), tc.method, "http://x"+tc.path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind after stop: %v", err)
	}
	if _, err := Fetch(t.Context(), path); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Fetch after stop = %v, want ErrNotRunning", err)
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(testenv.ShortTempDir(t), SocketName)
	// A killed agent leaves its socket file behind: bound once, nobody listening.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Fetch(t.Context(), path); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Fetch on a stale socket = %v, want ErrNotRunning", err)
	}
	serve(t, path, state.New(state.Agent{Version: "v"}, names))
	st, err := Fetch(t.Context(), path)
	if err != nil || st.Agent.Version != "v" {
		t.Fatalf("fetch after replacing the stale socket: %+v, %v", st, err)
	}
}

func TestLiveSocketIsRefused(t *testing.T) {
	path := filepath.Join(testenv.ShortTempDir(t), SocketName)
	first := state.New(state.Agent{Version: "first"}, names)
	serve(t, path, first)

	err := (&Server{Path: path, Store: state.New(state.Agent{Version: "second"}, names)}).Run(t.Context())
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second server: %v, want ErrInUse naming %s", err, path)
	}
	st, err := Fetch(t.Context(), path)
	if err != nil || st.Agent.Version != "first" {
		t.Fatalf("the first agent lost its socket: %+v, %v", st.Agent, err)
	}
}

func TestRunRefusesBadPaths(t *testing.T) {
	dir := testenv.ShortTempDir(t)
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, strings.Repeat("x", 110), SocketName)
	store := state.New(state.Agent{}, names)
	for _, tc := range []struct{ path, want string }{
		{file, "a regular file is in the way"},
		{long, "unix sockets allow 107"},
		{"", "path is empty"},
	} {
		err := (&Server{Path: tc.path, Store: store}).Run(t.Context())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%q) = %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Fatalf("a file in the way was changed: %q", b)
	}
	if err := (&Server{Path: filepath.Join(dir, SocketName)}).Run(t.Context()); err == nil {
		t.Fatal("Run without a store succeeded")
	}
}

func TestFetchMissingSocket(t *testing.T) {
	path := filepath.Join(testenv.ShortTempDir(t), SocketName)
	_, err := Fetch(t.Context(), path)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Fetch = %v, want ErrNotRunning naming %s", err, path)
	}
}

func TestFetchRejectsOtherSchemas(t *testing.T) {
	path := filepath.Join(testenv.ShortTempDir(t), SocketName)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"schema": 2, "source": "agent"}`)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	_, err = Fetch(t.Context(), path)
	if err == nil || errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "schema 2") {
		t.Fatalf("Fetch of a schema 2 document = %v", err)
	}
}

// Fetches run while the supervisor updates the store; every document is a consistent
// snapshot: the fields set together in one Update are seen together.
func TestConcurrentFetchesWhileUpdating(t *testing.T) {
	path := filepath.Join(testenv.ShortTempDir(t), SocketName)
	store := state.New(state.Agent{Version: "v"}, names)
	serve(t, path, store)

	ctx, cancel := context.WithCancel(t.Context())
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		for i := 1; ctx.Err() == nil; i++ {
			for _, n := range names {
				store.Update(n, func(s *state.Service) {
					s.Restarts[state.ReasonCrash]++
					s.PM2Restarts = int(s.Restarts[state.ReasonCrash])
					s.PID = 1000 + s.PM2Restarts
					s.Ready = i%2 == 0
				})
			}
			store.UpdateAgent(func(a *state.Agent) { a.PM2Connected = !a.PM2Connected })
		}
	}()

	const fetchers, each = 8, 25
	errs := make(chan error, fetchers*each)
	var wg sync.WaitGroup
	for range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				st, err := Fetch(ctx, path)
				if err != nil {
					errs <- err
					continue
				}
				for _, sv := range st.Services {
					if int(sv.Restarts.Crash) != sv.PM2Restarts || sv.PID != 1000+sv.PM2Restarts || sv.RestartsTotal != sv.Restarts.Crash {
						errs <- fmt.Errorf("torn snapshot of %s: %+v", sv.Name, sv)
					}
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	writer.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := store.Snapshot(); st.Services[0].Restarts[state.ReasonCrash] == 0 {
		t.Fatal("the writer never ran")
	}
}
