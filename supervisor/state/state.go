// Package state is the supervisor's single in-process store: per service, what PM2 says,
// what the probes say, memory, CPU and restarts; plus the agent's own facts. The supervisor
// is its only writer. Metrics, the status socket and sd_notify read snapshots and subscribe
// to changes; none of them ever calls PM2. The store also carries an operator's control
// requests (restart, stop, start) from the status socket to the supervisor, which handles
// them in its supervision loop (see SetControl).
package state

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Phase is a service's supervision state.
type Phase string

// The phases of a service.
const (
	// Starting: the service (re)started and its startup probe has not passed yet.
	Starting Phase = "starting"
	// Ready: started, live and passing its readiness probe.
	Ready Phase = "ready"
	// Unhealthy: running but failing its liveness or readiness probe.
	Unhealthy Phase = "unhealthy"
	// Restarting: the agent asked PM2 to restart it and waits for the new instance.
	Restarting Phase = "restarting"
	// Backoff: a restart is due but held back until NextAttempt.
	Backoff Phase = "backoff"
	// Stopped: not running (PM2 says stopped, or the app is missing) and not restarted by
	// the agent.
	Stopped Phase = "stopped"
)

// Phases lists every phase, for exporting one series per phase.
var Phases = []Phase{Starting, Ready, Unhealthy, Restarting, Backoff, Stopped}

// Restart reasons.
const (
	ReasonCrash  = "crash"  // the process exited unexpectedly (PM2 or the agent restarted it)
	ReasonProbe  = "probe"  // the agent restarted it: liveness failed its threshold
	ReasonMemory = "memory" // the agent restarted it: its process tree stayed over the limit
	ReasonPM2    = "pm2"    // PM2 restarted it for its own reasons (e.g. max_memory_restart)
	ReasonManual = "manual" // someone restarted it by hand (pm2 restart, livinity-agent restart)
)

// Reasons lists every restart reason.
var Reasons = []string{ReasonCrash, ReasonProbe, ReasonMemory, ReasonPM2, ReasonManual}

// ProbeResult is the last single check of a service.
type ProbeResult struct {
	Type     string        `json:"type"`    // startup, liveness or readiness
	OK       bool          `json:"ok"`      // the check succeeded
	Outcome  string        `json:"outcome"` // success, failure or error
	Duration time.Duration `json:"durationNanos"`
	Error    string        `json:"error,omitempty"`
	At       time.Time     `json:"at"`
}

// Service is one supervised service.
type Service struct {
	Name string `json:"name"`
	// PM2Status is PM2's own status ("online", "errored", ...; "" if PM2 does not know it).
	PM2Status string `json:"pm2Status"`
	PID       int    `json:"pid"`
	// Started is when the current instance started (zero when not running).
	Started time.Time `json:"started"`
	Phase   Phase     `json:"state"`
	Ready   bool      `json:"ready"`
	// Since is when Phase last changed.
	Since time.Time `json:"since"`
	// Restarts counts restarts the agent did or observed, by reason.
	Restarts map[string]uint64 `json:"restarts"`
	// PM2Restarts is PM2's restart_time counter.
	PM2Restarts int `json:"pm2Restarts"`
	// MemoryBytes is the whole process tree's memory; MemoryKind says "pss" or "rss".
	MemoryBytes      uint64      `json:"memoryBytes"`
	MemoryKind       string      `json:"memoryKind,omitempty"`
	MemoryLimitBytes uint64      `json:"memoryLimitBytes"`
	LastProbe        ProbeResult `json:"lastProbe"`
	// NextAttempt is when the next restart is due while in Backoff.
	NextAttempt time.Time `json:"nextAttempt,omitzero"`
	// Detail says why the service is in its phase, in a few words.
	Detail string `json:"detail,omitempty"`
	// LastExit is how its last instance ended, as PM2 saw it; zero before the first exit.
	LastExit Exit `json:"lastExit,omitzero"`
	// CPUPercent is the whole process tree's CPU use over the last sampling interval, in
	// percent of one core (200 = two cores busy); valid only when CPUMeasured (a running
	// instance sampled twice).
	CPUPercent  float64 `json:"cpuPercent"`
	CPUMeasured bool    `json:"cpuMeasured"`
	// CPUSeconds is the CPU time the service's process trees used while the agent watched
	// them, summed over instances: it only grows.
	CPUSeconds float64 `json:"cpuSeconds"`
	// OperatorStopped: an operator stopped the service through the agent (livinity-agent
	// stop); the agent neither probes nor restarts it until it is started again.
	// OperatorStoppedAt is when.
	OperatorStopped   bool      `json:"operatorStopped"`
	OperatorStoppedAt time.Time `json:"operatorStoppedAt,omitzero"`
}

// Exit is how an instance ended: its exit code, or the signal that killed it.
type Exit struct {
	Code   *int      `json:"code,omitempty"`   // nil when unknown
	Signal string    `json:"signal,omitempty"` // e.g. "SIGKILL"; "" when it exited by itself
	At     time.Time `json:"at"`
}

// Setup is the last onboarding pipeline's result.
type Setup struct {
	Ran             bool      `json:"ran"`
	OK              bool      `json:"ok"`
	At              time.Time `json:"at,omitzero"`
	DurationSeconds float64   `json:"durationSeconds"`
	Error           string    `json:"error,omitempty"`
	// Step is the running step while onboarding ("7/16 build nexus core"), else "".
	Step string `json:"step,omitempty"`
}

// Agent is the agent's own state.
type Agent struct {
	Version      string    `json:"version"`
	Started      time.Time `json:"started"`
	PM2Connected bool      `json:"pm2Connected"`
	// PM2Error says why PM2 is not connected (gone, not answering); "" when it is.
	PM2Error string `json:"pm2Error,omitempty"`
	Setup    Setup  `json:"setup"`
}

// Snapshot is a consistent copy of the whole state.
type Snapshot struct {
	Agent    Agent     `json:"agent"`
	Services []Service `json:"services"`
}

// AllReady reports whether every service is ready and PM2 is connected: a box whose PM2
// daemon does not answer is not supervised, whatever its services answer. A service an
// operator stopped through the agent is left out (it is down on purpose), but at least one
// service must be ready.
func (s Snapshot) AllReady() bool {
	if !s.Agent.PM2Connected {
		return false
	}
	n := 0
	for _, sv := range s.Services {
		if sv.OperatorStopped {
			continue
		}
		if !sv.Ready {
			return false
		}
		n++
	}
	return n > 0
}

// Service returns the named service and whether it exists.
func (s Snapshot) Service(name string) (Service, bool) {
	for _, sv := range s.Services {
		if sv.Name == name {
			return sv, true
		}
	}
	return Service{}, false
}

// Change is one notification: a service's phase or readiness changed (Service set), or
// the agent's state changed (Service empty).
type Change struct {
	Service    string
	From, To   Phase
	Ready      bool
	At         time.Time
	Generation uint64
}

// Store holds the state. Safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	agent   Agent
	svcs    []Service
	index   map[string]int
	gen     uint64
	subs    map[chan Change]struct{}
	now     func() time.Time
	control ControlFunc
}

// Control actions an operator may ask for.
const (
	ActionRestart = "restart" // restart now through PM2, counted as manual
	ActionStop    = "stop"    // stop through PM2; the agent stops probing and restarting it
	ActionStart   = "start"   // start it again; supervision resumes with a startup probe
)

// Actions lists the control actions.
var Actions = []string{ActionRestart, ActionStop, ActionStart}

// Command is an operator's request about one service.
type Command struct {
	Action  string
	Service string
}

// ControlFunc carries out a Command and says what it did, in a few words.
type ControlFunc func(ctx context.Context, c Command) (string, error)

// Errors of Control (wrapped with the details).
var (
	// ErrUnknownService: the command names no supervised service.
	ErrUnknownService = errors.New("no such service")
	// ErrUnknownAction: the action is not one of Actions.
	ErrUnknownAction = errors.New("no such action")
	// ErrNotSupervising: nothing handles commands (the agent is still onboarding).
	ErrNotSupervising = errors.New("the agent is not supervising yet (onboarding); try again once `livinity-agent status` shows the services")
	// ErrBusy: the service is in the middle of something that the command would fight
	// (a restart under way); try again.
	ErrBusy = errors.New("the service is busy")
)

// SetControl makes fn the handler of Control; the returned func removes it (if it is
// still the handler). The supervisor sets it while it runs.
func (s *Store) SetControl(fn ControlFunc) (unset func()) {
	s.mu.Lock()
	s.control = fn
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.control = nil
			s.mu.Unlock()
		})
	}
}

// Names lists the services in the store's order.
func (s *Store) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, len(s.svcs))
	for i, sv := range s.svcs {
		out[i] = sv.Name
	}
	return out
}

// Control checks c (a known action and service) and hands it to the handler SetControl
// set: ErrUnknownAction, ErrUnknownService, or ErrNotSupervising when there is none.
func (s *Store) Control(ctx context.Context, c Command) (string, error) {
	if !slices.Contains(Actions, c.Action) {
		return "", fmt.Errorf("%w %q: use restart, stop or start", ErrUnknownAction, c.Action)
	}
	s.mu.RLock()
	_, known := s.index[c.Service]
	fn := s.control
	s.mu.RUnlock()
	if !known {
		return "", fmt.Errorf("%w %q", ErrUnknownService, c.Service)
	}
	if fn == nil {
		return "", ErrNotSupervising
	}
	return fn(ctx, c)
}

// New returns a store for the named services, all Stopped until the supervisor says more.
func New(agent Agent, names []string) *Store {
	s := &Store{agent: agent, index: map[string]int{}, subs: map[chan Change]struct{}{}, now: time.Now}
	for i, n := range names {
		s.svcs = append(s.svcs, Service{Name: n, Phase: Stopped, Restarts: zeroReasons()})
		s.index[n] = i
	}
	return s
}

func zeroReasons() map[string]uint64 {
	m := make(map[string]uint64, len(Reasons))
	for _, r := range Reasons {
		m[r] = 0
	}
	return m
}

// Update changes one service through fn. A change of phase or readiness sets Since and
// notifies subscribers. Unknown names are ignored.
func (s *Store) Update(name string, fn func(*Service)) {
	s.mu.Lock()
	i, ok := s.index[name]
	if !ok {
		s.mu.Unlock()
		return
	}
	sv := &s.svcs[i]
	from, wasReady := sv.Phase, sv.Ready
	fn(sv)
	s.gen++
	var ch *Change
	if sv.Phase != from || sv.Ready != wasReady {
		if sv.Phase != from {
			sv.Since = s.now()
		}
		ch = &Change{Service: name, From: from, To: sv.Phase, Ready: sv.Ready, At: s.now(), Generation: s.gen}
	}
	s.mu.Unlock()
	if ch != nil {
		s.publish(*ch)
	}
}

// UpdateAgent changes the agent's state through fn and notifies subscribers.
func (s *Store) UpdateAgent(fn func(*Agent)) {
	s.mu.Lock()
	fn(&s.agent)
	s.gen++
	ch := Change{At: s.now(), Generation: s.gen}
	s.mu.Unlock()
	s.publish(ch)
}

// Snapshot returns a deep copy of the state.
func (s *Store) Snapshot() Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := Snapshot{Agent: s.agent, Services: slices.Clone(s.svcs)}
	for i := range out.Services {
		out.Services[i].Restarts = maps.Clone(out.Services[i].Restarts)
	}
	return out
}

// Service returns a copy of one service's state (cheaper than a Snapshot of all).
func (s *Store) Service(name string) (Service, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.index[name]
	if !ok {
		return Service{}, false
	}
	sv := s.svcs[i]
	sv.Restarts = maps.Clone(sv.Restarts)
	return sv, true
}

// Subscribe returns a channel of changes. Slow subscribers lose notifications rather than
// block the supervisor (each channel buffers 64); call Snapshot for the truth. cancel
// unsubscribes and closes the channel.
func (s *Store) Subscribe() (changes <-chan Change, cancel func()) {
	ch := make(chan Change, 64)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.subs, ch)
			s.mu.Unlock()
			close(ch)
		})
	}
}

func (s *Store) publish(c Change) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for ch := range s.subs {
		select {
		case ch <- c:
		default:
		}
	}
}
