// Package probe runs health checks against a service with Kubernetes semantics.
//
// A single check (Check) yields a Result whose Outcome keeps two things apart:
//
//   - Failure: the service answered badly or not at all (connection refused, no answer
//     before the deadline, wrong status, body without the expected text, PM2 does not
//     report the process online). Failures count toward a Worker's FailureThreshold.
//   - Error: the probe itself could not run (invalid Spec, no deadline, local resource
//     exhaustion such as EMFILE, an unresolvable host, PM2 could not be asked, the context
//     canceled by shutdown). A Worker reports errors but does not count them.
//
// One file per probe kind (http.go, tcp.go, process.go), each a ProbeFn picked by
// Spec.Kind. The deadline of a check comes from its context and flows into every dial.
//
// Result.Detail never carries a response body: a service may echo secrets, so details
// hold only status codes, byte counts and error texts, passed through sanitize (printable
// ASCII, at most maxDetail bytes). Network error texts from the standard library may quote
// a few bytes of a malformed response; sanitize bounds those.
//
// A Worker (worker.go) runs checks on a schedule and debounces them into a State.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/livinity/livinity-agent/config"
)

// Probe kinds accepted in Spec.Kind.
const (
	KindHTTP    = "http"
	KindTCP     = "tcp"
	KindProcess = "process"
)

// DefaultHost is the host probed when Spec.Host is empty.
const DefaultHost = "127.0.0.1"

// Spec says how one service's health is checked.
type Spec struct {
	// Kind is "http", "tcp" or "process".
	Kind string
	// Host defaults to DefaultHost (http and tcp).
	Host string
	// Port is required for http and tcp; ignored for process.
	Port int
	// Path is the http request path; it defaults to "/" and must start with "/".
	Path string
	// ExpectStatus is the exact http status wanted; it defaults to 200.
	ExpectStatus int
	// BodyContains, if set, must occur in the first MaxBodyBytes of the http body.
	BodyContains string
}

// Outcome is the verdict of one check.
type Outcome int

// The outcomes of one check. The zero Outcome is not a valid verdict.
const (
	// Success: the service answered as expected.
	Success Outcome = iota + 1
	// Failure: the service answered badly or not at all.
	Failure
	// Error: the probe could not run; the result says nothing about the service.
	Error
)

// String returns "success", "failure" or "error".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Error:
		return "error"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Result is the record of one check.
type Result struct {
	Outcome  Outcome
	Duration time.Duration
	// Detail explains the outcome in a short, sanitized sentence; it never holds a
	// response body.
	Detail string
	// At is when the check started.
	At time.Time
	// Reused is set when Shared handed out another caller's recent result.
	Reused bool
}

// OnlineFunc reports whether the process manager (PM2) says the service is online. It
// returns an error when it cannot tell (the process manager did not answer); the process
// probe turns that into an Error outcome, since the service itself was not checked.
type OnlineFunc func(ctx context.Context) (bool, error)

// ProbeFn runs one check of one kind. The spec is already validated and ctx carries the
// deadline. It returns the outcome and a detail sentence (not yet sanitized).
type ProbeFn func(ctx context.Context, s Spec, online OnlineFunc) (Outcome, string)

// probers maps Spec.Kind to its ProbeFn.
var probers = map[string]ProbeFn{
	KindHTTP:    probeHTTP,
	KindTCP:     probeTCP,
	KindProcess: probeProcess,
}

// Validate checks the spec and names the offending field in its error.
func (s Spec) Validate() error {
	switch s.Kind {
	case KindHTTP, KindTCP, KindProcess:
	case "":
		return errors.New(`probe: kind is empty: set it to "http", "tcp" or "process"`)
	default:
		return fmt.Errorf(`probe: kind %q is not supported: use "http", "tcp" or "process"`, s.Kind)
	}
	if s.Kind != KindHTTP {
		if s.Path != "" {
			return fmt.Errorf("probe: path %q applies only to kind http, not %s: remove it", s.Path, s.Kind)
		}
		if s.ExpectStatus != 0 {
			return fmt.Errorf("probe: expectStatus %d applies only to kind http, not %s: remove it", s.ExpectStatus, s.Kind)
		}
		if s.BodyContains != "" {
			return fmt.Errorf("probe: bodyContains applies only to kind http, not %s: remove it", s.Kind)
		}
	}
	if s.Kind == KindProcess {
		return nil
	}
	if s.Port < 1 || s.Port > 65535 {
		return fmt.Errorf("probe: port %d is out of range: use 1-65535", s.Port)
	}
	if strings.ContainsAny(s.Host, "/?#@[] \t\r\n") || (strings.Contains(s.Host, ":") && net.ParseIP(s.Host) == nil) {
		return fmt.Errorf("probe: host %q is not a bare host name or IP address: drop scheme, port and path", s.Host)
	}
	if s.Kind == KindHTTP {
		if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
			return fmt.Errorf("probe: path %q must start with \"/\"", s.Path)
		}
		if strings.ContainsFunc(s.Path, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("probe: path %q holds spaces or control characters: percent-encode them", s.Path)
		}
		if s.ExpectStatus != 0 && (s.ExpectStatus < 100 || s.ExpectStatus > 599) {
			return fmt.Errorf("probe: expectStatus %d is not an http status: use 100-599 (default 200)", s.ExpectStatus)
		}
	}
	return nil
}

func (s Spec) host() string {
	if s.Host == "" {
		return DefaultHost
	}
	return s.Host
}

func (s Spec) address() string {
	return net.JoinHostPort(s.host(), fmt.Sprint(s.Port))
}

// Check runs one check of s. ctx must carry a deadline (context.WithTimeout): a service
// that does not answer before it is a Failure; a ctx canceled before or during the check,
// or one without a deadline, gives Error. online is needed only by the process kind.
func Check(ctx context.Context, s Spec, online OnlineFunc) Result {
	start := time.Now()
	res := Result{At: start}
	outcome, detail := run(ctx, s, online)
	res.Outcome = outcome
	res.Detail = sanitize(detail)
	res.Duration = time.Since(start)
	return res
}

func run(ctx context.Context, s Spec, online OnlineFunc) (Outcome, string) {
	if err := s.Validate(); err != nil {
		return Error, err.Error()
	}
	if _, ok := ctx.Deadline(); !ok {
		return Error, "probe: context has no deadline: bound each check with context.WithTimeout"
	}
	if err := ctx.Err(); err != nil {
		return Error, "probe not started: " + err.Error()
	}
	return probers[s.Kind](ctx, s, online)
}

// Checker binds a spec and an OnlineFunc into a CheckFunc for a Worker.
func Checker(s Spec, online OnlineFunc) CheckFunc {
	return func(ctx context.Context) Result { return Check(ctx, s, online) }
}

// classify sorts an error met while talking to the service: the caller's cancellation
// and local problems are Errors; everything else, timeouts included, is a Failure.
func classify(ctx context.Context, what string, err error) (Outcome, string) {
	if errors.Is(ctx.Err(), context.Canceled) {
		return Error, what + ": probe interrupted: " + ctx.Err().Error()
	}
	if localTrouble(err) {
		return Error, what + ": probe could not run: " + err.Error()
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || timeout(err) {
		return Failure, what + ": no answer before the deadline"
	}
	return Failure, what + ": " + err.Error()
}

// localTrouble reports errors that say nothing about the service: this host ran out of
// something, or the configured host name cannot be resolved.
func localTrouble(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// maxDetail bounds Result.Detail.
const maxDetail = 256

// sanitize keeps printable ASCII (others become '?') and cuts the text at maxDetail bytes.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxDetail {
			b.WriteString("...")
			break
		}
		if r < ' ' || r > '~' {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// OwnerFunc reports whether the socket listening on port belongs to the service's own
// processes; an error means it could not tell.
type OwnerFunc func(ctx context.Context, port int) (bool, error)

// Owned wraps the check of an http or tcp spec so that an answer counts only when it comes
// from the service itself: a success on a port that another process holds (an old
// instance, another install) is a Failure. Other kinds are returned unwrapped.
func Owned(check CheckFunc, s Spec, owns OwnerFunc) CheckFunc {
	if s.Kind != KindHTTP && s.Kind != KindTCP {
		return check
	}
	return func(ctx context.Context) Result {
		r := check(ctx)
		if r.Outcome != Success {
			return r
		}
		ok, err := owns(ctx, s.Port)
		switch {
		case err != nil:
			r.Outcome, r.Detail = Error, sanitize("probe: cannot tell who holds port "+fmt.Sprint(s.Port)+": "+err.Error())
		case !ok:
			r.Outcome, r.Detail = Failure, fmt.Sprintf("port %d answers, but not from the service's own processes", s.Port)
		}
		return r
	}
}

// Shared wraps check so that a result younger than fresh is handed out again instead of
// checking anew, and a caller arriving while a check runs waits for that check: liveness
// and readiness probes of one service usually run the same check on the same period,
// started together, and need not hit the service twice. Errors are never reused (a caller
// handed one checks for itself), nor is a result of a check that started before
// notBefore() (the instance checked then is not the one running now; nil: no bound). A
// reused result has Reused set, so that it is not counted twice (metrics).
func Shared(check CheckFunc, fresh time.Duration, notBefore func() time.Time) CheckFunc {
	var (
		mu       sync.Mutex
		last     Result
		inFlight singleflight.Group
	)
	usable := func(r Result) bool {
		return r.Outcome != 0 && r.Outcome != Error && (notBefore == nil || !r.At.Before(notBefore()))
	}
	return func(ctx context.Context) Result {
		mu.Lock()
		r := last
		mu.Unlock()
		if usable(r) && time.Since(r.At) < fresh {
			r.Reused = true
			return r
		}
		led := false // set only in the caller that runs the check
		v, _, _ := inFlight.Do("", func() (any, error) {
			led = true
			r := check(ctx)
			if r.Outcome != Error {
				mu.Lock()
				last = r
				mu.Unlock()
			}
			return r, nil
		})
		if r = v.(Result); led {
			return r
		}
		if !usable(r) {
			return check(ctx)
		}
		r.Reused = true
		return r
	}
}

// FromConfig turns a resolved setup.json probe into a probe spec (loopback host).
func FromConfig(p config.Probe) Spec {
	return Spec{Kind: p.Kind, Port: p.Port, Path: p.Path, ExpectStatus: p.ExpectStatus, BodyContains: p.BodyContains}
}
