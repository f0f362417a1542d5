package proctree

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// tcpListen is the state of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// PortOwned reports whether one of pids holds a socket listening on TCP port (IPv4 or
// IPv6). A health check that gets an answer on a service's port proves little if another
// process holds that port (an old instance, another install): this tells them apart.
func (s *Sampler) PortOwned(port int, pids []int32) (bool, error) {
	inodes, err := s.listenerInodes(port)
	if err != nil || len(inodes) == 0 {
		return false, err
	}
	for _, pid := range pids {
		if s.holds(pid, inodes) {
			return true, nil
		}
	}
	return false, nil
}

// holds reports whether pid has one of the socket inodes open.
func (s *Sampler) holds(pid int32, inodes map[string]bool) bool {
	dir := filepath.Join(s.root, strconv.Itoa(int(pid)), "fd")
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false // gone, or not ours to read
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil || !strings.HasPrefix(target, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] {
			return true
		}
	}
	return false
}

// listenerInodes returns the inodes of the sockets listening on TCP port (IPv4 and IPv6).
func (s *Sampler) listenerInodes(port int) (map[string]bool, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		if err := s.listeners(filepath.Join(s.root, f), port, inodes); err != nil {
			return nil, err
		}
	}
	return inodes, nil
}

// PortHolders lists every process holding a socket that listens on TCP port, from one
// pass over all processes' file descriptors (meant for one-off checks, not for loops).
func (s *Sampler) PortHolders(port int) ([]int32, error) {
	inodes, err := s.listenerInodes(port)
	if err != nil || len(inodes) == 0 {
		return nil, err
	}
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.root, err)
	}
	var out []int32
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s.holds(int32(pid), inodes) {
			out = append(out, int32(pid))
		}
	}
	return out, nil
}

// listeners adds the inodes of the sockets listening on port in a /proc/net/tcp{,6} file.
func (s *Sampler) listeners(path string, port int, inodes map[string]bool) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil // no IPv6
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	hexPort := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != tcpListen || !strings.HasSuffix(f[1], hexPort) {
			continue
		}
		inodes[f[9]] = true
	}
	return sc.Err()
}

// OwnsPort reports whether the process tree rooted at pid holds the socket listening on
// TCP port: the one ownership check of onboarding's health verification and of the
// supervisor's probes. A pid that is gone owns nothing.
func (s *Sampler) OwnsPort(pid int32, port int) (bool, []int32, error) {
	if pid <= 0 {
		return false, nil, nil
	}
	u, err := s.Memory(pid)
	if err != nil {
		return false, nil, nil
	}
	ok, err := s.PortOwned(port, u.PIDs)
	return ok, u.PIDs, err
}
