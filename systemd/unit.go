// Package systemd is the agent's side of running under systemd: its unit files, sd_notify
// readiness, status and watchdog messages, and log lines journald understands. Everything
// is a no-op when the agent does not run under systemd.
package systemd

import _ "embed"

// UnitName is the name the agent's unit is installed under.
const UnitName = "livinity-agent.service"

// Unit is livinity-agent.service, the unit `install` writes to /etc/systemd/system.
//
//go:embed livinity-agent.service
var Unit []byte

// PM2UnitName is the name of the unit that owns the PM2 daemon and so the services.
const PM2UnitName = "livinity-pm2.service"

// PM2Unit is livinity-pm2.service, written by `install` beside Unit.
//
//go:embed livinity-pm2.service
var PM2Unit []byte
