package tick

import (
	"sync"
	"testing"
	"time"
)

// Tickers of one period started at different moments tick at the same instants: the
// multiples of the period, the first between half a period and one and a half after New,
// every further one a period after the one before.
func TestTicksFallOnMultiplesOfThePeriod(t *testing.T) {
	const d = 100 * time.Millisecond
	const late = 20 * time.Millisecond // how late a timer may fire on a busy machine
	const ticks = 4
	started := make([]time.Time, 3)
	got := make([][]time.Time, len(started))
	var wg sync.WaitGroup
	for i := range started {
		started[i] = time.Now()
		tk := New(d)
		wg.Add(1)
		go func() { // read at once, so that no tick is dropped
			defer wg.Done()
			defer tk.Stop()
			for range ticks {
				got[i] = append(got[i], <-tk.C)
			}
		}()
		time.Sleep(37 * time.Millisecond)
	}
	wg.Wait()
	for i, times := range got {
		prev := started[i]
		for n, at := range times {
			if off := at.Sub(at.Truncate(d)); off > late {
				t.Errorf("ticker %d, tick %d at %s: %s past a multiple of %s", i, n, at.Format("15:04:05.000000"), off, d)
			}
			lo, hi := d-late, d+late
			if n == 0 {
				lo, hi = d/2-late, 3*d/2+late
			}
			if gap := at.Sub(prev); gap < lo || gap > hi {
				t.Errorf("ticker %d, tick %d: %s after the one before (or New), want %s to %s", i, n, gap, lo, hi)
			}
			prev = at
		}
	}
}

func TestNoTickAfterStop(t *testing.T) {
	tk := New(20 * time.Millisecond)
	<-tk.C
	tk.Stop()
	select {
	case <-tk.C: // one sent before Stop may be waiting
	default:
	}
	select {
	case at := <-tk.C:
		t.Fatalf("a tick at %s after Stop", at.Format("15:04:05.000000"))
	case <-time.After(100 * time.Millisecond):
	}
}
