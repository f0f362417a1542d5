package statusapi

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// BenchmarkFetch is one status read over the socket (a new connection each time, as the
// status command makes), with five services.
func BenchmarkFetch(b *testing.B) {
	path := filepath.Join(testenv.ShortTempDir(b), SocketName)
	store := state.New(state.Agent{Version: "v"}, names)
	srv := &Server{Path: path, Store: store}
	ctx := b.Context()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	b.Cleanup(func() { <-done }) // b.Context ends before cleanups run
	for {
		if _, err := Fetch(ctx, path); err == nil {
			break
		}
		select {
		case err := <-done:
			b.Fatalf("server stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Fetch(ctx, path); err != nil {
			b.Fatal(err)
		}
	}
}
