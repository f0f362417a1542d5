// Package preflight checks a machine before onboarding: the tools LivOS runs on (Node.js
// as new as the trees' engines.node, PM2, Python with venv where a service needs it,
// Docker), Redis and the D-Bus system bus where the catalog's services need them, free disk
// and memory. Each check yields a Result
// with a concrete fix; a failed critical check stops onboarding.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Status is the outcome of one check.
type Status string

// The outcomes: OK, a warning that onboarding may go on with, and a failure.
const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is one check's outcome. Critical marks a check whose failure stops onboarding.
type Result struct {
	Name     string
	Status   Status
	Detail   string
	Fix      string
	Critical bool
}

// Options say where the tools and services are. Zero values take the defaults.
type Options struct {
	// Node, PM2, Python and Docker are the programs to check, by name (looked up in Path)
	// or by path. The defaults are node, pm2, python3 and docker.
	Node, PM2, Python, Docker string
	// Path is the PATH to look programs up in and to run them with; default $PATH.
	Path string
	// RedisAddr is where Redis should listen; default 127.0.0.1:6379.
	RedisAddr string
	// SystemBus is the D-Bus system bus socket; default $DBUS_SYSTEM_BUS_ADDRESS's path,
	// else /var/run/dbus/system_bus_socket.
	SystemBus string
	// DiskPath is where the free disk is measured: its nearest existing ancestor. Default:
	// the LivOS base directory.
	DiskPath string
	// CommandTimeout bounds each external command; default 10s.
	CommandTimeout time.Duration
	// DialTimeout bounds the Redis connection attempt; default 2s.
	DialTimeout time.Duration
	// PM2Home is the home of this box's PM2 daemon: ports held by its apps are this box's
	// own services, not conflicts.
	PM2Home string
}

func (o Options) withDefaults() Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Node, "node")
	def(&o.PM2, "pm2")
	def(&o.Python, "python3")
	def(&o.Docker, "docker")
	def(&o.RedisAddr, "127.0.0.1:6379")
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 10 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	return o
}

// The check names, in the order Run reports them.
const (
	NameNode   = "Node.js"
	NamePM2    = "PM2"
	NamePython = "Python venv"
	NameDocker = "Docker"
	NameRedis  = "Redis"
	NameDBus   = "D-Bus"
	NameDisk   = "Disk space"
	NameMemory = "Memory"
	NamePorts  = "Ports"
)

// Critical returns an error naming every failed critical check, or nil when there is none.
func Critical(results []Result) error {
	var failed []string
	for _, r := range results {
		if r.Critical && r.Status == Fail {
			failed = append(failed, fmt.Sprintf("%s (%s; fix: %s)", r.Name, r.Detail, r.Fix))
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return errors.New("preflight: critical check failed: " + strings.Join(failed, ", "))
}

// run runs every check concurrently and returns the results in the order of checks.
func run(ctx context.Context, checks []func(context.Context) Result) []Result {
	results := make([]Result, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { results[i] = c(ctx) })
	}
	wg.Wait()
	return results
}
