#!/usr/bin/env bash
# Supervision benchmarks, each against a real PM2 7 daemon with its own PM2_HOME:
#   process-list read   - PM2's full list of five apps, natively over its RPC socket vs
#                         `pm2 jlist`: wall and client-side CPU per read, and their ratios
#                         (bench/pm2list_test.go; goal: native >= 50x cheaper on both)
#   crash -> state      - kill -9 of one service 50 times: time from the kill to the agent's
#                         state change (p50, p99, max), beside a `pm2 jlist` poller at 1 s
#                         (supervisor/bench_test.go; goal: p99 < 50 ms)
# Usage: bash bench/supervision.sh [BENCHTIME] (go test -benchtime of the list read, default 5s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
benchtime=${1:-5s}
export PATH="$(bash scripts/install-tools.sh):$PATH"
out=$(mktemp /tmp/lvsup.XXXXXX)
trap 'rm -f "$out"' EXIT

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "tools: $(go version | cut -d' ' -f3), node $(node --version), pm2 7 (.tools/pm2-7)"

echo
echo "== process-list read: native client vs pm2 jlist (5 apps, -benchtime $benchtime)"
go test ./bench -run '^$' -bench '^BenchmarkList$' -benchtime "$benchtime" -count 1 >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
grep '^BenchmarkList/' "$out"
awk '
  # value of the unit named u on a benchmark line
  function val(u,   i) { for (i = 3; i <= NF; i++) if ($i == u) return $(i - 1); return 0 }
  /^BenchmarkList\/native/ { nw = val("ns/op"); nc = val("cpu-ns/op") }
  /^BenchmarkList\/jlist/  { jw = val("ns/op"); jc = val("cpu-ns/op") }
  END {
    if (!nw || !jw || !nc || !jc) { print "missing benchmark figures" > "/dev/stderr"; exit 1 }
    printf "\n%-22s %12s %14s\n", "per read", "wall ms", "client CPU ms"
    printf "%-22s %12.3f %14.3f\n", "native (RPC socket)", nw / 1e6, nc / 1e6
    printf "%-22s %12.3f %14.3f\n", "pm2 jlist", jw / 1e6, jc / 1e6
    printf "\njlist / native: wall %.0fx, CPU %.0fx  (goal >= 50x on both)\n", jw / nw, jc / nc
  }' "$out"

echo
echo "== crash -> state change: 50 x kill -9 of nexus-core (takes about two minutes)"
go test ./supervisor -run '^$' -bench '^BenchmarkCrashDetection$' -benchtime 1x -count 1 -v -timeout 15m >"$out" 2>&1 || { cat "$out" >&2; exit 1; }
grep -o 'crash → state change.*' "$out"
echo "(goal: agent p99 < 50 ms)"
