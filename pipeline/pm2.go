package pipeline

import "context"

// PM2 is what the pipeline needs from PM2. It never starts a daemon except through
// StartEcosystem, under the plan's PM2 home.
type PM2 interface {
	// Apps lists the apps of the running daemon; running is false (and apps nil) when no
	// daemon runs — the call must not start one.
	Apps(ctx context.Context) (apps []App, running bool, err error)
	// StartEcosystem starts the named apps of an ecosystem file.
	StartEcosystem(ctx context.Context, file string, names ...string) error
	// Delete removes the named apps (stopping them).
	Delete(ctx context.Context, names ...string) error
	// Save writes the daemon's process list for resurrection.
	Save(ctx context.Context) error
	// Kill stops the daemon and its apps.
	Kill(ctx context.Context) error
}

// App is one PM2 app as the pipeline sees it.
type App struct {
	Name     string
	ID       int
	PID      int
	Status   string
	Restarts int
}
