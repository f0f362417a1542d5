package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// TestStatusOneService: `status SERVICE` narrows the table and --json to that service and
// exits by its readiness; an unknown name is refused with the names. Through the binary,
// against a real status socket.
func TestStatusOneService(t *testing.T) {
	store := readyStore()
	degrade(store) // nexus-memory in backoff
	env := []string{"LIVINITY_RUNTIME_DIR=" + serveStatus(t, store)}

	stdout, stderr, code := runBinary(t, env, "status", "nexus-core")
	if code != 0 {
		t.Fatalf("status nexus-core (ready): exit %d\n%s%s", code, stdout, stderr)
	}
	for _, n := range livosServices {
		if has := strings.Contains(stdout, "\n"+n+" "); has != (n == "nexus-core") {
			t.Errorf("status nexus-core: row of %s shown: %v\n%s", n, has, stdout)
		}
	}
	if !strings.Contains(stdout, "1/1 services ready") {
		t.Errorf("status nexus-core: no 1/1 summary:\n%s", stdout)
	}

	stdout, stderr, code = runBinary(t, env, "status", "--json", "nexus-memory")
	var doc statusapi.Status
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil || code != statusExitDegraded {
		t.Fatalf("status --json nexus-memory: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if len(doc.Services) != 1 || doc.Services[0].Name != "nexus-memory" || doc.Ready {
		t.Errorf("status --json nexus-memory: %+v", doc)
	}
	if !strings.Contains(stderr, "nexus-memory is not ready (backoff)") {
		t.Errorf("status --json nexus-memory: stderr %q", stderr)
	}

	_, stderr, code = runBinary(t, env, "status", "nexus-mem")
	if code != exitUsage || !strings.Contains(stderr, `"nexus-mem" is not a service; the services are `+strings.Join(livosServices, ", ")) {
		t.Errorf("status nexus-mem: exit %d: %s", code, stderr)
	}
	_, stderr, code = runBinary(t, env, "status", "a", "b")
	if code != exitUsage {
		t.Errorf("status a b: exit %d: %s", code, stderr)
	}
}
