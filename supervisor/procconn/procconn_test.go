package procconn

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func listen(t *testing.T) *Listener {
	t.Helper()
	l, err := Listen()
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EPROTONOSUPPORT) || os.Geteuid() != 0 {
			t.Skipf("no proc connector here: %v", err)
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return l
}

// shell runs a shell that runs each line written to it (a service that forks workers when
// told), and returns it with a writer for its commands and a reader of its output.
func shell(t *testing.T) (*exec.Cmd, io.Writer, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("sh")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its workers are killed with it
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, in, bufio.NewReader(out)
}

func readPID(t *testing.T, r *bufio.Reader) int32 {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return int32(p)
}

func waitTree(t *testing.T, l *Listener, pid int32, want func([]int32) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for deadline := start.Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
		if want(l.Tree(pid)) {
			return time.Since(start)
		}
	}
	t.Fatalf("tree of %d = %v, never as wanted", pid, l.Tree(pid))
	return 0
}

// TestTreeFollowsForksAndExits: workers a running process forks after the seed are in its
// tree as soon as they exist, with their own children; one that exits leaves it; the
// grandchild of an intermediate that exits is reparented out of the tree. None of it lists
// /proc again.
func TestTreeFollowsForksAndExits(t *testing.T) {
	l := listen(t)
	sh, in, out := shell(t)
	top := int32(sh.Process.Pid)
	waitTree(t, l, top, func(tr []int32) bool { return slices.Equal(tr, []int32{top}) })

	io.WriteString(in, "sleep 60 & echo $!\n")
	worker := readPID(t, out)
	d := waitTree(t, l, top, func(tr []int32) bool { return slices.Contains(tr, worker) })
	t.Logf("fork → in the tree: %s (after the child's pid was read from its parent)", d)

	// a worker that forks its own child: the grandchild is in the tree too
	io.WriteString(in, "sh -c 'sleep 60 & echo $!; wait' & echo $!\n")
	mid := readPID(t, out)
	grand := readPID(t, out)
	waitTree(t, l, top, func(tr []int32) bool { return slices.Contains(tr, mid) && slices.Contains(tr, grand) })
	if got := l.Tree(mid); !slices.Equal(got, []int32{mid, grand}) {
		t.Errorf("tree of the worker = %v, want [%d %d]", got, mid, grand)
	}

	// the first worker exits: out of the tree
	syscall.Kill(int(worker), syscall.SIGKILL)
	waitTree(t, l, top, func(tr []int32) bool { return !slices.Contains(tr, worker) })
	// the middle one exits: its child goes to init (or a subreaper), out of the tree
	syscall.Kill(int(mid), syscall.SIGKILL)
	waitTree(t, l, top, func(tr []int32) bool { return !slices.Contains(tr, mid) && !slices.Contains(tr, grand) })
	if l.Tree(grand) == nil {
		t.Errorf("the reparented grandchild %d is not known any more", grand)
	}
	syscall.Kill(int(grand), syscall.SIGKILL)

	st := l.Stats()
	t.Logf("stats: %+v", st)
	if st.Scans != 1 || st.Overruns != 0 {
		t.Errorf("/proc was listed %d times (overruns %d), want only the seed", st.Scans, st.Overruns)
	}
}

// TestSeedSeesRunningProcesses: processes started before Listen are in the table.
func TestSeedSeesRunningProcesses(t *testing.T) {
	sh, in, out := shell(t)
	io.WriteString(in, "sleep 60 & echo $!\n")
	kid := readPID(t, out)
	l := listen(t)
	top := int32(sh.Process.Pid)
	if got := l.Tree(top); !slices.Equal(got, []int32{top, kid}) {
		t.Errorf("tree = %v, want [%d %d]", got, top, kid)
	}
	if l.Tree(int32(os.Getpid())) == nil {
		t.Error("this process is not in the table")
	}
}

func TestParseIgnoresJunk(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 2, 3}, make([]byte, 16), make([]byte, 100)} {
		for _, e := range parse(b) {
			if e.what == procEventFork || e.what == procEventExit {
				t.Errorf("parse(%v) = %+v", b, e)
			}
		}
	}
}
