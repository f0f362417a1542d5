// Command livinity-agent turns a bare Linux server into a running LivOS home server and
// keeps it running. See the README for the commands; the lifecycle is package agent, this
// command maps flags to it and draws on the terminal.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	startAfresh = func() error { return syscall.Exec("/proc/self/exe", os.Args, os.Environ()) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
