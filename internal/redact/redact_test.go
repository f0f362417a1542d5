package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestHandlerRedactsMessageAttrsErrorsAndGroups(t *testing.T) {
	var buf bytes.Buffer
	s := &Secrets{}
	secret := "9f86d081884c7d659a2feaa0c55ad015"
	s.Add(secret, "abc") // "abc" is too short to be treated as a secret
	log := slog.New(NewHandler(slog.NewTextHandler(&buf, nil), s))
	log.With("pre", "x"+secret).Info("token "+secret, "err", errors.New("bad "+secret),
		slog.Group("g", "v", secret), "n", 3, "short", "abc")
	out := buf.String()
	if strings.Contains(out, secret) {
		t.Fatalf("secret leaked: %s", out)
	}
	if c := strings.Count(out, Mask); c != 4 {
		t.Fatalf("want 4 masks, got %d: %s", c, out)
	}
	if !strings.Contains(out, "short=abc") || !strings.Contains(out, "n=3") {
		t.Fatalf("non-secret values changed: %s", out)
	}
}

func TestEmptySecretsLeaveTextAlone(t *testing.T) {
	var s Secrets
	if got := s.String("hello"); got != "hello" {
		t.Fatalf("got %q", got)
	}
}
