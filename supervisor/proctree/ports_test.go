package proctree

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestPortOwned(t *testing.T) {
	s := NewSampler("")
	// this process listens on one port
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	mine := l.Addr().(*net.TCPAddr).Port
	self := int32(os.Getpid())
	if ok, err := s.PortOwned(mine, []int32{self}); !ok || err != nil {
		t.Fatalf("own listener: %v, %v", ok, err)
	}
	// another process listens on another port (IPv6 too, where the machine has it)
	other := exec.Command("python3", "-c", `
import socket, sys
s = socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET)
s.bind(("::1" if socket.has_ipv6 else "127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True); sys.stdin.read()`)
	out, _ := other.StdoutPipe()
	pr, pw, _ := os.Pipe()
	other.Stdin = pr
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pw.Close(); other.Process.Kill(); other.Wait() }()
	buf := make([]byte, 32)
	n, _ := out.Read(buf)
	theirs, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		t.Fatalf("child port: %q", buf[:n])
	}
	child := int32(other.Process.Pid)
	cases := []struct {
		name string
		port int
		pids []int32
		want bool
	}{
		{"their port, their pid", theirs, []int32{child}, true},
		{"their port, my pid", theirs, []int32{self}, false},
		{"my port, their pid", mine, []int32{child}, false},
		{"my port, in a tree", mine, []int32{child, self}, true},
		{"nobody listens", freePort(t), []int32{self, child}, false},
		{"no pids", mine, nil, false},
	}
	if got, err := s.PortHolders(theirs); err != nil || len(got) != 1 || got[0] != child {
		t.Errorf("holders of the child's port = %v, %v; want [%d]", got, err, child)
	}
	if got, err := s.PortHolders(freePort(t)); err != nil || len(got) != 0 {
		t.Errorf("holders of a free port = %v, %v", got, err)
	}
	for _, c := range cases {
		if got, err := s.PortOwned(c.port, c.pids); got != c.want || err != nil {
			t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
