package procfs

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadStatOfSelfAndAChild(t *testing.T) {
	st, ok := ReadStat(os.Getpid())
	if !ok || st.PPID != os.Getppid() || st.StartTime == 0 || st.State == "Z" {
		t.Fatalf("self stat = %+v, %v", st, ok)
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	start := StartTime(pid)
	if !Alive(pid, start) || Alive(pid, start+1) {
		t.Fatal("Alive does not tell the child by its start time")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if Alive(pid, start) {
		t.Fatal("a reaped child is still alive")
	}
	if _, ok := ReadStat(pid); ok {
		t.Fatal("stat of a reaped child")
	}
}

// TestKillGroupEndsOrphanedChildren: a group whose leader is gone still has its child; the
// child is found by its group and killed.
func TestKillGroupEndsOrphanedChildren(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!; exit 0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	leader := cmd.Process.Pid
	child, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	start := StartTime(child)
	if !Alive(child, start) {
		t.Fatal("the child is not running")
	}
	if got := GroupMembers(leader, 0); len(got) != 1 || got[0] != child {
		t.Fatalf("members of group %d = %v, want [%d]", leader, got, child)
	}
	KillGroup(leader, 0)
	for i := 0; i < 100 && Alive(child, start); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if Alive(child, start) {
		t.Fatal("the orphaned child survived KillGroup")
	}
}

// TestStartedAt: a child started now has a wall-clock start time within a few ticks of
// now, and this process's is not in the future.
func TestStartedAt(t *testing.T) {
	before := time.Now()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	after := time.Now()
	at := StartedAt(StartTime(cmd.Process.Pid))
	if at.Before(before.Add(-30*time.Millisecond)) || at.After(after.Add(30*time.Millisecond)) {
		t.Errorf("child started at %s, want between %s and %s", at.Format(time.StampMicro),
			before.Format(time.StampMicro), after.Format(time.StampMicro))
	}
	if self := StartedAt(StartTime(os.Getpid())); self.After(time.Now()) || self.IsZero() {
		t.Errorf("this process started at %s", self)
	}
}
