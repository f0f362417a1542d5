package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// TestOnboardingFailed: install stops following at a failed onboarding that ended after it
// started the agent, never at an earlier agent's, one still running or a success.
func TestOnboardingFailed(t *testing.T) {
	start := time.Now()
	at := func(d time.Duration) *time.Time { v := start.Add(d); return &v }
	doc := func(s statusapi.Setup) statusapi.Status { return statusapi.Status{Agent: &statusapi.Agent{Setup: s}} }
	for _, tc := range []struct {
		name string
		doc  statusapi.Status
		fail bool
	}{
		{"no agent section", statusapi.Status{}, false},
		{"not run yet", doc(statusapi.Setup{}), false},
		{"running", doc(statusapi.Setup{Ran: true, Step: "7/16 build nexus core"}), false},
		{"succeeded", doc(statusapi.Setup{Ran: true, OK: true, At: at(time.Second)}), false},
		{"an earlier agent's failure", doc(statusapi.Setup{Ran: true, Error: "old", At: at(-time.Hour)}), false},
		{"failed", doc(statusapi.Setup{Ran: true, Error: "step build-core: exit status 2", At: at(3 * time.Second)}), true},
	} {
		err := onboardingFailed(tc.doc, start)
		if (err != nil) != tc.fail {
			t.Errorf("%s: err = %v, want failure %v", tc.name, err, tc.fail)
		}
		if err != nil && (!strings.Contains(err.Error(), "step build-core: exit status 2") || !strings.Contains(err.Error(), "journalctl -u livinity-agent.service -f")) {
			t.Errorf("%s: %v lacks the step's error or the command to follow", tc.name, err)
		}
	}
}
