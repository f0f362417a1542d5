package probe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Type is the role of a Worker's probe, as in Kubernetes. It labels Changes; the
// debouncing is the same for every type.
type Type int

// The probe types.
const (
	Startup Type = iota + 1
	Liveness
	Readiness
)

// String returns "startup", "liveness" or "readiness".
func (t Type) String() string {
	switch t {
	case Startup:
		return "startup"
	case Liveness:
		return "liveness"
	case Readiness:
		return "readiness"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

// State is a Worker's debounced verdict.
type State int

// The debounced states. A Worker starts in StateUnknown and returns to it on Resume.
const (
	StateUnknown State = iota
	StateSuccess
	StateFailure
)

// String returns "unknown", "success" or "failure".
func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateSuccess:
		return "success"
	case StateFailure:
		return "failure"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Timing is a probe's schedule and thresholds, with Kubernetes semantics.
type Timing struct {
	// InitialDelay passes before the first check, and again after each Resume.
	InitialDelay time.Duration
	// Period is the time between the starts of two checks.
	Period time.Duration
	// Timeout bounds each check; a check that runs out of it is a Failure.
	Timeout time.Duration
	// SuccessThreshold is how many successes in a row turn the state to success.
	SuccessThreshold int
	// FailureThreshold is how many failures in a row turn the state to failure.
	FailureThreshold int
}

// Validate checks the timing and names the offending field in its error.
func (t Timing) Validate() error {
	var errs []error
	if t.InitialDelay < 0 {
		errs = append(errs, fmt.Errorf("probe timing: initialDelay %s is negative: use 0 or more", t.InitialDelay))
	}
	if t.Period <= 0 {
		errs = append(errs, fmt.Errorf("probe timing: period %s must be greater than zero", t.Period))
	}
	if t.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("probe timing: timeout %s must be greater than zero", t.Timeout))
	}
	if t.SuccessThreshold < 1 {
		errs = append(errs, fmt.Errorf("probe timing: successThreshold %d must be at least 1", t.SuccessThreshold))
	}
	if t.FailureThreshold < 1 {
		errs = append(errs, fmt.Errorf("probe timing: failureThreshold %d must be at least 1", t.FailureThreshold))
	}
	return errors.Join(errs...)
}

// CheckFunc runs one check bounded by ctx and must return soon after ctx is done;
// Checker makes one from a Spec.
type CheckFunc func(ctx context.Context) Result

// Change is a change of a Worker's debounced state.
type Change struct {
	Type     Type
	From, To State
	// Cause is the check that crossed the threshold; it is the zero Result when the
	// change is the reset to StateUnknown done by Resume.
	Cause Result
}

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	Type   Type
	Timing Timing
	// Check runs one check; required.
	Check CheckFunc
	// OnResult, if set, receives every single-check Result, errors included, except
	// those of a check cut short by the Worker's own shutdown.
	OnResult func(Result)
	// OnChange, if set, receives every change of the debounced state.
	OnChange func(Change)
	// Clock defaults to RealClock.
	Clock Clock
}

// Worker runs one probe on its schedule and debounces the results, like the kubelet's
// prober worker. Checks run on the worker's own goroutine, one at a time; OnResult and
// OnChange are called on that goroutine, OnResult first, and must return promptly. They
// may call Hold, Resume and State, but not Stop (Stop waits for that goroutine).
//
// Counting: successes and failures in a row are counted; Error results are reported but
// neither counted nor do they break a run. The state changes only when a run reaches its
// threshold and differs from the current state.
type Worker struct {
	cfg    WorkerConfig
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{} // buffered: a Resume is waiting for the loop

	mu        sync.Mutex
	state     State
	held      bool
	resumeReq bool
	last      Outcome
	run       int
}

// StartWorker validates cfg and starts a Worker under ctx. The Worker stops when ctx is
// done or Stop is called.
func StartWorker(ctx context.Context, cfg WorkerConfig) (*Worker, error) {
	if err := cfg.Timing.Validate(); err != nil {
		return nil, fmt.Errorf("start %s probe worker: %w", cfg.Type, err)
	}
	if cfg.Check == nil {
		return nil, fmt.Errorf("start %s probe worker: Check is nil: pass a CheckFunc (see Checker)", cfg.Type)
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock{}
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Worker{
		cfg:    cfg,
		cancel: cancel,
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
	}
	go w.loop(ctx)
	return w, nil
}

// Stop ends the Worker and waits until its goroutine has returned. It is safe to call
// any number of times, from any goroutine except the Worker's callbacks.
func (w *Worker) Stop() {
	w.cancel()
	<-w.done
}

// Done is closed when the Worker's goroutine has returned.
func (w *Worker) Done() <-chan struct{} { return w.done }

// State returns the current debounced state.
func (w *Worker) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Hold freezes the verdict, for use right after the owner restarts the service: checks
// stop and no change is reported until Resume, which also resets the counters. A check
// already running is reported but not counted.
func (w *Worker) Hold() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held = true
	w.resumeReq = false
}

// Resume ends a Hold, for use when the owner sees the new instance (e.g. a new pid).
// The Worker's goroutine then resets the state to StateUnknown (reported as a Change if it
// was not already unknown), so the new instance must cross a threshold afresh, and checks
// start again after InitialDelay. Resume without a Hold does nothing.
func (w *Worker) Resume() {
	w.mu.Lock()
	if !w.held {
		w.mu.Unlock()
		return
	}
	w.resumeReq = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

func (w *Worker) loop(ctx context.Context) {
	defer close(w.done)
	for {
		if d := w.cfg.Timing.InitialDelay; d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.wake:
				w.applyResume()
				continue
			case <-w.cfg.Clock.After(d):
			}
		}
		if !w.probeLoop(ctx) {
			return
		}
	}
}

// probeLoop checks now and then every Period. It returns true when a Resume asks to
// start over with the initial delay, false when ctx is done.
func (w *Worker) probeLoop(ctx context.Context) bool {
	ticker := w.cfg.Clock.NewTicker(w.cfg.Timing.Period)
	defer ticker.Stop()
	for {
		w.checkOnce(ctx)
		select {
		case <-ctx.Done():
			return false
		case <-w.wake:
			if w.applyResume() {
				return true
			}
		case <-ticker.C():
		}
	}
}

// applyResume performs a pending Resume on the Worker's goroutine and reports whether
// there was one.
func (w *Worker) applyResume() bool {
	w.mu.Lock()
	if !w.resumeReq {
		w.mu.Unlock()
		return false
	}
	w.held, w.resumeReq = false, false
	w.last, w.run = 0, 0
	from := w.state
	w.state = StateUnknown
	w.mu.Unlock()
	if from != StateUnknown && w.cfg.OnChange != nil {
		w.cfg.OnChange(Change{Type: w.cfg.Type, From: from, To: StateUnknown})
	}
	return true
}

func (w *Worker) checkOnce(ctx context.Context) {
	w.mu.Lock()
	held := w.held
	w.mu.Unlock()
	if held {
		return
	}

	cctx, cancel := context.WithTimeout(ctx, w.cfg.Timing.Timeout)
	res := w.cfg.Check(cctx)
	cancel()
	if ctx.Err() != nil {
		return // shut down during the check: the result says nothing
	}
	if w.cfg.OnResult != nil {
		w.cfg.OnResult(res)
	}
	if res.Outcome != Success && res.Outcome != Failure {
		return
	}

	w.mu.Lock()
	if w.held { // Hold came during the check; only the Worker's goroutine ends a hold
		w.mu.Unlock()
		return
	}
	if res.Outcome == w.last {
		w.run++
	} else {
		w.last, w.run = res.Outcome, 1
	}
	to, threshold := StateSuccess, w.cfg.Timing.SuccessThreshold
	if res.Outcome == Failure {
		to, threshold = StateFailure, w.cfg.Timing.FailureThreshold
	}
	from := w.state
	changed := w.run >= threshold && from != to
	if changed {
		w.state = to
	}
	w.mu.Unlock()
	if changed && w.cfg.OnChange != nil {
		w.cfg.OnChange(Change{Type: w.cfg.Type, From: from, To: to, Cause: res})
	}
}
