package pm2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Controller is what a supervisor needs from PM2. *Client, *CLI and *Fallback implement it.
type Controller interface {
	// List returns every app the daemon manages.
	List(ctx context.Context) ([]Process, error)
	// Restart restarts (or starts) the app with this pm_id.
	Restart(ctx context.Context, id int) error
	// RestartName restarts every app with this name.
	RestartName(ctx context.Context, name string) error
}

var (
	_ Controller = (*Client)(nil)
	_ Controller = (*CLI)(nil)
	_ Controller = (*Fallback)(nil)
)

// probeTimeout bounds the ping that checks a fresh connection speaks the protocol.
const probeTimeout = 3 * time.Second

// Fallback is a Controller that uses the native Client and switches to the CLI, for good,
// when the RPC socket does not speak the protocol: bytes that are not amp frames, an
// unknown method, or no answer to a ping on a fresh connection within a few seconds from
// something that is not the daemon (the socket's peer is not the pid in pm2.pid: a daemon
// that does not answer is hung, and its error is returned). The
// switch is logged once. A reply that cannot be decoded on a connection that still works
// (a well-framed reply of an unexpected shape, a reply over the size limit) is not a
// broken socket, let alone a dead daemon: that one call is made again with the CLI, the
// first such reply is logged, and the next call uses the socket again. While the daemon is
// simply not running it returns ErrDaemonNotRunning and does not fall back, since pm2
// commands would start a daemon. Once switched, calls go through pm2 commands, which
// start a daemon if none runs.
type Fallback struct {
	home string
	cli  *CLI
	log  *slog.Logger

	mu       sync.Mutex
	client   *Client // nil until dialled, and after its connection ended
	useCLI   bool
	badReply bool // a reply that could not be decoded was logged
}

// NewFallback returns a Fallback for the daemon under home, falling back to cli (whose
// Home should be the same). A nil logger discards the log.
func NewFallback(home string, cli *CLI, logger *slog.Logger) *Fallback {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Fallback{home: home, cli: cli, log: logger}
}

// List returns every app the daemon manages.
func (f *Fallback) List(ctx context.Context) ([]Process, error) {
	var procs []Process
	err := f.do(ctx, func(c Controller) (err error) {
		procs, err = c.List(ctx)
		return err
	})
	return procs, err
}

// Restart restarts (or starts) the app with pm_id id.
func (f *Fallback) Restart(ctx context.Context, id int) error {
	return f.do(ctx, func(c Controller) error { return c.Restart(ctx, id) })
}

// RestartName restarts every app called name.
func (f *Fallback) RestartName(ctx context.Context, name string) error {
	return f.do(ctx, func(c Controller) error { return c.RestartName(ctx, name) })
}

// Close closes the native connection, if any. It is idempotent.
func (f *Fallback) Close() error {
	f.mu.Lock()
	c := f.client
	f.client = nil
	f.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}

func (f *Fallback) do(ctx context.Context, op func(Controller) error) error {
	c, err := f.native(ctx)
	if err != nil {
		return err
	}
	if c == nil {
		return op(f.cli)
	}
	err = op(c)
	if err == nil || !notProtocol(err) {
		return err
	}
	select {
	case <-c.Done():
		f.switchToCLI(err) // the connection broke on bytes that are not the protocol
	default:
		if errors.As(err, new(*RemoteError)) {
			f.switchToCLI(err) // the daemon lacks a method: it will not grow it
		} else {
			f.badReplyOnce(err)
		}
	}
	return op(f.cli)
}

// badReplyOnce logs the first reply that could not be decoded.
func (f *Fallback) badReplyOnce(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.badReply {
		return
	}
	f.badReply = true
	f.log.Warn("a pm2 reply could not be decoded; that call went through the pm2 command (logged once)",
		"socket", RPCSocket(f.home), "pm2", f.cli.Bin, "err", fmt.Sprint(err))
}

// native returns a connected client, or nil once the CLI is in use.
func (f *Fallback) native(ctx context.Context) (*Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.useCLI {
		return nil, nil
	}
	if f.client != nil {
		select {
		case <-f.client.Done():
			f.client = nil // the daemon went away; dial again
		default:
			return f.client, nil
		}
	}
	c, err := Dial(ctx, f.home)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	err = c.Ping(pctx)
	cancel()
	if err == nil {
		f.client = c
		return c, nil
	}
	silentDaemon := errors.Is(err, ErrNoReply) && c.peerPID() != 0 && c.peerPID() == DaemonPID(f.home)
	c.Close()
	if silentDaemon {
		// the daemon itself listens and does not answer: it is hung (SIGSTOP, a blocked
		// event loop), and a pm2 command would hang on it just the same
		return nil, err
	}
	if ctx.Err() == nil && (notProtocol(err) || errors.Is(err, ErrNoReply)) {
		f.useCLI = true
		f.logSwitch(err)
		return nil, nil
	}
	return nil, err
}

// notProtocol reports whether err shows the socket does not speak PM2's protocol.
func notProtocol(err error) bool {
	if errors.Is(err, ErrProtocol) {
		return true
	}
	var re *RemoteError
	return errors.As(err, &re) && strings.Contains(re.Message, "does not exist") && strings.HasPrefix(re.Message, "method ")
}

func (f *Fallback) switchToCLI(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.useCLI {
		return
	}
	f.useCLI = true
	if f.client != nil {
		f.client.Close()
		f.client = nil
	}
	f.logSwitch(err)
}

// logSwitch logs the switch to the CLI; called once, with f.mu held.
func (f *Fallback) logSwitch(err error) {
	f.log.Warn("pm2 socket does not speak the expected protocol; using the pm2 command from now on",
		"socket", RPCSocket(f.home), "pm2", f.cli.Bin, "err", fmt.Sprint(err))
}
