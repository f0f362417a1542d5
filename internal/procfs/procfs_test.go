package procfs

import (
	"os"
	"os/exec"
	"testing"
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
