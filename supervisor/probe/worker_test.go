package probe

import (
	"context"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// harness drives a Worker on a fake clock. The check blocks until the test feeds it an
// outcome, so every step is synchronous and no test sleeps.
type harness struct {
	t      *testing.T
	clock  *fakeClock
	period time.Duration
	calls  chan struct{}
	feed   chan Outcome
	w      *Worker

	mu      sync.Mutex
	events  []string
	inCheck bool
}

func newHarness(t *testing.T, timing Timing) *harness {
	t.Helper()
	h := &harness{
		t:      t,
		clock:  newFakeClock(),
		period: timing.Period,
		calls:  make(chan struct{}),
		feed:   make(chan Outcome),
	}
	check := func(ctx context.Context) Result {
		select {
		case h.calls <- struct{}{}:
		case <-ctx.Done():
			return Result{Outcome: Error, Detail: "canceled before start"}
		}
		select {
		case o := <-h.feed:
			return Result{Outcome: o, Detail: "fed " + o.String()}
		case <-ctx.Done():
			return Result{Outcome: Error, Detail: "canceled"}
		}
	}
	w, err := StartWorker(context.Background(), WorkerConfig{
		Type:   Liveness,
		Timing: timing,
		Check:  check,
		Clock:  h.clock,
		OnResult: func(r Result) {
			h.record("result " + r.Outcome.String())
		},
		OnChange: func(c Change) {
			if c.Type != Liveness {
				t.Errorf("change carries type %s, want liveness", c.Type)
			}
			h.record("change " + c.From.String() + "->" + c.To.String())
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	t.Cleanup(w.Stop)
	return h
}

func (h *harness) record(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

// waitCall waits until the worker is inside a check.
func (h *harness) waitCall() {
	h.t.Helper()
	if h.inCheck {
		return
	}
	select {
	case <-h.calls:
		h.inCheck = true
	case <-time.After(10 * time.Second):
		h.t.Fatal("the worker did not start a check")
	}
}

// step answers the running (or next) check with o, then lets one period pass.
func (h *harness) step(o Outcome) {
	h.t.Helper()
	h.waitCall()
	h.feed <- o
	h.inCheck = false
	h.clock.Advance(h.period)
}

// take returns the events recorded so far. It first waits for the next check to start,
// by which time the worker has reported everything about the previous one.
func (h *harness) take() []string {
	h.t.Helper()
	h.waitCall()
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := h.events
	h.events = nil
	return ev
}

func outcomesOf(s string) []Outcome {
	var out []Outcome
	for _, c := range s {
		switch c {
		case 'S':
			out = append(out, Success)
		case 'F':
			out = append(out, Failure)
		case 'E':
			out = append(out, Error)
		}
	}
	return out
}

func TestWorkerThresholds(t *testing.T) {
	tests := []struct {
		name       string
		succ, fail int
		outcomes   string // S success, F failure, E error
		changes    []string
	}{
		{name: "three failures flip to failure", succ: 1, fail: 3, outcomes: "FFF",
			changes: []string{"unknown->failure"}},
		{name: "two failures are not enough", succ: 1, fail: 3, outcomes: "FF"},
		{name: "one success flips back", succ: 1, fail: 3, outcomes: "FFFS",
			changes: []string{"unknown->failure", "failure->success"}},
		{name: "a success breaks the failure run", succ: 1, fail: 3, outcomes: "FFSFF",
			changes: []string{"unknown->success"}},
		{name: "errors neither count nor break a run", succ: 1, fail: 3, outcomes: "FEFEEF",
			changes: []string{"unknown->failure"}},
		{name: "errors alone change nothing", succ: 1, fail: 1, outcomes: "EEEE"},
		{name: "success threshold two", succ: 2, fail: 1, outcomes: "SFSSS",
			changes: []string{"unknown->failure", "failure->success"}},
		{name: "repeated verdicts are reported once", succ: 1, fail: 2, outcomes: "FFFFFSSS",
			changes: []string{"unknown->failure", "failure->success"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Timing{Period: time.Second, Timeout: time.Hour,
				SuccessThreshold: tt.succ, FailureThreshold: tt.fail})
			var want []string
			for _, o := range outcomesOf(tt.outcomes) {
				h.step(o)
				want = append(want, "result "+o.String())
			}
			var got, gotResults []string
			for _, e := range h.take() {
				if c, ok := strings.CutPrefix(e, "change "); ok {
					got = append(got, c)
				} else {
					gotResults = append(gotResults, e)
				}
			}
			if !slices.Equal(gotResults, want) {
				t.Errorf("results = %q, want %q", gotResults, want)
			}
			if !slices.Equal(got, tt.changes) {
				t.Errorf("changes = %q, want %q", got, tt.changes)
			}
			wantState := StateUnknown
			if n := len(tt.changes); n > 0 {
				wantState = map[string]State{"success": StateSuccess, "failure": StateFailure}[tt.changes[n-1][strings.Index(tt.changes[n-1], ">")+1:]]
			}
			if s := h.w.State(); s != wantState {
				t.Errorf("State() = %s, want %s", s, wantState)
			}
		})
	}
}

func TestWorkerReportsEveryResultInOrder(t *testing.T) {
	h := newHarness(t, Timing{Period: time.Second, Timeout: time.Hour, SuccessThreshold: 1, FailureThreshold: 2})
	for _, o := range outcomesOf("SEFF") {
		h.step(o)
	}
	want := []string{
		"result success", "change unknown->success",
		"result error",
		"result failure",
		"result failure", "change success->failure",
	}
	if got := h.take(); !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestWorkerInitialDelay(t *testing.T) {
	h := newHarness(t, Timing{InitialDelay: 10 * time.Second, Period: time.Second, Timeout: time.Hour,
		SuccessThreshold: 1, FailureThreshold: 3})
	h.clock.WaitRequests(t, 1)
	h.clock.Advance(9 * time.Second)
	select {
	case <-h.calls:
		t.Fatal("a check ran before the initial delay was over")
	default:
	}
	if got := h.clock.Requests(); !slices.Equal(got, []string{"after 10s"}) {
		t.Fatalf("clock requests = %q, want only the initial delay", got)
	}
	h.clock.Advance(time.Second)
	h.step(Success)
	if got, want := h.take(), []string{"result success", "change unknown->success"}; !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
	if got, want := h.clock.Requests(), []string{"after 10s", "ticker 1s"}; !slices.Equal(got, want) {
		t.Errorf("clock requests = %q, want %q", got, want)
	}
}

func TestWorkerHoldResume(t *testing.T) {
	h := newHarness(t, Timing{Period: time.Second, Timeout: time.Hour, SuccessThreshold: 1, FailureThreshold: 3})
	for _, o := range outcomesOf("FFFS") {
		h.step(o)
	}
	if got, want := h.take(), []string{
		"result failure", "result failure", "result failure", "change unknown->failure",
		"result success", "change failure->success",
	}; !slices.Equal(got, want) {
		t.Fatalf("events before hold = %q, want %q", got, want)
	}

	// Two failures, then the owner restarts the service and holds the worker while a
	// third check is running: that check is reported but not counted.
	h.step(Failure)
	h.step(Failure)
	h.waitCall()
	h.w.Hold()
	h.step(Failure)
	// While held, ticks pass without checks.
	for range 3 {
		h.clock.WaitDrained(t)
		h.clock.Advance(h.period)
	}
	h.clock.WaitDrained(t)
	select {
	case <-h.calls:
		t.Fatal("a check ran while the worker was held")
	default:
	}
	if s := h.w.State(); s != StateSuccess {
		t.Errorf("State() while held = %s, want the held verdict success", s)
	}

	// The new instance appears: the verdict resets to unknown and the counters start over,
	// so two more failures do not flip it, a third does.
	h.w.Resume()
	h.step(Failure)
	h.step(Failure)
	if got, want := h.take(), []string{
		"result failure", "result failure", "result failure",
		"change success->unknown",
		"result failure", "result failure",
	}; !slices.Equal(got, want) {
		t.Fatalf("events around hold = %q, want %q", got, want)
	}
	h.step(Failure)
	if got, want := h.take(), []string{"result failure", "change unknown->failure"}; !slices.Equal(got, want) {
		t.Errorf("events after resume = %q, want %q", got, want)
	}
}

func TestWorkerResumeRestartsInitialDelay(t *testing.T) {
	h := newHarness(t, Timing{InitialDelay: 5 * time.Second, Period: time.Second, Timeout: time.Hour,
		SuccessThreshold: 1, FailureThreshold: 1})
	h.clock.WaitRequests(t, 1)
	h.clock.Advance(5 * time.Second)
	h.step(Failure)
	h.waitCall()
	h.w.Hold()
	h.step(Failure)
	h.clock.WaitDrained(t)
	h.w.Resume()
	h.clock.WaitRequests(t, 3)
	if got, want := h.clock.Requests(), []string{"after 5s", "ticker 1s", "after 5s"}; !slices.Equal(got, want) {
		t.Fatalf("clock requests = %q, want %q", got, want)
	}
	h.clock.Advance(5 * time.Second)
	h.step(Success)
	if got, want := h.take(), []string{
		"result failure", "change unknown->failure",
		"result failure",
		"change failure->unknown",
		"result success", "change unknown->success",
	}; !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestWorkerResumeWithoutHoldDoesNothing(t *testing.T) {
	h := newHarness(t, Timing{Period: time.Second, Timeout: time.Hour, SuccessThreshold: 1, FailureThreshold: 1})
	h.step(Failure)
	h.w.Resume()
	h.step(Failure)
	if got, want := h.take(), []string{"result failure", "change unknown->failure", "result failure"}; !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
	if got, want := len(h.clock.Requests()), 1; got != want {
		t.Errorf("clock requests = %q, want one ticker (no restart)", h.clock.Requests())
	}
}

func TestStartWorkerRejectsBadConfig(t *testing.T) {
	good := Timing{Period: time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3}
	check := func(context.Context) Result { return Result{Outcome: Success} }
	tests := []struct {
		name    string
		cfg     WorkerConfig
		wantErr string
	}{
		{"zero period", WorkerConfig{Type: Startup, Check: check, Timing: Timing{Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 1}},
			"start startup probe worker: probe timing: period 0s must be greater than zero"},
		{"zero timeout", WorkerConfig{Type: Readiness, Check: check, Timing: Timing{Period: time.Second, SuccessThreshold: 1, FailureThreshold: 1}},
			"start readiness probe worker: probe timing: timeout 0s must be greater than zero"},
		{"negative delay", WorkerConfig{Type: Liveness, Check: check, Timing: Timing{InitialDelay: -time.Second, Period: time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 1}},
			"start liveness probe worker: probe timing: initialDelay -1s is negative: use 0 or more"},
		{"zero thresholds", WorkerConfig{Type: Liveness, Check: check, Timing: Timing{Period: time.Second, Timeout: time.Second}},
			"start liveness probe worker: probe timing: successThreshold 0 must be at least 1\nprobe timing: failureThreshold 0 must be at least 1"},
		{"nil check", WorkerConfig{Type: Liveness, Timing: good},
			"start liveness probe worker: Check is nil: pass a CheckFunc (see Checker)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := StartWorker(context.Background(), tt.cfg)
			if err == nil {
				w.Stop()
				t.Fatal("StartWorker accepted a bad config")
			}
			if err.Error() != tt.wantErr {
				t.Errorf("error = %q, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestWorkerRealClock runs a worker on the real clock against a real listener: the first
// check waits for the initial delay, the state turns success, and after the listener
// closes, three failures turn it to failure.
func TestWorkerRealClock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acceptEach(ln, func(c net.Conn) { c.Close() })
	spec := Spec{Kind: KindTCP, Port: ln.Addr().(*net.TCPAddr).Port}
	timing := Timing{InitialDelay: 150 * time.Millisecond, Period: 20 * time.Millisecond, Timeout: time.Second,
		SuccessThreshold: 1, FailureThreshold: 3}
	results := make(chan Result, 1000)
	changes := make(chan Change, 10)
	start := time.Now()
	w, err := StartWorker(context.Background(), WorkerConfig{
		Type: Readiness, Timing: timing, Check: Checker(spec, nil),
		OnResult: func(r Result) { results <- r },
		OnChange: func(c Change) { changes <- c },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	first := <-results
	if waited := first.At.Sub(start); waited < timing.InitialDelay {
		t.Errorf("first check %s after start, before the initial delay %s", waited, timing.InitialDelay)
	}
	c := waitChange(t, changes)
	if c.From != StateUnknown || c.To != StateSuccess || c.Cause.Outcome != Success {
		t.Fatalf("first change = %+v, want unknown->success caused by a success", c)
	}
	ln.Close()
	c = waitChange(t, changes)
	if c.From != StateSuccess || c.To != StateFailure || c.Cause.Outcome != Failure {
		t.Fatalf("second change = %+v, want success->failure caused by a failure", c)
	}
	if !strings.Contains(c.Cause.Detail, "connection refused") {
		t.Errorf("failure detail = %q, want it to say connection refused", c.Cause.Detail)
	}
	// Count the failures reported since the last success: the flip came on the third.
	var run int
	for len(results) > 0 {
		r := <-results
		if r.Outcome == Success {
			run = 0
			continue
		}
		run++
		if r.At.Equal(c.Cause.At) {
			break
		}
	}
	if run != 3 {
		t.Errorf("state flipped after %d failures in a row, want 3", run)
	}
}

func waitChange(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no state change reported")
		return Change{}
	}
}

func TestWorkerStopIsIdempotentAndLeavesNoGoroutine(t *testing.T) {
	base := runtime.NumGoroutine()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	spec := Spec{Kind: KindTCP, Port: ln.Addr().(*net.TCPAddr).Port}
	timing := Timing{Period: 5 * time.Millisecond, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3}

	var workers []*Worker
	checked := make(chan struct{}, 100)
	for range 5 {
		w, err := StartWorker(context.Background(), WorkerConfig{Type: Liveness, Timing: timing, Check: Checker(spec, nil),
			OnResult: func(Result) {
				select {
				case checked <- struct{}{}:
				default:
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, w)
	}
	for range 10 {
		<-checked
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		for range 10 {
			wg.Add(1)
			go func() { defer wg.Done(); w.Stop() }()
		}
	}
	wg.Wait()
	for _, w := range workers {
		for range 10 {
			w.Stop()
		}
		select {
		case <-w.Done():
		default:
			t.Fatal("Done is open after Stop returned")
		}
	}
	waitFor(t, "worker goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
}

func TestWorkerStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := StartWorker(ctx, WorkerConfig{Type: Startup,
		Timing: Timing{Period: time.Hour, Timeout: time.Hour, SuccessThreshold: 1, FailureThreshold: 1},
		Check:  func(ctx context.Context) Result { <-ctx.Done(); return Result{Outcome: Error} },
		OnResult: func(r Result) {
			t.Errorf("a check cut short by shutdown was reported: %+v", r)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop when its context was canceled")
	}
}
