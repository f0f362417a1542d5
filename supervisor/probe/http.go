package probe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// MaxBodyBytes bounds how much of an http response body is read for BodyContains.
const MaxBodyBytes = 64 << 10

// userAgent names the agent's probes in the service's access log.
const userAgent = "livinity-agent-probe"

// probeHTTP sends GET http://host:port/path on a connection of its own and wants exactly
// s.ExpectStatus (default 200) and, if set, s.BodyContains within the first MaxBodyBytes
// of the body.
//
// Redirects are not followed: a 3xx is compared with ExpectStatus like any other status,
// so a health endpoint cannot send the probe off the loopback host. Every check dials its
// own connection and closes it ("Connection: close"), so that a server that no longer
// accepts connections fails its checks and a hung one cannot pin a connection across
// them; the check's context bounds the whole exchange. No proxy is used, whatever the
// environment says.
//
// The exchange is net/http's own request writer and response reader on a plain
// connection, not an http.Client: a Client's transport starts two goroutines and a dial
// goroutine per connection and keeps a pool this probe never reuses, which made the
// checks of five services most of the supervising agent's CPU (see BenchmarkHTTPProbe).
func probeHTTP(ctx context.Context, s Spec, _ OnlineFunc) (Outcome, string) {
	path := s.Path
	if path == "" {
		path = "/"
	}
	u, err := url.Parse("http://" + s.address() + path)
	if err != nil {
		return Error, fmt.Sprintf("probe: path %q does not form a url: %v", s.Path, err)
	}
	want := s.ExpectStatus
	if want == 0 {
		want = http.StatusOK
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Error, fmt.Sprintf("probe: build request for %s: %v", u.Redacted(), err)
	}
	req.Header.Set("User-Agent", userAgent)
	req.Close = true

	what := "GET " + u.Redacted()
	conn, err := probeDialer.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return classify(ctx, what, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	defer context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })()
	if err := req.Write(conn); err != nil {
		return classify(ctx, what, err)
	}
	// headers and the part of the body looked at, no more, whatever the server sends
	resp, err := http.ReadResponse(bufio.NewReaderSize(io.LimitReader(conn, 2*MaxBodyBytes), 1024), req)
	if err != nil {
		return classify(ctx, what, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode != want {
		return Failure, fmt.Sprintf("%s: status %d %s, want %d %s", what,
			resp.StatusCode, http.StatusText(resp.StatusCode), want, http.StatusText(want))
	}
	if s.BodyContains == "" {
		return Success, fmt.Sprintf("%s: status %d", what, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	if err != nil {
		return classify(ctx, what+": read body", err)
	}
	if !bytes.Contains(body, []byte(s.BodyContains)) {
		return Failure, fmt.Sprintf("%s: status %d but the first %d bytes of the body do not contain bodyContains",
			what, resp.StatusCode, len(body))
	}
	return Success, fmt.Sprintf("%s: status %d, body contains bodyContains", what, resp.StatusCode)
}

// probeDialer dials the checked service directly (no proxy).
var probeDialer net.Dialer
