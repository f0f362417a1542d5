package pm2

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Update is one item of a Watcher's stream. Exactly one of these holds:
//   - Snapshot != nil: the full process list, sent after every (re)connect (Connected is
//     true). The bus has no replay, so a snapshot replaces whatever the owner knew.
//   - Event != nil: a bus event that arrived after the last snapshot (Connected is true).
//     Events are subscribed to before the snapshot is taken, so the first events after a
//     snapshot may already be reflected in it; apply them as idempotent changes.
//   - Connected == false: the daemon went away or cannot be reached; Err says why. It is
//     sent once per loss (and once at start if no daemon runs), not for every retry.
type Update struct {
	Connected bool
	Snapshot  []Process
	Event     *Event
	Err       error
}

// Watcher follows a PM2 daemon: it connects to its bus and RPC sockets, sends a snapshot,
// forwards bus events, and reconnects with exponential backoff when the daemon goes away,
// for as long as its context lives. It never starts a daemon.
type Watcher struct {
	Home   string       // PM2_HOME of the daemon to follow
	Logger *slog.Logger // nil: no logging
	// BackOff paces reconnection attempts; nil means DefaultBackOff(). It is reset after
	// every successful connect, and a Stop from it is treated as its maximum interval.
	BackOff backoff.BackOff
	// Lister takes the snapshot after each connect (a *Fallback: a reply it cannot decode
	// goes through the CLI rather than failing the connect); nil means a native Client
	// dialled for it.
	Lister interface {
		List(ctx context.Context) ([]Process, error)
	}
}

// DefaultBackOff returns the Watcher's default retry policy: exponential from 100 ms,
// capped at 5 s, never giving up.
func DefaultBackOff() backoff.BackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
}

// Run sends updates to out until ctx ends, then returns ctx's cause. It does not close out.
func (w *Watcher) Run(ctx context.Context, out chan<- Update) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := w.BackOff
	if b == nil {
		b = DefaultBackOff()
	}
	reported := false // a disconnected update was sent since the last connect
	for {
		connected, err := w.session(ctx, out, b, log)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if connected {
			log.Info("lost connection to pm2 daemon", "home", w.Home, "err", err)
			reported = false
		} else {
			log.Debug("cannot connect to pm2 daemon", "home", w.Home, "err", err)
		}
		if !reported {
			if !send(ctx, out, Update{Connected: false, Err: err}) {
				return context.Cause(ctx)
			}
			reported = true
		}
		wait := b.NextBackOff()
		if wait == backoff.Stop {
			wait = 5 * time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// session connects once and forwards updates until the bus connection ends. connected
// reports whether a snapshot was sent.
func (w *Watcher) session(ctx context.Context, out chan<- Update, b backoff.BackOff, log *slog.Logger) (connected bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe first so that no event falls between the snapshot and the subscription.
	events, err := Subscribe(sctx, w.Home)
	if err != nil {
		return false, err
	}
	procs, err := w.list(sctx)
	if err != nil {
		return false, err
	}
	log.Info("connected to pm2 daemon", "home", w.Home, "apps", len(procs))
	if !send(ctx, out, Update{Connected: true, Snapshot: procs}) {
		return true, ctx.Err()
	}
	b.Reset()
	for ev := range events {
		if !send(ctx, out, Update{Connected: true, Event: &ev}) {
			return true, ctx.Err()
		}
	}
	return true, fmt.Errorf("event bus %s closed: the pm2 daemon went away", PubSocket(w.Home))
}

func send(ctx context.Context, out chan<- Update, u Update) bool {
	select {
	case out <- u:
		return true
	case <-ctx.Done():
		return false
	}
}

// list takes a snapshot, bounded by DefaultCallTimeout.
func (w *Watcher) list(ctx context.Context) ([]Process, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultCallTimeout)
	defer cancel()
	if w.Lister != nil {
		return w.Lister.List(ctx)
	}
	c, err := Dial(ctx, w.Home)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.List(ctx)
}
