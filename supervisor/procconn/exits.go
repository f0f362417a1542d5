package procconn

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Exits is a proc connector socket of its own that the kernel filters (a classic BPF
// program attached to it) down to the deaths of the processes it is told to watch: any
// thread of one of them that ends on a signal (each thread of a killed process does: the
// caller takes the first), or its main thread ending with a non-zero status.
//
// It is the earliest word of a death there is. The kernel sends a thread's exit event as
// the thread ends, tens of microseconds after a SIGKILL; a pidfd turns readable only once
// the last thread has ended, after the process's memory is unmapped, which takes 1.5 ms
// for an idle Node.js process and 10 ms and more for one with a large heap. A signal
// always ends the whole thread group, so any thread dying of one is the process dying. A
// non-zero status is taken from the main thread only: another thread may end with one of
// its own (the exit system call) without the process ending. A clean exit (status 0) is
// left to the pidfd: it cannot be told from the main thread ending alone.
//
// The socket wakes its reader for nothing else: every other event on the host is dropped
// in the kernel.
type Exits struct {
	f    *os.File
	rc   syscall.RawConn
	wake int           // an eventfd: Close wakes ReadOn with it
	done chan struct{} // closed when ReadOn returns

	mu      sync.Mutex
	reading bool
	closed  bool
}

// Exit is one death reported by Exits.
type Exit struct {
	// PID is the process's (the thread group's) pid.
	PID int32
	// Code is the exit code of the thread reported, as wait(2) gives it: the signal in
	// the low 7 bits, else the status in the next 8.
	Code uint32
	// Mono is when the kernel sent it, on CLOCK_MONOTONIC (nanoseconds).
	Mono time.Duration
}

// MaxExitPIDs is how many processes one Exits watches (the filter's jumps are 8-bit).
const MaxExitPIDs = 200

// Offsets of the fields the filter reads, in a datagram of one exit event: the netlink
// header, the connector header, then struct proc_event (what, cpu, timestamp_ns) and its
// exit data (process_pid, process_tgid, exit_code).
const (
	offWhat  = nlmsgHdrLen + cnMsgLen
	offStamp = offWhat + 8
	offTID   = offWhat + evHdrLen
	offTGID  = offTID + 4
	offCode  = offTGID + 4
	exitLen  = offCode + 4
)

// ListenExits subscribes a socket to the kernel's exit events, watching nothing yet; the
// errors are Listen's.
func ListenExits() (*Exits, error) {
	fd, err := subscribe(0, procEventExit)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("proc connector: eventfd: %w", err)
	}
	e := &Exits{f: os.NewFile(uintptr(fd), "proc-connector-exits"), wake: wake, done: make(chan struct{})}
	if e.rc, err = e.f.SyscallConn(); err != nil {
		e.f.Close()
		unix.Close(wake)
		return nil, err
	}
	if err := e.Watch(nil); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Watch replaces the processes watched (at most MaxExitPIDs); calls must not overlap. Events the old filter let
// through may still be read after it: Exit.Mono tells them apart from a later process
// with the same pid.
func (e *Exits) Watch(pids []int32) error {
	if len(pids) > MaxExitPIDs {
		return fmt.Errorf("proc connector: %d processes to watch for exits, at most %d", len(pids), MaxExitPIDs)
	}
	raw, err := bpf.Assemble(exitFilter(pids))
	if err != nil {
		return fmt.Errorf("proc connector: exit filter: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(raw)), Filter: (*unix.SockFilter)(unsafe.Pointer(&raw[0]))}
	var serr error
	if err := e.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
	}); err != nil {
		return fmt.Errorf("proc connector: exit filter: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("proc connector: exit filter: %w", serr)
	}
	return nil
}

// be is v as a BPF absolute load sees it: loads read network (big-endian) order, the
// kernel writes the event in the host's.
func be(v uint32) uint32 {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return binary.BigEndian.Uint32(b[:])
}

// exitFilter is the socket filter: an exit event of one of pids, either of a thread that
// ended on a signal or of the main thread with a non-zero code; every other datagram is
// dropped.
func exitFilter(pids []int32) []bpf.Instruction {
	accept, drop := bpf.RetConstant{Val: 0xffff}, bpf.RetConstant{Val: 0}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offWhat, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: be(procEventExit), SkipFalse: 0}, // patched below
		bpf.LoadAbsolute{Off: offCode, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: be(0x7f), SkipTrue: 5}, // a signal: any thread
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: 0},          // status 0: patched below
		bpf.LoadAbsolute{Off: offTID, Size: 4},
		bpf.TAX{},
		bpf.LoadAbsolute{Off: offTGID, Size: 4},
		bpf.JumpIfX{Cond: bpf.JumpEqual, SkipFalse: 0}, // not the main thread: patched below
		bpf.LoadAbsolute{Off: offTGID, Size: 4},
	}
	for i, pid := range pids {
		// the i-th comparison jumps over the rest and the drop to the accept
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: be(uint32(pid)), SkipTrue: uint8(len(pids) - i)})
	}
	prog = append(prog, drop, accept)
	dropAt := len(prog) - 2
	skip := func(from int) uint8 { return uint8(dropAt - from - 1) }
	prog[1] = bpf.JumpIf{Cond: bpf.JumpEqual, Val: be(procEventExit), SkipFalse: skip(1)}
	prog[4] = bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: skip(4)}
	prog[8] = bpf.JumpIfX{Cond: bpf.JumpEqual, SkipFalse: skip(8)}
	return prog
}

// ReadOn waits for exits and calls fn with each, until Close (then it returns nil) or the
// socket fails. It waits on an OS thread of its own, pinned to cpu when cpu is 0 or more
// (and the process may run there), in poll(2) rather than on the Go runtime's poller: the
// kernel wakes the waiter on the CPU it runs on, and fn runs there at once. An exit event
// is sent from the CPU where the dying thread runs, which is awake; a waiter on another,
// idle, CPU first waits for that CPU to wake, which on a virtual machine takes up to
// milliseconds (the host schedules the virtual CPU). One Exits per CPU, each read on its
// own, so sees a death on the CPU where it happens (see pidwatch). Events the kernel
// dropped (a full buffer: unlikely, the filter passes so few) are not reported: Exits is
// never the only source.
func (e *Exits) ReadOn(cpu int, fn func(Exit)) error {
	e.mu.Lock()
	if e.closed || e.reading {
		e.mu.Unlock()
		return nil
	}
	e.reading = true
	e.mu.Unlock()
	defer close(e.done)
	runtime.LockOSThread() // never unlocked: the thread ends with the reader
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		unix.SchedSetaffinity(0, &set) // not allowed there (a cpuset): it waits anywhere
	}
	shortSlice()
	fd := -1
	e.rc.Control(func(f uintptr) { fd = int(f) }) // the file stays open until ReadOn returns
	buf := make([]byte, 4096)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(e.wake), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			return fmt.Errorf("proc connector: poll: %w", err)
		}
		if e.isClosed() {
			return nil
		}
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EAGAIN {
				break
			}
			if err == unix.EINTR || err == unix.ENOBUFS {
				continue
			}
			if err != nil {
				return fmt.Errorf("proc connector: receive: %w", err)
			}
			if ex, ok := parseExit(buf[:n]); ok {
				fn(ex)
			}
		}
	}
}

// parseExit decodes a datagram the filter let through.
func parseExit(b []byte) (Exit, bool) {
	if len(b) < exitLen {
		return Exit{}, false
	}
	le := binary.NativeEndian
	if le.Uint32(b[offWhat:]) != procEventExit {
		return Exit{}, false
	}
	return Exit{
		PID:  int32(le.Uint32(b[offTGID:])),
		Code: le.Uint32(b[offCode:]),
		Mono: time.Duration(le.Uint64(b[offStamp:])),
	}, true
}

// Close ends the subscription: a ReadOn under way returns nil, and the socket is closed
// once it has.
func (e *Exits) Close() error {
	e.mu.Lock()
	was, reading := e.closed, e.reading
	e.closed = true
	e.mu.Unlock()
	if was {
		return nil
	}
	if reading {
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(e.wake, one[:])
		<-e.done
	}
	unix.Close(e.wake)
	return e.f.Close()
}

// readerSlice is the reader thread's time slice: far below the default (0.7 to 3 ms), so
// that on Linux 6.12 and later (EEVDF's custom slices) its wake-up preempts whatever runs
// on the CPU instead of waiting for that task's slice to end. The reader runs for
// microseconds at a time; earlier kernels ignore it.
const readerSlice = 100 * time.Microsecond

// shortSlice asks for readerSlice on the calling thread, leaving its policy and nice value
// as they are; a kernel that refuses keeps the default.
func shortSlice() {
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil || a.Policy != unix.SCHED_NORMAL {
		return
	}
	a.Runtime = uint64(readerSlice)
	unix.SchedSetAttr(0, a, 0)
}

func (e *Exits) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}
