// Package e2e holds end-to-end tests: the built agent binary against the real tools. Its
// one non-test file, prom.go, runs a real Prometheus for tests (shared with test/chaos).
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

// Prometheus is a real Prometheus server on loopback with its own config and data dir.
type Prometheus struct {
	t    testing.TB
	base string // http://127.0.0.1:port
	cmd  *exec.Cmd
	logs *testenv.Buffer
	done chan struct{}
}

// StartPrometheus writes config (with "{{ALERTS}}" replaced by the deploy alert rules'
// path) and starts Prometheus on a free loopback port. It is stopped at cleanup.
func StartPrometheus(t testing.TB, config string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is required (Debian package prometheus): run scripts/install-packages.sh: %v", err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	p := &Prometheus{t: t, base: "http://" + addr, logs: &testenv.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.logs.String())
		}
	})
	p.WaitFor("prometheus ready", time.Minute, func() (bool, string) {
		select {
		case <-p.done:
			t.Fatalf("prometheus exited: %v\n%s", p.cmd.ProcessState, p.logs.String())
		default:
		}
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

// Sample is one series of a query result.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

// API calls a Prometheus HTTP API endpoint (path like /api/v1/rules) and returns the
// envelope's data.
func (p *Prometheus) API(path string, params url.Values) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path+"?"+params.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r apiResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w: %s", path, err, b)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// Query evaluates an instant query now.
func (p *Prometheus) Query(q string) ([]Sample, error) {
	data, err := p.API("/api/v1/query", url.Values{"query": {q}})
	if err != nil {
		return nil, err
	}
	var d struct {
		ResultType string `json:"resultType"`
		Result     json.RawMessage
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	switch d.ResultType {
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &vec); err != nil {
			return nil, err
		}
		out := make([]Sample, 0, len(vec))
		for _, v := range vec {
			f, err := parseValue(v.Value[1])
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Metric: v.Metric, Value: f})
		}
		return out, nil
	case "scalar":
		var sc [2]any
		if err := json.Unmarshal(d.Result, &sc); err != nil {
			return nil, err
		}
		f, err := parseValue(sc[1])
		return []Sample{{Value: f}}, err
	default:
		return nil, fmt.Errorf("query %q: unexpected result type %s", q, d.ResultType)
	}
}

// QueryRange returns the values of a single-series query at every step from start to end.
func (p *Prometheus) QueryRange(q string, start, end time.Time, step time.Duration) ([]float64, error) {
	data, err := p.API("/api/v1/query_range", url.Values{
		"query": {q},
		"start": {strconv.FormatFloat(float64(start.UnixMilli())/1000, 'f', 3, 64)},
		"end":   {strconv.FormatFloat(float64(end.UnixMilli())/1000, 'f', 3, 64)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', 3, 64)},
	})
	if err != nil {
		return nil, err
	}
	var d struct {
		Result []struct {
			Values [][2]any `json:"values"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, err
	}
	if len(d.Result) != 1 {
		return nil, fmt.Errorf("query_range %q: %d series, want 1", q, len(d.Result))
	}
	var out []float64
	for _, v := range d.Result[0].Values {
		f, err := parseValue(v[1])
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func parseValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", v)
	}
	return strconv.ParseFloat(s, 64)
}

// Scalar evaluates a query that must return exactly one sample; ok is false when it
// returns none (or the query failed: err says so).
func (p *Prometheus) Scalar(q string) (v float64, ok bool, err error) {
	s, err := p.Query(q)
	if err != nil || len(s) == 0 {
		return 0, false, err
	}
	if len(s) > 1 {
		return 0, false, fmt.Errorf("query %q: %d series, want 1", q, len(s))
	}
	return s[0].Value, true, nil
}

// WaitFor polls cond every 250 ms until it holds, failing the test with cond's last
// explanation when timeout passes.
func (p *Prometheus) WaitFor(what string, timeout time.Duration, cond func() (bool, string)) {
	p.t.Helper()
	Poll(p.t, what, timeout, cond)
}

// Poll calls cond every 250 ms until it holds; after timeout it fails the test with what it
// waited for and cond's last explanation.
func Poll(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// WaitValue waits until query q returns one sample for which pred holds, and returns it.
func (p *Prometheus) WaitValue(what, q string, timeout time.Duration, pred func(float64) bool) float64 {
	p.t.Helper()
	var got float64
	p.WaitFor(what, timeout, func() (bool, string) {
		v, ok, err := p.Scalar(q)
		switch {
		case err != nil:
			return false, err.Error()
		case !ok:
			return false, fmt.Sprintf("%s: no sample", q)
		}
		got = v
		return pred(v), fmt.Sprintf("%s = %v", q, v)
	})
	return got
}
