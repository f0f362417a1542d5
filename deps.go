package main

import (
	_ "github.com/cenkalti/backoff/v4"
	_ "github.com/charmbracelet/huh"
	_ "github.com/coreos/go-systemd/v22/daemon"
	_ "github.com/creack/pty"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/shirou/gopsutil/v4/process"
	_ "github.com/urfave/cli/v3"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
)

func main() {}
