// Package pidwatch tells, within a fraction of a millisecond, that a process the agent did
// not start (a PM2 app's main pid) is dying, from two sources the Watcher combines:
//
//   - a pidfd per process (pidfd_open, Linux 5.3 or later), which turns readable once the
//     process has exited: everywhere, but only after the kernel has unmapped the process's
//     memory, 1.5 ms after a SIGKILL for an idle Node.js process and 10 ms or more for one
//     with a large heap;
//   - the proc connector's exit events (procconn.Exits, as root), filtered in the kernel to
//     the watched processes: the first of a process's threads to die of a signal is
//     reported tens of microseconds after the kill, before that unmapping.
//
// Whichever comes first reports the exit, once.
//
// A pid names a process only together with its start time: Start opens the pidfd first and
// then checks that the process behind the pid started when the caller says it did (PM2's
// pm_uptime), so that a pid reused since is never watched in place of the exited one. The
// pidfd keeps naming the process it was opened on whatever happens to the number; an exit
// event is taken only if the kernel sent it after the watched process started.
//
// A pidfd is waited for on the Go runtime's own poller (non-blocking, registered like a
// socket): a watched process costs one parked goroutine and one descriptor, and no thread.
// The exit events are read on each CPU (up to maxReaders) by a thread of its own pinned
// there (procconn.Exits.ReadOn), and the caller's onExit runs on it: the event comes from
// the CPU where the process dies, which is awake, so the reader there wakes at once,
// where one on an idle CPU (or a hand-off to another thread) waited 1 to 3 ms for that
// CPU to wake on a virtual machine.
//
// The exit status is not available from a pidfd: only a process's parent can wait for it
// (PM2's daemon), so the cause of the exit is left to PM2's event bus.
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
	"github.com/livinity/livinity-agent/supervisor/procconn"
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

// Watcher watches processes. Create it with NewWatcher; Close it when done.
type Watcher struct {
	mu      sync.Mutex
	exits   []*procconn.Exits // one per reader CPU; none: pidfds alone
	exitErr error             // why not, then
	watches map[int32]*Watch

	noPidfdWait bool // tests: the exit events alone
}

// NewWatcher prepares a Watcher; the error wraps ErrUnsupported when pidfds are not
// available. The exit events are used when they can be had (ExitEvents says why not).
func NewWatcher() (*Watcher, error) {
	if err := Supported(); err != nil {
		return nil, err
	}
	w := &Watcher{watches: map[int32]*Watch{}}
	cpus := readerCPUs()
	for range cpus {
		e, err := procconn.ListenExits()
		if err != nil {
			w.exitErr = err
			w.closeExits()
			return w, nil
		}
		w.exits = append(w.exits, e)
	}
	for i, e := range w.exits {
		go w.readExits(e, cpus[i])
	}
	return w, nil
}

// maxReaders bounds the exit-event readers (one per CPU the agent may run on): on a larger
// host the deaths on the other CPUs wake a reader across CPUs.
const maxReaders = 8

// readerCPUs are the CPUs to wait for exit events on, each with a socket and a thread of
// its own (see procconn.Exits.ReadOn): a death is then seen on the CPU where it happens,
// which is awake, without waking another. -1 alone: the CPUs cannot be told, wait anywhere.
func readerCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() == 0 {
		return []int{-1}
	}
	var cpus []int
	for cpu := 0; len(cpus) < min(set.Count(), maxReaders); cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	return cpus
}

// ExitEvents is nil when the proc connector's exit events are a source, else why not
// (the pidfds are then the only one).
func (w *Watcher) ExitEvents() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.exitErr
}

// Close stops the exit events; watches already started keep their pidfds until stopped.
func (w *Watcher) Close() {
	w.mu.Lock()
	exits := w.exits
	w.exits = nil
	w.mu.Unlock()
	for _, e := range exits {
		e.Close()
	}
}

// closeExits closes the exit events after a failure, off the caller's goroutine (Close
// waits for the readers, and the caller may be one, or hold mu that they take).
func (w *Watcher) closeExits() {
	exits := w.exits
	w.exits = nil
	go func() {
		for _, e := range exits {
			e.Close()
		}
	}()
}

func (w *Watcher) readExits(e *procconn.Exits, cpu int) {
	if err := e.ReadOn(cpu, w.onExitEvent); err != nil {
		w.mu.Lock()
		if w.exitErr == nil {
			w.exitErr = err
			w.closeExits()
		}
		w.mu.Unlock()
	}
}

// onExitEvent reports the exit of a watched process, if the kernel sent it after the
// process started (its start is to the tick, earlier than the true start): else it is
// the exit of an earlier process that had the pid.
func (w *Watcher) onExitEvent(ex procconn.Exit) {
	w.mu.Lock()
	wt := w.watches[ex.PID]
	w.mu.Unlock()
	if wt != nil && ex.Mono >= time.Duration(wt.StartTicks)*(time.Second/procfs.TicksPerSecond) {
		wt.exited(time.Now())
	}
}

// setFilter gives the kernel the pids watched now. Called with mu held.
func (w *Watcher) setFilter() {
	if len(w.exits) == 0 || w.exitErr != nil {
		return
	}
	pids := make([]int32, 0, len(w.watches))
	for pid := range w.watches {
		pids = append(pids, pid)
	}
	if len(pids) > procconn.MaxExitPIDs {
		pids = pids[:procconn.MaxExitPIDs] // the rest on their pidfds alone
	}
	for _, e := range w.exits {
		if err := e.Watch(pids); err != nil {
			w.exitErr = err
			w.closeExits()
			return
		}
	}
}

// Watch is one watched process. Stop it when the process is of no more interest.
type Watch struct {
	PID int
	// StartTicks is the process's start time in clock ticks since boot (procfs.Stat).
	StartTicks uint64

	w      *Watcher
	f      *os.File
	onExit func(pid int, at time.Time)
	fired  sync.Once
	once   sync.Once
}

// exited reports the exit, the first time either source sees it, and then ends the watch
// (not before: closing the pidfd waits for its reader goroutine to run, and the kernel's
// exit filter is compiled anew).
func (wt *Watch) exited(at time.Time) {
	wt.fired.Do(func() {
		wt.onExit(wt.PID, at)
		wt.Stop()
	})
}

// Start watches pid, which must have started at started (within Tolerance; the zero time
// skips the check, for a caller that has no other record of the process), and calls
// onExit once, from a goroutine of the Watcher's, with the time the exit was seen. An exit seen just
// before a Stop may still be reported after it: onExit names the pid, for callers to check
// that it is still the one they care about. The errors wrap ErrUnsupported, ErrGone or
// ErrNotSame.
func (w *Watcher) Start(pid int, started time.Time, onExit func(pid int, at time.Time)) (*Watch, error) {
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
	wt := &Watch{PID: pid, StartTicks: st.StartTime, w: w, onExit: onExit, f: os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))}
	rc, err := wt.f.SyscallConn()
	if err != nil {
		wt.f.Close()
		return nil, fmt.Errorf("watch pid %d: %w", pid, err)
	}
	w.mu.Lock()
	w.watches[int32(pid)] = wt
	w.setFilter()
	w.mu.Unlock()
	if w.noPidfdWait {
		return wt, nil
	}
	go func() {
		exited := false
		err := rc.Read(func(fd uintptr) bool {
			exited = readable(int(fd))
			return exited
		})
		if err == nil && exited {
			wt.exited(time.Now())
		}
	}()
	return wt, nil
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
func (wt *Watch) Stop() {
	if wt == nil {
		return
	}
	wt.once.Do(func() {
		wt.f.Close()
		w := wt.w
		w.mu.Lock()
		if w.watches[int32(wt.PID)] == wt {
			delete(w.watches, int32(wt.PID))
			w.setFilter()
		}
		w.mu.Unlock()
	})
}
