// Package netcap caps the connections a server holds at once. The agent's HTTP endpoints
// (metrics on TCP, status on a unix socket) are read by a scraper or a person now and
// then; a flood of slow or idle clients must not take the descriptors and memory the
// supervision needs, nor lock out a quick client.
package netcap

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Listener accepts at most Max connections at once. At the cap, a new connection closes
// the oldest one that is not inside a handler (still sending its request, or idle between
// requests) and was accepted at least Grace ago: a slow client holds a slot only until
// quicker ones arrive, and a quick one has the time to send its request. When no held
// connection can be evicted (inside a handler, or too young), Accept waits for one.
//
// A connection counts as inside a handler only when the server's handler is wrapped with
// Handler and its ConnContext is ConnContext.
type Listener struct {
	net.Listener
	max int

	mu     sync.Mutex
	conns  map[*conn]struct{}
	closed bool
}

// Grace is how long a new connection is safe from eviction.
const Grace = 25 * time.Millisecond

// Listen wraps l with a cap of n connections (at least 1).
func Listen(l net.Listener, n int) *Listener {
	return &Listener{Listener: l, max: max(n, 1), conns: map[*conn]struct{}{}}
}

// Accept waits for a connection and a free slot, evicting the oldest connection that is
// not being served when at the cap.
func (l *Listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, l: l, at: time.Now()}
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.conns) >= l.max && !l.closed {
		v := l.oldestIdle()
		l.mu.Unlock()
		if v != nil {
			v.Close()
		} else {
			time.Sleep(5 * time.Millisecond)
		}
		l.mu.Lock()
	}
	if l.closed {
		nc.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = struct{}{}
	return c, nil
}

// Close closes the listener; an Accept waiting for a slot returns.
func (l *Listener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Listener.Close()
}

// Held is the number of connections held now.
func (l *Listener) Held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// oldestIdle picks the connection to evict: not inside a handler, past its grace, and
// first one that never had a request served (a slow or stalled client), oldest first;
// then an idle keep-alive one.
func (l *Listener) oldestIdle() *conn {
	var v *conn
	young := time.Now().Add(-Grace)
	for c := range l.conns {
		if c.serving.Load() || !c.at.Before(young) {
			continue
		}
		if v == nil || (!c.served.Load() && v.served.Load()) ||
			(c.served.Load() == v.served.Load() && c.at.Before(v.at)) {
			v = c
		}
	}
	return v
}

func (l *Listener) release(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

type conn struct {
	net.Conn
	l       *Listener
	at      time.Time
	serving atomic.Bool
	served  atomic.Bool // a request of it reached a handler
	once    sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.release(c) })
	return c.Conn.Close()
}

type connKey struct{}

// ConnContext is an http.Server.ConnContext that lets Handler find the connection.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Handler marks the connection of each request as being served while h runs, so that the
// Listener does not evict it. The agent's endpoints take no request body: a request that
// announces one is answered and its connection closed (net/http would otherwise wait for
// the unread body inside the handler before answering, holding a slot for a body that
// may never come).
func Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			w.Header().Set("Connection", "close")
		}
		if c, ok := r.Context().Value(connKey{}).(*conn); ok {
			c.serving.Store(true)
			c.served.Store(true)
			defer c.serving.Store(false)
		}
		h.ServeHTTP(w, r)
	})
}
