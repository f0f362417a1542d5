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
work=$(mktemp -d /tmp/lvfoot.XXXXXX)
demo=$work/demo
agent_pid=
cleanup() {
  if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
    kill -TERM "$agent_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$agent_pid" 2>/dev/null; then
      echo "the agent did not stop within 10 s of SIGTERM; killing it" >&2
      kill -KILL "$agent_pid" 2>/dev/null || true
    fi
  fi
  [ -d "$demo/pm2" ] && PM2_HOME="$demo/pm2" pm2 kill >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${AGENT_BIN:-}" ]; then cp "$AGENT_BIN" "$work/livinity-agent"; else CGO_ENABLED=0 go build -o "$work/livinity-agent" ./cmd/livinity-agent; fi
global=(--config "$demo/setup.json" --state-dir "$demo/state" --pm2-home "$demo/pm2" --runtime-dir "$work/run")
lv() { "$work/livinity-agent" "${global[@]}" "$@"; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
# (not `pm2 --version`: it would start a daemon under ~/.pm2)
echo "tools: $(go version | cut -d' ' -f3), node $(node --version), pm2 $(node -p 'require(process.argv[1]).version' "$(dirname "$(readlink -f "$(command -v pm2)")")/../package.json")"

# the tree and its config first (a dry run changes nothing else), then free ports (the
# demo's fixed ones may be taken by another demo) and 1 s probes, then the real onboarding,
# so that `run` finds the box onboarded with this very config and adopts the services
"$work/livinity-agent" demo --dir "$demo" --dry-run >"$work/prepare.log" 2>&1 || { cat "$work/prepare.log" >&2; exit 1; }
python3 - "$demo/setup.json" <<'EOF'
import json, os, socket, sys
path = sys.argv[1]
with open(path) as f:
    cfg = json.load(f)
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()
cfg["ports"] = dict(zip(["api", "mcp", "memory", "livos"], ports))
cfg["agent"]["metrics"]["listen"] = "127.0.0.1:%d" % ports[4]
fast = {"periodSeconds": 1, "timeoutSeconds": 1}
cfg["agent"]["services"] = {name: {"liveness": dict(fast), "readiness": dict(fast)}
                            for name in ["livos", "nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"]}
tmp = path + ".tmp"
with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    json.dump(cfg, f, indent=2)
os.replace(tmp, path)
EOF
echo "onboarding the demo in $demo ..."
"$work/livinity-agent" demo --dir "$demo" >"$work/demo.log" 2>&1 || { cat "$work/demo.log" >&2; exit 1; }

"$work/livinity-agent" "${global[@]}" run >"$work/agent.log" 2>&1 & # not through lv: $! must be the agent
agent_pid=$!
deadline=$((SECONDS + 120))
until lv status >/dev/null 2>&1; do
  if ! kill -0 "$agent_pid" 2>/dev/null; then echo "the agent exited:" >&2; cat "$work/agent.log" >&2; exit 1; fi
  if [ "$SECONDS" -ge "$deadline" ]; then echo "not all services ready after 120 s:" >&2; lv status >&2 || true; exit 1; fi
  sleep 0.5
done
echo "agent pid $agent_pid supervises 5 services, all ready; measuring for $secs s ..."

ticks() { sed 's/.*) //' "/proc/$agent_pid/stat" | awk '{print $12 + $13}'; } # utime+stime after the comm field
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$agent_pid/status"; }
restarts() { lv status --json | python3 -c 'import json,sys; print(sum(s["restartsTotal"] for s in json.load(sys.stdin)["services"]))'; }
hz=$(getconf CLK_TCK)
r0=$(restarts)
t0=$(date +%s.%N); c0=$(ticks)
max=0; sum=0; n=0
for _ in $(seq "$secs"); do
  sleep 1
  kb=$(rss_kb) || { echo "the agent died during the measurement" >&2; cat "$work/agent.log" >&2; exit 1; }
  sum=$((sum + kb)); n=$((n + 1)); [ "$kb" -gt "$max" ] && max=$kb
done
c1=$(ticks); t1=$(date +%s.%N)
r1=$(restarts)
hwm=$(awk '/^VmHWM:/{print $2}' "/proc/$agent_pid/status")
threads=$(awk '/^Threads:/{print $2}' "/proc/$agent_pid/status")
split=$(awk '/^Rss(Anon|File|Shmem):/{printf "%s %.1f MB, ", $1, $2*1.024e-3}' "/proc/$agent_pid/status")
lv status || true

echo
awk -v max="$max" -v sum="$sum" -v n="$n" -v hwm="$hwm" -v c0="$c0" -v c1="$c1" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
  -v th="$threads" -v r="$((r1 - r0))" -v rss_split="${split%, }" 'BEGIN{
  wall = t1 - t0; cpu = (c1 - c0) / hz
  printf "window %.1f s, %d RSS samples, %d threads, service restarts during the window: %d\n", wall, n, th, r
  printf "RSS max %.1f MB, avg %.1f MB (VmRSS); peak since start %.1f MB (VmHWM)   goal <= 20 MB\n", max*1.024e-3, sum/n*1.024e-3, hwm*1.024e-3
  printf "RSS at the end: %s\n", rss_split
  printf "CPU %.2f s in %.0f s = %.3f %% of one core   goal <= 0.5 %%\n", cpu, wall, 100*cpu/wall }'
