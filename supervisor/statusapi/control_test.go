package statusapi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/supervisor/state"
)

// TestControlOverTheSocket: a control request reaches the store's handler with the
// service and action, and each refusal comes back as its error, with the names for an
// unknown service.
func TestControlOverTheSocket(t *testing.T) {
	path := filepath.Join(testenv.ShortTempDir(t), SocketName)
	store := state.New(state.Agent{Version: "v"}, names)
	serve(t, path, store)
	ctx := t.Context()

	if _, err := Control(ctx, path, "nexus-core", "restart"); !errors.Is(err, state.ErrNotSupervising) {
		t.Fatalf("control before the supervisor runs: %v, want ErrNotSupervising", err)
	}
	var got []state.Command
	unset := store.SetControl(func(ctx context.Context, c state.Command) (string, error) {
		got = append(got, c)
		switch c.Service {
		case "nexus-mcp":
			return "", fmt.Errorf("%w: restarting already", state.ErrBusy)
		case "livos":
			return "", errors.New("restart livos through PM2: process not found")
		}
		return c.Service + " " + c.Action + "ed", nil
	})
	res, err := Control(ctx, path, "nexus-core", "restart")
	if err != nil || !res.OK || res.Message != "nexus-core restarted" || res.Service != "nexus-core" || res.Action != "restart" {
		t.Fatalf("restart nexus-core: %+v, %v", res, err)
	}
	if !slices.Equal(got, []state.Command{{Action: "restart", Service: "nexus-core"}}) {
		t.Fatalf("the handler got %+v", got)
	}
	res, err = Control(ctx, path, "nexus", "stop")
	if !errors.Is(err, state.ErrUnknownService) || !slices.Equal(res.Services, names) {
		t.Fatalf("stop nexus: %+v, %v; want ErrUnknownService with the names", res, err)
	}
	if _, err := Control(ctx, path, "nexus-core", "reload"); !errors.Is(err, state.ErrUnknownAction) {
		t.Fatalf("reload: %v, want ErrUnknownAction", err)
	}
	if _, err := Control(ctx, path, "nexus-mcp", "stop"); !errors.Is(err, state.ErrBusy) || !strings.Contains(err.Error(), "restarting already") {
		t.Fatalf("busy: %v", err)
	}
	var ce *ControlError
	if _, err := Control(ctx, path, "livos", "start"); !errors.As(err, &ce) || ce.Err != nil || !strings.Contains(err.Error(), "process not found") {
		t.Fatalf("a PM2 failure: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("refused requests reached the handler: %+v", got)
	}
	unset()
	if _, err := Control(ctx, path, "nexus-core", "restart"); !errors.Is(err, state.ErrNotSupervising) {
		t.Fatalf("control after the supervisor stopped: %v", err)
	}
	// a GET is not a control request, and the status is still served beside it
	if _, err := Fetch(ctx, path); err != nil {
		t.Fatal(err)
	}
	if _, err := Control(ctx, filepath.Join(t.TempDir(), SocketName), "livos", "restart"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no agent: %v, want ErrNotRunning", err)
	}
}

// TestControlNeedsRootOrTheAgentsUser: the peer's credentials decide, not the socket's
// mode (the group may read the status).
func TestControlNeedsRootOrTheAgentsUser(t *testing.T) {
	for _, c := range []struct {
		cred peerCred
		ok   bool
	}{
		{peerCred{uid: 0}, true},
		{peerCred{uid: int32(selfUID())}, true},
		{peerCred{uid: 65534}, selfUID() == 65534},
	} {
		if got := c.cred.allowed(); got != c.ok {
			t.Errorf("uid %d allowed = %v, want %v", c.cred.uid, got, c.ok)
		}
	}
}

func selfUID() int { return os.Geteuid() }
