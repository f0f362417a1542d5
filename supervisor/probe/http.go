package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
)

// MaxBodyBytes bounds how much of an http response body is read for BodyContains.
const MaxBodyBytes = 64 << 10

// userAgent names the agent's probes in the service's access log.
const userAgent = "livinity-agent-probe"

// probeHTTP sends GET http://host:port/path and wants exactly s.ExpectStatus (default 200)
// and, if set, s.BodyContains within the first MaxBodyBytes of the body.
//
// Redirects are not followed: a 3xx is compared with ExpectStatus like any other status,
// so a health endpoint cannot send the probe off the loopback host. Keep-alive is off and
// every check uses its own transport, so a hung server cannot pin a connection across
// checks. No proxy is used, whatever the environment says.
// probeTransport serves every http check. Keep-alive is off, so it holds no connection
// between checks: a hung server cannot pin one, and each check's context ends its own.
var probeTransport = &http.Transport{
	Proxy:                  nil,
	DialContext:            (&net.Dialer{}).DialContext,
	DisableKeepAlives:      true,
	DisableCompression:     true,
	MaxResponseHeaderBytes: MaxBodyBytes,
}

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

	client := &http.Client{
		Transport:     probeTransport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	what := "GET " + u.Redacted()
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
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
