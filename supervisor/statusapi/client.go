package statusapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// ErrNotRunning is returned (wrapped, naming the socket path) by Fetch when no agent
// answers: the socket is missing, or refuses connections (an agent that was killed).
var ErrNotRunning = errors.New("livinity-agent is not running")

// DefaultFetchTimeout bounds a Fetch whose context has no deadline.
const DefaultFetchTimeout = 5 * time.Second

// maxDocument bounds the size of a Status document read by Fetch.
const maxDocument = 4 << 20

// Fetch reads the Status document from the agent's socket at path.
func Fetch(ctx context.Context, path string) (Status, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultFetchTimeout)
		defer cancel()
	}
	what := "read status from " + path
	resp, body, err := roundTrip(ctx, path, http.MethodGet, StatusPath, maxDocument+1, "run as root or as a member of group "+Group)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("read status from %s: agent answered %s: %s",
			path, resp.Status, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	if len(body) > maxDocument {
		return Status{}, fmt.Errorf("read status from %s: document larger than %d bytes", path, maxDocument)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return Status{}, fmt.Errorf("read status from %s: decode: %w", path, err)
	}
	if st.Schema != SchemaVersion {
		return Status{}, fmt.Errorf("read status from %s: the agent speaks status schema %d, this program knows %d; use the same livinity-agent version for both",
			path, st.Schema, SchemaVersion)
	}
	return st, nil
}

// roundTrip sends one request without a body to the agent's socket at path and returns its
// answer, the body read up to limit bytes. No agent answering (the socket missing, or
// refusing: an agent that was killed) is ErrNotRunning; a socket the caller may not open
// is reported with hint, what to do about it.
func roundTrip(ctx context.Context, path, method, urlPath string, limit int64, hint string) (*http.Response, []byte, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://livinity-agent"+urlPath, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return nil, nil, ErrNotRunning
		case errors.Is(err, fs.ErrPermission):
			return nil, nil, fmt.Errorf("%w; %s", err, hint)
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, nil, err
	}
	return resp, body, nil
}
