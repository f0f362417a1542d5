package procconn

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// exitDatagram is what the kernel sends for one exit event.
func exitDatagram(what uint32, tid, tgid int32, code uint32) []byte {
	b := make([]byte, exitLen+12)
	le := binary.NativeEndian
	le.PutUint32(b[0:], uint32(len(b)))
	le.PutUint32(b[nlmsgHdrLen:], cnIdxProc)
	le.PutUint32(b[nlmsgHdrLen+4:], cnValProc)
	le.PutUint32(b[offWhat:], what)
	le.PutUint64(b[offStamp:], 123456789)
	le.PutUint32(b[offTID:], uint32(tid))
	le.PutUint32(b[offTGID:], uint32(tgid))
	le.PutUint32(b[offCode:], code)
	return b
}

// TestExitFilter runs the socket filter in x/net/bpf's virtual machine over the events it
// must pass and those it must drop.
func TestExitFilter(t *testing.T) {
	watched := []int32{100, 2000, 300000}
	vm, err := bpf.NewVM(exitFilter(watched))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		what      uint32
		tid, tgid int32
		code      uint32
		pass      bool
	}{
		{"a thread of a watched process killed", procEventExit, 2005, 2000, 9, true},
		{"the main thread killed", procEventExit, 300000, 300000, 9 | 0x80, true},
		{"the main thread with status 1", procEventExit, 100, 100, 1 << 8, true},
		{"the main thread with status 0", procEventExit, 100, 100, 0, false},
		{"another thread with status 3 (exit(2) of one thread)", procEventExit, 101, 100, 3 << 8, false},
		{"another thread ending cleanly", procEventExit, 101, 100, 0, false},
		{"an unwatched process killed", procEventExit, 555, 555, 9, false},
		{"a fork of a watched process", procEventFork, 100, 100, 9, false},
	}
	for _, c := range cases {
		n, err := vm.Run(exitDatagram(c.what, c.tid, c.tgid, c.code))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (n > 0) != c.pass {
			t.Errorf("%s: filter returned %d, want pass=%v", c.name, n, c.pass)
		}
	}
	vm, err = bpf.NewVM(exitFilter(nil))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := vm.Run(exitDatagram(procEventExit, 100, 100, 9)); n != 0 {
		t.Errorf("a filter watching nothing passed an exit")
	}
	if _, err := bpf.Assemble(exitFilter(make([]int32, MaxExitPIDs))); err != nil {
		t.Errorf("a filter of %d pids: %v", MaxExitPIDs, err)
	}
}

func listenExits(t *testing.T) (*Exits, <-chan Exit) {
	t.Helper()
	e, err := ListenExits()
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EPROTONOSUPPORT) || os.Geteuid() != 0 {
			t.Skipf("no proc connector here: %v", err)
		}
		t.Fatal(err)
	}
	ch := make(chan Exit, 16)
	done := make(chan error, 1)
	go func() { done <- e.ReadOn(0, func(x Exit) { ch <- x }) }()
	t.Cleanup(func() {
		e.Close()
		if err := <-done; err != nil {
			t.Errorf("ReadOn: %v", err)
		}
	})
	return e, ch
}

// start starts a program; closing the returned writer ends its standard input.
func start(t *testing.T, name string, args ...string) (*exec.Cmd, io.Closer) {
	t.Helper()
	cmd := exec.Command(name, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, in
}

// waitThreads waits until pid has n threads.
func waitThreads(t *testing.T, pid, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if len(tasks) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d has %d threads, want %d", pid, len(tasks), n)
		}
	}
}

func expectNone(t *testing.T, ch <-chan Exit, what string) {
	t.Helper()
	select {
	case x := <-ch:
		t.Fatalf("%s: reported %+v", what, x)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestExitsOfWatchedProcesses: the kernel reports a killed multi-threaded process (any of
// its threads) and a main thread's non-zero status, and nothing for a thread that ends
// alone, a clean exit or a process not watched.
func TestExitsOfWatchedProcesses(t *testing.T) {
	e, ch := listenExits(t)
	// a process whose second thread ends when its standard input does, while the main
	// thread waits to be killed
	py, endThread := start(t, "python3", "-c", "import sys,threading,time\nthreading.Thread(target=sys.stdin.read).start()\ntime.sleep(60)")
	other, _ := start(t, "sleep", "60")
	clean, endClean := start(t, "sh", "-c", "read x; exit 0")
	failing, endFailing := start(t, "sh", "-c", "read x; exit 3")
	pids := []int32{int32(py.Process.Pid), int32(clean.Process.Pid), int32(failing.Process.Pid)}
	if err := e.Watch(pids); err != nil {
		t.Fatal(err)
	}
	waitThreads(t, py.Process.Pid, 2)
	endThread.Close()
	waitThreads(t, py.Process.Pid, 1)
	expectNone(t, ch, "a thread that ended alone")

	other.Process.Kill()
	expectNone(t, ch, "an unwatched process killed")

	endClean.Close()
	clean.Wait()
	expectNone(t, ch, "a clean exit")

	t0 := time.Now()
	py.Process.Kill()
	select {
	case x := <-ch:
		if x.PID != int32(py.Process.Pid) || x.Code&0x7f != uint32(syscall.SIGKILL) || x.Mono <= 0 {
			t.Errorf("killed python: got %+v, want pid %d killed by SIGKILL", x, py.Process.Pid)
		}
		t.Logf("kill -> exit event read: %v", time.Since(t0))
	case <-time.After(5 * time.Second):
		t.Fatal("the killed process was not reported")
	}

	endFailing.Close()
	failing.Wait()
	select {
	case x := <-ch:
		if x.PID != int32(failing.Process.Pid) || x.Code != 3<<8 {
			t.Errorf("exit 3: got %+v", x)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a main thread's status 3 was not reported")
	}
}

// Close ends the subscription with or without a reader, and more than once.
func TestExitsClose(t *testing.T) {
	e, _ := listenExits(t) // Close with a reader: in the cleanup, which waits for ReadOn
	e2, err := ListenExits()
	if err != nil {
		t.Fatal(err) // listenExits skipped if the connector is not there
	}
	if err := e2.Close(); err != nil {
		t.Errorf("Close without a reader: %v", err)
	}
	// the numbers of its closed descriptors go to new files: a ReadOn that waited on them
	// would wait for good
	for range 2 {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
	}
	read := make(chan error, 1)
	go func() { read <- e2.ReadOn(-1, func(Exit) {}) }()
	select {
	case err := <-read:
		if err != nil {
			t.Errorf("ReadOn after Close: %v, want nil at once", err)
		}
	case <-time.After(2 * time.Second):
		t.Error("ReadOn after Close waits (on descriptors the subscription no longer owns)")
	}
	e2.Close()
	if err := e.Watch([]int32{1}); err != nil {
		t.Errorf("Watch with a reader waiting: %v", err)
	}
}
