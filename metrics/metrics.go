// Package metrics exposes the supervisor's state to Prometheus (GET /metrics) and to
// health checkers (GET /healthz, GET /readyz).
//
// Everything but the probe histograms is read from the state store's snapshot at scrape
// time by one collector: a scrape never calls PM2 and never waits for a probe. The probe
// histograms and failure counters are fed by the supervisor through ObserveProbe, one call
// per single check. Metrics live on the package's own registry, never the global one.
//
// The exported series (namespace livinity, no pid label anywhere):
//
//	livinity_service_up{service}                            PM2 reports the service online (0/1)
//	livinity_service_ready{service}                         the service is ready (0/1)
//	livinity_service_state{service,state}                   1 for the current phase, 0 for the others
//	livinity_service_memory_bytes{service}                  memory of the whole process tree: PSS, or RSS where smaps_rollup is unreadable
//	livinity_service_memory_limit_bytes{service}            the agent's limit (absent when none is set)
//	livinity_service_restarts_total{service,reason}         restarts the agent did or observed (every reason, from 0; manual: an operator's pm2 restart or livinity-agent restart)
//	livinity_service_cpu_percent{service}                   CPU of the whole process tree over the last sampling interval, % of one core (absent when not running or not yet measured)
//	livinity_service_cpu_seconds_total{service}             CPU time of the service's process trees while watched
//	livinity_service_operator_stopped{service}              the operator stopped it through the agent (livinity-agent stop) (0/1)
//	livinity_service_probe_duration_seconds{service,probe}  histogram of single checks
//	livinity_service_probe_failures_total{service,probe}    single checks that failed
//	livinity_agent_ready                                    every service is ready (leaving out those the operator stopped) and PM2 connected (0/1)
//	livinity_pm2_up                                         connected to the PM2 daemon and it answers (0/1)
//	livinity_agent_build_info{version,goversion,revision}   always 1
//	livinity_host_memory_total_bytes                        MemTotal (gopsutil)
//	livinity_host_memory_available_bytes                    MemAvailable (gopsutil)
//	livinity_setup_last_run_success                         the last onboarding pipeline run succeeded (0/1)
//	livinity_setup_last_success_timestamp_seconds           when the last run ended, if it succeeded
//	livinity_setup_duration_seconds                         how long the last run took
//	livinity_update_last_success_timestamp_seconds          when the last successful update ended (absent before one)
//	livinity_updates_total{outcome}                         updates by outcome: success, failed, rolled-back
//
// The three setup series are absent until a pipeline run is recorded (state.Setup.Ran);
// livinity_setup_last_success_timestamp_seconds is also absent while the last recorded
// run is a failure (the store keeps only the last run, so an older success time is not
// known). Plus the Go runtime (go_*) and process (process_*) collectors.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/livinity/livinity-agent/supervisor/state"
)

// namespace prefixes every metric of the agent.
const namespace = "livinity"

// ProbeBuckets are the probe histogram's upper bounds in seconds, fit for checks over
// loopback (sub-millisecond when healthy) up to the default 2 s probe timeout.
var ProbeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// Options configures New.
type Options struct {
	// Store is the supervisor's state store, read at every scrape. Required.
	Store *state.Store
	// Version and Revision label livinity_agent_build_info.
	Version, Revision string
	// Alive reports whether the supervision loop is alive, for /healthz. Nil means alive
	// whenever the server answers.
	Alive func() bool
	// Logger receives scrape errors. Nil discards them.
	Logger *slog.Logger
	// StateDir, if set, is where the update history is read from.
	StateDir string
}

// Metrics is the agent's registry and HTTP handler. Safe for concurrent use.
type Metrics struct {
	store    *state.Store
	alive    func() bool
	logger   *slog.Logger
	registry *prometheus.Registry
	probeDur *prometheus.HistogramVec
	probeErr *prometheus.CounterVec
}

// New builds the registry: the state collector, the probe metrics, build info and the Go
// and process collectors.
func New(opts Options) *Metrics {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		store:    opts.Store,
		alive:    opts.Alive,
		logger:   logger,
		registry: prometheus.NewRegistry(),
		probeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "service", Name: "probe_duration_seconds",
			Help:    "Duration of single health checks (startup, liveness and readiness probes run by the agent) in seconds.",
			Buckets: ProbeBuckets,
		}, []string{"service", "probe"}),
		probeErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "service", Name: "probe_failures_total",
			Help: "Single health checks run by the agent that failed: the service answered badly or not at all (errors of the probe itself are not counted).",
		}, []string{"service", "probe"}),
	}
	m.registry.MustRegister(
		newStateCollector(opts.Store, logger),
		newBuildInfo(opts.Version, opts.Revision),
		m.probeDur, m.probeErr,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if opts.StateDir != "" {
		m.registry.MustRegister(newHistoryCollector(opts.StateDir))
	}
	return m
}

// Registry returns the registry the handler serves, for tests and for gathering in-process.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ObserveProbe records one single check of a service's probe (probeType is startup,
// liveness or readiness): its duration, and a failure when the service answered badly or
// not at all. The supervisor does not report checks that could not run (probe errors).
func (m *Metrics) ObserveProbe(service, probeType string, d time.Duration, failed bool) {
	m.probeDur.WithLabelValues(service, probeType).Observe(d.Seconds())
	c := m.probeErr.WithLabelValues(service, probeType) // the series exists from the first check
	if failed {
		c.Inc()
	}
}

// Handler serves GET /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog:      promLogger{m.logger},
		ErrorHandling: promhttp.ContinueOnError,
		// concurrent scrapes share one collection: many scrapers cost one gather
		CoalesceGather: true,
		// ~15 KB uncompressed: gzip would cost about a fifth of a scrape's CPU to save
		// bytes that matter little even across a fleet (about 1 KB/s per box at 15 s)
		DisableCompression: true,
	}))
	mux.HandleFunc("GET /healthz", m.healthz)
	mux.HandleFunc("GET /readyz", m.readyz)
	return mux
}

// promLogger adapts slog to promhttp's Println logger.
type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) {
	p.l.Warn("metrics: serving /metrics", "error", fmt.Sprint(v...))
}
