package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/livinity/livinity-agent/supervisor/state"
	"github.com/livinity/livinity-agent/supervisor/statusapi"
)

// Exit codes of restart, stop and start beyond 0 (done), 1 (failed) and 2 (usage, an
// unknown SERVICE among them): the same as status's.
const (
	controlExitNotRunning = 3 // no agent answers on the status socket
	controlExitRefused    = 4 // the socket or the agent refused the caller (not root)
)

// restartCommand, stopCommand and startCommand act on one service through the running
// agent's status socket (POST /v1/services/SERVICE/ACTION), so that the supervision loop
// does it: never racing its own restarts, counted, and remembered.
func restartCommand() *cli.Command {
	return controlCommand(state.ActionRestart,
		"restart SERVICE now through the running agent (counted as a manual restart)",
		"The agent restarts SERVICE through PM2 at once and counts it with reason manual\n"+
			"(livinity_service_restarts_total{reason=\"manual\"}, restarts.manual in status); a restart\n"+
			"its backoff was holding back is replaced by this one, the backoff itself is left as it is.\n"+
			"A service stopped with `livinity-agent stop` is started.")
}

func stopCommand() *cli.Command {
	return controlCommand(state.ActionStop,
		"stop SERVICE through the running agent; the agent stops probing and restarting it",
		"The agent stops SERVICE through PM2 and holds it stopped: no probes, no restarts, and it\n"+
			"does not count against the agent's readiness (status shows it stopped by the operator).\n"+
			"The stop is recorded in the state dir and outlives an agent restart: an instance PM2 runs\n"+
			"when the agent starts (a resurrected list) is stopped again. `livinity-agent start SERVICE`\n"+
			"ends it; so does starting it through PM2 (pm2 start/restart) while the agent runs.")
}

func startCommand() *cli.Command {
	return controlCommand(state.ActionStart,
		"start SERVICE through the running agent and resume its supervision",
		"The agent starts SERVICE through PM2 (as pm2 restart does for a stopped app), ends an\n"+
			"operator's stop, and supervises the new instance from its startup probe on. A service\n"+
			"that runs already is left alone.")
}

func controlCommand(action, usage, description string) *cli.Command {
	return &cli.Command{
		Name:      action,
		ArgsUsage: "SERVICE",
		Usage:     usage,
		Description: description + "\n\nExit 0 done, 1 failed, 2 unknown SERVICE (the names are listed), " +
			"3 agent not running, 4 not permitted (control is for root).",
		Action:        func(ctx context.Context, cmd *cli.Command) error { return runControl(ctx, cmd, action) },
		ShellComplete: completeServices,
	}
}

func runControl(ctx context.Context, cmd *cli.Command, action string) error {
	if cmd.Args().Len() != 1 {
		return usagef(cmd, "%s takes one SERVICE, got %q", action, strings.Join(cmd.Args().Slice(), " "))
	}
	name := cmd.Args().First()
	sock := filepath.Join(cmd.String(flagRuntimeDir), statusapi.SocketName)
	res, err := statusapi.Control(ctx, sock, name, action)
	var ce *statusapi.ControlError
	switch {
	case err == nil:
		fmt.Fprintln(cmd.Root().Writer, res.Message)
		return nil
	case errors.Is(err, statusapi.ErrNotRunning):
		return cli.Exit(fmt.Sprintf("agent not running (nothing answers on %s): %s needs the running agent; start it (systemctl start livinity-agent), or use pm2 %s directly",
			sock, action, action), controlExitNotRunning)
	case errors.Is(err, state.ErrUnknownService):
		return usagef(cmd, "%q is not a service; the services are %s", name, strings.Join(res.Services, ", "))
	case errors.Is(err, statusapi.ErrForbidden):
		return cli.Exit(err.Error(), controlExitRefused)
	case errors.As(err, &ce):
		return cli.Exit(fmt.Sprintf("%s %s: %s", action, name, ce.Result.Message), 1)
	}
	return cli.Exit(err.Error(), 1)
}
