package tick

import (
	"testing"
	"time"
)

// Tickers of one period started at different moments tick at the same instants: the
// multiples of the period, never less than a period after New.
func TestTicksFallOnMultiplesOfThePeriod(t *testing.T) {
	const d = 100 * time.Millisecond
	const late = 20 * time.Millisecond // how late a timer may fire on a busy machine
	var tickers []*Ticker
	var started []time.Time
	for range 3 {
		started = append(started, time.Now())
		tickers = append(tickers, New(d))
		time.Sleep(37 * time.Millisecond)
	}
	for i, tk := range tickers {
		prev := started[i]
		for n := range 4 {
			at := <-tk.C
			if off := at.Sub(at.Truncate(d)); off > late {
				t.Errorf("ticker %d, tick %d at %s: %s past a multiple of %s", i, n, at.Format("15:04:05.000000"), off, d)
			}
			if gap := at.Sub(prev); gap < d-late {
				t.Errorf("ticker %d, tick %d: %s after the one before (or New), want at least %s", i, n, gap, d)
			}
			prev = at
		}
		tk.Stop()
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
