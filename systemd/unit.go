// Package systemd is the agent's side of running under systemd: its unit file, sd_notify
// readiness, status and watchdog messages, and log lines journald understands. Everything
// is a no-op when the agent does not run under systemd.
package systemd

import _ "embed"

// UnitName is the name the unit is installed under.
const UnitName = "livinity-agent.service"

// Unit is livinity-agent.service, the unit `install` writes to /etc/systemd/system.
//
//go:embed livinity-agent.service
var Unit []byte
