package systemd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
)

// NewLogHandler returns the agent's slog handler for w. When w is the stream journald
// connected the agent's stderr or stdout to (JOURNAL_STREAM names its device and inode),
// lines carry no timestamp (journald stamps each one) and start with a syslog priority
// prefix ("<6>") mapped from the level: debug 7, info 6, warn 4, error 3; attributes
// stay key=value. Otherwise it is a plain slog text handler.
func NewLogHandler(w io.Writer, opts *slog.HandlerOptions) slog.Handler {
	if !connectedToJournal(w) {
		return slog.NewTextHandler(w, opts)
	}
	var o slog.HandlerOptions
	if opts != nil {
		o = *opts
	}
	replace := o.ReplaceAttr
	o.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if replace != nil {
			return replace(groups, a)
		}
		return a
	}
	pw := &prefixWriter{w: w}
	return &journalHandler{inner: slog.NewTextHandler(pw, &o), pw: pw}
}

// connectedToJournal reports whether w is the file JOURNAL_STREAM ("device:inode") names.
func connectedToJournal(w io.Writer) bool {
	js := os.Getenv("JOURNAL_STREAM")
	if js == "" {
		return false
	}
	f, ok := w.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(js, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// Priority returns the syslog priority journald records for a slog level.
func Priority(l slog.Level) int {
	switch {
	case l < slog.LevelInfo:
		return 7 // debug
	case l < slog.LevelWarn:
		return 6 // info
	case l < slog.LevelError:
		return 4 // warning
	default:
		return 3 // err
	}
}

// journalHandler prefixes each record the text handler writes with its priority. The
// text handler writes a record in one Write call; the prefix for that call is set under
// the shared writer's lock.
type journalHandler struct {
	inner slog.Handler
	pw    *prefixWriter
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = Priority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), pw: h.pw}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), pw: h.pw}
}

// prefixWriter writes "<N>" and then each record; mu is held by journalHandler.Handle
// around every write.
type prefixWriter struct {
	mu     sync.Mutex
	prefix int
	w      io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	buf := make([]byte, 0, len(b)+4)
	buf = fmt.Appendf(buf, "<%d>", p.prefix)
	buf = append(buf, b...)
	if _, err := p.w.Write(buf); err != nil {
		return 0, err
	}
	return len(b), nil
}
