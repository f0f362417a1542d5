// Package statusapi serves the running agent's live state on a unix socket and reads it
// back: Server answers GET /v1/status with the Status document built from the state
// store, Fetch is its client. Status is the public, stable JSON contract documented in
// SCHEMA.md; the store's own types are not, and are never serialized here directly.
package statusapi

import (
	"math"
	"time"

	"github.com/livinity/livinity-agent/supervisor/state"
)

// SchemaVersion is the version of the Status document. Adding a field keeps it; renaming,
// removing or changing the meaning of a field bumps it.
const SchemaVersion = 1

// Sources of a Status document.
const (
	// SourceAgent: the running agent's own state.
	SourceAgent = "agent"
	// SourcePM2: the agent was not running and the document was built from PM2's process
	// list (livinity-agent status's fallback); the agent's verdicts are unknown.
	SourcePM2 = "pm2"
)

// StateUnknown is a service's state in a document built from PM2's view: without the
// agent there are no probes, so no supervision state.
const StateUnknown = "unknown"

// Status is the whole document.
type Status struct {
	// Schema is SchemaVersion.
	Schema int `json:"schema"`
	// Source is SourceAgent or SourcePM2.
	Source string `json:"source"`
	// At is when the document was built.
	At time.Time `json:"at"`
	// Ready is true when every service is ready, leaving out those an operator stopped
	// through the agent (false when none is ready, and always false from PM2's view).
	Ready bool `json:"ready"`
	// Agent is the agent's own state; null when Source is SourcePM2.
	Agent *Agent `json:"agent"`
	// Services lists the supervised services in the agent's order (PM2's order from PM2's
	// view); never null.
	Services []Service `json:"services"`
}

// Agent is the agent's own state.
type Agent struct {
	Version       string     `json:"version"`
	Started       *time.Time `json:"started"`
	UptimeSeconds float64    `json:"uptimeSeconds"`
	// PM2Connected says whether the agent's PM2 connection is up and the daemon answers.
	PM2Connected bool `json:"pm2Connected"`
	// PM2Error says why not ("the PM2 daemon does not answer: ..."); "" when connected.
	PM2Error string `json:"pm2Error"`
	Setup    Setup  `json:"setup"`
}

// Setup is the last onboarding pipeline run.
type Setup struct {
	// Ran is false when the agent adopted running services without running the pipeline.
	Ran bool `json:"ran"`
	OK  bool `json:"ok"`
	// At is when it finished; null while it runs or when it did not run.
	At              *time.Time `json:"at"`
	DurationSeconds float64    `json:"durationSeconds"`
	// Error is why it failed; "" otherwise.
	Error string `json:"error"`
	// Step is the running step ("7/16 build nexus core") while onboarding, else "".
	Step string `json:"step"`
}

// Service is one supervised service.
type Service struct {
	Name string `json:"name"`
	// State is the supervision state: starting, ready, unhealthy, restarting, backoff or
	// stopped; StateUnknown from PM2's view.
	State string `json:"state"`
	Ready bool   `json:"ready"`
	// Since is when State last changed; null if it never did.
	Since *time.Time `json:"since"`
	// PM2Status is PM2's own word ("online", "errored", ...; "" when PM2 does not know the
	// service).
	PM2Status     string  `json:"pm2Status"`
	PID           int     `json:"pid"`
	UptimeSeconds float64 `json:"uptimeSeconds"`
	// MemoryBytes is the memory of the whole process tree; MemoryKind says what it sums:
	// "pss", "rss", or "" when not measured.
	MemoryBytes      uint64 `json:"memoryBytes"`
	MemoryKind       string `json:"memoryKind"`
	MemoryLimitBytes uint64 `json:"memoryLimitBytes"`
	// Restarts counts restarts by reason; RestartsTotal is their sum.
	Restarts      Restarts `json:"restarts"`
	RestartsTotal uint64   `json:"restartsTotal"`
	// PM2Restarts is PM2's restart_time counter (every restart PM2 did or was asked for).
	PM2Restarts int `json:"pm2Restarts"`
	// LastProbe is the last single check; null before the first.
	LastProbe *Probe `json:"lastProbe"`
	// NextAttempt is when the next restart is due while backing off; null otherwise.
	NextAttempt          *time.Time `json:"nextAttempt"`
	NextAttemptInSeconds *float64   `json:"nextAttemptInSeconds"`
	// Detail says why the service is in its state, in a few words; "" when nothing to say.
	Detail string `json:"detail"`
	// LastExit is how the last instance ended; null before the first exit.
	LastExit *Exit `json:"lastExit"`
	// CPUPercent is the whole process tree's CPU use over the agent's last sampling
	// interval, in percent of one core (150 = one and a half cores); null when not running
	// or not measured yet (it takes two samples of an instance).
	CPUPercent *float64 `json:"cpuPercent"`
	// StoppedByOperator: stopped through the agent (livinity-agent stop); the agent does
	// not probe or restart it until livinity-agent start, and it does not count against the
	// document's Ready.
	StoppedByOperator bool `json:"stoppedByOperator"`
}

// Exit is how an instance ended.
type Exit struct {
	// Code is its exit code; null when unknown. PM2 reports 0 for a process killed by a
	// signal: Signal tells.
	Code *int `json:"code"`
	// Signal is the signal that killed it ("SIGKILL"); "" when it exited by itself.
	Signal string    `json:"signal"`
	At     time.Time `json:"at"`
}

// Restarts counts restarts by reason.
type Restarts struct {
	Crash  uint64 `json:"crash"`
	Probe  uint64 `json:"probe"`
	Memory uint64 `json:"memory"`
	PM2    uint64 `json:"pm2"`
	Manual uint64 `json:"manual"`
}

// Probe is one single check.
type Probe struct {
	// Type is startup, liveness or readiness.
	Type string `json:"type"`
	OK   bool   `json:"ok"`
	// Outcome is success, failure (the service answered badly or not at all) or error
	// (the probe itself could not run).
	Outcome        string    `json:"outcome"`
	LatencySeconds float64   `json:"latencySeconds"`
	Error          string    `json:"error"`
	At             time.Time `json:"at"`
}

// FromSnapshot builds the document from a state snapshot as of now.
func FromSnapshot(snap state.Snapshot, now time.Time) Status {
	a := snap.Agent
	st := Status{
		Schema: SchemaVersion,
		Source: SourceAgent,
		At:     now.UTC(),
		Ready:  snap.AllReady(),
		Agent: &Agent{
			Version:       a.Version,
			Started:       timePtr(a.Started),
			UptimeSeconds: since(a.Started, now),
			PM2Connected:  a.PM2Connected,
			PM2Error:      a.PM2Error,
			Setup: Setup{
				Ran:             a.Setup.Ran,
				OK:              a.Setup.OK,
				At:              timePtr(a.Setup.At),
				DurationSeconds: a.Setup.DurationSeconds,
				Error:           a.Setup.Error,
				Step:            a.Setup.Step,
			},
		},
		Services: make([]Service, 0, len(snap.Services)),
	}
	for _, sv := range snap.Services {
		st.Services = append(st.Services, fromService(sv, now))
	}
	return st
}

func fromService(sv state.Service, now time.Time) Service {
	out := Service{
		Name:             sv.Name,
		State:            string(sv.Phase),
		Ready:            sv.Ready,
		Since:            timePtr(sv.Since),
		PM2Status:        sv.PM2Status,
		PID:              sv.PID,
		MemoryBytes:      sv.MemoryBytes,
		MemoryKind:       sv.MemoryKind,
		MemoryLimitBytes: sv.MemoryLimitBytes,
		Restarts: Restarts{
			Crash:  sv.Restarts[state.ReasonCrash],
			Probe:  sv.Restarts[state.ReasonProbe],
			Memory: sv.Restarts[state.ReasonMemory],
			PM2:    sv.Restarts[state.ReasonPM2],
			Manual: sv.Restarts[state.ReasonManual],
		},
		PM2Restarts:       sv.PM2Restarts,
		NextAttempt:       timePtr(sv.NextAttempt),
		Detail:            sv.Detail,
		StoppedByOperator: sv.OperatorStopped,
	}
	if sv.CPUMeasured && sv.PID > 0 {
		c := math.Round(sv.CPUPercent*10) / 10
		out.CPUPercent = &c
	}
	if sv.PID > 0 {
		out.UptimeSeconds = since(sv.Started, now)
	}
	if e := sv.LastExit; !e.At.IsZero() {
		out.LastExit = &Exit{Code: e.Code, Signal: e.Signal, At: e.At.UTC()}
	}
	for _, n := range sv.Restarts {
		out.RestartsTotal += n
	}
	if p := sv.LastProbe; !p.At.IsZero() {
		out.LastProbe = &Probe{
			Type:           p.Type,
			OK:             p.OK,
			Outcome:        p.Outcome,
			LatencySeconds: seconds(p.Duration),
			Error:          p.Error,
			At:             p.At.UTC(),
		}
	}
	if !sv.NextAttempt.IsZero() {
		in := since(now, sv.NextAttempt) // the time from now to the attempt, on the wall clock too
		out.NextAttemptInSeconds = &in
	}
	return out
}

// since is the time from t to now in seconds; 0 when t is unset or in the future.
func since(t, now time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	// on the wall clock (Round(0) drops the monotonic reading): a document's "at" and its
	// durations then agree for anyone who recomputes them from the times it shows
	return max(seconds(now.Round(0).Sub(t.Round(0))), 0)
}

// seconds converts d to seconds, rounded to the microsecond so that documents do not
// carry float noise.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*1e6) / 1e6
}

// timePtr returns t in UTC, or nil for the zero time (null in JSON).
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
