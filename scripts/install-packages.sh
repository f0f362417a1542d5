#!/usr/bin/env bash
# Installs the Debian packages the tests run against: Prometheus and promtool (the metrics
# tests and the end-to-end test that starts its own Prometheus on loopback), Redis and the
# D-Bus daemon (the real LivOS needs both: the real-tree test starts them). Idempotent: does
# nothing but print the versions when everything is already there.
#
# It never leaves a package's service running: during the install a temporary
# policy-rc.d (the Debian mechanism for "do not start services") is put in place when the
# machine has none, and afterwards any prometheus process of the package's own user is
# stopped. Processes of other users (a test's Prometheus) are left alone.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if ! have prometheus || ! have promtool || ! have redis-server || ! have dbus-daemon; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-packages: prometheus, redis-server or dbus is missing and installing them needs root: sudo $0" >&2
    exit 1
  fi
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from livinity-agent scripts/install-packages.sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  echo "install-packages: apt-get install prometheus redis-server dbus" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # No recommends: prometheus-node-exporter is a service we do not want on test machines.
  apt-get install -y -qq --no-install-recommends prometheus redis-server dbus >&2
  if [ -n "$made_policy" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  # The package's service runs as user prometheus; stop it if the postinst started it anyway.
  if id prometheus >/dev/null 2>&1; then
    pids=$(pgrep -u prometheus -x prometheus || true)
    if [ -n "$pids" ]; then
      echo "install-packages: stopping the prometheus service the package started (pids $pids)" >&2
      if [ -x /etc/init.d/prometheus ]; then
        /etc/init.d/prometheus stop >&2 || true
      fi
      for pid in $(pgrep -u prometheus -x prometheus || true); do
        kill "$pid" 2>/dev/null || true
      done
      for _ in $(seq 50); do
        pgrep -u prometheus -x prometheus >/dev/null || break
        sleep 0.1
      done
      if pgrep -u prometheus -x prometheus >/dev/null; then
        echo "install-packages: the prometheus service is still running" >&2
        exit 1
      fi
    fi
  fi
fi

prometheus --version 2>&1 | head -n 1
promtool --version 2>&1 | head -n 1
redis-server --version 2>&1 | head -n 1
dbus-daemon --version 2>&1 | head -n 1
