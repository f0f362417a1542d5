package main

import (
	"context"
	"fmt"

	"github.com/livinity/livinity-agent/agent"
	"github.com/urfave/cli/v3"
)

func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name: "uninstall",
		Usage: "stop and disable the agent's service and the services' (livinity-pm2.service: PM2 stops " +
			"every service) and remove the units and the binary; the LivOS trees and the PM2 home are never touched",
		Flags: uninstallFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if err := agent.RequireSystemdRoot("uninstall"); err != nil {
				return err
			}
			out := cmd.Root().Writer
			return agent.Uninstall(ctx, agent.UninstallOptions{
				KeepServices: cmd.Bool(flagKeepServices), Purge: cmd.Bool(flagPurge), StateDir: cmd.String(flagStateDir),
				Say: func(line string) { fmt.Fprintln(out, line) },
			})
		},
	}
}
