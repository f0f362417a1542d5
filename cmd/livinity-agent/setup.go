package main

import (
	"context"
	"fmt"

	"github.com/livinity/livinity-agent/agent"
	"github.com/urfave/cli/v3"
)

func setupCommand() *cli.Command {
	return &cli.Command{
		Name:  "setup",
		Usage: "run the pipeline again from --config (default: the config of the last successful run)",
		Flags: setupFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Bool(flagRollback) {
				return rollbackOnly(ctx, cmd)
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return onboardBox(ctx, cmd, cfg)
		},
	}
}

// rollbackOnly is setup --rollback: it rolls back an interrupted run and says whether
// there was one.
func rollbackOnly(ctx context.Context, cmd *cli.Command) error {
	log, err := newLogger(cmd, cmd.Root().ErrWriter)
	if err != nil {
		return err
	}
	found, err := agent.Rollback(ctx, cmd.String(flagStateDir), cmd.String(flagPM2), log)
	if err != nil {
		return err
	}
	if found {
		fmt.Fprintln(cmd.Root().Writer, "rolled back the interrupted run")
	} else {
		fmt.Fprintln(cmd.Root().Writer, "nothing to roll back")
	}
	return nil
}
