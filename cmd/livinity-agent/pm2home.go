package main

import (
	"os"

	"github.com/livinity/livinity-agent/agent"
	"github.com/urfave/cli/v3"
)

// configuredPM2Home is the PM2 home of this box's services, and where that was learned:
// --pm2-home (or LIVINITY_PM2_HOME); else what the box says (agent.BoxPM2Home: the last
// onboarding's with this state dir, else the installed unit's); else $PM2_HOME, else
// $HOME/.pm2.
func configuredPM2Home(cmd *cli.Command) (home, source string, err error) {
	if cmd.IsSet(flagPM2Home) {
		h, err := pm2Home(cmd)
		return h, "--pm2-home", err
	}
	if h, src, ok := agent.BoxPM2Home(cmd.String(flagStateDir)); ok {
		return h, src, nil
	}
	h, err := pm2Home(cmd)
	src := "$HOME/.pm2"
	if os.Getenv("PM2_HOME") != "" {
		src = "$PM2_HOME"
	}
	return h, src, err
}
