// Package redact keeps secret values out of logs: a Secrets set replaces every known
// secret in text, and Handler wraps a slog.Handler so that no message or string attribute
// carries one. This is the second line of defence; code should not log secrets at all.
package redact

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Mask is what a secret is replaced with.
const Mask = "[REDACTED]"

// minLen is the shortest value treated as a secret: shorter ones would mangle ordinary text.
const minLen = 6

// Secrets is a concurrency-safe set of secret values.
type Secrets struct {
	mu       sync.RWMutex
	values   map[string]bool
	replacer *strings.Replacer
}

// Add registers secret values (short and empty ones are ignored).
func (s *Secrets) Add(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[string]bool{}
	}
	for _, v := range values {
		if len(v) >= minLen {
			s.values[v] = true
		}
	}
	var pairs []string
	for v := range s.values {
		pairs = append(pairs, v, Mask)
	}
	s.replacer = strings.NewReplacer(pairs...)
}

// String returns text with every secret replaced by Mask.
func (s *Secrets) String(text string) string {
	s.mu.RLock()
	r := s.replacer
	s.mu.RUnlock()
	if r == nil {
		return text
	}
	return r.Replace(text)
}

// Handler is a slog.Handler that redacts secrets from messages and attribute values.
type Handler struct {
	next    slog.Handler
	secrets *Secrets
}

// NewHandler wraps next.
func NewHandler(next slog.Handler, secrets *Secrets) *Handler {
	return &Handler{next: next, secrets: secrets}
}

// Enabled reports whether next handles level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle redacts the record and passes it on.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, h.secrets.String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, nr)
}

// WithAttrs redacts attrs and returns a handler carrying them.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.attr(a)
	}
	return &Handler{next: h.next.WithAttrs(out), secrets: h.secrets}
}

// WithGroup returns a handler that groups further attrs.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), secrets: h.secrets}
}

func (h *Handler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.secrets.String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, len(g))
		for i, ga := range g {
			out[i] = h.attr(ga)
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.secrets.String(err.Error()))
		}
		return slog.String(a.Key, h.secrets.String(v.String()))
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}
