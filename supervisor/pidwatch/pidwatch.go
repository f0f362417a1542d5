// Package pidwatch tells, within a fraction of a millisecond, that a process the agent did
// not start (a PM2 app's main pid) has exited, through a pidfd (pidfd_open, Linux 5.3 or
// later): the descriptor turns readable when the process exits.
//
// A pid names a process only together with its start time: Watch opens the pidfd first and
// then checks that the process behind the pid started when the caller says it did (PM2's
// pm_uptime), so that a pid reused since is never watched in place of the exited one. The
// pidfd keeps naming the process it was opened on whatever happens to the number.
//
// Readiness is waited for on the Go runtime's own poller (the pidfd is non-blocking and
// registered like a socket): a watched process costs one parked goroutine and one
// descriptor, and no thread, where a goroutine blocked in poll(2) per process would hold
// one OS thread each and an epoll loop of its own one thread for all.
//
// The exit status is not available: only a process's parent can wait for it (PM2's
// daemon), so the cause of the exit is left to PM2's event bus.
package pidwatch

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livinity/livinity-agent/internal/procfs"
)

// Errors of Watch.
var (
	// ErrUnsupported: the kernel has no pidfd_open (before 5.3: ENOSYS) or a seccomp
	// filter or security module refuses it (EPERM): the caller relies on other sources.
	ErrUnsupported = errors.New("pidfd_open is not available")
	// ErrGone: no live process has the pid (it exited, or is a zombie).
	ErrGone = errors.New("process is gone")
	// ErrNotSame: a process has the pid but did not start when expected: the pid was
	// reused, it is not the one to watch.
	ErrNotSame = errors.New("the pid belongs to another process (start time differs)")
)

// Tolerance is how far the process's start time (from /proc, on the boot clock, to the
// tick) may be from the expected one. PM2 records pm_uptime just before it spawns the app,
// a few milliseconds earlier; a pid is reused only after the pid space wrapped around,
// which takes far longer than this on any host.
const Tolerance = time.Second

var (
	probeOnce sync.Once
	probeErr  error
)

// Supported reports whether pidfd_open works here (ErrUnsupported wrapped when it does
// not), by opening one on this process once.
func Supported() error {
	probeOnce.Do(func() {
		fd, err := unix.PidfdOpen(os.Getpid(), unix.PIDFD_NONBLOCK)
		if err != nil {
			probeErr = fmt.Errorf("%w: %w", ErrUnsupported, err)
			return
		}
		unix.Close(fd)
	})
	return probeErr
}

// Watch is one watched process. Stop it when the process is of no more interest.
type Watch struct {
	PID int
	// StartTicks is the process's start time in clock ticks since boot (procfs.Stat).
	StartTicks uint64

	f    *os.File
	once sync.Once
}

// Start watches pid, which must have started at started (within Tolerance; the zero time
// skips the check, for a caller that has no other record of the process), and calls
// onExit once, from its own goroutine, with the time the exit was seen. An exit seen just
// before a Stop may still be reported after it: onExit names the pid, for callers to check
// that it is still the one they care about. The errors wrap ErrUnsupported, ErrGone or
// ErrNotSame.
func Start(pid int, started time.Time, onExit func(pid int, at time.Time)) (*Watch, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("watch pid %d: %w", pid, ErrGone)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil, fmt.Errorf("watch pid %d: %w", pid, ErrGone)
	case err != nil: // ENOSYS, EPERM; EINVAL for a pid that is not a thread-group leader
		return nil, fmt.Errorf("watch pid %d: %w: %w", pid, ErrUnsupported, err)
	}
	// the pidfd names whatever process had the pid at the open: if that one is the
	// expected process it is still alive now, else the pid has another start time (or none)
	st, ok := procfs.ReadStat(pid)
	if !ok || st.State == "Z" || st.State == "X" {
		unix.Close(fd)
		return nil, fmt.Errorf("watch pid %d: %w", pid, ErrGone)
	}
	if !started.IsZero() {
		at := procfs.StartedAt(st.StartTime)
		if d := at.Sub(started); d > Tolerance || d < -Tolerance {
			unix.Close(fd)
			return nil, fmt.Errorf("watch pid %d: %w: it started at %s, expected %s", pid, ErrNotSame,
				at.Format(time.StampMilli), started.Format(time.StampMilli))
		}
	}
	w := &Watch{PID: pid, StartTicks: st.StartTime, f: os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))}
	rc, err := w.f.SyscallConn()
	if err != nil {
		w.f.Close()
		return nil, fmt.Errorf("watch pid %d: %w", pid, err)
	}
	go func() {
		defer w.Stop()
		exited := false
		err := rc.Read(func(fd uintptr) bool {
			exited = readable(int(fd))
			return exited
		})
		if err == nil && exited {
			onExit(pid, time.Now())
		}
	}()
	return w, nil
}

// readable polls the pidfd without waiting: readable means the process has exited.
func readable(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(p, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && p[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0
	}
}

// Stop ends the watch and closes the pidfd; it may be called more than once, and on a nil
// Watch.
func (w *Watch) Stop() {
	if w == nil {
		return
	}
	w.once.Do(func() { w.f.Close() })
}
