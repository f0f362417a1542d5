package metrics_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/metrics"
)

// promqlMetricNames returns the metric names a PromQL expression selects, with a simple
// tokenizer: strings, label matchers {...}, ranges [...], Grafana variables, numbers and
// durations, keywords and aggregation operators, function names (an identifier followed
// by "(") and grouping label lists (by/without/on/ignoring/group_left/group_right (...))
// are skipped; every other identifier is a metric name.
func promqlMetricNames(expr string) []string {
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"atan2": true, "inf": true, "nan": true,
		// aggregation operators may be followed by a grouping clause instead of "("
		"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
		"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true}
	grouping := map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	// skipTo returns the index after the bracket closing the one at i, skipping strings.
	skipTo := func(i int, open, close byte) int {
		depth := 0
		for ; i < len(expr); i++ {
			switch c := expr[i]; c {
			case '"', '\'', '`':
				for i++; i < len(expr) && expr[i] != c; i++ {
					if expr[i] == '\\' && c != '`' {
						i++
					}
				}
			case open:
				depth++
			case close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(expr)
	}
	var names []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			i = j + 1
		case c == '{':
			i = skipTo(i, '{', '}')
		case c == '[':
			i = skipTo(i, '[', ']')
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				i = skipTo(i, '{', '}')
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdent(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\n' || expr[k] == '\t') {
				k++
			}
			followedByParen := k < len(expr) && expr[k] == '('
			switch {
			case grouping[word] && followedByParen:
				j = skipTo(k, '(', ')')
			case keywords[word] || followedByParen:
			default:
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}

func TestPromQLMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`up{job="livinity"} == 0`: {"up"},
		`sum by (service, le) (rate(a_bucket{x="}[y]"}[5m])) / on(instance) group_left(service) b offset 1h`:                       {"a_bucket", "b"},
		`histogram_quantile(0.99, sum without (reason) (increase(livinity_x_total{service=~"$service"}[$__rate_interval]))) > 1e3`: {"livinity_x_total"},
		`time() - c_seconds * 2 and bool d`:             {"c_seconds", "d"},
		`sum(x) by (service) + avg_over_time(y[5m:1m])`: {"x", "y"},
		`absent(up{job="livinity"})`:                    {"up"},
	} {
		if got := promqlMetricNames(expr); !slices.Equal(got, want) {
			t.Errorf("promqlMetricNames(%q) = %q, want %q", expr, got, want)
		}
	}
}

// exportedNames gathers the metric names the agent exports (series names, with the
// histogram suffixes), from a registry where every kind of series is present; plus
// Prometheus's own up series.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New(metrics.Options{Store: knownStore(), Version: "x", StateDir: t.TempDir()})
	m.ObserveProbe("livos", "liveness", time.Millisecond, true)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{"up": true}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM || mf.GetType() == dto.MetricType_SUMMARY {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	return names
}

// dashboardQueries returns the dashboard's PromQL: every panel target's expr, and the
// metric argument of label_values() template queries, keyed by where they are.
func dashboardQueries(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", path, err)
	}
	if dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("%s: no title or no panels", path)
	}
	out := map[string]string{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %d has an empty expr", p.Title, i)
			}
			out["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*[a-zA-Z_]\w*\)$`)
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("template variable %s: query: %v", v.Name, err)
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("template variable %s: query %q is not label_values(<metric>, <label>)", v.Name, q.Query)
		}
		out["variable "+v.Name] = m[1]
	}
	return out
}

// TestDashboardUsesExportedMetrics: deploy/grafana/livinity.json is valid JSON and every
// query references only metrics the agent exports; the panels the issue asks for exist.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	exported := exportedNames(t)
	queries := dashboardQueries(t, filepath.Join(testenv.Root(t), "deploy", "grafana", "livinity.json"))
	used := map[string]bool{}
	for where, expr := range queries {
		names := promqlMetricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("%s: %q is not a metric the agent exports (query %q)", where, n, expr)
			}
		}
	}
	for _, n := range []string{"livinity_service_state", "livinity_service_ready", "livinity_service_memory_bytes",
		"livinity_service_memory_limit_bytes", "livinity_service_restarts_total", "livinity_service_probe_duration_seconds_bucket"} {
		if !used[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}

// TestAlertsUseExportedMetrics: every expr of deploy/prometheus/alerts.yml references only
// metrics the agent exports (the rules are single-line exprs; promtool checks the syntax).
func TestAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedNames(t)
	b, err := os.ReadFile(filepath.Join(testenv.Root(t), "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			rest = strings.TrimSpace(rest)
			if rest == "|" || rest == ">" || rest == "" {
				t.Fatalf("alerts.yml: keep exprs on one line for this test: %q", line)
			}
			exprs = append(exprs, rest)
		}
	}
	if len(exprs) < 7 {
		t.Fatalf("alerts.yml: found %d exprs, want one per alert (7)", len(exprs))
	}
	var all []string
	for _, e := range exprs {
		for _, n := range promqlMetricNames(e) {
			all = append(all, n)
			if !exported[n] {
				t.Errorf("alerts.yml: %q is not a metric the agent exports (expr %s)", n, e)
			}
		}
	}
	sort.Strings(all)
	t.Logf("alerts use %v", slices.Compact(all))
}
