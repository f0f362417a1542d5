package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/livinity/livinity-agent/history"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// TestUpdateMetrics: the update history written by `livinity-agent update` (another
// process) shows in the running agent's metrics at the next scrape.
func TestUpdateMetrics(t *testing.T) {
	dir := t.TempDir()
	m := New(Options{Store: state.New(state.Agent{}, nil), StateDir: dir})
	want := func(text string) {
		t.Helper()
		if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(text),
			"livinity_updates_total", "livinity_update_last_success_timestamp_seconds"); err != nil {
			t.Error(err)
		}
	}
	const head = `# HELP livinity_updates_total Updates by outcome: success, failed (the new release did not build; nothing changed), rolled-back (it failed live and the previous release is back).
# TYPE livinity_updates_total counter
`
	want(head + `livinity_updates_total{outcome="failed"} 0
livinity_updates_total{outcome="rolled-back"} 0
livinity_updates_total{outcome="success"} 0
`)
	at := time.Unix(1700000000, 0)
	for _, r := range []history.Record{
		{Kind: history.KindOnboard, At: at, Outcome: history.Success},
		{Kind: history.KindUpdate, At: at, DurationSeconds: 10, Outcome: history.Success},
		{Kind: history.KindUpdate, At: at.Add(time.Hour), Outcome: history.RolledBack},
		{Kind: history.KindUpdate, At: at.Add(2 * time.Hour), Outcome: history.Failed},
	} {
		if err := history.Append(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	want(`# HELP livinity_update_last_success_timestamp_seconds When the last successful update ended (history.jsonl in the state dir); absent before the first.
# TYPE livinity_update_last_success_timestamp_seconds gauge
livinity_update_last_success_timestamp_seconds 1.70000001e+09
` + head + `livinity_updates_total{outcome="failed"} 1
livinity_updates_total{outcome="rolled-back"} 1
livinity_updates_total{outcome="success"} 1
`)
}
