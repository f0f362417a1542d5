package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/livinity/livinity-agent/supervisor/statusapi"
	"github.com/urfave/cli/v3"
)

// statusService is the SERVICE argument of `status [SERVICE]`: "" for all of them.
func statusService(cmd *cli.Command) (string, error) {
	if cmd.Args().Len() > 1 {
		return "", usagef(cmd, "status takes one SERVICE at most, got %q", strings.Join(cmd.Args().Slice(), " "))
	}
	return cmd.Args().First(), nil
}

// narrowStatus narrows a reading to the service name: the document keeps only that
// service (the table and --json show it alone) and, from the agent, the exit code says
// whether it is ready. A name the document does not list is refused with the names it does.
func narrowStatus(cmd *cli.Command, r statusReading, name string) statusReading {
	if name == "" || !r.has {
		return r
	}
	i := slices.IndexFunc(r.doc.Services, func(s statusapi.Service) bool { return s.Name == name })
	if i < 0 {
		names := make([]string, len(r.doc.Services))
		for j, s := range r.doc.Services {
			names[j] = s.Name
		}
		err := usagef(cmd, "%q is not a service; the services are %s", name, strings.Join(names, ", "))
		return statusReading{code: exitUsage, err: err.Error()}
	}
	sv := r.doc.Services[i]
	r.doc.Services = []statusapi.Service{sv}
	if r.doc.Source != statusapi.SourcePM2 && (r.code == statusExitReady || r.code == statusExitDegraded) {
		r.doc.Ready = sv.Ready
		r.code, r.err = statusExitReady, ""
		if !sv.Ready {
			r.code, r.err = statusExitDegraded, fmt.Sprintf("%s is not ready (%s)", name, sv.State)
		}
	}
	return r
}
