package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// MaxBodyBytes bounds how much of an http response body is read for BodyContains.
const MaxBodyBytes = 64 << 10

// userAgent names the agent's probes in the service's access log.
const userAgent = "livinity-agent-probe"

// probeHTTP sends GET http://host:port/path and wants exactly s.ExpectStatus (default
// 200) and, if set, s.BodyContains within the first MaxBodyBytes of the body.
//
// Redirects are not followed: a 3xx is compared with ExpectStatus like any other status,
// so a health endpoint cannot send the probe off the loopback host. The check's context
// bounds the whole exchange. No proxy is used, whatever the environment says.
//
// The connection of a successful check is kept for the next check of the same address
// (keep-alive), for at most keepFor since it was dialed and keepIdle since its last use:
// dialing, accepting and closing a loopback connection every check made the checks of
// five services most of the supervising agent's CPU, both ends' TCP work being done in
// the dialer's system calls (see BenchmarkHTTPProbe). So a service is still seen to accept
// new connections at least every keepFor; a check that fails or times out closes its
// connection, and so does a response that asks for it or has a body it would have to wait
// for; a kept connection the server closed meanwhile is dialed again at once. The
// exchange is net/http's own request writer and response reader on the connection.
func probeHTTP(ctx context.Context, s Spec, _ OnlineFunc) (Outcome, string) {
	path := s.Path
	if path == "" {
		path = "/"
	}
	u, err := url.Parse("http://" + s.address() + path)
	if err != nil {
		return Error, fmt.Sprintf("probe: path %q does not form a url: %v", s.Path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Error, fmt.Sprintf("probe: build request for %s: %v", u.Redacted(), err)
	}
	req.Header.Set("User-Agent", userAgent)
	what := "GET " + u.Redacted()

	if kc, ok := kept.take(u.Host); ok {
		o, detail, keep, stale := exchange(ctx, kc.c, req, s, what)
		if !stale {
			kept.give(u.Host, kc, keep)
			return o, detail
		}
		kc.c.Close() // closed by the server while kept: dial
	}
	c, err := probeDialer.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return classify(ctx, what, err)
	}
	kc := keptConn{c: c, dialed: time.Now()}
	o, detail, keep, _ := exchange(ctx, c, req, s, what)
	kept.give(u.Host, kc, keep)
	return o, detail
}

// probeDialer dials the checked service directly (no proxy).
var probeDialer net.Dialer

// exchange sends req on c and judges the response. keep says c may serve the next check;
// stale that c failed before the server sent a byte (closed while kept: try a new one).
func exchange(ctx context.Context, c net.Conn, req *http.Request, s Spec, what string) (o Outcome, detail string, keep, stale bool) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() {
			keep = false // the context ended: the deadline is spoilt
		}
	}()
	// headers and the part of the body looked at, no more, whatever the server sends
	lr := &countingReader{r: c, left: 2 * MaxBodyBytes}
	br := bufio.NewReaderSize(lr, 1024)
	if err := req.Write(c); err != nil {
		o, detail = classify(ctx, what, err)
		return o, detail, false, lr.read == 0 && !timeout(err)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		o, detail = classify(ctx, what, err)
		return o, detail, false, lr.read == 0 && !timeout(err)
	}
	defer resp.Body.Close()
	want := s.ExpectStatus
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return Failure, fmt.Sprintf("%s: status %d %s, want %d %s", what,
			resp.StatusCode, http.StatusText(resp.StatusCode), want, http.StatusText(want)), false, false
	}
	reusable := func(bodyRead bool) bool {
		return bodyRead && !resp.Close && resp.ProtoAtLeast(1, 1) && br.Buffered() == 0
	}
	if s.BodyContains == "" {
		// a short body that has come (a health answer is a few bytes, sent with the
		// status) is read to keep the connection; one that does not come at once, or
		// is long, is left and the connection closed
		wait := time.Now().Add(drainWait)
		if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
			wait = dl
		}
		c.SetReadDeadline(wait)
		n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, smallBody+1))
		return Success, fmt.Sprintf("%s: status %d", what, resp.StatusCode), reusable(err == nil && n <= smallBody), false
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	if err != nil {
		o, detail = classify(ctx, what+": read body", err)
		return o, detail, false, false
	}
	if !bytes.Contains(body, []byte(s.BodyContains)) {
		return Failure, fmt.Sprintf("%s: status %d but the first %d bytes of the body do not contain bodyContains",
			what, resp.StatusCode, len(body)), false, false
	}
	_, err = resp.Body.Read(make([]byte, 1)) // the whole body read: EOF now
	return Success, fmt.Sprintf("%s: status %d, body contains bodyContains", what, resp.StatusCode), reusable(err == io.EOF), false
}

// smallBody is the longest body a check without BodyContains reads to keep its
// connection, and drainWait how long it waits for it.
const (
	smallBody = 4 << 10
	drainWait = 50 * time.Millisecond
)

// timeout reports a network operation that ran into its deadline.
func timeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// countingReader counts the bytes read through it and reads at most left.
type countingReader struct {
	r    io.Reader
	read int
	left int
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.EOF
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.read += n
	c.left -= n
	return n, err
}

// How long a connection serves checks: keepFor since it was dialed (so that accepting
// new connections is checked that often), keepIdle since its last check (servers close
// idle connections: Node.js after 5 s).
var keepFor = 30 * time.Second

const keepIdle = 2 * time.Second

// kept holds one connection per address between checks.
var kept = &keptConns{m: map[string]keptConn{}}

type keptConns struct {
	mu sync.Mutex
	m  map[string]keptConn
}

type keptConn struct {
	c              net.Conn
	dialed, usedAt time.Time
}

// take hands out the kept connection to addr, if it may still be used (it is out of the
// pool while a check uses it: checks at the same time dial their own).
func (k *keptConns) take(addr string) (keptConn, bool) {
	k.mu.Lock()
	kc, ok := k.m[addr]
	delete(k.m, addr)
	k.mu.Unlock()
	if !ok {
		return keptConn{}, false
	}
	if now := time.Now(); now.Sub(kc.dialed) >= keepFor || now.Sub(kc.usedAt) >= keepIdle {
		kc.c.Close()
		return keptConn{}, false
	}
	return kc, true
}

// give keeps a connection a check used for the next one, or closes it.
func (k *keptConns) give(addr string, kc keptConn, keep bool) {
	if !keep || time.Since(kc.dialed) >= keepFor || !k.put(addr, kc) {
		kc.c.Close()
	}
}

// put keeps kc for addr unless another check's connection is kept already.
func (k *keptConns) put(addr string, kc keptConn) bool {
	kc.usedAt = time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, taken := k.m[addr]; taken {
		return false
	}
	k.m[addr] = kc
	return true
}
