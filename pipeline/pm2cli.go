package pipeline

import (
	"context"
	"errors"

	"github.com/livinity/livinity-agent/supervisor/pm2"
)

// NewPM2 gives the pipeline PM2 access for one daemon home: the native socket client for
// listing (it never starts a daemon) and the pm2 program for starting, deleting, saving
// and killing. By default a pm2 command spawns the daemon when none runs, as a child of
// the agent; WithDaemon hands that to whatever owns the daemon instead.
func NewPM2(bin, home string, opts ...PM2Option) PM2 {
	p := &pm2Access{home: home, cli: &pm2.CLI{Bin: bin, Home: home}}
	for _, o := range opts {
		o(p)
	}
	return p
}

// PM2Option changes how NewPM2's access works.
type PM2Option func(*pm2Access)

// Daemon starts and stops a PM2 daemon that something other than the pm2 program owns:
// under systemd, livinity-pm2.service, so that the daemon and the services run in their
// own unit rather than in the agent's.
type Daemon struct {
	// Start starts the daemon under the access's home and returns once it answers.
	Start func(ctx context.Context) error
	// Stop stops the daemon and every app, also one that is still starting or does not
	// answer, leaving nothing behind.
	Stop func(ctx context.Context) error
}

// WithDaemon makes every pm2 command that would spawn a daemon (start, delete, save) start
// d first when none runs, and Kill call d.Stop instead of pm2 kill.
func WithDaemon(d Daemon) PM2Option {
	return func(p *pm2Access) { p.daemon = &d }
}

type pm2Access struct {
	home   string
	cli    *pm2.CLI
	daemon *Daemon
}

// ownsDaemon reports whether the daemon is owned elsewhere (WithDaemon): the undo of "stop
// a daemon this run started" then stops it through its owner whether or not it answers.
func (p *pm2Access) ownsDaemon() bool { return p.daemon != nil }

// ensureDaemon starts the daemon through its owner when none answers; without an owner
// the pm2 command about to run spawns it.
func (p *pm2Access) ensureDaemon(ctx context.Context) error {
	if p.daemon == nil {
		return nil
	}
	c, err := pm2.Dial(ctx, p.home)
	if err == nil {
		c.Close()
		return nil
	}
	if !errors.Is(err, pm2.ErrDaemonNotRunning) {
		return err
	}
	return p.daemon.Start(ctx)
}

func (p *pm2Access) Apps(ctx context.Context) ([]App, bool, error) {
	c, err := pm2.Dial(ctx, p.home)
	if errors.Is(err, pm2.ErrDaemonNotRunning) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer c.Close()
	procs, err := c.List(ctx)
	if err != nil {
		return nil, true, err
	}
	apps := make([]App, len(procs))
	for i, pr := range procs {
		apps[i] = App{Name: pr.Name, ID: pr.ID, PID: pr.PID, Status: string(pr.Status), Restarts: pr.RestartTime}
	}
	return apps, true, nil
}

func (p *pm2Access) StartEcosystem(ctx context.Context, file string, names ...string) error {
	if err := p.ensureDaemon(ctx); err != nil {
		return err
	}
	return p.cli.StartEcosystem(ctx, file, names...)
}

func (p *pm2Access) Delete(ctx context.Context, names ...string) error {
	if err := p.ensureDaemon(ctx); err != nil {
		return err
	}
	return p.cli.Delete(ctx, names...)
}

func (p *pm2Access) Save(ctx context.Context) error {
	if err := p.ensureDaemon(ctx); err != nil {
		return err
	}
	return p.cli.Save(ctx)
}

func (p *pm2Access) Kill(ctx context.Context) error {
	if p.daemon != nil {
		return p.daemon.Stop(ctx)
	}
	return p.cli.Kill(ctx)
}
