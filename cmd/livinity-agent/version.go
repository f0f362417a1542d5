package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v3"
)

// version and commit are set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version and build information",
		Action: func(ctx context.Context, cmd *cli.Command) error {
			fmt.Fprintln(cmd.Root().Writer, versionLine())
			return nil
		},
	}
}

func versionLine() string {
	return fmt.Sprintf("livinity-agent %s (revision %s, %s)", moduleVersion(), revision(), runtime.Version())
}

// moduleVersion is the agent's version: -ldflags "-X main.version=...", else the module
// version in the build info (a tag or pseudo-version: `go install ...@v1.2.3`, or a build in
// a git checkout with -buildvcs), else "dev".
func moduleVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

// revision is the VCS revision the binary was built from: -ldflags "-X main.commit=...",
// else the build info's vcs.revision (with "-dirty" when the tree had changes), else
// "unknown".
func revision() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			if dirty {
				rev += "-dirty"
			}
			return rev
		}
	}
	return "unknown"
}
