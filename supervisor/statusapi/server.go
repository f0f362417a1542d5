package statusapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/internal/netcap"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// SocketName is the status socket's file name in the agent's runtime directory.
const SocketName = "status.sock"

// StatusPath is the HTTP path of the Status document.
const StatusPath = "/v1/status"

// Group is the group given access to the socket when it exists; otherwise root's group.
const Group = "livinity"

// SocketMode is the socket's permission: owner and group may connect.
const SocketMode fs.FileMode = 0o660

// ShutdownTimeout bounds how long Run waits for requests in flight once its context ends.
const ShutdownTimeout = 5 * time.Second

// MaxConns caps the connections the status socket holds at once; at the cap a new one
// evicts the oldest that is not being served (internal/netcap).
const MaxConns = 128

// maxSocketPath is the longest path a unix socket address holds (sun_path less its NUL).
const maxSocketPath = 107

// ErrInUse is returned (wrapped, naming the path) by Run when something already answers
// on the socket path: another agent is running.
var ErrInUse = errors.New("status socket is in use")

// Server serves the state store's Status on a unix socket.
type Server struct {
	// Path is the socket's path, usually <runtime dir>/SocketName.
	Path string
	// Store is the state served.
	Store *state.Store
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Run listens on Path and serves GET /v1/status (and the control requests, POST
// /v1/services/{name}/{action}, taken from root and the agent's own user only) until ctx ends, then shuts down within
// ShutdownTimeout and removes the socket. A socket file nobody answers on (left by a
// killed agent) is replaced; a live one is refused with ErrInUse. The socket is mode 0660,
// group "livinity" if that group exists, else root's group.
func (s *Server) Run(ctx context.Context) error {
	if s.Store == nil {
		return errors.New("status server: no state store")
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := listen(s.Path, log)
	if err != nil {
		return err
	}
	ln = netcap.Listen(credListener{ln}, MaxConns)
	srv := &http.Server{
		Handler: netcap.Handler(s.handler(log)),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return peerContext(netcap.ConnContext(ctx, c), c)
		},
		MaxHeaderBytes:    16 << 10,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		ln.Close()
		return fmt.Errorf("serve status on %s: %w", s.Path, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx) // closes the listener, which removes the socket file
	<-served                 // Serve returns as soon as Shutdown starts
	if err != nil {
		srv.Close()
		return fmt.Errorf("stop status server on %s: %w", s.Path, err)
	}
	return nil
}

func (s *Server) handler(log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StatusPath, func(w http.ResponseWriter, r *http.Request) {
		body, err := json.Marshal(FromSnapshot(s.Store.Snapshot(), time.Now()))
		if err != nil { // cannot happen with these types; answer rather than panic
			log.Warn("encode status", "err", err)
			http.Error(w, "encode status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(append(body, '\n'))
	})
	mux.HandleFunc("POST "+ControlPath, s.control(log))
	return mux
}

// listen creates the socket at path with its mode and group, replacing a stale one.
func listen(path string, log *slog.Logger) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("status socket: path is empty; set the runtime directory (--runtime-dir)")
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("status socket %s: path is %d bytes, unix sockets allow %d; choose a shorter --runtime-dir",
			path, len(path), maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create runtime directory for the status socket: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on status socket: %w", err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set mode of status socket: %w", err)
	}
	gid, group := socketGroup()
	if err := os.Chown(path, -1, gid); err != nil {
		if os.Geteuid() == 0 {
			ln.Close()
			return nil, fmt.Errorf("give status socket to group %s: %w", group, err)
		}
		// Not root: the socket keeps the agent's own group, which is all a user-run agent
		// can give.
		log.Warn("status socket keeps the agent's group", "path", path, "wanted", group, "err", err)
	}
	return ln, nil
}

// socketGroup returns the gid and name of Group if it exists, else root's group.
func socketGroup() (int, string) {
	if g, err := user.LookupGroup(Group); err == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			return gid, Group
		}
	}
	return 0, "root"
}

// removeStale removes a socket file at path that nobody answers on. It refuses a socket
// something answers on, and anything that is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check status socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("status socket %s: a %s is in the way; remove it or choose another --runtime-dir",
			path, fileKind(fi.Mode()))
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w: something answers on %s (another livinity-agent running?); stop it first", ErrInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check status socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale status socket: %w", err)
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	default:
		return "file of mode " + m.Type().String()
	}
}
