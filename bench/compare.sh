#!/usr/bin/env bash
# Side-by-side benchmarks in one run; prints each one's figures, then all of them as ratios.
#   1 setup           bench/setup.sh: first run vs no-op re-run vs the same steps sequential
#   2 status read     bench/supervision.sh: native PM2 client vs `pm2 jlist`; crash -> state
#     + crash         change, the agent (PM2's bus) vs a `pm2 jlist` poller at 1 s (50 kills)
#   3 exporter        the agent and pm2-metrics (a PM2 Prometheus exporter installed from npm
#                     with `pm2 install`, see README.md) beside the same PM2 daemon and the
#                     same five demo services (1 s probes):
#                     footprint: RSS and CPU of the agent and of the exporter's node process
#                       over BENCH_SECONDS, the exporter scraped every second (its own poll
#                       of PM2 then runs as often as pm2-prom-module's), the agent not
#                       scraped (its own loops run anyway); the PM2 daemon's CPU is shown too
#                     crash: BENCH_KILLS x kill -9 of nexus-core, time until the agent's and
#                       the exporter's /metrics show it, both polled every 50 ms
#   4 memory truth    nexus-worker spawns a child holding 300 MiB: the tree's PSS from /proc
#                     against what the agent, PM2 (jlist) and the exporter report
# Usage: bash bench/compare.sh
# Environment: BENCH_SECONDS footprint window (default 120; bench/README.md's run used 300),
# BENCH_KILLS (20), BENCH_SETUP_ROUNDS (3), BENCH_LIST_TIME (-benchtime of the list read, 5s),
# BENCH_PARTS (which of the four to run, default "1 2 3 4"), AGENT_BIN (measure that build
# instead of building ./cmd/livinity-agent).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${BENCH_SECONDS:-120}
kills=${BENCH_KILLS:-20}
rounds=${BENCH_SETUP_ROUNDS:-3}
benchtime=${BENCH_LIST_TIME:-5s}
parts=" ${BENCH_PARTS:-1 2 3 4} "
exporter_pkg=pm2-metrics@1.0.47
export PATH="$(bash scripts/install-tools.sh):$PATH"
source bench/lib.sh
work=$(mktemp -d /tmp/lvcmp.XXXXXX)
: >"$work/results"
scraper=
ap50= ap99= ep50= ep99= truth= magent= mpm2= mexp=
cleanup() {
  if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; fi
  for d in "$work"/env-*; do [ -d "$d" ] && env_down "$d"; done
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

section() { echo; echo "=== $* ($(date +%T), $(uptime | sed 's/.*load average/load average/'))"; }
# results are collected as "key value" lines for the summary
res() { echo "$1 $2" >>"$work/results"; }
get() { awk -v k="$1" '$1 == k {print $2}' "$work/results"; }

echo "livinity-agent side-by-side benchmarks, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo "unknown (not a git checkout)")"
machine_info

part() { [[ $parts == *" $1 "* ]]; }

if part 1; then
section "1/4 setup: bash bench/setup.sh $rounds"
bash bench/setup.sh "$rounds" | tee "$work/setup.out"
res setup_par_seq "$(sed -n 's/^parallel \/ sequential = \([0-9.]*\).*/\1/p' "$work/setup.out")"
res setup_noop_first "$(sed -n 's/^no-op re-run \/ first run = \([0-9.]*\);.*/\1/p' "$work/setup.out")"
res setup_noop_s "$(sed -n 's/^no-op re-run \/ first run = [0-9.]*; no-op re-run \([0-9.]*\) s.*/\1/p' "$work/setup.out")"
fi

if part 2; then
section "2/4 status read and crash detection vs a pm2 jlist poller: bash bench/supervision.sh $benchtime"
bash bench/supervision.sh "$benchtime" | tee "$work/sup.out"
res list_wall "$(sed -n 's/^jlist \/ native: wall \([0-9.]*\)x.*/\1/p' "$work/sup.out")"
res list_cpu "$(sed -n 's/^jlist \/ native: .*CPU \([0-9.]*\)x.*/\1/p' "$work/sup.out")"
res crash_agent_p50 "$(sed -n 's/.*agent (event bus) p50 \([0-9.]*\) ms.*/\1/p' "$work/sup.out")"
res crash_agent_p99 "$(sed -n 's/.*agent (event bus) p50 [0-9.]* ms, p99 \([0-9.]*\) ms.*/\1/p' "$work/sup.out")"
res crash_jlist_p50 "$(sed -n 's/.*jlist poller at 1 s p50 \([0-9.]*\) ms.*/\1/p' "$work/sup.out")"
res crash_jlist_p99 "$(sed -n 's/.*jlist poller at 1 s p50 [0-9.]* ms, p99 \([0-9.]*\) ms.*/\1/p' "$work/sup.out")"
fi

# env_up NAME [SERVICES_JSON] [TREE_HOOK]: a demo environment $work/env-NAME with the agent
# running and pm2-metrics installed as a PM2 module on a free loopback port; TREE_HOOK runs
# with the tree's dir before the onboarding. Sets EXPORTER_URL and EXPORTER_PID.
env_up() {
  local dir=$work/env-$1 port
  mkdir -p "$dir"
  agent_build "$dir"
  demo_prepare "$dir" "${2:-}"
  if [ -n "${3:-}" ]; then "$3" "$dir/demo"; fi
  echo "onboarding the demo in $dir/demo ..."
  demo_onboard "$dir"
  agent_start "$dir"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "installing $exporter_pkg as a PM2 module (pm2 install, from the npm registry) on 127.0.0.1:$port ..."
  # (set before the install, so that it never listens on its default 0.0.0.0:9209)
  PM2_HOME=$dir/demo/pm2 pm2 set pm2-metrics:host 127.0.0.1 >"$dir/exporter.log" 2>&1
  PM2_HOME=$dir/demo/pm2 pm2 set pm2-metrics:port "$port" >>"$dir/exporter.log" 2>&1
  PM2_HOME=$dir/demo/pm2 pm2 install "$exporter_pkg" >>"$dir/exporter.log" 2>&1 || { cat "$dir/exporter.log" >&2; return 1; }
  EXPORTER_PID=$(PM2_HOME=$dir/demo/pm2 pm2 jlist | python3 -c 'import json,sys; print(next(p["pid"] for p in json.load(sys.stdin) if p["name"] == "pm2-metrics"))')
  EXPORTER_URL=http://127.0.0.1:$port/metrics
  local deadline=$((SECONDS + 60))
  until curl -fsS "$EXPORTER_URL" 2>/dev/null | grep -q 'pm2_up{.*name="nexus-core"'; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "the exporter does not answer on $EXPORTER_URL after 60 s" >&2; cat "$dir/exporter.log" >&2; return 1; fi
    sleep 0.5
  done
  echo "exporter pid $EXPORTER_PID, $(node -p 'require(process.argv[1]).version' "$dir/demo/pm2/modules/pm2-metrics/node_modules/pm2-metrics/package.json") (its PM2 client library: pm2 $(node -p 'require(process.argv[1]).version' "$dir/demo/pm2/modules/pm2-metrics/node_modules/pm2/package.json")), answering on $EXPORTER_URL"
}

if part 3; then
section "3/4 the agent vs pm2-metrics: footprint over $secs s, crash detection over $kills kills"
env_up a
a=$work/env-a
pm2pid=$(cat "$a/demo/pm2/pm2.pid")
apid=$(agent_pid "$a")
# the exporter's own poll of PM2 runs once per scrape: scrape it every second
( while sleep 1; do curl -fsS -o /dev/null "$EXPORTER_URL" || true; done ) &
scraper=$!
echo "measuring for $secs s: agent pid $apid, exporter pid $EXPORTER_PID (scraped every 1 s), PM2 daemon pid $pm2pid ..."
sample_footprint "$secs" agent="$apid" exporter="$EXPORTER_PID" pm2-daemon="$pm2pid" >"$work/foot.out"
kill "$scraper"; wait "$scraper" 2>/dev/null || true; scraper=
echo "load at the end: $(uptime | sed 's/.*load average/load average/')"
printf '%-12s %12s %12s %14s\n' process "RSS max MB" "RSS avg MB" "CPU % of core"
while read -r label max avg cpu wall n; do
  read -r mb avgmb pct < <(awk -v m="$max" -v a="$avg" -v c="$cpu" -v w="$wall" 'BEGIN{printf "%.1f %.1f %.3f\n", m*1.024e-3, a*1.024e-3, 100*c/w}')
  printf '%-12s %12s %12s %14s\n' "$label" "$mb" "$avgmb" "$pct"
  res "foot_${label}_rss" "$mb"; res "foot_${label}_cpu" "$pct"
done <"$work/foot.out"
echo "(window $(awk '{print $5; exit}' "$work/foot.out") s, $(awk '{print $6; exit}' "$work/foot.out") samples each; the PM2 daemon's CPU is shared: it serves the exporter's list every second and the agent's bus and 5 s reconcile list)"

lv_cmd "$a"
python3 bench/sidebyside.py crash --agent "$(metrics_url "$a")" --exporter "$EXPORTER_URL" --kills "$kills" -- "${LV_CMD[@]}" status --json | tee "$work/crash.out"
read -r ap50 ap99 ep50 ep99 < <(sed -n 's/^RESULT crash_exporter //p' "$work/crash.out" | tr '=' ' ' | awk '{print $2, $4, $6, $8}')
res crash_m_agent_p50 "$ap50"; res crash_m_agent_p99 "$ap99"; res crash_m_exp_p50 "$ep50"; res crash_m_exp_p99 "$ep99"
env_down "$a"
fi

# the worker's tree gets a child holding 300 MiB (filled, so resident) for as long as the
# worker lives; the limit is raised so that the agent leaves it alone
hold300() {
  cat >>"$1/nexus/packages/worker/src/index.ts" <<'EOF'

// added by bench/compare.sh (memory truth): a child holding 300 MiB while the worker lives
import { spawn as spawnHolder } from "node:child_process";
spawnHolder(process.execPath, ["-e", "globalThis.held = Buffer.alloc(300 * 1048576, 1); const p = process.ppid; setInterval(() => { try { process.kill(p, 0); } catch { process.exit(0); } }, 1000);"], { stdio: "ignore" });
EOF
}
if part 4; then
section "4/4 memory truth: nexus-worker with a child holding 300 MiB"
env_up b '{"nexus-worker": {"memoryLimitMB": 1000}}' hold300
b=$work/env-b
lv_cmd "$b"
python3 bench/sidebyside.py memory --agent "$(metrics_url "$b")" --exporter "$EXPORTER_URL" --pm2 "$(command -v pm2)" \
  --pm2-home "$b/demo/pm2" -- "${LV_CMD[@]}" status --json | tee "$work/mem.out"
read -r truth magent mpm2 mexp < <(sed -n 's/^RESULT memory //p' "$work/mem.out" | tr '=' ' ' | awk '{print $2, $4, $6, $8}')
env_down "$b"
fi

section "summary (ratios from this run)"
machine_info
r() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b + 0 == 0) print "n/a"; else printf (a/b < 10 ? "%.2fx" : "%.0fx"), a/b }'; }
printf '%-58s %s\n' \
  "status read, pm2 jlist / native client: wall, CPU" "$(get list_wall)x, $(get list_cpu)x" \
  "crash -> state p50: jlist poller at 1 s / agent (bus)" "$(r "$(get crash_jlist_p50)" "$(get crash_agent_p50)") ($(get crash_jlist_p50) vs $(get crash_agent_p50) ms; agent p99 $(get crash_agent_p99) ms)" \
  "crash -> /metrics p50 (50 ms polls): exporter / agent" "$(r "$ep50" "$ap50") ($ep50 vs $ap50 ms; p99 $ep99 vs $ap99 ms)" \
  "footprint RSS max: exporter / agent" "$(r "$(get foot_exporter_rss)" "$(get foot_agent_rss)") ($(get foot_exporter_rss) vs $(get foot_agent_rss) MB)" \
  "footprint CPU: agent / exporter (scraped 1/s)" "$(r "$(get foot_agent_cpu)" "$(get foot_exporter_cpu)") ($(get foot_agent_cpu) vs $(get foot_exporter_cpu) % of a core)" \
  "memory of a tree holding 300 MiB, reported / PSS truth" "agent $magent, PM2 $mpm2, exporter $mexp (truth $truth MiB)" \
  "setup: parallel / sequential first run" "$(get setup_par_seq)" \
  "setup: no-op re-run / first run" "$(get setup_noop_first) ($(get setup_noop_s) s)"
