package statusapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/supervisor/state"
)

var update = flag.Bool("update", false, "rewrite testdata/status.golden.json")

var (
	t0  = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now = t0.Add(2*time.Hour + 30*time.Minute)
)

// knownSnapshot is a state with one service of each kind of interest.
func knownSnapshot() state.Snapshot {
	reasons := func(kv ...any) map[string]uint64 {
		m := map[string]uint64{}
		for _, r := range state.Reasons {
			m[r] = 0
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = uint64(kv[i+1].(int))
		}
		return m
	}
	zero := 0
	return state.Snapshot{
		Agent: state.Agent{
			Version: "1.2.3", Started: t0, PM2Connected: true,
			Setup: state.Setup{Ran: true, OK: true, At: t0.Add(-5 * time.Minute), DurationSeconds: 272.5},
		},
		Services: []state.Service{{
			Name: "livos", PM2Status: "online", PID: 4242, Started: t0.Add(time.Minute),
			Phase: state.Ready, Ready: true, Since: t0.Add(90 * time.Second),
			Restarts: reasons(), MemoryBytes: 187 << 20, MemoryKind: "pss", MemoryLimitBytes: 500 << 20,
			CPUPercent: 12.345, CPUMeasured: true, CPUSeconds: 98.5,
			LastProbe: state.ProbeResult{Type: "readiness", OK: true, Outcome: "success",
				Duration: 1234567 * time.Nanosecond, At: now.Add(-2 * time.Second)},
		}, {
			Name: "nexus-memory", PM2Status: "errored", PID: 0,
			Phase: state.Backoff, Ready: false, Since: now.Add(-10 * time.Second),
			Restarts: reasons(state.ReasonCrash, 2, state.ReasonProbe, 1), PM2Restarts: 17,
			MemoryLimitBytes: 500 << 20,
			LastExit:         state.Exit{Code: &zero, Signal: "SIGKILL", At: now.Add(-11 * time.Second)},
			NextAttempt:      now.Add(20 * time.Second),
			Detail:           "crashed 2 times; next restart in 20s",
		}, {
			Name: "nexus-worker", Phase: state.Stopped, Restarts: reasons(), Since: now.Add(-time.Minute),
			OperatorStopped: true, OperatorStoppedAt: now.Add(-time.Minute), PM2Status: "stopped",
			Detail: "stopped by the operator (livinity-agent stop); livinity-agent start nexus-worker resumes it",
		}},
	}
}

func TestStatusJSONMatchesGolden(t *testing.T) {
	got, err := json.MarshalIndent(FromSnapshot(knownSnapshot(), now), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "status.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (go test -run Golden -update writes it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the status document changed; if on purpose, update SCHEMA.md (bump SchemaVersion for a breaking change) and run go test -run Golden -update\ngot:\n%s\nwant:\n%s", got, want)
	}
	// The golden document reads back into the same value.
	var back Status
	if err := json.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.MarshalIndent(back, "", "  ")
	if !bytes.Equal(append(again, '\n'), want) {
		t.Fatalf("golden document does not round-trip:\n%s", again)
	}
}

func TestFromSnapshot(t *testing.T) {
	st := FromSnapshot(knownSnapshot(), now)
	if st.Schema != SchemaVersion || st.Source != SourceAgent || st.Ready {
		t.Fatalf("header = schema %d source %q ready %v", st.Schema, st.Source, st.Ready)
	}
	if st.Agent == nil || st.Agent.UptimeSeconds != 9000 || st.Agent.Setup.At == nil {
		t.Fatalf("agent = %+v", st.Agent)
	}
	livos, mem, worker := st.Services[0], st.Services[1], st.Services[2]
	if livos.UptimeSeconds != 8940 || livos.LastProbe == nil || livos.LastProbe.LatencySeconds != 0.001235 {
		t.Fatalf("livos = %+v, probe %+v", livos, livos.LastProbe)
	}
	if livos.NextAttempt != nil || livos.NextAttemptInSeconds != nil {
		t.Fatalf("livos is not backing off, yet next attempt %v", livos.NextAttempt)
	}
	if mem.Restarts != (Restarts{Crash: 2, Probe: 1}) || mem.RestartsTotal != 3 || mem.PM2Restarts != 17 {
		t.Fatalf("nexus-memory restarts = %+v total %d", mem.Restarts, mem.RestartsTotal)
	}
	if mem.UptimeSeconds != 0 || mem.NextAttemptInSeconds == nil || *mem.NextAttemptInSeconds != 20 {
		t.Fatalf("nexus-memory = %+v", mem)
	}
	if worker.LastProbe != nil || worker.State != "stopped" || !worker.StoppedByOperator || worker.CPUPercent != nil {
		t.Fatalf("nexus-worker = %+v", worker)
	}
	if livos.CPUPercent == nil || *livos.CPUPercent != 12.3 {
		t.Fatalf("livos cpu = %v, want 12.3 (rounded to a tenth)", livos.CPUPercent)
	}

	// A service an operator stopped does not count against readiness; one that is merely
	// stopped does.
	snap := knownSnapshot()
	snap.Services = []state.Service{snap.Services[0], snap.Services[2]}
	if st := FromSnapshot(snap, now); !st.Ready {
		t.Fatal("an operator-stopped service made the document not ready")
	}
	snap.Services[1].OperatorStopped = false
	if st := FromSnapshot(snap, now); st.Ready {
		t.Fatal("a stopped service (not by the operator) left the document ready")
	}
	snap.Services = snap.Services[1:]
	snap.Services[0].OperatorStopped = true
	if st := FromSnapshot(snap, now); st.Ready {
		t.Fatal("every service stopped by the operator, yet ready")
	}

	// A retry already due counts 0 seconds, not negative ones.
	late := FromSnapshot(knownSnapshot(), now.Add(time.Minute))
	if in := late.Services[1].NextAttemptInSeconds; in == nil || *in != 0 {
		t.Fatalf("overdue next attempt in %v s, want 0", in)
	}

	// All ready; an unknown restart reason still counts in the total.
	snap = knownSnapshot()
	snap.Services = snap.Services[:1]
	snap.Services[0].Restarts["something-new"] = 4
	st = FromSnapshot(snap, now)
	if !st.Ready || st.Services[0].RestartsTotal != 4 {
		t.Fatalf("ready %v, total %d", st.Ready, st.Services[0].RestartsTotal)
	}
	// ... but not while PM2 does not answer: nothing is supervised
	snap.Agent.PM2Connected, snap.Agent.PM2Error = false, "the PM2 daemon does not answer: no reply"
	if st = FromSnapshot(snap, now); st.Ready || st.Agent.PM2Error == "" {
		t.Fatalf("PM2 not answering: ready %v, pm2Error %q", st.Ready, st.Agent.PM2Error)
	}

	// No services: not ready, and services is [] rather than null.
	empty, _ := json.Marshal(FromSnapshot(state.Snapshot{}, now))
	var raw map[string]json.RawMessage
	json.Unmarshal(empty, &raw)
	if string(raw["services"]) != "[]" || string(raw["ready"]) != "false" {
		t.Fatalf("empty document = %s", empty)
	}
}
