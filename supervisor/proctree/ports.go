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
	inodes := map[string]bool{}
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		if err := s.listeners(filepath.Join(s.root, f), port, inodes); err != nil {
			return false, err
		}
	}
	if len(inodes) == 0 {
		return false, nil
	}
	for _, pid := range pids {
		dir := filepath.Join(s.root, strconv.Itoa(int(pid)), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to read
		}
		for _, fd := range fds {
			target, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil || !strings.HasPrefix(target, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] {
				return true, nil
			}
		}
	}
	return false, nil
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
