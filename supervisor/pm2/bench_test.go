package pm2

import (
	"strconv"
	"testing"
)

// benchDaemon starts a PM2 7 daemon running five idle apps, as many as LivOS runs.
func benchDaemon(b *testing.B) *daemon {
	b.Helper()
	d := startDaemon(b, 7)
	for i := range 5 {
		d.startApp(b, "app"+strconv.Itoa(i), "idle.js")
	}
	return d
}

// BenchmarkListNative lists five apps through the RPC socket (one connection).
func BenchmarkListNative(b *testing.B) {
	d := benchDaemon(b)
	c := dial(b, d.home)
	for b.Loop() {
		procs, err := c.List(b.Context())
		if err != nil || len(procs) != 5 {
			b.Fatalf("list: %d apps, %v", len(procs), err)
		}
	}
}

// BenchmarkListJList lists five apps by running pm2 jlist.
func BenchmarkListJList(b *testing.B) {
	d := benchDaemon(b)
	for b.Loop() {
		procs, err := d.cli.List(b.Context())
		if err != nil || len(procs) != 5 {
			b.Fatalf("jlist: %d apps, %v", len(procs), err)
		}
	}
}
