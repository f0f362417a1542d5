package pipeline

import (
	"context"
	"errors"

	"github.com/livinity/livinity-agent/supervisor/pm2"
)

// NewPM2 gives the pipeline PM2 access for one daemon home: the native socket client for
// listing (it never starts a daemon) and the pm2 program for starting, deleting, saving
// and killing.
func NewPM2(bin, home string) PM2 {
	return &pm2Access{home: home, cli: &pm2.CLI{Bin: bin, Home: home}}
}

type pm2Access struct {
	home string
	cli  *pm2.CLI
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
	return p.cli.StartEcosystem(ctx, file, names...)
}

func (p *pm2Access) Delete(ctx context.Context, names ...string) error {
	return p.cli.Delete(ctx, names...)
}

func (p *pm2Access) Save(ctx context.Context) error { return p.cli.Save(ctx) }

func (p *pm2Access) Kill(ctx context.Context) error { return p.cli.Kill(ctx) }
