package state

import (
	"testing"
	"time"
)

func TestUpdateNotifiesOnPhaseOrReadinessChangeOnly(t *testing.T) {
	s := New(Agent{Version: "v"}, []string{"a", "b"})
	ch, cancel := s.Subscribe()
	defer cancel()
	s.Update("a", func(sv *Service) { sv.Phase = Starting; sv.PID = 10 })
	s.Update("a", func(sv *Service) { sv.MemoryBytes = 5 }) // no phase change: no notification
	s.Update("a", func(sv *Service) { sv.Phase = Ready; sv.Ready = true })
	s.Update("nope", func(sv *Service) { sv.Phase = Ready })
	want := []Change{{Service: "a", From: Stopped, To: Starting}, {Service: "a", From: Starting, To: Ready, Ready: true}}
	for i, w := range want {
		select {
		case got := <-ch:
			if got.Service != w.Service || got.From != w.From || got.To != w.To || got.Ready != w.Ready {
				t.Fatalf("change %d = %+v, want %+v", i, got, w)
			}
		case <-time.After(time.Second):
			t.Fatalf("change %d missing", i)
		}
	}
	select {
	case got := <-ch:
		t.Fatalf("unexpected change %+v", got)
	default:
	}
	snap := s.Snapshot()
	a, _ := snap.Service("a")
	if a.PID != 10 || a.MemoryBytes != 5 || !a.Ready || a.Since.IsZero() {
		t.Fatalf("service a = %+v", a)
	}
	if snap.AllReady() {
		t.Fatal("b is not ready, yet AllReady")
	}
}

func TestSnapshotIsADeepCopy(t *testing.T) {
	s := New(Agent{}, []string{"a"})
	snap := s.Snapshot()
	snap.Services[0].Restarts[ReasonCrash] = 99
	snap.Services[0].Phase = Ready
	again := s.Snapshot()
	if again.Services[0].Restarts[ReasonCrash] != 0 || again.Services[0].Phase != Stopped {
		t.Fatalf("snapshot shares memory with the store: %+v", again.Services[0])
	}
	if len(again.Services[0].Restarts) != len(Reasons) {
		t.Fatalf("restarts should list every reason: %v", again.Services[0].Restarts)
	}
}

func TestSlowSubscriberDoesNotBlockAndCancelIsIdempotent(t *testing.T) {
	s := New(Agent{}, []string{"a"})
	_, cancel := s.Subscribe()
	for i := 0; i < 1000; i++ {
		s.Update("a", func(sv *Service) { sv.Ready = !sv.Ready })
	}
	for i := 0; i < 3; i++ {
		cancel()
	}
}
