package setup

import (
	"testing"
	"time"
)

// TestVerifySeesAHealthyServiceSoon: a service that becomes healthy at t is checked again
// within a tenth of t and 60 ms (the onboarding's last step ends when the last service is
// seen), and a slow one is still checked every 2 s.
func TestVerifySeesAHealthyServiceSoon(t *testing.T) {
	for _, up := range []time.Duration{10 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 20 * time.Second, time.Minute} {
		b := verifyBackoff()
		var at time.Duration // the first check is at 0
		for at < up {
			at += b.NextBackOff()
		}
		if late, bound := at-up, min(up/10+60*time.Millisecond, 2*time.Second); late > bound {
			t.Errorf("a service healthy after %v is seen %v later; want at most %v", up, late, bound)
		}
	}
	b := verifyBackoff()
	for range 200 {
		b.NextBackOff()
	}
	if w := b.NextBackOff(); w != 2*time.Second {
		t.Errorf("the wait after 200 checks is %v, want 2s", w)
	}
}
