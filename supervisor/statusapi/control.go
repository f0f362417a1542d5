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
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/supervisor/state"
)

// ControlPath is the pattern of a control request: POST /v1/services/{name}/{action},
// action restart, stop or start, without a body.
const ControlPath = "/v1/services/{name}/{action}"

// ControlTimeout bounds how long the agent works on one control request (a PM2 restart
// waits for the old instance to stop); the response's write deadline is extended by it.
const ControlTimeout = 30 * time.Second

// ControlResult answers a control request.
type ControlResult struct {
	Service string `json:"service"`
	Action  string `json:"action"`
	OK      bool   `json:"ok"`
	// Message says what the agent did, or why it did not.
	Message string `json:"message"`
	// Services lists the supervised services when Service is not one of them.
	Services []string `json:"services,omitempty"`
}

// ErrForbidden is returned (wrapped) by Control when the agent refuses the caller: control
// requests are taken from root and from the agent's own user only, not from every member
// of the socket's group (who may read the status).
var ErrForbidden = errors.New("control is for root only")

// ControlError is a refused or failed control request; Err is one of state's errors
// (ErrUnknownService, ErrUnknownAction, ErrBusy, ErrNotSupervising), ErrForbidden, or nil
// when the agent tried and failed (a PM2 error).
type ControlError struct {
	Result ControlResult
	Err    error
}

func (e *ControlError) Error() string { return e.Result.Message }
func (e *ControlError) Unwrap() error { return e.Err }

// statusOf maps an error of Store.Control to the HTTP status of its answer.
var statusOf = []struct {
	err  error
	code int
}{
	{state.ErrUnknownService, http.StatusNotFound},
	{state.ErrUnknownAction, http.StatusBadRequest},
	{state.ErrBusy, http.StatusConflict},
	{state.ErrNotSupervising, http.StatusServiceUnavailable},
	{ErrForbidden, http.StatusForbidden},
}

func (s *Server) control(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res := ControlResult{Service: r.PathValue("name"), Action: r.PathValue("action")}
		answer := func(code int, err error) {
			if err != nil {
				res.Message = err.Error()
			}
			res.OK = code == http.StatusOK
			if errors.Is(err, state.ErrUnknownService) {
				res.Services = s.Store.Names()
			}
			body, _ := json.Marshal(res)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(code)
			w.Write(append(body, '\n'))
		}
		cred, ok := r.Context().Value(peerKey{}).(peerCred)
		if !ok || !cred.allowed() {
			who := "unknown"
			if ok {
				who = "uid " + strconv.Itoa(int(cred.uid))
			}
			log.Warn("control request refused", "peer", who, "service", res.Service, "action", res.Action)
			answer(http.StatusForbidden, fmt.Errorf("%w (the caller is %s); run it as root", ErrForbidden, who))
			return
		}
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(ControlTimeout + 5*time.Second))
		ctx, cancel := context.WithTimeout(r.Context(), ControlTimeout)
		defer cancel()
		log.Info("control request", "service", res.Service, "action", res.Action, "uid", cred.uid, "pid", cred.pid)
		msg, err := s.Store.Control(ctx, state.Command{Action: res.Action, Service: res.Service})
		if err != nil {
			code := http.StatusBadGateway // the agent tried: PM2 failed
			for _, m := range statusOf {
				if errors.Is(err, m.err) {
					code = m.code
					break
				}
			}
			answer(code, err)
			return
		}
		res.Message = msg
		answer(http.StatusOK, nil)
	}
}

// peerCred is the control caller's identity, read from the socket (SO_PEERCRED): it
// cannot be forged by the client.
type peerCred struct{ pid, uid, gid int32 }

// allowed: root, or the user the agent runs as (a user-run agent's own user).
func (c peerCred) allowed() bool { return c.uid == 0 || int(c.uid) == os.Geteuid() }

type peerKey struct{}

// peerAddr is the remote address of a connection accepted by credListener: it carries the
// peer's credentials through the connection cap's wrapper (netcap), which keeps the
// connection's RemoteAddr.
type peerAddr struct{ cred peerCred }

// credListener reads each accepted unix connection's peer credentials.
type credListener struct{ net.Listener }

func (l credListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return c, nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return c, nil
	}
	var cred *syscall.Ucred
	var cerr error
	raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if cerr != nil || cred == nil {
		return c, nil // no credentials: control is refused, status is served
	}
	return credConn{UnixConn: uc, addr: peerAddr{cred: peerCred{cred.Pid, int32(cred.Uid), int32(cred.Gid)}}}, nil
}

type credConn struct {
	*net.UnixConn
	addr peerAddr
}

func (c credConn) RemoteAddr() net.Addr { return c.addr }

// peerContext puts the peer's credentials, when known, into the connection's context.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	if a, ok := c.RemoteAddr().(peerAddr); ok {
		return context.WithValue(ctx, peerKey{}, a.cred)
	}
	return ctx
}

func (a peerAddr) Network() string { return "unix" }
func (a peerAddr) String() string {
	return fmt.Sprintf("pid=%d,uid=%d", a.cred.pid, a.cred.uid)
}

// DefaultControlTimeout bounds a Control whose context has no deadline.
const DefaultControlTimeout = ControlTimeout + 10*time.Second

// Control asks the agent listening on the socket at path to act on a service: action is
// state.ActionRestart, ActionStop or ActionStart. It returns ErrNotRunning (wrapped) when
// no agent answers, and a *ControlError when the agent refused or failed.
func Control(ctx context.Context, path, service, action string) (ControlResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultControlTimeout)
		defer cancel()
	}
	what := fmt.Sprintf("%s %s through %s", action, service, path)
	resp, body, err := roundTrip(ctx, path, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/"+url.PathEscape(action), 1<<20, "run it as root")
	if errors.Is(err, fs.ErrPermission) {
		err = fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	if err != nil {
		return ControlResult{}, fmt.Errorf("%s: %w", what, err)
	}
	var res ControlResult
	if err := json.Unmarshal(body, &res); err != nil {
		// an agent without control answers 404 or 405 in plain text
		return ControlResult{}, fmt.Errorf("%s: the agent answered %s: %s (an agent older than this program? use the same livinity-agent version for both)",
			what, resp.Status, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	if resp.StatusCode == http.StatusOK && res.OK {
		return res, nil
	}
	ce := &ControlError{Result: res}
	for _, m := range statusOf {
		if m.code == resp.StatusCode {
			ce.Err = m.err
		}
	}
	if ce.Result.Message == "" {
		ce.Result.Message = "the agent answered " + resp.Status
	}
	return res, ce
}
