package pm2

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/livinity/livinity-agent/internal/testenv"
)

// garbageListener listens on path and answers every connection with an HTTP error.
func garbageListener(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
}

// TestFallbackToCLI runs a real daemon whose RPC socket was moved with
// PM2_DAEMON_RPC_PORT (the pm2 command knows, the native client does not) while something
// else listens on $PM2_HOME/rpc.sock. The Fallback must switch to the CLI, say so once,
// and keep working.
func TestFallbackToCLI(t *testing.T) {
	tests := []struct {
		name   string
		listen func(t *testing.T, home string)
	}{
		{"socket speaks garbage", func(t *testing.T, home string) { garbageListener(t, RPCSocket(home)) }},
		{"socket never answers", silentListener},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			moved := filepath.Join(testenv.ShortTempDir(t), "rpc.sock")
			d := startDaemon(t, 7, "PM2_DAEMON_RPC_PORT="+moved)
			// testenv's cleanup would run pm2 kill without the moved socket and wait for
			// its timeout; kill the daemon the way it was started.
			pid := d.pid(t)
			t.Cleanup(func() {
				if err := d.cli.Kill(context.Background()); err != nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			})
			d.pm2(t, "start", testdataPath(t, "idle.js"), "--name", "idle")
			tt.listen(t, d.home)

			var logs testenv.Buffer
			f := NewFallback(d.home, d.cli, slog.New(slog.NewTextHandler(&logs, nil)))
			defer f.Close()
			ctx := t.Context()
			procs, err := f.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(procs) != 1 || procs[0].Name != "idle" {
				t.Fatalf("list through the fallback: %+v", procs)
			}
			if err := f.RestartName(ctx, "idle"); err != nil {
				t.Fatal(err)
			}
			if err := f.Restart(ctx, procs[0].ID); err != nil {
				t.Fatal(err)
			}
			after, err := f.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if after[0].RestartTime != procs[0].RestartTime+2 {
				t.Fatalf("restart_time %d after two restarts, want %d", after[0].RestartTime, procs[0].RestartTime+2)
			}
			if n := strings.Count(logs.String(), "using the pm2 command"); n != 1 {
				t.Fatalf("logged the switch %d times, want once:\n%s", n, logs.String())
			}
		})
	}
}

// TestFallbackNative checks that a Fallback in front of a working daemon never runs the
// pm2 command (its Bin does not exist), and that with no daemon it reports
// ErrDaemonNotRunning instead of letting pm2 start one.
func TestFallbackNative(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, 6)
	d.startApp(t, "idle", "idle.js")
	noCLI := &CLI{Bin: "/nonexistent/pm2", Home: d.home}
	var logs testenv.Buffer
	f := NewFallback(d.home, noCLI, slog.New(slog.NewTextHandler(&logs, nil)))
	defer f.Close()
	if err := f.RestartName(t.Context(), "idle"); err != nil {
		t.Fatal(err)
	}
	if err := f.RestartName(t.Context(), "nope"); !errors.Is(err, ErrNoSuchApp) {
		t.Fatalf("restart of an unknown name: err = %v, want ErrNoSuchApp", err)
	}
	procs, err := f.List(t.Context())
	if err != nil || len(procs) != 1 || procs[0].RestartTime != 1 {
		t.Fatalf("list: %+v, %v", procs, err)
	}
	if len(logs.String()) != 0 {
		t.Fatalf("unexpected log:\n%s", logs.String())
	}

	empty := testenv.ShortTempDir(t)
	f2 := NewFallback(empty, &CLI{Bin: testenv.PM2(t, 7), Home: empty}, nil)
	if _, err := f2.List(t.Context()); !errors.Is(err, ErrDaemonNotRunning) {
		t.Fatalf("no daemon: err = %v, want ErrDaemonNotRunning", err)
	}
	if _, err := os.Stat(filepath.Join(empty, "pm2.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a daemon was started under %s", empty)
	}
	if !strings.Contains(RPCSocket(empty), empty) {
		t.Fatal("RPCSocket is not under home")
	}
}

// TestFallbackBadReplyIsPerCall: a socket that speaks the protocol but answers one method
// with a reply that cannot be decoded (getMonitorData returns a number) is not a broken
// socket: that call goes through the CLI (a real daemon, its socket moved where only the
// pm2 command finds it), the first such reply is logged, and the next calls still use the
// socket (restartProcessId reaches it).
func TestFallbackBadReplyIsPerCall(t *testing.T) {
	moved := filepath.Join(testenv.ShortTempDir(t), "rpc.sock")
	d := startDaemon(t, 7, "PM2_DAEMON_RPC_PORT="+moved)
	pid := d.pid(t)
	t.Cleanup(func() {
		if err := d.cli.Kill(context.Background()); err != nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	d.pm2(t, "start", testdataPath(t, "idle.js"), "--name", "idle")
	l, err := net.Listen("unix", RPCSocket(d.home))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	restarts := make(chan string, 10)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				dec := newFrameDecoder(conn, MaxReplyFrame)
				for {
					args, err := dec.next()
					if err != nil || len(args) != 2 {
						return
					}
					body, _ := argJSON(args[0])
					var req struct{ Method string }
					json.Unmarshal(body, &req)
					reply := `j:{"args":[{"msg":"pong"}]}`
					switch req.Method {
					case "getMonitorData":
						reply = `j:{"args":[42]}`
					case "restartProcessId":
						restarts <- req.Method
						reply = `j:{"args":[{}]}`
					}
					frame, _ := appendFrame(nil, []byte(reply), args[1])
					conn.Write(frame)
				}
			}()
		}
	}()
	var logs testenv.Buffer
	f := NewFallback(d.home, d.cli, slog.New(slog.NewTextHandler(&logs, nil)))
	defer f.Close()
	for range 2 {
		procs, err := f.List(t.Context())
		if err != nil || len(procs) != 1 || procs[0].Name != "idle" {
			t.Fatalf("list through the CLI: %+v, %v", procs, err)
		}
	}
	if err := f.Restart(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restarts:
	default:
		t.Fatal("the restart after a bad reply did not use the socket: the fallback switched for good")
	}
	if n := strings.Count(logs.String(), "could not be decoded"); n != 1 {
		t.Fatalf("logged the bad reply %d times, want once:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "from now on") {
		t.Fatalf("a bad reply switched the fallback to the CLI for good:\n%s", logs.String())
	}
}
