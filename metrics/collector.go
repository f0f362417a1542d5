package metrics

import (
	"log/slog"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/livinity/livinity-agent/supervisor/state"
)

// stateCollector turns one state snapshot into the service, agent, setup and host series.
type stateCollector struct {
	store  *state.Store
	logger *slog.Logger

	up, ready, phase, memory, memoryLimit, restarts *prometheus.Desc
	cpu, cpuSeconds, operatorStopped                *prometheus.Desc
	agentReady, pm2Up                               *prometheus.Desc
	setupOK, setupSuccessAt, setupDuration          *prometheus.Desc
	hostTotal, hostAvailable                        *prometheus.Desc
}

func newStateCollector(store *state.Store, logger *slog.Logger) *stateCollector {
	svc := []string{"service"}
	desc := func(subsystem, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help, labels, nil)
	}
	return &stateCollector{
		store:  store,
		logger: logger,
		up: desc("service", "up",
			"Whether PM2 reports the service online (1) or not (0), as last seen by the agent over PM2's bus and process list.", svc...),
		ready: desc("service", "ready",
			"Whether the service passes its readiness probe (1) or not (0), as debounced by the agent.", svc...),
		phase: desc("service", "state",
			"The agent's supervision state of the service: 1 for the current state, 0 for the others.", "service", "state"),
		memory: desc("service", "memory_bytes",
			"Memory of the service's whole process tree (main PID and all descendants) in bytes: PSS from /proc/<pid>/smaps_rollup, or RSS where smaps_rollup is unreadable.", svc...),
		memoryLimit: desc("service", "memory_limit_bytes",
			"The agent's memory limit for the service's process tree in bytes (memoryLimitMB in the agent config); above it for consecutive checks the agent restarts the service.", svc...),
		cpu: desc("service", "cpu_percent",
			"CPU use of the service's whole process tree over the agent's last sampling interval, in percent of one core (utime+stime, with finished children's, from /proc/<pid>/stat); absent while not running or not yet measured.", svc...),
		cpuSeconds: desc("service", "cpu_seconds_total",
			"CPU time used by the service's whole process trees while the agent watched them, in seconds, over all instances since the agent started; rate() of it is the cores used.", svc...),
		operatorStopped: desc("service", "operator_stopped",
			"Whether an operator stopped the service through the agent (livinity-agent stop) and the agent holds it stopped (1) or not (0).", svc...),
		restarts: desc("service", "restarts_total",
			"Restarts of the service the agent did or observed since the agent started, by reason (crash, probe, memory, pm2, manual).", "service", "reason"),
		agentReady: desc("agent", "ready",
			"Whether every supervised service (leaving out those an operator stopped through the agent) is ready and PM2 is connected (1) or not (0), from the agent's state."),
		pm2Up: desc("pm2", "up",
			"Whether the agent is connected to the PM2 daemon and it answers (1), or it is gone, hung (calls time out) or its replies cannot be read (0)."),
		setupOK: desc("setup", "last_run_success",
			"Whether the last recorded onboarding pipeline run succeeded (1) or failed (0); absent before any run is recorded."),
		setupSuccessAt: desc("setup", "last_success_timestamp_seconds",
			"When the last recorded onboarding pipeline run ended, in Unix seconds, if it succeeded; absent when it failed or before any run."),
		setupDuration: desc("setup", "duration_seconds",
			"How long the last recorded onboarding pipeline run took, in seconds, whether it succeeded or not; absent before any run."),
		hostTotal: desc("host", "memory_total_bytes",
			"Total memory of the host in bytes (MemTotal from /proc/meminfo, via gopsutil)."),
		hostAvailable: desc("host", "memory_available_bytes",
			"Memory of the host available for new work without swapping in bytes (MemAvailable from /proc/meminfo, via gopsutil)."),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.ready, c.phase, c.memory, c.memoryLimit, c.restarts, c.cpu, c.cpuSeconds, c.operatorStopped,
		c.agentReady, c.pm2Up, c.setupOK, c.setupSuccessAt, c.setupDuration, c.hostTotal, c.hostAvailable} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one snapshot of the store, one read of
// /proc/meminfo.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.store.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, sv := range snap.Services {
		gauge(c.up, bool01(sv.PM2Status == "online"), sv.Name)
		gauge(c.ready, bool01(sv.Ready), sv.Name)
		for _, p := range state.Phases {
			gauge(c.phase, bool01(sv.Phase == p), sv.Name, string(p))
		}
		gauge(c.memory, float64(sv.MemoryBytes), sv.Name)
		if sv.MemoryLimitBytes > 0 {
			gauge(c.memoryLimit, float64(sv.MemoryLimitBytes), sv.Name)
		}
		for _, r := range state.Reasons {
			ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(sv.Restarts[r]), sv.Name, r)
		}
		if sv.CPUMeasured && sv.PID > 0 {
			gauge(c.cpu, sv.CPUPercent, sv.Name)
		}
		ch <- prometheus.MustNewConstMetric(c.cpuSeconds, prometheus.CounterValue, sv.CPUSeconds, sv.Name)
		gauge(c.operatorStopped, bool01(sv.OperatorStopped), sv.Name)
	}
	gauge(c.agentReady, bool01(snap.AllReady()))
	gauge(c.pm2Up, bool01(snap.Agent.PM2Connected))

	if setup := snap.Agent.Setup; setup.Ran {
		gauge(c.setupOK, bool01(setup.OK))
		gauge(c.setupDuration, setup.DurationSeconds)
		if setup.OK && !setup.At.IsZero() {
			gauge(c.setupSuccessAt, float64(setup.At.UnixNano())/1e9)
		}
	}

	vm, err := mem.VirtualMemory()
	if err != nil {
		c.logger.Warn("metrics: read host memory", "error", err)
		return
	}
	gauge(c.hostTotal, float64(vm.Total))
	gauge(c.hostAvailable, float64(vm.Available))
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// newBuildInfo is livinity_agent_build_info, an info gauge of value 1.
func newBuildInfo(version, revision string) prometheus.Collector {
	orUnknown := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "agent", Name: "build_info",
		Help: "A metric with a constant '1' value labeled by the agent's version, the Go version it was built with and its source revision.",
		ConstLabels: prometheus.Labels{
			"version": orUnknown(version), "goversion": runtime.Version(), "revision": orUnknown(revision),
		},
	})
	g.Set(1)
	return g
}
