package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/livinity/livinity-agent/setup/envfile"
	"github.com/urfave/cli/v3"
)

// execEnvCommand starts a program with a .env file's variables in its environment, for
// interpreters without Node's --env-file (a python service): PM2 starts it as the app's
// interpreter, so PM2 only ever holds the file's path. The program replaces this process
// (same pid); variables already in the environment win, as with Node.
func execEnvCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec-env",
		Usage:     "run a program with a .env file's variables in its environment (PM2 uses it for python services)",
		ArgsUsage: "-- PROGRAM [ARG...]",
		Hidden:    true,
		Flags:     execEnvFlags(),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			argv := cmd.Args().Slice()
			if len(argv) == 0 {
				return errors.New("exec-env: no program given; want exec-env --env-file FILE -- PROGRAM [ARG...]")
			}
			vars, err := envfile.Read(cmd.String(flagEnvFile))
			if err != nil {
				return fmt.Errorf("exec-env: %w", err)
			}
			env := os.Environ()
			for k, v := range vars {
				if _, set := os.LookupEnv(k); !set {
					env = append(env, k+"="+v)
				}
			}
			prog, err := exec.LookPath(argv[0])
			if err != nil {
				return fmt.Errorf("exec-env: %w", err)
			}
			return syscall.Exec(prog, argv, env)
		},
	}
}
