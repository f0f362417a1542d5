package pm2

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

// TestClient runs the native client against real PM2 5, 6 and 7 daemons: the same calls
// must work on each, which shows the wire protocol did not change.
func TestClient(t *testing.T) {
	for _, major := range versions {
		t.Run("pm2-"+strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			d := startDaemon(t, major, "LV_STOP_DELAY_MS=400")
			idle := d.startApp(t, "idle", "idle.js")
			c := dial(t, d.home)
			ctx := t.Context()

			t.Run("ping and version", func(t *testing.T) {
				if err := c.Ping(ctx); err != nil {
					t.Fatal(err)
				}
				got, err := c.Version(ctx)
				if err != nil {
					t.Fatal(err)
				}
				want, err := d.cli.Version()
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Fatalf("daemon version %q, pm2 package version %q", got, want)
				}
			})

			t.Run("list", func(t *testing.T) {
				procs, err := c.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(procs) != 1 {
					t.Fatalf("list has %d apps, want 1: %+v", len(procs), procs)
				}
				p := procs[0]
				if p.Name != "idle" || p.Status != StatusOnline || p.PID <= 0 || p.ID != idle.ID {
					t.Fatalf("unexpected process %+v", p)
				}
				if err := syscall.Kill(p.PID, 0); err != nil {
					t.Fatalf("pid %d from the list is not a live process: %v", p.PID, err)
				}
				if p.ExecPath != testdataPath(t, "idle.js") || p.Interpreter != "node" || p.ExecMode != "fork_mode" {
					t.Fatalf("exec path %q, interpreter %q, mode %q", p.ExecPath, p.Interpreter, p.ExecMode)
				}
				if p.Started.IsZero() || time.Since(p.Started) < 0 || time.Since(p.Started) > time.Hour {
					t.Fatalf("started %v is not a recent time", p.Started)
				}
				if p.CreatedAt.IsZero() || p.CreatedAt.After(p.Started.Add(time.Second)) {
					t.Fatalf("created %v, started %v", p.CreatedAt, p.Started)
				}
				if p.OutLogPath == "" || filepath.Dir(filepath.Dir(p.OutLogPath)) != d.home {
					t.Fatalf("out log %q is not under %s/logs", p.OutLogPath, d.home)
				}
				if !p.Autorestart {
					t.Fatal("autorestart is false, PM2's default is true")
				}
			})

			t.Run("restart by id", func(t *testing.T) {
				before := d.waitApp(t, "idle", func(p Process) bool { return p.Status == StatusOnline })
				if err := c.Restart(ctx, before.ID); err != nil {
					t.Fatal(err)
				}
				after := d.waitApp(t, "idle", func(p Process) bool { return p.Status == StatusOnline && p.PID > 0 })
				if after.PID == before.PID {
					t.Fatalf("pid %d did not change", after.PID)
				}
				if after.RestartTime != before.RestartTime+1 {
					t.Fatalf("restart_time %d, want %d", after.RestartTime, before.RestartTime+1)
				}
				if err := c.Notify(ctx, after.ID, "restart"); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("stop and start", func(t *testing.T) {
				if err := c.Stop(ctx, idle.ID); err != nil {
					t.Fatal(err)
				}
				stopped := d.waitApp(t, "idle", func(p Process) bool { return p.Status == StatusStopped })
				if stopped.PID != 0 {
					t.Fatalf("stopped app has pid %d", stopped.PID)
				}
				if err := c.Start(ctx, idle.ID); err != nil {
					t.Fatal(err)
				}
				d.waitApp(t, "idle", func(p Process) bool { return p.Status == StatusOnline && p.PID > 0 })
				err := c.Start(ctx, idle.ID)
				var re *RemoteError
				if !errors.As(err, &re) || re.Message != "process already online" {
					t.Fatalf("start of an online app: err = %v, want the daemon's 'process already online'", err)
				}
			})

			t.Run("replies out of order", func(t *testing.T) {
				// A restart replies only after the app has exited, which idle.js delays
				// by LV_STOP_DELAY_MS; pings sent after it must be answered first.
				restarted := make(chan error, 1)
				go func() { restarted <- c.Restart(ctx, idle.ID) }()
				d.waitApp(t, "idle", func(p Process) bool { return p.Status == StatusStopping })
				if err := c.Ping(ctx); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-restarted:
					t.Fatalf("restart replied (%v) before the ping sent after it", err)
				default:
				}
				if err := <-restarted; err != nil {
					t.Fatal(err)
				}
			})

			t.Run("many concurrent calls", func(t *testing.T) {
				want, _ := d.cli.Version()
				var wg sync.WaitGroup
				errs := make(chan error, 90)
				for i := range 90 {
					wg.Go(func() {
						var err error
						switch i % 3 {
						case 0:
							err = c.Ping(ctx)
						case 1:
							var v string
							if v, err = c.Version(ctx); err == nil && v != want {
								err = errors.New("version reply " + v + " mixed up")
							}
						case 2:
							var procs []Process
							if procs, err = c.List(ctx); err == nil && (len(procs) != 1 || procs[0].Name != "idle") {
								err = errors.New("list reply mixed up")
							}
						}
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
			})

			t.Run("unknown id", func(t *testing.T) {
				var re *RemoteError
				if err := c.Restart(ctx, 99); !errors.As(err, &re) {
					t.Fatalf("restart of id 99: err = %v, want a *RemoteError", err)
				}
			})

			t.Run("delete", func(t *testing.T) {
				if err := c.Delete(ctx, idle.ID); err != nil {
					t.Fatal(err)
				}
				procs, err := c.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(procs) != 0 {
					t.Fatalf("list after delete: %+v", procs)
				}
				if err := syscall.Kill(d.pid(t), 0); err != nil {
					t.Fatalf("daemon died during the test: %v", err)
				}
			})
		})
	}
}

// TestClientCrashingApp checks the fields PM2 sets after an app exits on its own.
func TestClientCrashingApp(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, 7)
	if err := d.cli.StartEcosystem(t.Context(), testdataPath(t, "crash.config.js")); err != nil {
		t.Fatal(err)
	}
	// the dead pid stays in the record for a moment after the exit
	p := d.waitApp(t, "crash", func(p Process) bool { return p.Status == StatusErrored && p.PID == 0 })
	if p.ExitCode == nil || *p.ExitCode != 3 {
		t.Fatalf("exit code %v, want 3", p.ExitCode)
	}
	// PM2 resets unstable_restarts and created_at (to null) when it gives up.
	if p.RestartTime != 1 || !p.CreatedAt.IsZero() {
		t.Fatalf("errored app: pid %d, restarts %d, created %v", p.PID, p.RestartTime, p.CreatedAt)
	}
}

// TestDialDaemonNotRunning checks that no daemon is reported as such and none is started.
func TestDialDaemonNotRunning(t *testing.T) {
	t.Parallel()
	t.Run("no socket", func(t *testing.T) {
		home := testenv.ShortTempDir(t)
		_, err := Dial(t.Context(), home)
		if !errors.Is(err, ErrDaemonNotRunning) || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v, want ErrDaemonNotRunning (ENOENT)", err)
		}
		if want := RPCSocket(home); !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %s", err, want)
		}
		if _, err := Subscribe(t.Context(), home); !errors.Is(err, ErrDaemonNotRunning) {
			t.Fatalf("subscribe: err = %v, want ErrDaemonNotRunning", err)
		}
		if _, err := os.Stat(filepath.Join(home, "pm2.pid")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("pm2.pid exists after dial: a daemon was started (%v)", err)
		}
	})
	t.Run("stale socket of a killed daemon", func(t *testing.T) {
		d := startDaemon(t, 7)
		if err := syscall.Kill(d.pid(t), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, func() bool {
			c, err := Dial(t.Context(), d.home)
			if err == nil {
				c.Close()
			}
			return errors.Is(err, syscall.ECONNREFUSED)
		}, func() string { return "connection refused on the stale socket" })
		_, err := Dial(t.Context(), d.home)
		if !errors.Is(err, ErrDaemonNotRunning) {
			t.Fatalf("err = %v, want ErrDaemonNotRunning", err)
		}
	})
}

// silentListener listens on home/rpc.sock, accepts connections and never answers.
func silentListener(t *testing.T, home string) {
	t.Helper()
	l, err := net.Listen("unix", RPCSocket(home))
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
}

func TestCallDeadline(t *testing.T) {
	t.Parallel()
	home := testenv.ShortTempDir(t)
	silentListener(t, home)
	c := dial(t, home)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping on a silent socket: err = %v, want context.DeadlineExceeded", err)
	}
	// The connection stays usable for later calls and Close is idempotent.
	for range 10 {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.List(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("list after close: err = %v, want ErrClosed", err)
	}
}

// TestCloseFailsPendingCalls checks that a call in flight returns when Close is called.
func TestCloseFailsPendingCalls(t *testing.T) {
	t.Parallel()
	home := testenv.ShortTempDir(t)
	silentListener(t, home)
	c := dial(t, home)
	errc := make(chan error, 1)
	go func() { errc <- c.Ping(t.Context()) }()
	waitFor(t, 5*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pending) == 1
	}, func() string { return "the ping to be pending" })
	c.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending ping after close: err = %v, want ErrClosed", err)
	}
}

// TestClientGarbageSocket checks that a socket speaking something else is reported as a
// protocol violation, also when it hangs up before the request is written.
func TestClientGarbageSocket(t *testing.T) {
	t.Parallel()
	home := testenv.ShortTempDir(t)
	garbageListener(t, RPCSocket(home))
	for range 5 {
		c := dial(t, home)
		if err := c.Ping(t.Context()); !errors.Is(err, ErrProtocol) {
			t.Fatalf("ping on a garbage socket: err = %v, want ErrProtocol", err)
		}
	}
}
