package proctree

import (
	"bufio"
	"context"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// follow runs s.Follow until the test ends; it skips the test where the proc connector is
// not available (not root, a container's namespaces).
func follow(t *testing.T, s *Sampler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Follow(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(5 * time.Second); !s.Following(); time.Sleep(time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EPROTONOSUPPORT) {
				t.Skipf("no proc connector: %v", err)
			}
			t.Fatalf("Follow: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Follow did not start within 5 s")
		}
	}
}

// leaker starts a "service" that forks a worker after a delay, and returns its pid and a
// channel that gets the worker's pid and when it was read.
func leaker(t *testing.T, after time.Duration) (int32, <-chan forked) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "sleep "+strconv.FormatFloat(after.Seconds(), 'f', 3, 64)+"; sleep 60 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	ch := make(chan forked, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		at := time.Now()
		if p, perr := strconv.Atoi(strings.TrimSpace(line)); err == nil && perr == nil {
			ch <- forked{pid: int32(p), at: at}
		}
	}()
	return int32(cmd.Process.Pid), ch
}

type forked struct {
	pid int32
	at  time.Time
}

// memoryLoop runs what the supervisor's memory sampling does once per period — one Scan,
// then the tree of the service — for d, and returns when the worker was first in the
// tree (zero if never) and how many /proc listings the Sampler made meanwhile.
func memoryLoop(t *testing.T, s *Sampler, service int32, worker <-chan forked, period, d time.Duration) (forked, time.Time, int, time.Duration) {
	t.Helper()
	var w forked
	var seen time.Time
	scans0, start := s.Scans(), time.Now()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for time.Since(start) < d {
		<-tick.C
		if w.pid == 0 {
			select {
			case w = <-worker:
			default:
			}
		}
		table, err := s.Scan()
		if err != nil {
			t.Fatal(err)
		}
		tree := table.Tree(service)
		if tree == nil {
			t.Fatalf("the service %d is not in the table", service)
		}
		if w.pid != 0 && seen.IsZero() && slices.Contains(tree, w.pid) {
			seen = time.Now()
		}
	}
	return w, seen, s.Scans() - scans0, time.Since(start)
}

// TestFollowSeesALeakingWorkerWithoutScanning: a service forks a worker after it started.
// With Follow the worker is in the service's tree by the next period of the memory loop,
// and the loop lists /proc no more (0 scans a second, against 1 a period without Follow,
// measured beside it).
func TestFollowSeesALeakingWorkerWithoutScanning(t *testing.T) {
	const period = 250 * time.Millisecond
	s := NewSampler("")
	follow(t, s)
	svc, worker := leaker(t, 600*time.Millisecond)
	w, seen, scans, took := memoryLoop(t, s, svc, worker, period, 2*time.Second)
	if w.pid == 0 {
		t.Fatal("the service never forked its worker")
	}
	if seen.IsZero() || seen.Sub(w.at) > period+50*time.Millisecond {
		t.Errorf("worker %d (forked by %s) in the tree at %v: not within one period (%s)", w.pid,
			w.at.Format(time.StampMilli), seen.Format(time.StampMilli), period)
	}
	rate := float64(scans) / took.Seconds()
	t.Logf("with Follow: worker in the tree %s after its pid was printed; %d /proc scans in %s (%.2f/s)",
		seen.Sub(w.at).Round(time.Millisecond), scans, took.Round(time.Millisecond), rate)
	if scans != 0 {
		t.Errorf("the memory loop listed /proc %d times in %s while following process events, want 0", scans, took)
	}

	// the reference: the same loop scanning
	plain := NewSampler("")
	svc, worker = leaker(t, 600*time.Millisecond)
	_, _, pscans, ptook := memoryLoop(t, plain, svc, worker, period, 2*time.Second)
	t.Logf("without Follow: %d /proc scans in %s (%.2f/s)", pscans, ptook.Round(time.Millisecond), float64(pscans)/ptook.Seconds())
	if pscans == 0 {
		t.Error("the scanning loop counted no scans: the count is broken")
	}
}
