package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/livinity/livinity-agent/internal/netcap"
)

// DefaultShutdownTimeout bounds the graceful shutdown of a Server.
const DefaultShutdownTimeout = 5 * time.Second

// Limits of a Server. A scrape of /metrics takes milliseconds and sends its request at
// once: a client that takes longer is cut off, so that slow or stalled clients (a request
// with a Content-Length and no body, headers sent a byte at a time, thousands of idle
// connections) cannot hold the agent's descriptors and memory.
const (
	// DefaultMaxConns caps the connections held at once. At the cap a new connection
	// evicts the oldest one not inside a handler (internal/netcap), so a quick scraper
	// is served at once whatever slow clients hold.
	DefaultMaxConns   = 128
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second // the whole request, body included
	WriteTimeout      = 10 * time.Second
	IdleTimeout       = 30 * time.Second
	MaxHeaderBytes    = 16 << 10
)

// Server serves a handler (Metrics.Handler) until its context ends.
type Server struct {
	// Addr is the listen address (agent.metrics.listen / --metrics-listen).
	Addr    string
	Handler http.Handler
	// Logger is told when the server listens and stops. Nil discards.
	Logger *slog.Logger
	// ShutdownTimeout bounds the graceful shutdown; zero means DefaultShutdownTimeout.
	// Requests still running after it are cut off.
	ShutdownTimeout time.Duration
	// MaxConns caps the connections held at once; zero means DefaultMaxConns.
	MaxConns int
}

// Run listens on Addr and serves until ctx ends, then shuts down gracefully within
// ShutdownTimeout. It returns listen errors (naming the address and the setting that
// chose it) and serve errors; a shutdown, even a cut-off one, returns nil.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.Addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("metrics: listen on %s: the address is already in use: set another address with agent.metrics.listen in the config or --metrics-listen: %w", s.Addr, err)
		}
		return fmt.Errorf("metrics: listen on %s (agent.metrics.listen / --metrics-listen): %w", s.Addr, err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l (which it closes) until ctx ends, like Run.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	logger := s.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	srv := &http.Server{
		Handler:           netcap.Handler(s.Handler),
		ConnContext:       netcap.ConnContext,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	logger.Info("metrics: serving /metrics, /healthz, /readyz", "address", l.Addr().String(), "maxConns", maxConns)
	l = netcap.Listen(l, maxConns)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	select {
	case err := <-served:
		return fmt.Errorf("metrics: serve on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("metrics: requests still running at shutdown were cut off", "timeout", timeout, "error", err)
		srv.Close()
	}
	<-served // http.ErrServerClosed once Shutdown or Close has begun
	logger.Debug("metrics: stopped", "address", l.Addr().String())
	return nil
}
