// Package procconn keeps the host's parent/child table up to date from the kernel's process
// events (the proc connector: NETLINK_CONNECTOR, CN_IDX_PROC, PROC_EVENT_FORK and
// PROC_EVENT_EXIT), so that the process tree of a service is known at any time — a worker
// it forks is in it as soon as the fork returns — without listing /proc every period.
//
// The table is seeded by one scan of /proc after subscribing (events that race with the
// scan are queued on the socket and applied after it, in order). A scan is made again only
// when the kernel dropped events because the socket's buffer was full (ENOBUFS). Listen
// must run in the initial user, pid and network namespaces, and before Linux 6.6 it needs
// CAP_NET_ADMIN (the agent runs as root on the host; from 6.6 any user may listen);
// elsewhere it fails and the caller scans /proc instead.
//
// The events are read in batches (see Batch) and before every query, not one by one.
//
// On kernels from 6.6 the subscription asks the kernel to send only fork and exit events
// (a proc_input filter); older kernels send every event (exec, uid, comm, ...), which are
// read and dropped.
//
// A process that exits has its children reparented (to init or a subreaper) before the
// exit event is sent; their new parent is read from /proc then. For the rare process whose
// main thread exits before its other threads (the children are reparented only when the
// last one ends) the children are kept aside and their parent is read again at the next
// query.
package procconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livinity/livinity-agent/internal/tick"
)

// Linux connector and proc-event constants (include/uapi/linux/connector.h, cn_proc.h).
const (
	cnIdxProc = 0x1
	cnValProc = 0x1

	procCnMcastListen = 1

	procEventNone = 0x00000000
	procEventFork = 0x00000001
	procEventExit = 0x80000000

	nlmsgHdrLen = 16
	cnMsgLen    = 20
	// a proc_event: what, cpu, timestamp_ns, then the event data
	evHdrLen = 16
)

// Listener is the table kept by the proc connector. Its methods may be called from several
// goroutines while Run runs.
type Listener struct {
	fd   int // the socket (non-blocking), read under mu while not closed
	root string
	buf  []byte

	mu        sync.Mutex
	ppid      map[int32]int32
	kids      map[int32][]int32
	orphans   map[int32]int32 // children of an exited pid whose new parent is not known yet
	scans     int             // /proc listings: the seed and each resync
	events    uint64          // fork and exit events applied
	datagrams uint64
	closed    bool
	err       error // the socket failed: the table is stale
	overruns  int   // times the kernel dropped events (ENOBUFS)
	filtered  bool  // the kernel sends only fork and exit events
}

// Listen subscribes to the proc connector and seeds the table from one /proc scan. The
// error says why not (EPERM: not root, before Linux 6.6; EPROTONOSUPPORT: not in the
// initial network namespace, or no CONFIG_PROC_EVENTS; no acknowledgement: another user
// or pid namespace).
func Listen() (*Listener, error) {
	// room for bursts (a build forking thousands of processes)
	fd, err := subscribe(4<<20, procEventFork|procEventExit)
	if err != nil {
		return nil, err
	}
	l := &Listener{root: "/proc", ppid: map[int32]int32{}, kids: map[int32][]int32{}, orphans: map[int32]int32{}}
	l.filtered = kernelAtLeast(6, 6)
	if err := l.seed(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	l.fd, l.buf = fd, make([]byte, 64<<10)
	return l, nil
}

// subscribe opens a non-blocking proc connector socket (with a receive buffer of rcvbuf
// bytes if not 0: as root the limit does not apply; without it the default stays) and
// subscribes it to the events (procEvent* bits: kernels from 6.6 send only those, older
// ones everything).
func subscribe(rcvbuf int, events int64) (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return -1, fmt.Errorf("proc connector: socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if rcvbuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		return -1, fmt.Errorf("proc connector: bind: %w", err)
	}
	// subscribe to every event: the kernel acknowledges it (it ignores requests from other
	// user or pid namespaces, without a word)
	if err := send(fd, procCnMcastListen, -1); err != nil {
		return -1, err
	}
	if err := acked(fd, time.Second); err != nil {
		return -1, err
	}
	// then narrow it: kernels from 6.6 apply the filter (and drop its acknowledgement,
	// which is none of these events), older ones ignore a message of this size and keep
	// sending everything
	if err := send(fd, procCnMcastListen, events); err != nil {
		return -1, err
	}
	ok = true
	return fd, nil
}

// kernelAtLeast reports whether the running kernel's release is at least major.minor.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var ma, mi int
	if _, err := fmt.Sscanf(rel, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// send sends a PROC_CN_MCAST_* operation; events < 0 sends the operation alone (all
// events), else with a proc_input event filter.
func send(fd int, op uint32, events int64) error {
	data := 4
	if events >= 0 {
		data = 8
	}
	b := make([]byte, nlmsgHdrLen+cnMsgLen+data)
	le := binary.NativeEndian // netlink speaks the host's byte order
	le.PutUint32(b[0:], uint32(len(b)))
	le.PutUint16(b[4:], unix.NLMSG_DONE)
	le.PutUint32(b[12:], 0) // the kernel fills in the port id
	le.PutUint32(b[16:], cnIdxProc)
	le.PutUint32(b[20:], cnValProc)
	le.PutUint16(b[32:], uint16(data))
	le.PutUint32(b[36:], op)
	if events >= 0 {
		le.PutUint32(b[40:], uint32(events))
	}
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("proc connector: subscribe: %w", err)
	}
	return nil
}

// acked waits up to d for the kernel's acknowledgement of a subscription (a
// PROC_EVENT_NONE) and returns the error it carries (EPERM without CAP_NET_ADMIN); events
// already arriving are left for the table (the seed follows).
func acked(fd int, d time.Duration) error {
	buf := make([]byte, 4096)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		ms := int(time.Until(deadline) / time.Millisecond)
		if n, err := unix.Poll(p, max(ms, 1)); err != nil && err != unix.EINTR || n == 0 {
			continue
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		for _, ev := range parse(buf[:n]) {
			if ev.what == procEventNone {
				if ev.ackErr != 0 {
					return fmt.Errorf("proc connector: subscribe: %w", syscall.Errno(ev.ackErr))
				}
				return nil
			}
		}
	}
	return errors.New("proc connector: the kernel did not acknowledge the subscription (not in the initial user and pid namespaces?)")
}

type event struct {
	what                  uint32
	pid, tgid, parentTgid int32
	ackErr                uint32 // PROC_EVENT_NONE: the acknowledgement's error
}

// parse decodes the proc events of one datagram.
func parse(b []byte) []event {
	var out []event
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return nil
	}
	le := binary.NativeEndian
	for _, m := range msgs {
		d := m.Data
		if len(d) < cnMsgLen+evHdrLen {
			continue
		}
		if le.Uint32(d[0:]) != cnIdxProc || le.Uint32(d[4:]) != cnValProc {
			continue
		}
		ev := d[cnMsgLen:]
		e := event{what: le.Uint32(ev[0:])}
		data := ev[evHdrLen:]
		switch e.what {
		case procEventNone:
			if len(data) >= 4 {
				e.ackErr = le.Uint32(data[0:])
			}
		case procEventFork:
			if len(data) < 16 {
				continue
			}
			// parent_pid, parent_tgid, child_pid, child_tgid
			e.parentTgid = int32(le.Uint32(data[4:]))
			e.pid, e.tgid = int32(le.Uint32(data[8:])), int32(le.Uint32(data[12:]))
		case procEventExit:
			if len(data) < 8 {
				continue
			}
			e.pid, e.tgid = int32(le.Uint32(data[0:])), int32(le.Uint32(data[4:]))
		}
		out = append(out, e)
	}
	return out
}

// Batch is how often Run reads the events queued on the socket. They are not waited for
// one by one: with the socket on the Go runtime's poller, every datagram (a busy host
// forks and ends threads and processes many times a second) woke a thread for tens of
// microseconds; read in batches they cost a receive each and one timer a Batch. Tree reads
// what is queued first, so its answer is current whatever Batch. The socket's buffer
// (8 MiB as root) holds about ten thousand events: a Batch's worth on the busiest hosts;
// beyond that the kernel drops events and the table is read from /proc again.
const Batch = time.Second

// Run reads the kernel's events every Batch until ctx ends (nil) or the socket fails (the
// error: the table is then stale and the caller goes back to scanning).
func (l *Listener) Run(ctx context.Context) error {
	defer l.Close()
	ticker := tick.New(Batch) // with the other tickers of the second: one wake
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		l.mu.Lock()
		err := l.drain()
		l.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// drain applies every queued event. Called with mu held.
func (l *Listener) drain() error {
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return nil
	}
	for {
		n, _, err := unix.Recvfrom(l.fd, l.buf, unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN:
			return nil
		case err == unix.EINTR:
			continue
		case err == unix.ENOBUFS:
			// the kernel dropped events: the table cannot be trusted, read it again
			l.overruns++
			if err := l.seedLocked(); err != nil {
				l.err = err
				return err
			}
			continue
		case err != nil:
			l.err = fmt.Errorf("proc connector: receive: %w", err)
			return l.err
		}
		l.datagrams++
		l.apply(parse(l.buf[:n]))
	}
}

// apply updates the table with a batch of events. Called with mu held.
func (l *Listener) apply(evs []event) {
	for _, e := range evs {
		switch e.what {
		case procEventFork:
			if e.pid != e.tgid {
				continue // a new thread, not a process
			}
			l.events++
			l.remove(e.tgid) // a pid reused before its exit was applied (a resync's race)
			l.add(e.tgid, e.parentTgid)
		case procEventExit:
			if e.pid != e.tgid {
				continue // a thread
			}
			l.events++
			l.exit(e.tgid)
		}
	}
}

func (l *Listener) add(pid, ppid int32) {
	l.ppid[pid] = ppid
	l.kids[ppid] = append(l.kids[ppid], pid)
}

// remove forgets pid and its place among its parent's children.
func (l *Listener) remove(pid int32) {
	pp, ok := l.ppid[pid]
	if !ok {
		return
	}
	delete(l.ppid, pid)
	if k := l.kids[pp]; len(k) > 0 {
		if i := slices.Index(k, pid); i >= 0 {
			k[i] = k[len(k)-1]
			k = k[:len(k)-1]
		}
		if len(k) == 0 {
			delete(l.kids, pp)
		} else {
			l.kids[pp] = k
		}
	}
}

// exit forgets pid; its children have a new parent, read from /proc.
func (l *Listener) exit(pid int32) {
	l.remove(pid)
	kids := l.kids[pid]
	delete(l.kids, pid)
	for _, k := range kids {
		delete(l.ppid, k)
		pp, ok := readPPID(l.root, k)
		switch {
		case !ok:
			// gone too (its exit is among the next events)
		case pp == pid:
			l.orphans[k] = pid // reparented when the last thread of pid ends: read again later
		default:
			l.add(k, pp)
		}
	}
}

// settle reads again the parent of children whose parent exited while its other threads
// ran on. Called with mu held.
func (l *Listener) settle() {
	for k, dead := range l.orphans {
		pp, ok := readPPID(l.root, k)
		switch {
		case !ok:
			delete(l.orphans, k)
		case pp != dead:
			delete(l.orphans, k)
			if _, known := l.ppid[k]; !known {
				l.add(k, pp)
			}
		}
	}
}

// seed fills the table from one /proc scan.
func (l *Listener) seed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seedLocked()
}

func (l *Listener) seedLocked() error {
	d, err := os.Open(l.root)
	if err != nil {
		return fmt.Errorf("proc connector: list processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("proc connector: list processes: %w", err)
	}
	ppid := make(map[int32]int32, len(names))
	kids := make(map[int32][]int32, len(names)/2)
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		p64, err := strconv.ParseInt(name, 10, 32)
		if err != nil {
			continue
		}
		p := int32(p64)
		pp, ok := readPPID(l.root, p)
		if !ok {
			continue
		}
		ppid[p] = pp
		kids[pp] = append(kids[pp], p)
	}
	l.ppid, l.kids, l.orphans = ppid, kids, map[int32]int32{}
	l.scans++
	return nil
}

// Tree lists pid and its descendants now, pid first, then level by level, each level's
// children in ascending order (as proctree.Table.Tree); nil when pid is not a live process
// the table knows.
func (l *Listener) Tree(pid int32) []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drain() // what happened since Run last read; an error ends Run, which the caller sees
	if len(l.orphans) > 0 {
		l.settle()
	}
	if _, ok := l.ppid[pid]; !ok {
		return nil
	}
	tree := []int32{pid}
	for i := 0; i < len(tree); i++ {
		k := l.kids[tree[i]]
		if len(k) == 0 {
			continue
		}
		start := len(tree)
		tree = append(tree, k...)
		slices.Sort(tree[start:])
	}
	return tree
}

// Stats are the listener's counters.
type Stats struct {
	// Scans counts the /proc listings: the seed and one per overrun.
	Scans int
	// Events counts the fork and exit events of processes (not threads) applied.
	Events uint64
	// Overruns counts the times the kernel dropped events for a full socket buffer.
	Overruns int
	// Filtered: the kernel sends only fork and exit events (6.6 and later).
	Filtered bool
	// Processes is the number of processes in the table.
	Processes int
	// Datagrams counts the messages read (threads' forks and exits, and on kernels before
	// 6.6 every other kind of event, included).
	Datagrams uint64
}

// Stats returns the counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Scans: l.scans, Events: l.events, Overruns: l.overruns, Filtered: l.filtered, Processes: len(l.ppid), Datagrams: l.datagrams}
}

// Close ends the subscription; Run returns.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return unix.Close(l.fd)
}

// readPPID reads the parent of pid from <root>/<pid>/stat; ok is false when it is gone or a
// zombie.
func readPPID(root string, pid int32) (int32, bool) {
	var buf [512]byte
	fd, err := unix.Open(root+"/"+strconv.Itoa(int(pid))+"/stat", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	n, err := unix.Read(fd, buf[:])
	unix.Close(fd)
	if err != nil || n <= 0 {
		return 0, false
	}
	b := buf[:n]
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+4 >= len(b) {
		return 0, false
	}
	// ") S 1234 ..."
	rest := b[i+2:]
	if rest[0] == 'Z' || rest[0] == 'X' {
		return 0, false
	}
	rest = rest[2:]
	var pp int64
	j := 0
	for ; j < len(rest) && rest[j] >= '0' && rest[j] <= '9'; j++ {
		pp = pp*10 + int64(rest[j]-'0')
	}
	if j == 0 || pp > 1<<31-1 {
		return 0, false
	}
	return int32(pp), true
}
