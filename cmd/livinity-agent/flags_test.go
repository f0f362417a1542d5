package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
)

// builtinFlags are urfave/cli's own --help and --version: they read no variable.
var builtinFlags = []string{"help", "version"}

// envOf is the variables a flag reads.
func envOf(f cli.Flag) []string {
	if v, ok := f.(interface{ GetEnvVars() []string }); ok {
		return v.GetEnvVars()
	}
	return nil
}

// commandPaths lists every command that runs something (an Action), as the arguments that
// name it, completion's shells included (urfave/cli adds them when the app runs).
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	app := newApp(io.Discard, io.Discard)
	if err := app.Run(context.Background(), []string{"livinity-agent", "--help"}); err != nil {
		t.Fatal(err)
	}
	var paths [][]string
	var walk func(c *cli.Command, path []string)
	walk = func(c *cli.Command, path []string) {
		if c.Action != nil && len(path) > 0 {
			paths = append(paths, path)
		}
		for _, sub := range c.Commands {
			walk(sub, append(slices.Clone(path), sub.Name))
		}
	}
	walk(app, nil)
	return paths
}

// TestEveryFlagHasALivinityVariable: every flag of every command also reads a LIVINITY_*
// variable (a systemd EnvironmentFile sets any of them), and one only.
func TestEveryFlagHasALivinityVariable(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	app.Run(context.Background(), []string{"livinity-agent", "--help"}) // adds completion
	n := 0
	var walk func(c *cli.Command, path string)
	walk = func(c *cli.Command, path string) {
		for _, f := range c.Flags {
			if slices.Contains(builtinFlags, f.Names()[0]) {
				continue
			}
			n++
			name := strings.TrimSpace(path + " --" + f.Names()[0])
			if env := envOf(f); len(env) != 1 || !strings.HasPrefix(env[0], "LIVINITY_") {
				t.Errorf("%s reads %q, want one LIVINITY_* variable", name, env)
			}
		}
		for _, sub := range c.Commands {
			walk(sub, strings.TrimSpace(path+" "+sub.Name))
		}
	}
	walk(app, "")
	if n < 35 {
		t.Errorf("walked %d flags; the CLI has more than 35", n)
	}
}

// TestEveryFlagReadsItsVariable runs every command with nothing on the command line but
// each flag's variable set, and checks that each of its flags (its own and the global
// ones) took the variable's value.
func TestEveryFlagReadsItsVariable(t *testing.T) {
	value := func(f cli.Flag) string {
		switch f.Names()[0] {
		case flagLogLevel:
			return "debug"
		case flagLogFormat:
			return "json"
		}
		switch f.(type) {
		case *cli.BoolFlag:
			return "true"
		case *cli.IntFlag:
			return "3"
		case *cli.DurationFlag:
			return "2s"
		}
		return "from-env"
	}
	for _, path := range commandPaths(t) {
		t.Run(strings.Join(path, " "), func(t *testing.T) {
			app := newApp(io.Discard, io.Discard)
			target := app
			for _, name := range path {
				i := slices.IndexFunc(target.Commands, func(c *cli.Command) bool { return c.Name == name })
				if i < 0 {
					t.Skip("added by urfave/cli when the app runs; only its built-in flags")
				}
				target = target.Commands[i]
			}
			var flags []cli.Flag
			for _, c := range append([]*cli.Command{app}, target) {
				for _, f := range c.Flags {
					env := envOf(f)
					switch {
					case slices.Contains(builtinFlags, f.Names()[0]):
					case len(env) == 0:
						t.Errorf("--%s reads no variable", f.Names()[0])
					default:
						flags = append(flags, f)
						t.Setenv(env[0], value(f))
					}
				}
			}
			ran := false
			target.Action = func(ctx context.Context, cmd *cli.Command) error {
				ran = true
				for _, f := range flags {
					name := f.Names()[0]
					if !cmd.IsSet(name) {
						t.Errorf("--%s is not set by %s", name, envOf(f)[0])
						continue
					}
					if got, want := fmt.Sprint(cmd.Value(name)), value(f); got != want {
						t.Errorf("--%s = %v from %s=%s", name, got, envOf(f)[0], want)
					}
				}
				return nil
			}
			if err := app.Run(context.Background(), append([]string{"livinity-agent"}, path...)); err != nil {
				t.Fatal(err)
			}
			if !ran {
				t.Fatal("the command did not run")
			}
		})
	}
}
