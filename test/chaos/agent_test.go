package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

// agentRunner runs `livinity-agent run` and starts it again after restartDelay whenever
// it ends, as systemd's Restart= would. An end the harness did not cause (kill) is a crash.
type agentRunner struct {
	bin          string
	args, env    []string
	restartDelay time.Duration

	mu       sync.Mutex
	lives    []*lifetime
	crashes  int
	stopping bool
}

// lifetime is one run of the agent process.
type lifetime struct {
	n       int
	started time.Time
	log     *testenv.Buffer
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been waited for
	killed  bool          // the harness sent SIGKILL
	exit    string        // how it ended, once exited is closed
}

// run keeps the agent running until ctx ends or stop is called. It returns when the last
// agent process has been waited for.
func (r *agentRunner) run(ctx context.Context) {
	for {
		l, err := r.start()
		if err != nil {
			r.mu.Lock()
			r.crashes++
			r.mu.Unlock()
		} else {
			select {
			case <-l.exited:
			case <-ctx.Done():
				l.cmd.Process.Kill()
				<-l.exited
				return
			}
		}
		r.mu.Lock()
		stopping := r.stopping
		if err == nil && !l.killed && !stopping {
			r.crashes++
		}
		r.mu.Unlock()
		if stopping {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.restartDelay):
		}
	}
}

func (r *agentRunner) start() (*lifetime, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := &lifetime{n: len(r.lives) + 1, started: time.Now(), log: &testenv.Buffer{}, exited: make(chan struct{})}
	l.cmd = exec.Command(r.bin, r.args...)
	l.cmd.Env = r.env
	l.cmd.Stdout, l.cmd.Stderr = l.log, l.log
	r.lives = append(r.lives, l)
	if err := l.cmd.Start(); err != nil {
		l.exit = fmt.Sprintf("could not start: %v", err)
		close(l.exited)
		return l, err
	}
	go func() {
		err := l.cmd.Wait()
		r.mu.Lock()
		switch {
		case l.killed:
			l.exit = "killed by the harness"
		case err != nil:
			l.exit = err.Error()
		default:
			l.exit = "exit status 0"
		}
		r.mu.Unlock()
		close(l.exited)
	}()
	return l, nil
}

// current is the latest lifetime (nil before the first).
func (r *agentRunner) current() *lifetime {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lives) == 0 {
		return nil
	}
	return r.lives[len(r.lives)-1]
}

// alive reports whether the current lifetime's process runs.
func (r *agentRunner) alive() bool {
	l := r.current()
	if l == nil {
		return false
	}
	select {
	case <-l.exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs the running agent (the fault); run starts it again.
func (r *agentRunner) kill() (*lifetime, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lives[len(r.lives)-1]
	select {
	case <-l.exited:
		return nil, fmt.Errorf("kill the agent: lifetime %d already ended (%s)", l.n, l.exit)
	default:
	}
	l.killed = true
	if err := l.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("kill the agent (pid %d): %w", l.cmd.Process.Pid, err)
	}
	return l, nil
}

// stop ends the agent with SIGTERM, as systemctl stop would, and returns how it exited.
func (r *agentRunner) stop(timeout time.Duration) (string, error) {
	r.mu.Lock()
	r.stopping = true
	l := r.lives[len(r.lives)-1]
	r.mu.Unlock()
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return "", fmt.Errorf("stop the agent (pid %d): %w", l.cmd.Process.Pid, err)
	}
	select {
	case <-l.exited:
		return l.exit, nil
	case <-time.After(timeout):
		l.cmd.Process.Kill()
		<-l.exited
		return "", fmt.Errorf("the agent did not exit within %v of SIGTERM", timeout)
	}
}

// snapshotLives returns every lifetime and the crash count.
func (r *agentRunner) snapshotLives() ([]*lifetime, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*lifetime(nil), r.lives...), r.crashes
}

// restartLine is the agent's log line for one counted restart (slog text format).
var restartLine = regexp.MustCompile(`msg="restart counted" service=(\S+) reason=(\S+)`)

// restartsLogged counts the lifetime's "restart counted" log lines per service and reason.
func (l *lifetime) restartsLogged() counts {
	c := counts{}
	for _, m := range restartLine.FindAllStringSubmatch(l.log.String(), -1) {
		c.add(m[1], m[2], 1)
	}
	return c
}
