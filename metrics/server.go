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
)

// DefaultShutdownTimeout bounds the graceful shutdown of a Server.
const DefaultShutdownTimeout = 5 * time.Second

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
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	logger.Info("metrics: serving /metrics, /healthz, /readyz", "address", l.Addr().String())

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
