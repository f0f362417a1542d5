package main

import (
	"context"
	"os"

	"github.com/livinity/livinity-agent/setup/ecosystem"
	"github.com/urfave/cli/v3"
)

func ecosystemCommand() *cli.Command {
	return &cli.Command{
		Name:  "ecosystem",
		Usage: "print the PM2 ecosystem file for --config",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			launcher, _ := os.Executable()
			b, err := ecosystem.Render(ecosystem.Apps(cfg, cfg.Services(), ecosystem.Options{Launcher: launcher}))
			if err != nil {
				return err
			}
			_, err = cmd.Root().Writer.Write(b)
			return err
		},
	}
}
