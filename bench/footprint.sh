#!/usr/bin/env bash
# Footprint benchmark: the agent's own memory and CPU while it supervises the five demo
# services with 1 s liveness and readiness probes.
#   The demo tree is onboarded in a temp dir (livinity-agent demo) with a config whose
#   agent.services.<each>.liveness/readiness have periodSeconds 1 (timeoutSeconds 1), then
#   `livinity-agent run` adopts the services. Once every service is ready, the agent's
#   /proc/<pid>/status VmRSS is sampled every second for SECONDS, and its CPU ticks
#   (/proc/<pid>/stat utime+stime) are read at the start and the end of that window.
#   Goals: RSS <= 20 MB, CPU <= 0.5 % of one core.
# Usage: bash bench/footprint.sh [SECONDS] (default 300). AGENT_BIN=path measures that build
# of livinity-agent instead of building ./cmd/livinity-agent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-300}
export PATH="$(bash scripts/install-tools.sh):$PATH"
source bench/lib.sh
work=$(mktemp -d /tmp/lvfoot.XXXXXX)
trap 'env_down "$work"; rm -rf "$work"' EXIT
agent_build "$work"
machine_info

echo "onboarding the demo in $work/demo ..."
demo_prepare "$work"
demo_onboard "$work"
agent_start "$work"
pid=$(agent_pid "$work")
echo "agent pid $pid supervises 5 services, all ready; measuring for $secs s ..."

restarts() { lv "$work" status --json | python3 -c 'import json,sys; print(sum(s["restartsTotal"] for s in json.load(sys.stdin)["services"]))'; }
r0=$(restarts)
read -r _ max avg cpu wall n < <(sample_footprint "$secs" agent="$pid") || { echo "the agent died during the measurement" >&2; cat "$work/agent.log" >&2; exit 1; }
r1=$(restarts)
hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$pid/status")
threads=$(awk '/^Threads:/{print $2}' "/proc/$pid/status")
split=$(awk '/^Rss(Anon|File|Shmem):/{printf "%s %.1f MB, ", $1, $2*1.024e-3}' "/proc/$pid/status")
lv "$work" status || true

echo
echo "load at the end: $(uptime | sed 's/.*load average/load average/')"
awk -v max="$max" -v avg="$avg" -v n="$n" -v hwm="$hwm" -v cpu="$cpu" -v wall="$wall" \
  -v th="$threads" -v r="$((r1 - r0))" -v rss_split="${split%, }" 'BEGIN{
  printf "window %.1f s, %d RSS samples, %d threads, service restarts during the window: %d\n", wall, n, th, r
  printf "RSS max %.1f MB, avg %.1f MB (VmRSS); peak since start %.1f MB (VmHWM)   goal <= 20 MB\n", max*1.024e-3, avg*1.024e-3, hwm*1.024e-3
  printf "RSS at the end: %s\n", rss_split
  printf "CPU %.2f s in %.0f s = %.3f %% of one core   goal <= 0.5 %%\n", cpu, wall, 100*cpu/wall }'
