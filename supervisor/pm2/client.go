// Package pm2 talks to a PM2 daemon without node or the pm2 library: a native client for its
// RPC socket (Client), a subscriber for its event bus (Subscribe), a reconnecting Watcher
// that turns both into one stream of updates, and a thin wrapper around the pm2 command
// (CLI) for what the sockets cannot do (start an ecosystem file, save, resurrect, kill).
// Fallback uses the native client and switches to the CLI if the socket does not speak the
// protocol. The wire format (amp frames carrying amp-message arguments) is described in
// amp.go; the RPC conventions in Client.call.
//
// Nothing in this package starts a PM2 daemon, except the CLI methods that run pm2
// commands which do so by design (pm2 starts one on demand).
package pm2

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultCallTimeout bounds a call whose context has no deadline.
const DefaultCallTimeout = 10 * time.Second

// ErrDaemonNotRunning is returned (wrapped, with the socket path) when no PM2 daemon listens
// on the socket: the socket file is missing or refuses connections (a killed daemon leaves
// it behind).
var ErrDaemonNotRunning = errors.New("pm2 daemon is not running")

// ErrClosed is returned by calls on a Client after Close, or after its connection was lost.
var ErrClosed = errors.New("pm2 client is closed")

// ErrNoReply is returned (wrapped, with the context's error) when a call got no reply
// before its deadline: the daemon is hung or overloaded, or what listens is not PM2.
var ErrNoReply = errors.New("no reply")

// RPCSocket returns the path of the daemon's RPC socket under a PM2 home.
func RPCSocket(home string) string { return filepath.Join(home, "rpc.sock") }

// PubSocket returns the path of the daemon's event-bus socket under a PM2 home.
func PubSocket(home string) string { return filepath.Join(home, "pub.sock") }

// Client is a connection to a PM2 daemon's RPC socket. It is safe for concurrent use:
// calls are matched to replies by ID, so they may complete in any order.
type Client struct {
	conn net.Conn
	path string

	writeMu sync.Mutex // one frame at a time on conn

	mu      sync.Mutex
	pending map[string]chan rpcReply
	next    uint64
	err     error // why the connection ended; set once

	done      chan struct{} // closed when the reader goroutine has stopped
	closeOnce sync.Once
}

type rpcReply struct {
	body []byte // JSON of the reply's first argument
	err  error
}

// Dial connects to the daemon's RPC socket under home ($home/rpc.sock). It never starts a
// daemon: when none runs it returns an error wrapping ErrDaemonNotRunning.
func Dial(ctx context.Context, home string) (*Client, error) {
	conn, path, err := dialUnix(ctx, RPCSocket(home))
	if err != nil {
		return nil, err
	}
	c := &Client{
		conn:    conn,
		path:    path,
		pending: make(map[string]chan rpcReply),
		done:    make(chan struct{}),
	}
	go c.readLoop()
	return c, nil
}

// dialUnix connects to a PM2 unix socket, mapping "nobody listens" to ErrDaemonNotRunning.
func dialUnix(ctx context.Context, path string) (net.Conn, string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, path, fmt.Errorf("connect to %s: %w: %w", path, ErrDaemonNotRunning, err)
		}
		return nil, path, fmt.Errorf("connect to %s: %w", path, err)
	}
	return conn, path, nil
}

// readLoop owns the read side of the connection until it fails or Close closes it.
func (c *Client) readLoop() {
	defer close(c.done)
	dec := newFrameDecoder(c.conn, MaxReplyFrame)
	for {
		args, err := dec.next()
		var tooLarge error
		if errors.Is(err, ErrFrameTooLarge) && len(args) == 2 && args[1] != nil {
			// the body was dropped; its id fails that one call
			tooLarge, err = err, nil
			args[0] = []byte("j:null")
		}
		if err != nil {
			c.fail(fmt.Errorf("read from %s: %w", c.path, err))
			return
		}
		id, body, err := splitReply(args)
		if err != nil {
			c.fail(fmt.Errorf("read from %s: %w", c.path, err))
			return
		}
		c.mu.Lock()
		ch, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ok {
			ch <- rpcReply{body: body, err: tooLarge} // buffered: never blocks
		}
		// A reply whose caller gave up is dropped.
	}
}

// splitReply checks a reply frame [j:reply, s:id] and returns its id and JSON body.
func splitReply(args [][]byte) (string, []byte, error) {
	if len(args) != 2 {
		return "", nil, fmt.Errorf("%w: rpc reply with %d arguments, want 2", ErrProtocol, len(args))
	}
	id, ok := argString(args[1])
	if !ok {
		return "", nil, fmt.Errorf("%w: rpc reply id is not a string argument", ErrProtocol)
	}
	body, ok := argJSON(args[0])
	if !ok {
		return "", nil, fmt.Errorf("%w: rpc reply body is not a json argument", ErrProtocol)
	}
	return id, body, nil
}

// fail records why the connection ended and fails every pending call with it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	err = c.err
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, ch := range pending {
		ch <- rpcReply{err: err}
	}
	c.conn.Close()
}

// Close closes the connection and fails calls in flight with ErrClosed. It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.fail(fmt.Errorf("call on %s: %w", c.path, ErrClosed))
	})
	<-c.done
	return nil
}

// Done is closed when the connection has ended (Close, or the daemon went away).
func (c *Client) Done() <-chan struct{} { return c.done }

// peerPID is the pid of the process that listens on the socket (SO_PEERCRED), 0 if unknown.
func (c *Client) peerPID() int {
	uc, ok := c.conn.(*net.UnixConn)
	if !ok {
		return 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	raw.Control(func(fd uintptr) {
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// DaemonPID is the pid recorded in $home/pm2.pid, 0 if there is none.
func DaemonPID(home string) int {
	b, err := os.ReadFile(filepath.Join(home, "pm2.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// call sends method with exactly the given arguments and decodes the reply's results into
// out (nil to ignore them). PM2 appends its callback to the arguments, so a wrong count
// shifts the callback and can crash the daemon: every method here passes a fixed count.
func (c *Client) call(ctx context.Context, method string, args []any, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	body, err := jsonArg(struct {
		Type   string `json:"type"`
		Method string `json:"method"`
		Args   []any  `json:"args"`
	}{"call", method, args})
	if err != nil {
		return fmt.Errorf("pm2 %s: %w", method, err)
	}

	ch := make(chan rpcReply, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("pm2 %s: %w", method, err)
	}
	c.next++
	id := strconv.Itoa(os.Getpid()) + ":" + strconv.FormatUint(c.next, 10)
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, id)
		}
		c.mu.Unlock()
	}

	frame, err := appendFrame(nil, body, stringArg(id))
	if err != nil {
		forget()
		return fmt.Errorf("pm2 %s: %w", method, err)
	}
	if err := c.write(ctx, frame); err != nil {
		forget()
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			// The peer closed the connection. The reader is about to stop too, and its
			// reason (EOF, or bytes that are not the protocol) says more than EPIPE.
			select {
			case <-c.done:
			case <-ctx.Done():
			}
		}
		c.fail(fmt.Errorf("write to %s: %w", c.path, err))
		c.mu.Lock()
		reason := c.err
		c.mu.Unlock()
		return fmt.Errorf("pm2 %s: %w", method, reason)
	}

	select {
	case r := <-ch:
		if r.err != nil {
			if !errors.Is(r.err, ErrFrameTooLarge) {
				// the connection ended: let Done say so before the caller looks
				select {
				case <-c.done:
				case <-ctx.Done():
				}
			}
			return fmt.Errorf("pm2 %s: reply from %s: %w", method, c.path, r.err)
		}
		return decodeResult(method, r.body, out)
	case <-ctx.Done():
		forget()
		return fmt.Errorf("pm2 %s: %w from %s: %w", method, ErrNoReply, c.path, ctx.Err())
	}
}

// write sends one frame, bounded by ctx's deadline.
func (c *Client) write(ctx context.Context, frame []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	dl, _ := ctx.Deadline()
	if err := c.conn.SetWriteDeadline(dl); err != nil {
		return err
	}
	_, err := c.conn.Write(frame)
	return err
}

// decodeResult interprets a reply body: {"args":[results...]} or {"error":...}.
func decodeResult(method string, body []byte, out any) error {
	var r struct {
		Error json.RawMessage   `json:"error"`
		Args  []json.RawMessage `json:"args"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("pm2 %s: %w: decode reply: %w", method, ErrProtocol, err)
	}
	if len(r.Error) > 0 && string(r.Error) != "null" {
		return &RemoteError{Method: method, Message: remoteMessage(r.Error)}
	}
	if r.Args == nil {
		return fmt.Errorf("pm2 %s: %w: reply has neither args nor error", method, ErrProtocol)
	}
	if out == nil {
		return nil
	}
	if len(r.Args) == 0 {
		return fmt.Errorf("pm2 %s: %w: reply has no result", method, ErrProtocol)
	}
	if err := json.Unmarshal(r.Args[0], out); err != nil {
		return fmt.Errorf("pm2 %s: %w: decode result: %w", method, ErrProtocol, err)
	}
	return nil
}

// remoteMessage extracts a daemon error's text. A non-string error is an arbitrary object
// (it could hold an app's environment), so only its message field is kept.
func remoteMessage(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Message string `json:"message"`
		Msg     string `json:"msg"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		if obj.Message != "" {
			return obj.Message
		}
		if obj.Msg != "" {
			return obj.Msg
		}
	}
	return "unreadable error value"
}

// RemoteError is an error the daemon returned for a call, e.g. "process already online".
type RemoteError struct {
	Method  string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("pm2 %s: daemon replied: %s", e.Method, e.Message)
}

// Ping checks that the daemon answers.
func (c *Client) Ping(ctx context.Context) error {
	var r struct {
		Msg string `json:"msg"`
	}
	if err := c.call(ctx, "ping", []any{struct{}{}}, &r); err != nil {
		return err
	}
	if r.Msg != "pong" {
		return fmt.Errorf("pm2 ping: %w: reply %q, want \"pong\"", ErrProtocol, r.Msg)
	}
	return nil
}

// Version returns the daemon's PM2 version, e.g. "7.0.4".
func (c *Client) Version(ctx context.Context) (string, error) {
	var v string
	err := c.call(ctx, "getVersion", []any{struct{}{}}, &v)
	return v, err
}

// List returns every app the daemon manages (getMonitorData).
func (c *Client) List(ctx context.Context) ([]Process, error) {
	var raw json.RawMessage
	if err := c.call(ctx, "getMonitorData", []any{struct{}{}}, &raw); err != nil {
		return nil, err
	}
	procs, err := decodeProcesses(raw)
	if err != nil {
		return nil, fmt.Errorf("pm2 getMonitorData: %w", err)
	}
	return procs, nil
}

// Restart restarts the app with pm_id id, or starts it if it is not online. Its
// environment is left as it is. Bus subscribers see exit/online; call Notify(id, "restart")
// as well to announce it the way the pm2 command does (RestartName does both).
func (c *Client) Restart(ctx context.Context, id int) error {
	return c.call(ctx, "restartProcessId", []any{struct {
		ID int `json:"id"`
	}{id}}, nil)
}

// Stop stops the app with pm_id id; PM2 will not restart it until Start or Restart.
func (c *Client) Stop(ctx context.Context, id int) error {
	return c.call(ctx, "stopProcessId", []any{id}, nil)
}

// Start starts the stopped app with pm_id id. The daemon refuses an app that is online
// (a *RemoteError "process already online").
func (c *Client) Start(ctx context.Context, id int) error {
	return c.call(ctx, "startProcessId", []any{id}, nil)
}

// Delete stops the app with pm_id id and removes it from the daemon's list.
func (c *Client) Delete(ctx context.Context, id int) error {
	return c.call(ctx, "deleteProcessId", []any{id}, nil)
}

// Notify emits a manual process:event named action (e.g. "restart", "stop") for the app
// with pm_id id on the bus, as the pm2 command does after acting on an app, so that bus
// subscribers and pm2's own logs see actions taken through this client.
func (c *Client) Notify(ctx context.Context, id int, action string) error {
	return c.call(ctx, "notifyByProcessId", []any{struct {
		ID         int    `json:"id"`
		ActionName string `json:"action_name"`
		Manually   bool   `json:"manually"`
	}{id, action, true}}, nil)
}

// RestartName restarts every app called name (resolved to pm_ids through List) and
// announces each restart on the bus, like `pm2 restart NAME`.
func (c *Client) RestartName(ctx context.Context, name string) error {
	procs, err := c.List(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, p := range procs {
		if p.Name != name {
			continue
		}
		found = true
		if err := c.Restart(ctx, p.ID); err != nil {
			return fmt.Errorf("restart %q: %w", name, err)
		}
		if err := c.Notify(ctx, p.ID, "restart"); err != nil {
			return fmt.Errorf("restart %q: %w", name, err)
		}
	}
	if !found {
		return fmt.Errorf("restart %q: %w", name, ErrNoSuchApp)
	}
	return nil
}

// ErrNoSuchApp is returned when no app has the requested name.
var ErrNoSuchApp = errors.New("no pm2 app with that name")
