package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v3"
)

// exitUsage is the exit code of a command line the agent does not understand: a mistyped
// command or flag, a missing or malformed flag value, arguments a command does not take.
// It is apart from status's 3 ("agent not running") and from 1 (the command failed).
const exitUsage = 2

// usageError is a command line problem: one line, with a hint, exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
func (e *usageError) ExitCode() int { return exitUsage }

// usagef builds a usage error for cmd, ending with the hint to its --help.
func usagef(cmd *cli.Command, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...) + "; see `" + cmd.FullName() + " --help`"}
}

// wireUsage makes every command report command line problems as usage errors: a flag that
// does not parse (with the nearest flag's name), an unknown command (with the nearest
// command's name), arguments to a command that takes none. root needs an Action for the
// unknown command; it shows the help when there is no argument at all.
func wireUsage(root *cli.Command) {
	root.Action = func(ctx context.Context, cmd *cli.Command) error {
		if cmd.Args().Len() == 0 {
			return cli.ShowRootCommandHelp(cmd)
		}
		name := cmd.Args().First()
		hint := ""
		if s := nearestCommand(cmd.Commands, name); s != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", s)
		}
		return usagef(cmd, "%q is not a command%s", name, hint)
	}
	var walk func(c *cli.Command)
	walk = func(c *cli.Command) {
		c.OnUsageError = onUsageError
		if c != root && len(c.Commands) == 0 && c.ArgsUsage == "" && c.Action != nil && !takesArgs[c.Name] {
			action := c.Action
			c.Action = func(ctx context.Context, cmd *cli.Command) error {
				if cmd.Args().Len() > 0 {
					return usagef(cmd, "%s takes no arguments, got %q", cmd.Name, strings.Join(cmd.Args().Slice(), " "))
				}
				return action(ctx, cmd)
			}
		}
		for _, sub := range c.Commands {
			walk(sub)
		}
	}
	walk(root)
}

// takesArgs are the commands that read arguments without declaring ArgsUsage.
var takesArgs = map[string]bool{}

var undefinedFlag = regexp.MustCompile(`flag provided but not defined: -+(\S+)`)

// onUsageError turns a flag that does not parse into a one-line usage error.
func onUsageError(_ context.Context, cmd *cli.Command, err error, _ bool) error {
	msg := err.Error()
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("--%s is not a flag of %s", m[1], cmd.FullName())
		if s := nearestFlag(cmd, m[1]); s != "" {
			msg += fmt.Sprintf(" (did you mean --%s?)", s)
		}
	}
	return usagef(cmd, "%s", msg)
}

// nearestFlag is the name of cmd's (or an ancestor's) flag closest to name, if close enough.
func nearestFlag(cmd *cli.Command, name string) string {
	var names []string
	for _, c := range cmd.Lineage() {
		for _, f := range c.Flags {
			names = append(names, f.Names()...)
		}
	}
	return nearest(names, name)
}

// nearestCommand is the name of the visible command closest to name, if close enough.
func nearestCommand(cmds []*cli.Command, name string) string {
	var names []string
	for _, c := range cmds {
		if !c.Hidden {
			names = append(names, c.Names()...)
		}
	}
	return nearest(names, name)
}

// nearest picks the candidate with the smallest edit distance to name, when it is at most a
// third of name's length (at least 1): "stauts" finds "status", "xyz" finds nothing.
func nearest(candidates []string, name string) string {
	best, bestD := "", max(1, len(name)/3)+1
	for _, c := range candidates {
		if len(c) < 2 {
			continue // short aliases match everything
		}
		if d := editDistance(c, name); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Damerau-Levenshtein distance (adjacent swaps count once) of a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
