package metrics

import (
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livinity/livinity-agent/history"
)

// historyCollector exports the box's update history (history.jsonl in the state dir), read
// again only when the file changed: `livinity-agent update` runs in another process.
type historyCollector struct {
	path, dir   string
	lastSuccess *prometheus.Desc
	total       *prometheus.Desc

	mu      sync.Mutex
	mtime   time.Time
	size    int64
	success time.Time
	counts  map[string]float64
}

func newHistoryCollector(stateDir string) *historyCollector {
	return &historyCollector{
		path: filepath.Join(stateDir, history.FileName), dir: stateDir,
		lastSuccess: prometheus.NewDesc(prometheus.BuildFQName(namespace, "update", "last_success_timestamp_seconds"),
			"When the last successful update ended (history.jsonl in the state dir); absent before the first.", nil, nil),
		total: prometheus.NewDesc(prometheus.BuildFQName(namespace, "updates", "total"),
			"Updates by outcome: success, failed (the new release did not build; nothing changed), rolled-back (it failed live and the previous release is back).",
			[]string{"outcome"}, nil),
	}
}

func (c *historyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lastSuccess
	ch <- c.total
}

func (c *historyCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, err := os.Stat(c.path); err == nil && (st.ModTime() != c.mtime || st.Size() != c.size || c.counts == nil) {
		if recs, err := history.Load(c.dir); err == nil {
			c.mtime, c.size = st.ModTime(), st.Size()
			c.counts, c.success = map[string]float64{}, time.Time{}
			for _, r := range recs {
				if r.Kind != history.KindUpdate {
					continue
				}
				c.counts[r.Outcome]++
				if r.Outcome == history.Success {
					c.success = r.At.Add(time.Duration(r.DurationSeconds * float64(time.Second)))
				}
			}
		}
	}
	for _, o := range []string{history.Success, history.Failed, history.RolledBack} {
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, c.counts[o], o)
	}
	if !c.success.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, float64(c.success.UnixNano())/1e9)
	}
}
